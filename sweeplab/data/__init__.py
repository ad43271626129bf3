"""Datasets by name: the options a sweep file may give each, and how to build them.

A sweep file's ``dataset:`` mapping names a dataset (``name``) and its options;
``parse_dataset_options`` validates them (unknown keys, missing folders) before
anything starts, and ``build_dataset`` turns them into a ``DataBundle`` inside
the trial. Every training item is ``(input, target, index)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Mapping

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from sweeplab.data.ambiguous_digits import AmbiguousDigitsFields
from sweeplab.data.fine_digits import FineDigitsFields
from sweeplab.data.retrieval_digits import RetrievalDigitsFields
from sweeplab.method import DataInfo


@dataclass
class DataBundle:
    train: Any  # torch Dataset yielding (input, target, index)
    val: Any
    test: Any
    info: DataInfo
    train_clean_targets: Any = None  # LongTensor of the true labels where known (built-in data), else None
    num_workers: int | None = 0  # DataLoader workers it wants (0: in memory; None: from the trial's CPUs)
    # further test sets (name -> dataset), evaluated with test and reported as ``test_<name>/*``
    # (see ``sweeplab.tasks.extra_test_split``); their names are the options' ``extra_tests``
    extra_tests: dict[str, Any] = field(default_factory=dict)


def _existing_dir(path: Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ValueError(f"folder does not exist: {path}")
    return path.resolve()


ExistingDir = Annotated[Path, AfterValidator(_existing_dir)]


class DatasetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    task: ClassVar[str] = "classification"
    # the names of the further test sets the dataset builds (``DataBundle.extra_tests``)
    extra_tests: ClassVar[tuple[str, ...]] = ()

    @property
    def num_classes(self) -> int | None:
        """The number of classes where the options fix it (for checks before compute), else None."""
        return None

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        """The model's input (channels, height, width) where the options fix it (checks before
        compute: a head's patch size against the backbone's feature map), else None."""
        size = getattr(self, "image_size", None)
        return None if size is None else (3, size, size)

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
    # the side the 8x8 images are resized to (bilinear, in memory): 8 keeps them; 112 or 224 gives a
    # ResNet the input sizes of real images (benchmarks, the GPU check) without files to decode
    image_size: int = Field(8, ge=8, le=448)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, self.image_size, self.image_size)

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.digits import build_noisy_digits

        return build_noisy_digits(self, seed)


class AmbiguousDigitsOptions(DatasetOptions, AmbiguousDigitsFields):
    """scikit-learn's 8x8 digits, part of the train images blended with a look-alike digit and labelled as
    an annotator would: noise that follows image content (see ``ambiguous_digits.py``)."""

    name: Literal["ambiguous_digits"] = "ambiguous_digits"
    num_classes: ClassVar[int] = 10
    input_shape: ClassVar[tuple[int, int, int]] = (1, 8, 8)
    extra_tests: ClassVar[tuple[str, ...]] = ("blended",)

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.ambiguous_digits import build_ambiguous_digits

        return build_ambiguous_digits(self, seed)


class FineDigitsOptions(DatasetOptions, FineDigitsFields):
    """scikit-learn's 8x8 digits drawn on a larger canvas with two small marks telling one of a few
    variants: classes (digit, variant), confusable within a digit (see ``fine_digits.py``)."""

    name: Literal["fine_digits"] = "fine_digits"
    extra_tests: ClassVar[tuple[str, ...]] = ("cue_erased",)

    @property
    def num_classes(self) -> int:
        return self.digits * self.variants

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, self.canvas, self.canvas)

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.fine_digits import build_fine_digits

        return build_fine_digits(self, seed)


class RetrievalDigitsOptions(DatasetOptions, RetrievalDigitsFields):
    """Two-digit numbers drawn from scikit-learn's 8x8 digits in two styles; 00-49 train, 50-99 test
    (class-disjoint, for metric learning; see ``retrieval_digits.py``)."""

    task: ClassVar[str] = "retrieval"
    name: Literal["retrieval_digits"] = "retrieval_digits"
    input_shape: ClassVar[tuple[int, int, int]] = (1, 16, 16)

    @property
    def num_classes(self) -> int:
        return self.training_classes

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.retrieval_digits import build_retrieval_digits

        return build_retrieval_digits(self, seed)


class ImageFolderOptions(DatasetOptions, LabelNoise):
    """A user's labelled folders: ``root/train/<class>/*``, ``root/val/<class>/*``, optional ``root/test``
    (when absent, test = val)."""

    name: Literal["image_folder"] = "image_folder"
    root: ExistingDir
    image_size: int = Field(224, ge=8)
    augment: bool = True  # random resized crop + horizontal flip on train
    workers: int | None = Field(None, ge=0)  # DataLoader workers (None: from the trial's CPUs, sweeplab.loaders)

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

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, 8 * self.tiles, 8 * self.tiles)

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
    workers: int | None = Field(None, ge=0)  # DataLoader workers (None: from the trial's CPUs, sweeplab.loaders)
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
    workers: int | None = Field(None, ge=0)  # DataLoader workers (None: from the trial's CPUs, sweeplab.loaders)
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

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, self.image_size, self.image_size)

    @model_validator(mode="after")
    def _aligned(self):
        from sweeplab.data.fer import check_ferplus_rows

        check_ferplus_rows(self.fer2013_csv, self.ferplus_csv)
        return self

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.fer import build_ferplus

        return build_ferplus(self, seed)


# -- fine-grained classification (task "classification"; see fine_grained.py) ----------------


class FineGrainedOptions(FerFileOptions):
    """Options common to the fine-grained datasets under one ``root`` (CUB-200-2011, Stanford Cars,
    FGVC-Aircraft; see ``fine_grained.py``): both sides resized to ``resize``, then an ``image_size`` crop."""

    root: ExistingDir
    image_size: int = Field(448, ge=8)  # the crop's side
    resize: int | None = None  # both sides first resized to this; default round(image_size * 600 / 448)
    augment: bool = True  # train: random crop + horizontal flip; else the eval centre crop
    _num_classes: int | None = None  # a private attribute: the class count the files gave when validated

    @property
    def resize_side(self) -> int:
        """The side both dimensions are resized to before the crop (600 for the 448 crop, the reference recipe)."""
        return self.resize if self.resize is not None else round(self.image_size * 600 / 448)

    @property
    def num_classes(self) -> int | None:
        return self._num_classes

    @model_validator(mode="after")
    def _resize_and_files(self):
        if self.resize_side < self.image_size:
            raise ValueError(f"resize ({self.resize_side}) must be at least image_size ({self.image_size}): "
                             "the crop is taken from the resized image")
        # files, lines and ids checked (errors name the file and line) before anything runs
        self._num_classes = len(self.listing().class_names)
        return self

    def listing(self):
        """The dataset's lists as its files give them (``fine_grained.Listing``)."""
        raise NotImplementedError

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.fine_grained import build_fine_grained

        return build_fine_grained(self, seed)


