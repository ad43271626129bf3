"""Facial expression datasets (single-label classification): RAF-DB, AffectNet and FER+ in
their published layouts, and CSV manifests (any other set prepared as ``path,label`` lists).

Layouts read here:

* RAF-DB basic (Li, Deng & Du, CVPR 2017), ``root`` = the ``basic`` folder:
  ``EmoLabel/list_patition_label.txt`` (the file's own spelling) with lines
  ``train_00001.jpg 5``, labels 1..7 = Surprise, Fear, Disgust, Happiness, Sadness,
  Anger, Neutral (shifted to 0..6 here); train = the ``train_*`` lines, test = the
  ``test_*`` lines. Images: ``Image/aligned/<stem>_aligned.jpg`` (the 100x100 aligned
  faces, as the SCN code reads them), or ``Image/original/<name>`` with ``images: original``.
* AffectNet manual annotations (Mollahosseini, Hasani & Mahoor, 2017), ``root`` holding
  ``training.csv`` (train) and ``validation.csv`` (the official validation set, used as
  test: the test set is not public). Columns used: ``subDirectory_filePath`` (the image,
  under ``<root>/Manually_Annotated_Images/`` or ``images``), ``expression`` and, to crop
  the face (``crop_face``, default on), ``face_x, face_y, face_width, face_height`` (a box
  in pixels, clipped to the image; one wholly outside leaves the image whole); the other
  columns (``facial_landmarks, valence, arousal``) are ignored. ``expression`` 0..7 =
  Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger, Contempt are kept; 8..10 = None,
  Uncertain, Non-Face are dropped, and so is 7 with ``classes: 7`` (the AffectNet-7
  protocol); any other value is an error naming the file and line. The headers (and the
  face columns when cropping) are checked when the options are; rows when the data is built.
* FER+ (Barsoum et al., ICMI 2016): FER+'s ``fer2013new.csv`` (columns ``Usage, Image
  name, neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown,
  NF``: 10 taggers' votes per face) joined row by row, by position, with FER2013's
  ``fer2013.csv`` (columns ``emotion, pixels, Usage``; ``pixels`` = 48x48 = 2304
  space-separated grey values 0..255, row by row; one record a line, as published; FER2013's
  own ``emotion`` is not used). Both files must have the same number of rows and the same
  ``Usage`` on each. Usage Training / PublicTest / PrivateTest = train / val / test. Label =
  the most voted of the 8 emotions, ties going to the first in the column order above (the
  order of ``FERPLUS_CLASSES``); a row is dropped when ``unknown`` or ``NF`` has more votes
  than every emotion (on a tie the emotion is kept, as in the FER+ code's argmax), when no
  emotion has a vote, or when its ``Image name`` is empty (the faces FER+ removed). This is
  the plurality vote; the FER+ code's "majority" mode additionally drops faces whose top
  emotion has no more than half the votes. With ``target: distribution`` each split also
  carries ``soft_targets`` (N x 8 float32: the emotion votes over their sum; the published
  votes, untouched by synthetic label noise), while ``targets`` stays the voted label. Images
  are built in memory (no image files): 1x48x48 grey, resized to ``image_size``, scaled to
  [0, 1] and standardised with the train split's scalar mean and std (as the digits are).
  Files, headers, row counts, Usage alignment and vote values are checked when the options
  are; pixels when the data is built.
* CSV manifests: a header with columns ``path,label``; one image a row. Labels are class
  names from ``classes`` or integer indices (``label_base`` is the integer of the first
  class: 1 for 1-based lists). A label that equals a name in ``classes`` is that class;
  otherwise it must be an integer. Without ``classes``: integer labels give classes
  ``"0".."C-1"`` (C = the largest label + 1 over all CSVs), name labels give the sorted
  names. Relative image paths resolve against ``image_root``, else the CSV's folder.

Validation: the papers report on test; a sweep needs a split for model selection, so by
default val is a seeded, class-stratified share of the training list (``val_source:
train_fraction``), which the model does not train on; ``val_source: test`` uses the test
set (the papers' protocol), and a CSV dataset may give its own ``val`` file. FER+ has a
published val split (PublicTest), used as such.

Synthetic label noise (``noise.py``, ``noise_rate`` / ``noise_type``) touches the images
trained on only, with the trial's seed, after val is held out: val and test keep their
labels, and ``train_clean_targets`` holds the labels as read (RAF-DB's own labels are
themselves not noise-free: "clean" means "as published"). The hold-out, the noise and the
image datasets are ``labelled.py``'s, shared with the fine-grained datasets.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import transforms

from sweeplab.data.folders import check_images
from sweeplab.data.indexed import _as_targets
# LabelledImages, crop_to_box and stratified_holdout moved to labelled.py; still importable from here
from sweeplab.data.labelled import BoxCrops, LabelledImages, assemble, crop_to_box, stratified_holdout  # noqa: F401
from sweeplab.data.noise import inject_label_noise
from sweeplab.method import DataInfo

if TYPE_CHECKING:
    from sweeplab.data import AffectNetOptions, DataBundle, FerCsvOptions, FerPlusOptions, RafDbOptions

RAF_DB_CLASSES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
RAF_DB_LABEL_FILE = "EmoLabel/list_patition_label.txt"


# -- RAF-DB ------------------------------------------------------------------------------


def read_raf_labels(path: Path) -> dict[str, list[tuple[str, int]]]:
    """``{"train": [(image name, 0-based label), ...], "test": [...]}`` from RAF-DB's
    ``list_patition_label.txt`` (lines ``train_00001.jpg 5``, labels 1..7)."""
    path = Path(path)
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}, line {line_number}"
        if len(fields) != 2:
            raise ValueError(f"{where}: expected '<image name> <label 1-7>', got {line.strip()!r}")
        name, label = fields
        split = name.split("_", 1)[0]
        if split not in splits:
            raise ValueError(f"{where}: image name {name!r} starts with neither train_ nor test_")
        if not label.isdigit() or not 1 <= int(label) <= len(RAF_DB_CLASSES):
            raise ValueError(f"{where}: label {label!r} is not one of 1..{len(RAF_DB_CLASSES)} "
                             f"({', '.join(RAF_DB_CLASSES)})")
        splits[split].append((name, int(label) - 1))
    for split, rows in splits.items():
        if not rows:
            raise ValueError(f"{path}: no {split}_* images listed")
    return splits


def raf_image_path(image_dir: Path, name: str, images: str) -> Path:
    """``Image/aligned/<stem>_aligned.jpg`` for the aligned faces, ``Image/original/<name>`` otherwise."""
    return image_dir / (f"{Path(name).stem}_aligned.jpg" if images == "aligned" else name)


def build_raf_db(options: RafDbOptions, seed: int) -> DataBundle:
    image_dir = Path(options.root) / "Image" / options.images
    splits = {}
    for split, rows in read_raf_labels(options.label_file).items():
        paths = [raf_image_path(image_dir, name, options.images) for name, _ in rows]
        check_images(paths, f"RAF-DB {split} (listed in {options.label_file})")
        splits[split] = (paths, np.array([label for _, label in rows], dtype=np.int64))
    return assemble(options, seed, RAF_DB_CLASSES, splits["train"], splits["test"])


# -- CSV manifests -----------------------------------------------------------------------


def read_fer_csv(path: Path, image_root: Path | None) -> list[tuple[Path, str, int]]:
    """``(image path, label text, line number)`` rows of a ``path,label`` CSV."""
    path = Path(path)
    base = Path(image_root) if image_root is not None else path.parent
    rows = []
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        if reader.fieldnames is None or not {"path", "label"} <= {(f or "").strip() for f in reader.fieldnames}:
            raise ValueError(f"{path}: needs a header with columns path,label; got {reader.fieldnames}")
        for row in reader:
            row = {(k or "").strip(): v for k, v in row.items()}
            line = reader.line_num
            image = (row.get("path") or "").strip()
            label = (row.get("label") or "").strip()
            if not image:
                raise ValueError(f"{path}, line {line}: empty image path")
            if not label:
                raise ValueError(f"{path}, line {line}: empty label")
            rows.append((base / image, label, line))
    if not rows:
        raise ValueError(f"{path}: no images listed")
    return rows


def _as_int(text: str) -> int | None:
    stripped = text.lstrip("+-")
    return int(text) if stripped.isdigit() else None


def csv_classes(rows: dict[str, list], files: dict[str, Path], classes, label_base: int) -> tuple[str, ...]:
    """The class names: ``classes``, else ``"0".."C-1"`` for integer labels, else the sorted names."""
    if classes is not None:
        return tuple(classes)
    labels = [(files[k], label, line) for k, split in rows.items() for _, label, line in split]
    integers = [_as_int(label) for _, label, _ in labels]
    if all(i is not None for i in integers):
        for (path, label, line), i in zip(labels, integers):
            if i < label_base:
                raise ValueError(f"{path}, line {line}: label {label} is below label_base {label_base}")
        return tuple(str(c) for c in range(max(integers) - label_base + 1))
    if any(i is not None for i in integers):
        path, label, line = next(x for x, i in zip(labels, integers) if i is not None)
        raise ValueError(f"{path}, line {line}: integer label {label!r} among name labels; give 'classes' "
                         "(names, indices allowed) or use one kind of label")
    return tuple(sorted({label for _, label, _ in labels}))


def _csv_split(path: Path, rows, class_names: Sequence[str], label_base: int):
    index = {name: i for i, name in enumerate(class_names)}
    labels = []
    for image, label, line in rows:
        if label in index:
            labels.append(index[label])
            continue
        i = _as_int(label)
        if i is None or not 0 <= i - label_base < len(class_names):
            known = f"a class name ({', '.join(class_names)}) or an integer {label_base}..{label_base + len(class_names) - 1}"
            raise ValueError(f"{path}, line {line}: unknown label {label!r}; allowed: {known}")
        labels.append(i - label_base)
    check_images([image for image, _, _ in rows], f"{path}")
    return [image for image, _, _ in rows], np.asarray(labels, dtype=np.int64)


def build_fer_csv(options: FerCsvOptions, seed: int) -> DataBundle:
    files = {"train": options.train, "val": options.val, "test": options.test}
    files = {k: Path(p) for k, p in files.items() if p is not None}
    rows = {k: read_fer_csv(p, options.image_root) for k, p in files.items()}
    class_names = csv_classes(rows, files, options.classes, options.label_base)
    if len(class_names) < 2:
        raise ValueError(f"{options.train}: classification needs at least 2 classes, found {list(class_names)}")
    splits = {k: _csv_split(files[k], r, class_names, options.label_base) for k, r in rows.items()}
    return assemble(options, seed, class_names, splits["train"], splits["test"], val=splits.get("val"))


# -- AffectNet ---------------------------------------------------------------------------

AFFECTNET_CLASSES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
AFFECTNET_DROPPED = ("None", "Uncertain", "Non-Face")  # expression 8, 9, 10
AFFECTNET_IMAGES = "Manually_Annotated_Images"
AFFECTNET_REQUIRED = ("subDirectory_filePath", "expression")
AFFECTNET_BOX = ("face_x", "face_y", "face_width", "face_height")


def read_affectnet_header(path: Path) -> tuple[str, ...]:
    """The columns of an AffectNet CSV; it must have ``subDirectory_filePath`` and ``expression``."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as file:
        header = next(csv.reader(file), None)
    columns = tuple(c.strip() for c in header or ())
    missing = [c for c in AFFECTNET_REQUIRED if c not in columns]
    if missing:
        raise ValueError(f"{path}, line 1: the AffectNet header lacks column(s) {', '.join(missing)}; it needs "
                         f"{', '.join(AFFECTNET_REQUIRED)} (and {', '.join(AFFECTNET_BOX)} to crop faces); "
                         f"got {', '.join(columns) or 'nothing'}")
    return columns


