"""Fine-grained classification datasets in their published layouts: CUB-200-2011, Stanford
Cars and FGVC-Aircraft (single-label classification, many similar classes).

Layouts read here:

* CUB-200-2011 (Wah et al., Caltech technical report CNS-TR-2011-001), ``root`` = the
  ``CUB_200_2011`` folder. Text files of space-separated fields, one image a line, keyed by
  the image id: ``images.txt`` (``<id> <path under images/>``, e.g. ``1
  001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg``), ``image_class_labels.txt``
  (``<id> <class id>``), ``train_test_split.txt`` (``<id> <1 train | 0 test>``), ``classes.txt``
  (``<class id> <name>``, ids 1..C, e.g. ``1 001.Black_footed_Albatross``: the class names, kept
  as written, 0-based labels in this order) and, read only with ``crop_box: true``,
  ``bounding_boxes.txt`` (``<id> <x> <y> <width> <height>``, pixels, floats). Every id of
  ``images.txt`` must be on one line of each other file, and no other id. Images
  ``images/<path>``. Published: 200 classes, 5,994 train / 5,794 test images.
* Stanford Cars (Krause et al., 3dRR 2013), ``root`` holding the devkit: MATLAB files read with
  ``scipy.io.loadmat``. ``devkit/cars_meta.mat``: ``class_names`` (196 names);
  ``devkit/cars_train_annos.mat`` and the test labels ``cars_test_annos_withlabels.mat``
  (published apart from the devkit; default ``<root>/cars_test_annos_withlabels.mat``, where
  torchvision looks too): each a struct array ``annotations`` (1 x N as published; N or N x 1
  read alike) with fields ``bbox_x1, bbox_y1, bbox_x2, bbox_y2`` (the car's box: inclusive
  corners, 1-based pixel coordinates as MATLAB counts), ``class`` (1-based index into
  ``class_names``) and ``fname``. Images ``cars_train/<fname>`` and ``cars_test/<fname>``.
  Published: 8,144 train / 8,041 test.
* FGVC-Aircraft 2013b (Maji et al., arXiv:1306.5151), ``root`` = the ``fgvc-aircraft-2013b``
  folder. ``data/images_variant_<split>.txt`` for the splits trainval, train, val and test:
  lines ``<image id> <variant>``, split at the first space only (variant names hold spaces and
  ``/``: ``1025794 707-320``, ``0056978 F/A-18``, ``1234567 Cessna 172``); class order from
  ``data/variants.txt`` (one name a line) when present, else the sorted names of the lists
  read. Images ``data/images/<id>.jpg``; their bottom 20 pixel rows are the photographer's
  copyright banner (the dataset's README says so), cropped off unless ``crop_banner: false``.
  Train = trainval (the papers' protocol), or with ``split: train`` train, with the published
  val as val. Published: 100 variants, 3,334 train / 3,333 val / 3,333 test images.

Images (all three): both sides resized to ``resize`` (default ``round(image_size * 600 /
448)``: 600 for the 448 crop, the recipe of the fine-grained papers' code, e.g. TransFG's
``Resize((600, 600))``; the aspect ratio is not kept, as there), then train: a random
``image_size`` crop and a horizontal flip (``augment``), eval (and train without
``augment``): the centre crop; ImageNet mean/std normalisation. ``crop_box`` (CUB, Cars)
crops each image to its annotated box first.

Validation: the published splits are train / test only (Aircraft's val aside), so by default
val is a seeded, class-stratified share of train (``val_source: train_fraction``, not trained
on); ``val_source: test`` uses the test set. Synthetic label noise (``noise_rate`` /
``noise_type``) touches the images trained on only (see ``labelled.py``).

Files and their lines are read when the options are validated: a missing file or folder is
an error naming its path, a malformed line one naming the file and line (the annotation, in
a ``.mat`` file), an id missing from a file one naming the file and the id. Images are
checked to exist when the data is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
from torchvision import transforms

from sweeplab.data.folders import IMAGENET_MEAN, IMAGENET_STD, check_images
from sweeplab.data.labelled import Box, BoxCrops, LabelledImages, assemble

if TYPE_CHECKING:
    from sweeplab.data import DataBundle, FineGrainedOptions

AIRCRAFT_BANNER = 20  # pixel rows of copyright banner at the bottom of every FGVC-Aircraft image
CARS_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")


@dataclass
class Listing:
    """What a dataset's files say: class names and, per split (train, test, maybe val), the
    items ``(image path, box or None)`` with their 0-based labels; ``listed_in`` names the file
    that lists each split's images, ``images`` the dataset class that reads them."""

    name: str
    class_names: tuple[str, ...]
    splits: dict[str, tuple[list[tuple[Path, Box | None]], np.ndarray]]
    listed_in: dict[str, Path]
    images: type[LabelledImages] = BoxCrops


