"""Class-disjoint splits for metric learning (task family ``retrieval``).

Metric learning trains an embedding on some classes and evaluates retrieval on classes never
trained on. A retrieval ``DataBundle`` holds: ``train`` with labels 0..C-1 (C training classes:
``DataInfo.num_classes``, what proxies are counted by); ``val``, the images of a seeded share of
the training classes held out of training (never test classes), or the test set; ``test``, the
published test classes. Val and test labels are 0-based within their split.

The published datasets, in their released layouts (``root`` is the option of that name):

* ``cub_retrieval``: CUB-200-2011 as ``fine_grained.read_cub_images`` reads it (``images.txt``,
  ``image_class_labels.txt``, ``classes.txt``, ``bounding_boxes.txt`` with ``crop_box``; not
  ``train_test_split.txt``): every image of classes 1-100 trains, of classes 101-200 tests
  (11,788 images: 5,864 / 5,924).
* ``cars196``: Stanford Cars' single ``cars_annos.mat`` (the file the metric-learning papers
  use): ``class_names`` (196) and the struct array ``annotations`` with ``relative_im_path``
  (``car_ims/000001.jpg``, under ``root``), ``bbox_x1, bbox_y1, bbox_x2, bbox_y2`` (inclusive
  1-based corners, cropped with ``crop_box`` as ``fine_grained.cars_box`` crops the devkit's),
  ``class`` (1..196) and ``test`` (the classification split, not used). Classes 1-98 train,
  99-196 test (16,185 images: 8,054 / 8,131).
* ``sop``: Stanford Online Products (Oh Song et al., CVPR 2016): ``Ebay_train.txt`` and
  ``Ebay_test.txt``, a header ``image_id class_id super_class_id path`` then one image a line
  (``1 1 1 bicycle_final/111085122871_0.JPG``, the path under ``root``); train = Ebay_train
  (11,318 products, 59,551 images), test = Ebay_test (11,316 products, 60,502 images), sharing
  no class; the class names are the class ids as written.

Files and lines are read when the options are validated (errors name the file and the line, or
the annotation of a ``.mat`` file); images are checked to exist when the data is built. Images
go through ``fine_grained_transforms``: both sides resized to ``resize`` (default 256 for the
224 crop, the metric-learning recipes' ``Resize(256)`` + 224 crop), then the ``image_size``
crop, random with a horizontal flip on train (``augment``), else the centre.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # the readers import fine_grained (torchvision) when called: the helpers above them stay light
    from sweeplab.data import DataBundle, RetrievalOptions
    from sweeplab.data.fine_grained import Listing


def held_out_count(num_classes: int, fraction: float) -> int:
    """How many of ``num_classes`` training classes ``hold_out_classes`` holds out for validation."""
    if num_classes < 3:
        raise ValueError(f"cannot hold out validation classes from {num_classes} training class(es): "
                         "at least 3 are needed (1 held out, 2 to train on)")
    return min(max(1, int(round(fraction * num_classes))), num_classes - 2)


def hold_out_classes(labels: Sequence[int], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(keep, held_out)`` (sorted) of the samples whose class stays in training and
    of those whose class is held out: round(fraction * classes) classes (at least 1, and at
    least 2 left to train on), drawn with ``seed``."""
    labels = np.asarray(labels, dtype=np.int64)
    classes = np.unique(labels)
    count = held_out_count(len(classes), fraction)
    held_classes = np.random.default_rng(seed).choice(classes, size=count, replace=False)
    held = np.isin(labels, held_classes)
    return np.flatnonzero(~held), np.flatnonzero(held)