def missing_face_columns(path: Path) -> list[str]:
    """The face box columns an AffectNet CSV lacks (``crop_face`` needs all four)."""
    columns = read_affectnet_header(path)
    return [c for c in AFFECTNET_BOX if c not in columns]


def read_affectnet(path: Path, image_dir: Path, num_classes: int, crop_face: bool) -> tuple[list, np.ndarray]:
    """``([(image path, face box or None), ...], labels)`` of an AffectNet CSV: the rows whose
    ``expression`` is below ``num_classes`` (8: 0..7, 7: 0..6); 8..10 are dropped."""
    path, image_dir = Path(path), Path(image_dir)
    read_affectnet_header(path)
    kept = ", ".join(f"{i} {name}" for i, name in enumerate(AFFECTNET_CLASSES))
    dropped = ", ".join(f"{i + len(AFFECTNET_CLASSES)} {name}" for i, name in enumerate(AFFECTNET_DROPPED))
    items, labels = [], []
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        reader.fieldnames = [(f or "").strip() for f in reader.fieldnames or ()]
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            text = (row.get("expression") or "").strip()
            expression = _as_int(text)
            if expression is None or not 0 <= expression < len(AFFECTNET_CLASSES) + len(AFFECTNET_DROPPED):
                raise ValueError(f"{where}: expression {text!r} is not one of 0..10 ({kept}; {dropped}: dropped)")
            if expression >= num_classes:
                continue  # None / Uncertain / Non-Face, and Contempt with classes: 7
            image = (row.get("subDirectory_filePath") or "").strip()
            if not image:
                raise ValueError(f"{where}: empty subDirectory_filePath")
            box = None
            if crop_face:
                try:
                    box = tuple(float((row.get(c) or "").strip()) for c in AFFECTNET_BOX)
                except ValueError:
                    given = ", ".join(f"{c}={row.get(c)!r}" for c in AFFECTNET_BOX)
                    raise ValueError(f"{where}: face box is not four numbers ({given}); "
                                     "or set crop_face: false") from None
                if box[2] <= 0 or box[3] <= 0:
                    raise ValueError(f"{where}: face_width and face_height must be > 0, got {box[2]:g} and {box[3]:g}")
            items.append((image_dir / image, box))
            labels.append(expression)
    if not items:
        raise ValueError(f"{path}: no rows with expression 0..{num_classes - 1} "
                         f"({', '.join(AFFECTNET_CLASSES[:num_classes])})")
    return items, np.asarray(labels, dtype=np.int64)