def fine_grained_transforms(image_size: int, resize: int, augment: bool):
    """``(train, eval)``: both sides resized to ``resize``, then a random (train, with
    ``augment``) or centre ``image_size`` crop, a horizontal flip on train; ImageNet-normalised."""
    to_normalised_tensor = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    resized = transforms.Resize((resize, resize))
    eval_transform = transforms.Compose([resized, transforms.CenterCrop(image_size), *to_normalised_tensor])
    if not augment:
        return eval_transform, eval_transform
    train_transform = transforms.Compose(
        [resized, transforms.RandomCrop(image_size), transforms.RandomHorizontalFlip(), *to_normalised_tensor])
    return train_transform, eval_transform


def build_fine_grained(options: FineGrainedOptions, seed: int) -> DataBundle:
    listing = options.listing()
    for split, (items, _) in listing.splits.items():
        check_images([path for path, _ in items], f"{listing.name} {split} (listed in {listing.listed_in[split]})")
    return assemble(options, seed, listing.class_names, listing.splits["train"], listing.splits["test"],
                    val=listing.splits.get("val"), images=listing.images,
                    transforms=fine_grained_transforms(options.image_size, options.resize_side, options.augment))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line stripped)`` of a text file's non-blank lines; a missing or non-UTF-8
    file is a ``ValueError`` naming it."""
    if not path.is_file():
        raise ValueError(f"file does not exist: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"unreadable {path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line.strip()


def _folder(path: Path, needed_by: str) -> Path:
    if not path.is_dir():
        raise ValueError(f"folder does not exist: {path} ({needed_by})")
    return path


# -- CUB-200-2011 --------------------------------------------------------------------------


def _cub_table(path: Path, expect: str, parse: Callable[[list[str], str], Any]) -> dict[int, tuple[int, Any]]:
    """``{id: (line number, parse(the other fields, where))}`` of a CUB file of lines
    ``<id> <fields>``; ``expect`` spells the line, one ``<...>`` a field (their count is checked)."""
    count = expect.count("<")  # fields, one per <...>
    table: dict[int, tuple[int, Any]] = {}
    for number, line in _lines(path):
        where = f"{path}, line {number}"
        fields = line.split()
        if len(fields) != count or not fields[0].isdigit():
            raise ValueError(f"{where}: expected '{expect}', got {line!r}")
        key = int(fields[0])
        if key in table:
            raise ValueError(f"{where}: id {key} listed twice (first on line {table[key][0]})")
        table[key] = (number, parse(fields[1:], where))
    if not table:
        raise ValueError(f"{path}: no lines")
    return table


def _class_id(fields: list[str], where: str) -> int:
    if not fields[0].isdigit() or int(fields[0]) < 1:
        raise ValueError(f"{where}: class id {fields[0]!r} is not a whole number >= 1")
    return int(fields[0])


def _is_train(fields: list[str], where: str) -> bool:
    if fields[0] not in ("0", "1"):
        raise ValueError(f"{where}: {fields[0]!r} is neither 1 (train) nor 0 (test)")
    return fields[0] == "1"


def _box(fields: list[str], where: str) -> Box:
    try:
        x, y, width, height = (float(f) for f in fields)
    except ValueError:
        raise ValueError(f"{where}: the box {' '.join(fields)!r} is not four numbers") from None
    if not all(map(math.isfinite, (x, y, width, height))) or width <= 0 or height <= 0:
        raise ValueError(f"{where}: the box {' '.join(fields)!r} needs finite numbers and width, height > 0")
    return x, y, width, height


def _ids_match(images: dict, images_path: Path, table: dict, path: Path) -> None:
    """Each id of images.txt is in ``table`` (read from ``path``), and no other."""
    missing = [key for key in images if key not in table]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"{path}: no line for image id(s) {', '.join(map(str, missing[:5]))}{more} "
                         f"(listed in {images_path})")
    for key, (number, _) in table.items():
        if key not in images:
            raise ValueError(f"{path}, line {number}: image id {key} is not in {images_path}")


@dataclass
class CubImages:
    """What CUB-200-2011's files other than ``train_test_split.txt`` say: the class names, the
    ``images.txt`` table (``{id: (line number, path under images/)}``, in file order) and, in
    that order, each image's ``(path, box or None)`` and 0-based label; ``paths`` the files."""

    class_names: tuple[str, ...]
    ids: dict[int, tuple[int, str]]
    items: list[tuple[Path, Box | None]]
    labels: np.ndarray
    paths: dict[str, Path]


