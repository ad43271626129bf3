"""Datasets by name: the options a sweep file may give each, and how to build them.

A sweep file's ``dataset:`` mapping names a dataset (``name``) and its options;
``parse_dataset_options`` validates them (unknown keys, missing folders) before
anything starts, and ``build_dataset`` turns them into a ``DataBundle`` inside
the trial. Every training item is ``(input, target, index)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Mapping

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from sweeplab.method import DataInfo


@dataclass
class DataBundle:
    train: Any  # torch Dataset yielding (input, target, index)
    val: Any
    test: Any
    info: DataInfo
    train_clean_targets: Any = None  # LongTensor of the true labels where known (built-in data), else None
    num_workers: int = 0  # DataLoader workers that suit this dataset


def _existing_dir(path: Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ValueError(f"folder does not exist: {path}")
    return path.resolve()


ExistingDir = Annotated[Path, AfterValidator(_existing_dir)]


class DatasetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    task: ClassVar[str] = "classification"

    def build(self, seed: int) -> DataBundle:
        raise NotImplementedError


class LabelNoise(BaseModel):
    """Synthetic label noise applied to the training split only."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    noise_rate: float = Field(0.0, ge=0.0, lt=1.0)  # fraction of training labels replaced
    noise_type: Literal["symmetric", "pairwise"] = "symmetric"  # uniform other class | class c -> c+1


class NoisyDigitsOptions(DatasetOptions, LabelNoise):
    """scikit-learn's bundled 8x8 digits (1,797 real images), seeded stratified split."""

    name: Literal["noisy_digits"] = "noisy_digits"
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5)

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.digits import build_noisy_digits

        return build_noisy_digits(self, seed)


class ImageFolderOptions(DatasetOptions, LabelNoise):
    """A user's labelled folders: ``root/train/<class>/*``, ``root/val/<class>/*``, optional ``root/test``
    (when absent, test = val)."""

    name: Literal["image_folder"] = "image_folder"
    root: ExistingDir
    image_size: int = Field(224, ge=8)
    augment: bool = True  # random resized crop + horizontal flip on train
    workers: int = Field(4, ge=0)  # DataLoader workers

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.folders import build_image_folder

        return build_image_folder(self, seed)


DATASETS: dict[str, type[DatasetOptions]] = {
    "noisy_digits": NoisyDigitsOptions,
    "image_folder": ImageFolderOptions,
}


def parse_dataset_options(raw: Mapping[str, Any]) -> DatasetOptions:
    """Validate a sweep file's ``dataset`` mapping. Raises ``KeyError`` for an unknown or
    missing name and ``pydantic.ValidationError`` for bad options."""
    name = raw.get("name")
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name].model_validate(dict(raw))


def build_dataset(raw: Mapping[str, Any], seed: int) -> DataBundle:
    return parse_dataset_options(raw).build(seed)