FaceCrops = BoxCrops  # AffectNet's images, each cropped to its face box; items (path, box or None)


def build_affectnet(options: AffectNetOptions, seed: int) -> DataBundle:
    image_dir = Path(options.root) / Path(options.images).expanduser()
    splits = {}
    for split, path in (("train", options.train_csv), ("test", options.test_csv)):
        items, labels = read_affectnet(path, image_dir, options.classes, options.crop_face)
        check_images([image for image, _ in items], f"AffectNet {split} (listed in {path})")
        splits[split] = (items, labels)
    return assemble(options, seed, AFFECTNET_CLASSES[: options.classes], splits["train"], splits["test"],
                    images=FaceCrops)


# -- FER+ --------------------------------------------------------------------------------

FERPLUS_EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
FERPLUS_CLASSES = ("Neutral", "Happiness", "Surprise", "Sadness", "Anger", "Disgust", "Fear", "Contempt")
FERPLUS_COLUMNS = ("Usage", "Image name", *FERPLUS_EMOTIONS, "unknown", "NF")
FER2013_COLUMNS = ("emotion", "pixels", "Usage")
FER2013_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FER2013_SIDE = 48


def _header_indices(path: Path, header: Sequence[str] | None, needed: Sequence[str], what: str) -> dict[str, int]:
    columns = [c.strip().strip('"') for c in header or ()]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ValueError(f"{path}, line 1: the {what} header lacks column(s) {', '.join(map(repr, missing))}; "
                         f"it needs {', '.join(needed)}; got {', '.join(columns) or 'nothing'}")
    return {c: columns.index(c) for c in needed}


