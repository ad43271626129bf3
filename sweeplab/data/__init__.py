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

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from sweeplab.data.ambiguous_digits import AmbiguousDigitsFields
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

    @property
    def num_classes(self) -> int | None:
        """The number of classes where the options fix it (for checks before compute), else None."""
        return None

    def build(self, seed: int) -> DataBundle:
        raise NotImplementedError


class FilesUnderRoot(BaseModel):
    """Options of a dataset under one ``root`` whose files, when not given, sit at published places in it."""

    _defaults: ClassVar[dict[str, str]] = {}  # option -> its path relative to root

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, raw: Any) -> Any:
        """Fill the file options left out with their place under ``root`` (so errors name that path)."""
        if isinstance(raw, Mapping) and isinstance(raw.get("root"), (str, Path)):
            root = Path(raw["root"]).expanduser().resolve()
            if root.is_dir():
                raw = {**raw, **{key: root / relative for key, relative in cls._defaults.items()
                                 if raw.get(key) is None}}
        return raw


class LabelNoise(BaseModel):
    """Synthetic label noise applied to the training split only."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    noise_rate: float = Field(0.0, ge=0.0, lt=1.0)  # fraction of training labels replaced
    noise_type: Literal["symmetric", "pairwise"] = "symmetric"  # uniform other class | class c -> c+1


class NoisyDigitsOptions(DatasetOptions, LabelNoise):
    """scikit-learn's bundled 8x8 digits (1,797 real images), seeded stratified split."""

    name: Literal["noisy_digits"] = "noisy_digits"
    num_classes: ClassVar[int] = 10
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5)

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.digits import build_noisy_digits

        return build_noisy_digits(self, seed)


class AmbiguousDigitsOptions(DatasetOptions, AmbiguousDigitsFields):
    """scikit-learn's 8x8 digits, part of the train images blended with a look-alike digit and labelled as
    an annotator would: noise that follows image content (see ``ambiguous_digits.py``)."""

    name: Literal["ambiguous_digits"] = "ambiguous_digits"
    num_classes: ClassVar[int] = 10

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.ambiguous_digits import build_ambiguous_digits

        return build_ambiguous_digits(self, seed)


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


# -- long-tailed multi-label (task "multilabel"; see multilabel.py) ----------------------


def _existing_file(path: Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"file does not exist: {path}")
    return path.resolve()


ExistingFile = Annotated[Path, AfterValidator(_existing_file)]


def _readable_class_split(path: Path) -> Path:
    from sweeplab.data.multilabel import read_class_split

    path = _existing_file(path)
    try:
        read_class_split(path)  # format errors (and forbidden pickles) surface before anything runs
    except Exception as error:
        raise ValueError(f"unreadable class split {path}: {error}") from None
    return path


ClassSplitFile = Annotated[Path, AfterValidator(_readable_class_split)]


class LongTailedDigitsOptions(DatasetOptions):
    """Mosaics of scikit-learn's 8x8 digits, labels = digits present; long-tailed train, balanced
    val/test (see ``lt_digits.py``)."""

    task: ClassVar[str] = "multilabel"
    name: Literal["lt_digits"] = "lt_digits"
    tiles: int = Field(2, ge=1, le=4)  # tiles per mosaic side: 2 -> 2x2 tiles -> 1x16x16 images
    train_size: int = Field(1200, ge=10)  # train mosaics
    val_size: int = Field(500, ge=10)
    test_size: int = Field(500, ge=10)
    imbalance: float = Field(100.0, ge=1.0)  # train images of the most / of the least frequent class
    max_labels_per_image: int = Field(3, ge=1, le=10)  # each mosaic has 1..this many distinct digits
    shuffle_classes: bool = False  # class frequency rank: digit order (0 most frequent) or a seeded permutation
    head_min: int = Field(100, ge=1)  # head: >= head_min training images
    tail_max: int = Field(20, ge=1)  # tail: < tail_max training images; medium in between

    @model_validator(mode="after")
    def _consistent(self):
        if self.max_labels_per_image > self.tiles**2:
            raise ValueError(f"max_labels_per_image ({self.max_labels_per_image}) exceeds the "
                             f"{self.tiles**2} tiles of a {self.tiles}x{self.tiles} mosaic")
        if self.tail_max > self.head_min:
            raise ValueError(f"tail_max ({self.tail_max}) must not exceed head_min ({self.head_min})")
        return self

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.lt_digits import build_lt_digits

        return build_lt_digits(self, seed)