def read_cub_images(root: Path, crop_box: bool = False) -> CubImages:
    """The CUB-200-2011 images, classes and (``crop_box``) boxes under ``root``, cross-checked;
    ``train_test_split.txt`` is not read (``read_cub`` reads it; metric learning splits by class)."""
    root = Path(root)
    paths = {name: root / name for name in ("images.txt", "image_class_labels.txt", "train_test_split.txt",
                                            "classes.txt", "bounding_boxes.txt")}
    image_dir = _folder(root / "images", "CUB-200-2011 keeps its images in <root>/images/")
    images = _cub_table(paths["images.txt"], "<image id> <path under images/>", lambda f, _: f[0])
    labels = _cub_table(paths["image_class_labels.txt"], "<image id> <class id>", _class_id)
    classes = _cub_table(paths["classes.txt"], "<class id> <class name>", lambda f, _: f[0])
    missing = sorted(set(range(1, len(classes) + 1)) - set(classes))
    if missing:
        raise ValueError(f"{paths['classes.txt']}: class ids must run 1..{len(classes)}, one line each; "
                         f"missing {', '.join(map(str, missing[:5]))}")
    tables = {"image_class_labels.txt": labels}
    if crop_box:
        tables["bounding_boxes.txt"] = _cub_table(paths["bounding_boxes.txt"], "<image id> <x> <y> <width> <height>",
                                                  _box)
    for name, table in tables.items():
        _ids_match(images, paths["images.txt"], table, paths[name])
    boxes = tables.get("bounding_boxes.txt")
    items, targets = [], []
    for key, (_, relative) in images.items():
        number, label = labels[key]
        if label > len(classes):
            raise ValueError(f"{paths['image_class_labels.txt']}, line {number}: class {label} is not in "
                             f"{paths['classes.txt']} (1..{len(classes)})")
        items.append((image_dir / relative, boxes[key][1] if boxes else None))
        targets.append(label - 1)
    return CubImages(class_names=tuple(classes[i][1] for i in range(1, len(classes) + 1)), ids=images,
                     items=items, labels=np.asarray(targets, dtype=np.int64), paths=paths)


def read_cub(root: Path, crop_box: bool = False) -> Listing:
    """The CUB-200-2011 lists under ``root`` (every file read and cross-checked)."""
    cub = read_cub_images(root, crop_box)
    split_path = cub.paths["train_test_split.txt"]
    split = _cub_table(split_path, "<image id> <1 train | 0 test>", _is_train)
    _ids_match(cub.ids, cub.paths["images.txt"], split, split_path)
    splits: dict[str, tuple[list, list]] = {"train": ([], []), "test": ([], [])}
    for key, item, label in zip(cub.ids, cub.items, cub.labels):
        items, targets = splits["train" if split[key][1] else "test"]
        items.append(item)
        targets.append(label)
    for name, (items, _) in splits.items():
        if not items:
            raise ValueError(f"{split_path}: no {name} images")
    return Listing(
        name="CUB-200-2011",
        class_names=cub.class_names,
        splits={name: (items, np.asarray(targets, dtype=np.int64)) for name, (items, targets) in splits.items()},
        listed_in={name: cub.paths["images.txt"] for name in splits},
    )