def _usage(path: Path, line: int, text: str) -> str:
    if text not in FER2013_SPLITS:
        raise ValueError(f"{path}, line {line}: Usage {text!r} is not one of {', '.join(FER2013_SPLITS)}")
    return text


def read_ferplus_labels(path: Path) -> list[tuple[int, str, str, np.ndarray]]:
    """``(line, Usage, image name, votes)`` rows of FER+'s ``fer2013new.csv``; ``votes`` (int64,
    10) in ``FERPLUS_COLUMNS`` order: the 8 emotions, then unknown and NF."""
    path = Path(path)
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        at = _header_indices(path, next(reader, None), FERPLUS_COLUMNS, "FER+ label file (fer2013new.csv)")
        vote_columns = FERPLUS_COLUMNS[2:]
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            line = reader.line_num
            if len(fields) <= max(at.values()):
                raise ValueError(f"{path}, line {line}: {len(fields)} field(s); the header has {len(FERPLUS_COLUMNS)}")
            votes = []
            for column in vote_columns:
                text = fields[at[column]].strip()
                if not text.isdigit():
                    raise ValueError(f"{path}, line {line}: {column} vote {text!r} is not a whole number >= 0")
                votes.append(int(text))
            usage = _usage(path, line, fields[at["Usage"]].strip())
            rows.append((line, usage, fields[at["Image name"]].strip(), np.asarray(votes, dtype=np.int64)))
    if not rows:
        raise ValueError(f"{path}: no label rows")
    return rows