class MultiLabelFileOptions(DatasetOptions):
    """Options common to the multi-label image datasets read from files."""

    task: ClassVar[str] = "multilabel"
    image_size: int = Field(224, ge=8)
    augment: bool = True  # random resized crop + horizontal flip on train
    workers: int = Field(4, ge=0)  # DataLoader workers
    # val: a seeded, label-stratified share of the training images (for model selection), or the test set
    val_source: Literal["train_fraction", "test"] = "train_fraction"
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)  # share of train held out when val_source is train_fraction
    class_split: ClassSplitFile | None = None  # published head/medium/tail split (text or class_split.pkl)
    head_min: int = Field(100, ge=1)  # without class_split: head >= head_min training images
    tail_max: int = Field(20, ge=1)  # ... tail < tail_max; medium in between

    @model_validator(mode="after")
    def _thresholds(self):
        if self.tail_max > self.head_min:
            raise ValueError(f"tail_max ({self.tail_max}) must not exceed head_min ({self.head_min})")
        return self


class RootedFileOptions(MultiLabelFileOptions, FilesUnderRoot):
    """A multi-label dataset under one ``root`` whose files sit at published places in it."""


class VocMltOptions(RootedFileOptions):
    """VOC-MLT (DistributionBalancedLoss repository layout): train = the VOC2012 ids listed in
    ``train_ids``, test = VOC2007 test; labels from the VOC XML annotations."""

    name: Literal["voc_mlt"] = "voc_mlt"
    root: ExistingDir  # a VOCdevkit folder holding VOC2012/ and VOC2007/
    train_ids: ExistingFile | None = None  # default <root>/longtail2012/img_id.txt
    test_ids: ExistingFile | None = None  # default <root>/VOC2007/ImageSets/Main/test.txt
    skip_difficult: bool = False  # the DB repository counts every <object>, difficult ones included

    _defaults: ClassVar[dict[str, str]] = {
        "train_ids": "longtail2012/img_id.txt",
        "test_ids": "VOC2007/ImageSets/Main/test.txt",
    }

    @model_validator(mode="after")
    def _folders(self):
        for year in ("VOC2012", "VOC2007"):
            for sub in ("JPEGImages", "Annotations"):
                if not (self.root / year / sub).is_dir():
                    raise ValueError(f"folder does not exist: {self.root / year / sub} (VOC-MLT needs "
                                     "<root>/VOC2012 and <root>/VOC2007, each with JPEGImages/ and Annotations/)")
        return self

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.multilabel_files import build_voc_mlt

        return build_voc_mlt(self, seed)


class CocoMltOptions(RootedFileOptions):
    """COCO-MLT (DistributionBalancedLoss repository layout): train = the train2017 ids listed in
    ``train_ids``, test = every val2017 image with a label; labels from the instances json files."""

    name: Literal["coco_mlt"] = "coco_mlt"
    root: ExistingDir  # a coco folder holding train2017/, val2017/ and annotations/
    train_ids: ExistingFile | None = None  # default <root>/longtail2017/img_id.pkl (plain text: one id a line)
    train_annotations: ExistingFile | None = None  # default <root>/annotations/instances_train2017.json
    test_annotations: ExistingFile | None = None  # default <root>/annotations/instances_val2017.json

    _defaults: ClassVar[dict[str, str]] = {
        "train_ids": "longtail2017/img_id.pkl",
        "train_annotations": "annotations/instances_train2017.json",
        "test_annotations": "annotations/instances_val2017.json",
    }

    @model_validator(mode="after")
    def _folders(self):
        for sub in ("train2017", "val2017"):
            if not (self.root / sub).is_dir():
                raise ValueError(f"folder does not exist: {self.root / sub} (COCO-MLT needs <root>/train2017 "
                                 "and <root>/val2017)")
        return self

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.multilabel_files import build_coco_mlt

        return build_coco_mlt(self, seed)


class MultiLabelCsvOptions(MultiLabelFileOptions):
    """A user's multi-label images listed in CSV files with columns ``path,labels`` (labels
    separated by ``;``)."""

    name: Literal["multilabel_csv"] = "multilabel_csv"
    train: ExistingFile
    val: ExistingFile | None = None  # else a seeded, label-stratified share of train (val_fraction)
    test: ExistingFile
    classes: list[str] | None = None  # class order; default: sorted union of the labels in all CSVs
    image_root: ExistingDir | None = None  # relative image paths resolve here; default: each CSV's folder

    @model_validator(mode="after")
    def _val(self):
        if self.val is not None and self.val_source == "test":
            raise ValueError("give either a val CSV or val_source: test, not both")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes lists a class twice: {self.classes}")
        return self

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.multilabel_files import build_multilabel_csv

        return build_multilabel_csv(self, seed)