# -- Stanford Cars -------------------------------------------------------------------------


def _mat_variable(path: Path, variable: str) -> np.ndarray:
    """``variable`` of a MATLAB file, as a flat array (1 x N, N x 1 and N alike)."""
    from scipy.io import loadmat  # scipy comes with scikit-learn; imported when Cars is read

    if not path.is_file():
        raise ValueError(f"file does not exist: {path}")
    try:
        contents = loadmat(path, squeeze_me=True)
    except Exception as error:
        raise ValueError(f"unreadable {path}: not a MATLAB file scipy.io.loadmat reads "
                         f"({type(error).__name__}: {error})") from None
    if variable not in contents:
        present = [key for key in contents if not key.startswith("__")]
        raise ValueError(f"{path}: no variable {variable!r} (it has {', '.join(present) or 'none'})")
    return np.atleast_1d(contents[variable]).ravel()


def _mat_scalar(value: Any, where: str, what: str) -> Any:
    array = np.asarray(value).squeeze()
    if array.size != 1:
        raise ValueError(f"{where}: {what} holds {array.size} values, not one")
    return array.item()


def _mat_number(value: Any, where: str, what: str) -> float:
    number = _mat_scalar(value, where, what)
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        raise ValueError(f"{where}: {what} {number!r} is not a number")
    return float(number)


def read_cars_classes(path: Path) -> tuple[str, ...]:
    """The class names of ``cars_meta.mat``."""
    path = Path(path)
    names = tuple(str(_mat_scalar(name, f"{path}, class_names[{i}]", "the name"))
                  for i, name in enumerate(_mat_variable(path, "class_names"), start=1))
    if not names:
        raise ValueError(f"{path}: class_names is empty")
    return names


def cars_box(record: Any, where: str) -> Box:
    """The box of a Stanford Cars annotation (fields ``bbox_x1, bbox_y1, bbox_x2, bbox_y2``: inclusive
    1-based corners) as a 0-based ``(x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1)``."""
    x1, y1, x2, y2 = (_mat_number(record[f], where, f) for f in CARS_FIELDS[:4])
    if x2 < x1 or y2 < y1:
        raise ValueError(f"{where}: the box ({x1:g}, {y1:g}) - ({x2:g}, {y2:g}) has x2 < x1 or y2 < y1")
    return x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1


def cars_label(record: Any, where: str, num_classes: int, classes_from: str) -> int:
    """The 0-based label of a Stanford Cars annotation's ``class`` (1..``num_classes``, the classes
    of the file ``classes_from``)."""
    label = _mat_number(record["class"], where, "class")
    if label != int(label) or not 1 <= label <= num_classes:
        raise ValueError(f"{where}: class {label:g} is not one of 1..{num_classes} (the classes of {classes_from})")
    return int(label) - 1


def read_cars_annotations(path: Path, num_classes: int, image_dir: Path) -> tuple[list[tuple[Path, Box]], np.ndarray]:
    """``([(image path, box), ...], 0-based labels)`` of a Stanford Cars ``annotations`` struct
    array; box = ``(x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1)`` (inclusive 1-based corners -> a
    0-based left, top, width, height)."""
    path = Path(path)
    records = _mat_variable(path, "annotations")
    missing = [name for name in CARS_FIELDS if name not in (records.dtype.names or ())]
    if missing:
        raise ValueError(f"{path}: annotations lacks the field(s) {', '.join(missing)}; it needs "
                         f"{', '.join(CARS_FIELDS)} (the test labels are cars_test_annos_withlabels.mat; "
                         "cars_test_annos.mat has no class)")
    items, labels = [], []
    for number, record in enumerate(records, start=1):
        where = f"{path}, annotation {number}"
        box = cars_box(record, where)
        label = cars_label(record, where, num_classes, "cars_meta.mat")
        fname = str(_mat_scalar(record["fname"], where, "fname"))
        if not fname:
            raise ValueError(f"{where}: empty fname")
        items.append((image_dir / fname, box))
        labels.append(label)
    if not items:
        raise ValueError(f"{path}: no annotations")
    return items, np.asarray(labels, dtype=np.int64)