def _fer2013_lines(path: Path):
    """``(line number, fields)`` of FER2013's ``fer2013.csv``, the header first: one record a
    line, as published (nothing quoted; a field's surrounding quotes are dropped)."""
    with open(path, encoding="utf-8-sig", newline="") as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                yield number, [f.strip().strip('"') for f in line.rstrip("\r\n").split(",")]


def read_fer2013_header(path: Path, lines=None) -> dict[str, int]:
    """Where ``emotion``, ``pixels`` and ``Usage`` are in ``fer2013.csv``'s header line."""
    first = next(lines if lines is not None else _fer2013_lines(Path(path)), None)
    return _header_indices(Path(path), first[1] if first else None, FER2013_COLUMNS, "FER2013 (fer2013.csv)")


def read_fer2013(path: Path, pixels: bool = True):
    """``(line, Usage, pixels text or None)`` rows of ``fer2013.csv`` (header checked)."""
    path = Path(path)
    lines = _fer2013_lines(path)
    at = read_fer2013_header(path, lines)
    rows = []
    for line, fields in lines:
        if len(fields) <= max(at.values()):
            raise ValueError(f"{path}, line {line}: {len(fields)} field(s); expected emotion,pixels,Usage")
        rows.append((line, _usage(path, line, fields[at["Usage"]]), fields[at["pixels"]] if pixels else None))
    return rows


def check_ferplus_rows(fer2013: Path, labels: Path, pixels: bool = False) -> tuple[list, list]:
    """``(fer2013 rows, label rows)`` (see ``read_fer2013``, ``read_ferplus_labels``), checked to
    pair row by row: the same number of rows, the same Usage on each."""
    label_rows = read_ferplus_labels(labels)
    image_rows = read_fer2013(fer2013, pixels=pixels)
    if len(image_rows) != len(label_rows):
        raise ValueError(f"{fer2013} has {len(image_rows)} image rows but {labels} has {len(label_rows)} label rows; "
                         "FER+ labels pair with FER2013 images row by row, so the counts must match")
    pairs = zip(image_rows, label_rows)
    for row, ((image_line, image_usage, _), (label_line, label_usage, _, _)) in enumerate(pairs, start=1):
        if image_usage != label_usage:
            raise ValueError(f"row {row}: {fer2013}, line {image_line} has Usage {image_usage} but {labels}, line "
                             f"{label_line} has {label_usage}; the files must list the same faces in the same order")
    return image_rows, label_rows


def ferplus_label(votes: np.ndarray) -> int | None:
    """The most voted emotion (ties: the first in column order), or None when ``unknown`` or
    ``NF`` has more votes than every emotion, or no emotion has a vote."""
    emotions = votes[: len(FERPLUS_EMOTIONS)]
    if emotions.max() <= 0:
        return None
    best = int(np.argmax(votes))  # the first of the tied; emotions precede unknown and NF
    return best if best < len(FERPLUS_EMOTIONS) else None


def _pixels(path: Path, line: int, text: str) -> np.ndarray:
    side = FER2013_SIDE
    allowed = f"pixels must be {side * side} ({side}x{side}) space-separated whole numbers 0..255"
    try:
        with warnings.catch_warnings():  # older numpy warns (not raises) on text it cannot read
            warnings.simplefilter("error", DeprecationWarning)
            array = np.fromstring(text, dtype=np.int64, sep=" ")  # text mode: fast, not deprecated
    except (ValueError, DeprecationWarning):
        bad = next((v for v in text.split() if not v.lstrip("+-").isdigit()), text)
        raise ValueError(f"{path}, line {line}: {allowed}, got {bad!r}") from None
    if len(array) != side * side:
        raise ValueError(f"{path}, line {line}: {allowed}, got {len(array)} value(s)")
    if array.min() < 0 or array.max() > 255:
        raise ValueError(f"{path}, line {line}: {allowed}, got {int(array.min())}..{int(array.max())}")
    return array.astype(np.uint8).reshape(side, side)