def contiguous(labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(labels as 0..K-1 in the order of their values, the original label of each)``."""
    labels = np.asarray(labels, dtype=np.int64)
    originals, remapped = np.unique(labels, return_inverse=True)
    return remapped.astype(np.int64), originals


# -- the published metric-learning datasets --------------------------------------------------

CUB_TRAIN_CLASSES = 100  # CUB-200-2011: classes 1..100 train, 101..200 test
CARS196_TRAIN_CLASSES = 98  # Cars196: classes 1..98 train, 99..196 test
CARS196_FIELDS = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class")
SOP_HEADER = ("image_id", "class_id", "super_class_id", "path")


def split_by_class(name: str, class_names: tuple[str, ...], items: list, labels: np.ndarray, train_classes: int,
                   listed_in: Path) -> Listing:
    """A ``Listing`` whose train split holds the images of the first ``train_classes`` classes
    (0-based labels below it) and whose test split holds the others."""
    from sweeplab.data.fine_grained import Listing

    chosen = {"train": labels < train_classes, "test": labels >= train_classes}
    classes = {"train": f"1..{train_classes}", "test": f"{train_classes + 1}..{len(class_names)}"}
    for split, mask in chosen.items():
        if not mask.any():
            raise ValueError(f"{listed_in}: no {split} images ({name} {split}s on classes {classes[split]}; "
                             f"{len(class_names)} classes listed)")
    splits = {split: ([items[i] for i in np.flatnonzero(mask)], labels[mask]) for split, mask in chosen.items()}
    return Listing(name, class_names, splits, {split: listed_in for split in splits})


def read_cub_retrieval(root: Path, crop_box: bool = False) -> Listing:
    """CUB-200-2011 for metric learning: classes 1-100 train, 101-200 test (all their images)."""
    from sweeplab.data.fine_grained import read_cub_images

    cub = read_cub_images(root, crop_box)
    return split_by_class("CUB-200-2011", cub.class_names, cub.items, cub.labels, CUB_TRAIN_CLASSES,
                          cub.paths["images.txt"])


def read_cars196(root: Path, annotations: Path, crop_box: bool = False) -> Listing:
    """Cars196 from ``cars_annos.mat`` (``annotations``): classes 1-98 train, 99-196 test; images
    ``<root>/<relative_im_path>``."""
    from sweeplab.data.fine_grained import _mat_scalar, _mat_variable, cars_box, cars_label, read_cars_classes

    root, path = Path(root), Path(annotations)
    class_names = read_cars_classes(path)
    records = _mat_variable(path, "annotations")
    missing = [field for field in CARS196_FIELDS if field not in (records.dtype.names or ())]
    if missing:
        raise ValueError(f"{path}: annotations lacks the field(s) {', '.join(missing)}; it needs "
                         f"{', '.join(CARS196_FIELDS)} (cars_annos.mat, the metric-learning release)")
    items, labels = [], []
    for number, record in enumerate(records, start=1):
        where = f"{path}, annotation {number}"
        box = cars_box(record, where)
        labels.append(cars_label(record, where, len(class_names), path.name))
        relative = str(_mat_scalar(record["relative_im_path"], where, "relative_im_path"))
        if not relative:
            raise ValueError(f"{where}: empty relative_im_path")
        items.append((root / relative, box if crop_box else None))
    if not items:
        raise ValueError(f"{path}: no annotations")
    return split_by_class("Cars196", class_names, items, np.asarray(labels, dtype=np.int64), CARS196_TRAIN_CLASSES,
                          path)


def read_sop_list(path: Path) -> list[tuple[int, int, str]]:
    """``(line number, class id, path)`` rows of a Stanford Online Products list (``Ebay_train.txt``
    / ``Ebay_test.txt``: the header ``image_id class_id super_class_id path``, then one image a line)."""
    from sweeplab.data.fine_grained import _lines

    path = Path(path)
    rows, first = [], {}
    lines = _lines(path)
    number, header = next(lines, (1, ""))
    if tuple(header.split()) != SOP_HEADER:
        raise ValueError(f"{path}, line {number}: expected the header '{' '.join(SOP_HEADER)}', got {header!r}")
    for number, line in lines:
        fields = line.split(maxsplit=3)
        if len(fields) != 4 or not all(f.isdigit() and int(f) >= 1 for f in fields[:3]):
            raise ValueError(f"{path}, line {number}: expected '<image id> <class id> <super class id> <path>' "
                             f"(ids whole numbers >= 1), got {line!r}")
        image = int(fields[0])
        if image in first:
            raise ValueError(f"{path}, line {number}: image id {image} listed twice (first on line {first[image]})")
        first[image] = number
        rows.append((number, int(fields[1]), fields[3]))
    if not rows:
        raise ValueError(f"{path}: no images (only the header)")
    return rows


def read_sop(root: Path, train: Path, test: Path) -> Listing:
    """Stanford Online Products: train = the products of ``train`` (Ebay_train.txt), test = those
    of ``test`` (Ebay_test.txt), which must not share a class; images ``<root>/<path>``."""
    from sweeplab.data.fine_grained import Listing

    root = Path(root)
    lists = {"train": Path(train), "test": Path(test)}
    rows = {split: read_sop_list(path) for split, path in lists.items()}
    train_lines: dict[int, int] = {}
    for number, class_id, _ in rows["train"]:
        train_lines.setdefault(class_id, number)
    for number, class_id, _ in rows["test"]:
        if class_id in train_lines:
            raise ValueError(f"{lists['test']}, line {number}: class {class_id} is also a training class "
                             f"({lists['train']}, line {train_lines[class_id]}): the splits must share no class")
    ids = np.asarray([class_id for split in lists for _, class_id, _ in rows[split]], dtype=np.int64)
    originals, labels = np.unique(ids, return_inverse=True)
    bounds = {"train": (0, len(rows["train"])), "test": (len(rows["train"]), len(ids))}
    splits = {split: ([(root / relative, None) for *_, relative in rows[split]],
                      labels[start:stop].astype(np.int64)) for split, (start, stop) in bounds.items()}
    return Listing("Stanford Online Products", tuple(str(c) for c in originals), splits, lists)


def training_classes(listing: Listing, val_source: str, val_fraction: float) -> int:
    """The classes trained on: those of the train split less the validation share
    (``hold_out_classes``' count, the same for every seed) when val comes from train."""
    labels = listing.splits["train"][1]
    if val_source == "train_fraction":
        labels = labels[hold_out_classes(labels, val_fraction, seed=0)[0]]
    return len(np.unique(labels))


def build_retrieval(options: RetrievalOptions, seed: int) -> DataBundle:
    """The retrieval ``DataBundle`` of ``options.listing()``: train targets 0..C-1 (the training
    classes left after the seeded class hold-out), val = the held-out classes or test, val and
    test labels 0-based within their split."""
    from sweeplab.data import DataBundle
    from sweeplab.data.fine_grained import fine_grained_transforms
    from sweeplab.data.folders import check_images
    from sweeplab.method import DataInfo

    listing = options.listing()
    for split, (items, _) in listing.splits.items():
        check_images([path for path, _ in items], f"{listing.name} {split} (listed in {listing.listed_in[split]})")
    train_items, train_labels = listing.splits["train"]
    test_items, test_labels = listing.splits["test"]
    val = None
    if options.val_source == "train_fraction":
        keep, held_out = hold_out_classes(train_labels, options.val_fraction, seed)
        val = ([train_items[i] for i in held_out], train_labels[held_out])
        train_items, train_labels = [train_items[i] for i in keep], train_labels[keep]
    targets, originals = contiguous(train_labels)
    num_classes = len(originals)
    train_transform, eval_transform = fine_grained_transforms(options.image_size, options.resize_side, options.augment)
    test_set = listing.images(test_items, contiguous(test_labels)[0], eval_transform)
    val_set = test_set if val is None else listing.images(val[0], contiguous(val[1])[0], eval_transform)
    info = DataInfo(
        task="retrieval",
        num_classes=num_classes,
        class_names=tuple(listing.class_names[c] for c in originals),
        input_shape=(3, options.image_size, options.image_size),
        train_size=len(train_items),
        train_class_counts=tuple(int(n) for n in np.bincount(targets, minlength=num_classes)),
    )
    return DataBundle(
        train=listing.images(train_items, targets, train_transform),
        val=val_set,
        test=test_set,
        info=info,
        train_clean_targets=None,
        num_workers=options.workers,
    )