# -- facial expressions (task "classification"; see fer.py) --------------------------------


class FerFileOptions(DatasetOptions, LabelNoise):
    """Options common to the single-label image datasets read from files (RAF-DB, CSV manifests)."""

    image_size: int = Field(224, ge=8)
    augment: bool = True  # random resized crop + horizontal flip on train
    workers: int = Field(4, ge=0)  # DataLoader workers
    # val: a seeded, class-stratified share of the training images (for model selection), or the test set
    val_source: Literal["train_fraction", "test"] = "train_fraction"
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)  # share of train held out when val_source is train_fraction


def _readable_raf_labels(path: Path) -> Path:
    from sweeplab.data.fer import read_raf_labels

    path = _existing_file(path)
    try:
        read_raf_labels(path)  # format errors (file and line) surface before anything runs
    except ValueError:
        raise
    except Exception as error:
        raise ValueError(f"unreadable RAF-DB label file {path}: {error}") from None
    return path


RafLabelFile = Annotated[Path, AfterValidator(_readable_raf_labels)]


class RafDbOptions(FerFileOptions, FilesUnderRoot):
    """RAF-DB basic emotions (7 classes): train / test from ``EmoLabel/list_patition_label.txt``,
    images under ``Image/aligned`` (see ``fer.py``)."""

    name: Literal["raf_db"] = "raf_db"
    num_classes: ClassVar[int] = 7
    root: ExistingDir  # the RAF-DB "basic" folder, holding EmoLabel/ and Image/
    label_file: RafLabelFile | None = None  # default <root>/EmoLabel/list_patition_label.txt
    images: Literal["aligned", "original"] = "aligned"  # Image/aligned/<stem>_aligned.jpg | Image/original/<name>

    _defaults: ClassVar[dict[str, str]] = {"label_file": "EmoLabel/list_patition_label.txt"}

    @model_validator(mode="after")
    def _image_folder(self):
        folder = self.root / "Image" / self.images
        if not folder.is_dir():
            raise ValueError(f"folder does not exist: {folder} (RAF-DB needs <root>/Image/{self.images}/)")
        return self

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.fer import build_raf_db

        return build_raf_db(self, seed)


class FerCsvOptions(FerFileOptions):
    """Single-label images listed in CSV files with columns ``path,label`` (FERPlus, AffectNet or
    any other set): labels are names from ``classes`` or integers (see ``fer.py``)."""

    name: Literal["fer_csv"] = "fer_csv"
    train: ExistingFile
    val: ExistingFile | None = None  # else val_source decides (a share of train, or test)
    test: ExistingFile
    classes: list[str] | None = None  # class order; default: 0..max label for integers, else sorted names
    label_base: int = Field(0, ge=0)  # the integer label of the first class (1 for 1-based lists)
    image_root: ExistingDir | None = None  # relative image paths resolve here; default: each CSV's folder

    @model_validator(mode="after")
    def _val(self):
        if self.val is not None and self.val_source == "test":
            raise ValueError("give either a val CSV or val_source: test, not both")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes lists a class twice: {self.classes}")
        if self.classes is not None and len(self.classes) < 2:
            raise ValueError(f"classification needs at least 2 classes, got {self.classes}")
        return self

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.fer import build_fer_csv

        return build_fer_csv(self, seed)


def _checked_file(check, what: str):
    """A validator: the file exists and ``check(path)`` accepts it (errors name the file and line)."""

    def validate(path: Path) -> Path:
        path = _existing_file(path)
        try:
            check(path)
        except UnicodeDecodeError as error:
            raise ValueError(f"unreadable {what} {path}: not UTF-8 text "
                             f"({error.reason} at byte {error.start})") from None
        except ValueError:
            raise
        except Exception as error:
            raise ValueError(f"unreadable {what} {path}: {error}") from None
        return path

    return AfterValidator(validate)


def _affectnet_header(path: Path) -> None:
    from sweeplab.data.fer import read_affectnet_header

    read_affectnet_header(path)