class GreyFaces(Dataset):
    """In-memory grey faces (uint8, N x 48 x 48) yielding ``(1 x S x S standardised tensor,
    target, index)``; relabellable ``targets`` (int64, shared memory), ``soft_targets`` (N x 8
    vote distributions, float32) or None, and ``source_indices`` (rows of the CSV files, 0-based)."""

    def __init__(self, pixels: torch.Tensor, targets, mean: float, std: float, image_size: int,
                 augment: bool = False, soft_targets: torch.Tensor | None = None, source_indices=None):
        self.pixels = torch.as_tensor(pixels, dtype=torch.uint8)
        self.targets = _as_targets(np.asarray(targets, dtype=np.int64))
        if len(self.pixels) != len(self.targets):
            raise ValueError(f"{len(self.pixels)} images but {len(self.targets)} targets")
        self.soft_targets = soft_targets
        self.source_indices = None if source_indices is None else np.asarray(source_indices)
        self.mean, self.std, self.image_size, self.augment = float(mean), float(std), int(image_size), augment
        if augment:  # a random crop of 80-100% of the face, resized, and a horizontal flip
            self.transform = transforms.Compose([
                transforms.RandomResizedCrop(image_size, scale=(0.8, 1.0), antialias=True),
                transforms.RandomHorizontalFlip(),
            ])
        elif image_size != FER2013_SIDE:
            self.transform = transforms.Resize((image_size, image_size), antialias=True)
        else:
            self.transform = None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = self.pixels[index].unsqueeze(0).float().div_(255.0)
        if self.transform is not None:
            image = self.transform(image)
        return (image - self.mean) / self.std, self.targets[index].clone(), index


def build_ferplus(options: FerPlusOptions, seed: int) -> DataBundle:
    from sweeplab.data import DataBundle

    fer2013, labels = Path(options.fer2013_csv), Path(options.ferplus_csv)
    image_rows, label_rows = check_ferplus_rows(fer2013, labels, pixels=True)
    kept: dict[str, list] = {split: [] for split in FER2013_SPLITS.values()}  # (row, label, votes, pixels)
    for row, ((image_line, usage, pixels), (_, _, name, votes)) in enumerate(zip(image_rows, label_rows)):
        label = ferplus_label(votes) if name else None
        if label is not None:
            kept[FER2013_SPLITS[usage]].append((row, label, votes, _pixels(fer2013, image_line, pixels)))
    for split, rows in kept.items():
        if not rows:
            usage = next(u for u, s in FER2013_SPLITS.items() if s == split)
            raise ValueError(f"{labels}: no {usage} face with an emotion vote above unknown and NF")

    def arrays(rows):
        emotions = np.stack([votes[: len(FERPLUS_EMOTIONS)] for _, _, votes, _ in rows]).astype(np.float32)
        return (np.stack([pixels for *_, pixels in rows]), np.asarray([label for _, label, _, _ in rows]),
                torch.from_numpy(emotions / emotions.sum(axis=1, keepdims=True)),
                np.asarray([row for row, *_ in rows]))

    splits = {split: arrays(rows) for split, rows in kept.items()}
    # the train split's scalar mean and std of the [0, 1] pixels, from their histogram (no float copy)
    counts = np.bincount(splits["train"][0].ravel(), minlength=256).astype(np.float64)
    values = np.arange(256) / 255.0
    mean = float((counts * values).sum() / counts.sum())
    std = float(np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())) or 1.0
    num_classes = len(FERPLUS_CLASSES)
    clean = splits["train"][1].astype(np.int64)
    noisy = inject_label_noise(clean, num_classes, options.noise_rate, options.noise_type, seed)
    distribution = options.target == "distribution"

    def dataset(split, targets, augment):
        pixels, _, soft, rows = splits[split]
        return GreyFaces(torch.from_numpy(pixels), targets, mean, std, options.image_size, augment,
                         soft_targets=soft if distribution else None, source_indices=rows)

    info = DataInfo(
        task="classification",
        num_classes=num_classes,
        class_names=FERPLUS_CLASSES,
        input_shape=(1, options.image_size, options.image_size),
        train_size=len(clean),
        train_class_counts=tuple(int(n) for n in np.bincount(noisy, minlength=num_classes)),
    )
    return DataBundle(
        train=dataset("train", noisy, options.augment),
        val=dataset("val", splits["val"][1], False),
        test=dataset("test", splits["test"][1], False),
        info=info,
        train_clean_targets=torch.from_numpy(clean.copy()),
        num_workers=options.workers,
    )