def read_cars(root: Path, meta: Path, train: Path, test: Path, crop_box: bool = False) -> Listing:
    """The Stanford Cars lists: classes from ``meta``, train / test annotations, images under ``root``."""
    root = Path(root)
    class_names = read_cars_classes(meta)
    splits, listed_in = {}, {}
    for split, path in (("train", Path(train)), ("test", Path(test))):
        folder = _folder(root / f"cars_{split}", f"Stanford Cars keeps its {split} images in <root>/cars_{split}/")
        items, labels = read_cars_annotations(path, len(class_names), folder)
        splits[split] = ([(image, box if crop_box else None) for image, box in items], labels)
        listed_in[split] = path
    return Listing("Stanford Cars", class_names, splits, listed_in)


# -- FGVC-Aircraft -------------------------------------------------------------------------


class WithoutBanner(BoxCrops):
    """FGVC-Aircraft images without their copyright banner, the bottom ``AIRCRAFT_BANNER`` pixel
    rows (an image no taller is kept whole)."""

    def load(self, index: int):
        image = super().load(index)
        if image.height <= AIRCRAFT_BANNER:
            return image
        return image.crop((0, 0, image.width, image.height - AIRCRAFT_BANNER))


def read_aircraft_list(path: Path) -> list[tuple[int, str, str]]:
    """``(line number, image id, variant)`` rows of an ``images_variant_<split>.txt`` (each line
    split at its first space: variant names hold spaces)."""
    path = Path(path)
    rows, first = [], {}
    for number, line in _lines(path):
        image, _, variant = line.partition(" ")
        variant = variant.strip()
        if not image.isdigit() or not variant:
            raise ValueError(f"{path}, line {number}: expected '<image id (digits)> <variant>', got {line!r}")
        if image in first:
            raise ValueError(f"{path}, line {number}: image {image} listed twice (first on line {first[image]})")
        first[image] = number
        rows.append((number, image, variant))
    if not rows:
        raise ValueError(f"{path}: no lines")
    return rows


def read_aircraft_variants(path: Path) -> tuple[str, ...]:
    """The class order of ``variants.txt`` (one name a line)."""
    path = Path(path)
    names, first = [], {}
    for number, name in _lines(path):
        if name in first:
            raise ValueError(f"{path}, line {number}: variant {name!r} listed twice (first on line {first[name]})")
        first[name] = number
        names.append(name)
    if not names:
        raise ValueError(f"{path}: no variants")
    return tuple(names)


def read_aircraft(root: Path, split: str = "trainval", crop_banner: bool = True) -> Listing:
    """The FGVC-Aircraft variant lists under ``root``: train = ``split`` (trainval | train, the
    latter with the published val), test = test."""
    data = Path(root) / "data"
    image_dir = _folder(data / "images", "FGVC-Aircraft keeps its images in <root>/data/images/")
    lists = {"train": data / f"images_variant_{split}.txt", "test": data / "images_variant_test.txt"}
    if split == "train":
        lists["val"] = data / "images_variant_val.txt"
    rows = {name: read_aircraft_list(path) for name, path in lists.items()}
    variants = data / "variants.txt"
    if variants.is_file():
        class_names = read_aircraft_variants(variants)
        for name, path in lists.items():
            for number, _, variant in rows[name]:
                if variant not in class_names:
                    raise ValueError(f"{path}, line {number}: variant {variant!r} is not in {variants}")
    else:
        class_names = tuple(sorted({variant for listed in rows.values() for _, _, variant in listed}))
    index = {name: i for i, name in enumerate(class_names)}
    splits = {name: ([(image_dir / f"{image}.jpg", None) for _, image, _ in listed],
                     np.asarray([index[variant] for *_, variant in listed], dtype=np.int64))
              for name, listed in rows.items()}
    return Listing("FGVC-Aircraft", class_names, splits, lists, WithoutBanner if crop_banner else BoxCrops)