class CubOptions(FineGrainedOptions):
    """CUB-200-2011 (200 bird species): ``images.txt``, ``image_class_labels.txt``,
    ``train_test_split.txt`` and ``classes.txt`` under ``root``, images under ``images/``."""

    name: Literal["cub"] = "cub"
    root: ExistingDir  # the CUB_200_2011 folder
    crop_box: bool = False  # crop each image to its box in bounding_boxes.txt

    def listing(self):
        from sweeplab.data.fine_grained import read_cub

        return read_cub(self.root, self.crop_box)


class StanfordCarsOptions(FineGrainedOptions, FilesUnderRoot):
    """Stanford Cars (196 models): the devkit's ``cars_meta.mat`` and ``cars_train_annos.mat``,
    the test labels ``cars_test_annos_withlabels.mat``, images under ``cars_train/`` and ``cars_test/``."""

    name: Literal["stanford_cars"] = "stanford_cars"
    root: ExistingDir  # the folder holding devkit/, cars_train/ and cars_test/
    meta: ExistingFile | None = None  # default <root>/devkit/cars_meta.mat
    train_annotations: ExistingFile | None = None  # default <root>/devkit/cars_train_annos.mat
    test_annotations: ExistingFile | None = None  # default <root>/cars_test_annos_withlabels.mat (published apart)
    crop_box: bool = False  # crop each image to its annotated box (bbox_x1..bbox_y2)

    _defaults: ClassVar[dict[str, str]] = {
        "meta": "devkit/cars_meta.mat",
        "train_annotations": "devkit/cars_train_annos.mat",
        "test_annotations": "cars_test_annos_withlabels.mat",
    }

    def listing(self):
        from sweeplab.data.fine_grained import read_cars

        return read_cars(self.root, self.meta, self.train_annotations, self.test_annotations, self.crop_box)


class AircraftOptions(FineGrainedOptions):
    """FGVC-Aircraft 2013b (100 variants): ``data/images_variant_{trainval,train,val,test}.txt``
    (lines ``<id> <variant>``) and, for the class order, ``data/variants.txt`` under ``root``; images
    ``data/images/<id>.jpg``."""

    name: Literal["fgvc_aircraft"] = "fgvc_aircraft"
    root: ExistingDir  # the fgvc-aircraft-2013b folder
    # train on trainval (val: val_source), or on train with the published val as val (val_fraction unused)
    split: Literal["trainval", "train"] = "trainval"
    crop_banner: bool = True  # crop off the 20-pixel copyright banner at the bottom of every image

    @model_validator(mode="after")
    def _val_given_once(self):
        if self.split == "train" and self.val_source == "test":
            raise ValueError("split: train takes val from images_variant_val.txt; give either it or "
                             "val_source: test, not both")
        return self

    def listing(self):
        from sweeplab.data.fine_grained import read_aircraft

        return read_aircraft(self.root, self.split, self.crop_banner)


# -- metric learning, class-disjoint splits (task "retrieval"; see retrieval.py) ------------


