"""A user's labelled image folders: ``root/train/<class>/*``, ``root/val/<class>/*``,
and optionally ``root/test/<class>/*``; when ``root/test`` is absent, test = val.

Images are read as RGB. Train: random resized crop + horizontal flip when
``augment``, else the eval transform. Eval: resize the shorter side to
``image_size / 0.875``, centre crop ``image_size``. Both end with ImageNet
mean/std normalisation. Label noise (``noise.py``) touches the train split only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder

from sweeplab.data.indexed import IndexedDataset, _as_targets
from sweeplab.data.noise import inject_label_noise
from sweeplab.method import DataInfo

if TYPE_CHECKING:
    from sweeplab.data import DataBundle, ImageFolderOptions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP_FRACTION = 0.875  # eval resizes to image_size / 0.875, then centre-crops image_size


def load_rgb(path: str) -> Image.Image:
    """Open an image file as RGB (grey, palette and RGBA images included)."""
    with open(path, "rb") as file:
        return Image.open(file).convert("RGB")


def image_transforms(image_size: int, augment: bool) -> tuple[transforms.Compose, transforms.Compose]:
    """``(train_transform, eval_transform)`` mapping a PIL image to a normalised (3, S, S) tensor."""
    to_normalised_tensor = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    resize_and_crop = [
        transforms.Resize(round(image_size / EVAL_CROP_FRACTION)),
        transforms.CenterCrop(image_size),
    ]
    eval_transform = transforms.Compose(resize_and_crop + to_normalised_tensor)
    if not augment:
        return eval_transform, eval_transform
    train_transform = transforms.Compose(
        [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip()] + to_normalised_tensor
    )
    return train_transform, eval_transform


def _split_folder(root: Path, split: str, transform) -> ImageFolder:
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder dataset needs {folder}/<class>/<image files>")
    return ImageFolder(str(folder), transform=transform, loader=load_rgb)


def _check_same_classes(reference: ImageFolder, other: ImageFolder) -> None:
    if reference.classes != other.classes:
        missing = sorted(set(reference.classes) - set(other.classes))
        extra = sorted(set(other.classes) - set(reference.classes))
        raise ValueError(
            f"class folders differ between {reference.root} and {other.root}: "
            f"missing from the latter {missing}, only in the latter {extra}"
        )


def build_image_folder(options: ImageFolderOptions, seed: int) -> DataBundle:
    """The image-folder ``DataBundle`` for one trial; ``seed`` fixes the label noise."""
    from sweeplab.data import DataBundle

    root = Path(options.root)
    train_transform, eval_transform = image_transforms(options.image_size, options.augment)
    train = _split_folder(root, "train", train_transform)
    val = _split_folder(root, "val", eval_transform)
    test = _split_folder(root, "test", eval_transform) if (root / "test").is_dir() else val
    for other in (val, test):
        _check_same_classes(train, other)

    num_classes = len(train.classes)
    clean_train = torch.tensor(train.targets, dtype=torch.long)
    noisy_train = torch.from_numpy(
        inject_label_noise(clean_train, num_classes, options.noise_rate, options.noise_type, seed)
    )
    info = DataInfo(
        task="classification",
        num_classes=num_classes,
        class_names=tuple(train.classes),
        input_shape=(3, options.image_size, options.image_size),
        train_size=len(train),
        train_class_counts=tuple(int(n) for n in torch.bincount(noisy_train, minlength=num_classes)),
    )
    val_indexed = IndexedDataset(val)
    return DataBundle(
        train=IndexedDataset(train, targets=noisy_train),
        val=val_indexed,
        test=val_indexed if test is val else IndexedDataset(test),
        info=info,
        train_clean_targets=clean_train,
        num_workers=options.workers,
    )


class ImageFiles(Dataset):
    """Image files with labels, yielding ``(image, target, index)``; ``targets`` is a shared-memory
    tensor (``dtype`` int64 labels or float32 multi-hot rows) read on every access, so a method may
    relabel (see ``indexed.py``)."""

    dtype = np.int64

    def __init__(self, paths, targets, transform=None):
        self.paths = [str(p) for p in paths]
        self.targets = _as_targets(np.asarray(targets, dtype=self.dtype))
        self.transform = transform
        if len(self.paths) != len(self.targets):
            raise ValueError(f"{len(self.paths)} images but {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = load_rgb(self.paths[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index].clone(), index


def check_images(paths: Sequence[Path], what: str) -> None:
    """Every image a list file names exists (before any training): else one error naming the
    list (``what``), how many are missing and the first few."""
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FileNotFoundError(f"{what}: {len(missing)} image(s) missing: {', '.join(missing[:3])}{more}")