AffectNetCsv = Annotated[Path, _checked_file(_affectnet_header, "AffectNet CSV")]


class AffectNetOptions(FerFileOptions, FilesUnderRoot):
    """AffectNet manual annotations: train = ``training.csv``, test = ``validation.csv`` (the
    official validation set), images under ``Manually_Annotated_Images`` (see ``fer.py``)."""

    name: Literal["affectnet"] = "affectnet"
    root: ExistingDir  # the AffectNet folder holding training.csv, validation.csv and the image folder
    train_csv: AffectNetCsv | None = None  # default <root>/training.csv
    test_csv: AffectNetCsv | None = None  # default <root>/validation.csv (the official validation set)
    images: Path = Path("Manually_Annotated_Images")  # <root>/<images>/<subDirectory_filePath>; or absolute
    classes: Literal[7, 8] = 8  # 8: expressions 0-7; 7: without Contempt (AffectNet-7)
    crop_face: bool = True  # crop each image to its face_x, face_y, face_width, face_height box

    @property
    def num_classes(self) -> int:
        return self.classes

    _defaults: ClassVar[dict[str, str]] = {"train_csv": "training.csv", "test_csv": "validation.csv"}

    @model_validator(mode="after")
    def _images_and_faces(self):
        from sweeplab.data.fer import missing_face_columns

        folder = self.root / self.images.expanduser()
        if not folder.is_dir():
            raise ValueError(f"folder does not exist: {folder} (AffectNet needs its image folder, "
                             f"<root>/{self.images}/<subDirectory_filePath>; set images to another folder)")
        for path in (self.train_csv, self.test_csv):
            missing = missing_face_columns(path) if self.crop_face and path is not None else []
            if missing:
                raise ValueError(f"{path}, line 1: crop_face needs the column(s) {', '.join(missing)}; "
                                 "add them or set crop_face: false")
        return self

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.fer import build_affectnet

        return build_affectnet(self, seed)


def _ferplus_labels(path: Path) -> None:
    from sweeplab.data.fer import read_ferplus_labels

    read_ferplus_labels(path)


def _fer2013_header(path: Path) -> None:
    from sweeplab.data.fer import read_fer2013_header

    read_fer2013_header(path)


FerPlusLabelFile = Annotated[Path, _checked_file(_ferplus_labels, "FER+ label file")]
Fer2013File = Annotated[Path, _checked_file(_fer2013_header, "FER2013 file")]


class FerPlusOptions(DatasetOptions, LabelNoise):
    """FER+: FER2013's 48x48 grey faces (``fer2013.csv``) with FER+'s 10-tagger votes
    (``fer2013new.csv``), joined row by row; label = the most voted of 8 emotions, Usage
    Training / PublicTest / PrivateTest = train / val / test (see ``fer.py``)."""

    name: Literal["ferplus"] = "ferplus"
    num_classes: ClassVar[int] = 8
    fer2013_csv: Fer2013File  # FER2013's fer2013.csv: emotion,pixels,Usage
    ferplus_csv: FerPlusLabelFile  # FER+'s fer2013new.csv: Usage,Image name,<8 emotions>,unknown,NF
    # majority: targets = the voted label; distribution: the splits also carry soft_targets (votes / sum)
    target: Literal["majority", "distribution"] = "majority"
    image_size: int = Field(48, ge=8)  # the 48x48 faces resized to this
    augment: bool = True  # random crop of 80-100% of the face + horizontal flip on train
    workers: int = Field(0, ge=0)  # DataLoader workers (the faces are in memory)

    @model_validator(mode="after")
    def _aligned(self):
        from sweeplab.data.fer import check_ferplus_rows

        check_ferplus_rows(self.fer2013_csv, self.ferplus_csv)
        return self

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.fer import build_ferplus

        return build_ferplus(self, seed)


DATASETS: dict[str, type[DatasetOptions]] = {
    "noisy_digits": NoisyDigitsOptions,
    "ambiguous_digits": AmbiguousDigitsOptions,
    "image_folder": ImageFolderOptions,
    "lt_digits": LongTailedDigitsOptions,
    "voc_mlt": VocMltOptions,
    "coco_mlt": CocoMltOptions,
    "multilabel_csv": MultiLabelCsvOptions,
    "raf_db": RafDbOptions,
    "fer_csv": FerCsvOptions,
    "affectnet": AffectNetOptions,
    "ferplus": FerPlusOptions,
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