class RetrievalOptions(DatasetOptions):
    """Options common to the metric-learning datasets under one ``root`` (CUB-200-2011, Cars196,
    Stanford Online Products; see ``retrieval.py``): train on some classes, retrieve among others.
    Both image sides resized to ``resize``, then an ``image_size`` crop."""

    task: ClassVar[str] = "retrieval"
    root: ExistingDir
    image_size: int = Field(224, ge=8)  # the crop's side
    resize: int | None = None  # both sides first resized to this; default round(image_size * 256 / 224)
    augment: bool = True  # train: random crop + horizontal flip; else the eval centre crop
    workers: int | None = Field(None, ge=0)  # DataLoader workers (None: from the trial's CPUs, sweeplab.loaders)
    # val: the images of a seeded share of the training classes (not trained on), or the test set
    val_source: Literal["train_fraction", "test"] = "train_fraction"
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)  # share of the training CLASSES held out as val
    _num_classes: int | None = None  # a private attribute: the classes trained on, as the files gave them

    @property
    def resize_side(self) -> int:
        """The side both dimensions are resized to before the crop (256 for the 224 crop, the recipe)."""
        return self.resize if self.resize is not None else round(self.image_size * 256 / 224)

    @property
    def num_classes(self) -> int | None:
        """The classes trained on (``DataInfo.num_classes``): the training split's less the val share."""
        return self._num_classes

    @model_validator(mode="after")
    def _resize_and_files(self):
        from sweeplab.data.retrieval import training_classes

        if self.resize_side < self.image_size:
            raise ValueError(f"resize ({self.resize_side}) must be at least image_size ({self.image_size}): "
                             "the crop is taken from the resized image")
        # files and lines checked (errors name the file and line) before anything runs
        self._num_classes = training_classes(self.listing(), self.val_source, self.val_fraction)
        return self

    def listing(self):
        """The dataset's class-disjoint train / test lists as its files give them (``fine_grained.Listing``)."""
        raise NotImplementedError

    def build(self, seed: int) -> DataBundle:
        from sweeplab.data.retrieval import build_retrieval

        return build_retrieval(self, seed)


class CubRetrievalOptions(RetrievalOptions):
    """CUB-200-2011 for metric learning: all images of classes 1-100 train, 101-200 test (the
    files of ``cub`` less ``train_test_split.txt``)."""

    name: Literal["cub_retrieval"] = "cub_retrieval"
    root: ExistingDir  # the CUB_200_2011 folder
    crop_box: bool = False  # crop each image to its box in bounding_boxes.txt

    def listing(self):
        from sweeplab.data.retrieval import read_cub_retrieval

        return read_cub_retrieval(self.root, self.crop_box)


class Cars196Options(RetrievalOptions, FilesUnderRoot):
    """Cars196 (Stanford Cars for metric learning): ``cars_annos.mat``, classes 1-98 train,
    99-196 test, images ``<root>/<relative_im_path>`` (``car_ims/``)."""

    name: Literal["cars196"] = "cars196"
    root: ExistingDir  # the folder holding cars_annos.mat and car_ims/
    annotations: ExistingFile | None = None  # default <root>/cars_annos.mat
    crop_box: bool = False  # crop each image to its annotated box (bbox_x1..bbox_y2)

    _defaults: ClassVar[dict[str, str]] = {"annotations": "cars_annos.mat"}

    def listing(self):
        from sweeplab.data.retrieval import read_cars196

        return read_cars196(self.root, self.annotations, self.crop_box)


class SopOptions(RetrievalOptions, FilesUnderRoot):
    """Stanford Online Products: train = ``Ebay_train.txt`` (11,318 products), test =
    ``Ebay_test.txt`` (11,316 others), images ``<root>/<path>``."""

    name: Literal["sop"] = "sop"
    root: ExistingDir  # the Stanford_Online_Products folder
    train_list: ExistingFile | None = None  # default <root>/Ebay_train.txt
    test_list: ExistingFile | None = None  # default <root>/Ebay_test.txt

    _defaults: ClassVar[dict[str, str]] = {"train_list": "Ebay_train.txt", "test_list": "Ebay_test.txt"}

    def listing(self):
        from sweeplab.data.retrieval import read_sop

        return read_sop(self.root, self.train_list, self.test_list)


DATASETS: dict[str, type[DatasetOptions]] = {
    "noisy_digits": NoisyDigitsOptions,
    "ambiguous_digits": AmbiguousDigitsOptions,
    "fine_digits": FineDigitsOptions,
    "retrieval_digits": RetrievalDigitsOptions,
    "image_folder": ImageFolderOptions,
    "lt_digits": LongTailedDigitsOptions,
    "voc_mlt": VocMltOptions,
    "coco_mlt": CocoMltOptions,
    "multilabel_csv": MultiLabelCsvOptions,
    "raf_db": RafDbOptions,
    "fer_csv": FerCsvOptions,
    "affectnet": AffectNetOptions,
    "ferplus": FerPlusOptions,
    "cub": CubOptions,
    "stanford_cars": StanfordCarsOptions,
    "fgvc_aircraft": AircraftOptions,
    "cub_retrieval": CubRetrievalOptions,
    "cars196": Cars196Options,
    "sop": SopOptions,
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
