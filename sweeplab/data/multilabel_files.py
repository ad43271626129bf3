"""Long-tailed multi-label image datasets read from files: VOC-MLT, COCO-MLT and CSV lists.

VOC-MLT and COCO-MLT are the benchmarks of the DistributionBalancedLoss repository
(``wutong16/DistributionBalancedLoss``, ``appendix/``), used by LTML (Guo & Wang,
CVPR 2021). Layouts read here:

* VOC-MLT, ``root`` = a VOCdevkit folder: train ids ``longtail2012/img_id.txt``
  (1,142 VOC2012 ids, one a line), images ``VOC2012/JPEGImages/<id>.jpg``, labels =
  the ``<object><name>`` entries of ``VOC2012/Annotations/<id>.xml`` in the 20
  standard classes (aeroplane ... tvmonitor). Like the DB repository we count every
  object, ``difficult`` ones included (``skip_difficult`` drops them). Test = the
  VOC2007 test ids ``VOC2007/ImageSets/Main/test.txt``, same layout under VOC2007.
* COCO-MLT, ``root`` = a coco folder: train ids ``longtail2017/img_id.pkl`` (plain
  text despite its name: 1,909 train2017 ids), images and labels from
  ``annotations/instances_train2017.json`` (``file_name`` under ``train2017/``);
  the 80 categories in the json's id order, named from it. As in the DB
  repository an annotation counts unless it is marked ``ignore`` or its box is
  degenerate (area <= 0, width or height < 1); crowd boxes count. Test = every
  ``val2017`` image with at least one label (``instances_val2017.json``).
* CSV: columns ``path,labels``, labels separated by ``;`` (may be empty).

Validation: papers report on test; a sweep needs a split for model selection, so by
default val is a seeded, label-stratified 10 % of the training list (``val_source:
train_fraction``) and the model trains on the rest; ``val_source: test`` uses the
test set (the papers' protocol, with selection on test). ``train_class_counts``
count the images actually trained on; the head/medium/tail groups come from
``class_split`` when given, else from the counts over the whole training list (the
benchmarks' definition), so they do not move with the held-out share.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from sweeplab.data.folders import check_images, image_transforms
from sweeplab.data.multilabel import (MultiLabelImages, class_counts, groups_from_counts, multi_hot,
                                      read_class_split, resolve_class_split, stratified_holdout)
from sweeplab.method import DataInfo

if TYPE_CHECKING:
    from sweeplab.data import CocoMltOptions, DataBundle, MultiLabelCsvOptions, MultiLabelFileOptions, VocMltOptions

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def read_ids(path: Path) -> list[str]:
    """Non-empty lines of an id list (surrounding whitespace stripped)."""
    ids = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{path}: the id list is empty")
    return ids


# -- bundle ------------------------------------------------------------------------------


def assemble(options: MultiLabelFileOptions, seed: int, class_names: Sequence[str],
             train_paths: Sequence[Path], train_targets: np.ndarray,
             test_paths: Sequence[Path], test_targets: np.ndarray,
             val: tuple[Sequence[Path], np.ndarray] | None = None) -> DataBundle:
    """The ``DataBundle``: val from ``val``, else held out of train or = test (``val_source``)."""
    from sweeplab.data import DataBundle

    train_transform, eval_transform = image_transforms(options.image_size, options.augment)
    full_train = MultiLabelImages(train_paths, train_targets, train_transform)
    test = MultiLabelImages(test_paths, test_targets, eval_transform)
    if val is not None:
        train, val_set = full_train, MultiLabelImages(val[0], val[1], eval_transform)
    elif options.val_source == "test":
        train, val_set = full_train, test
    else:
        keep, held_out = stratified_holdout(train_targets, options.val_fraction, seed)
        train, val_set = full_train.subset(keep), full_train.subset(held_out, eval_transform)

    if options.class_split is not None:
        groups = resolve_class_split(read_class_split(options.class_split), class_names, options.class_split)
    else:
        groups = groups_from_counts(class_counts(train_targets), options.head_min, options.tail_max)
    info = DataInfo(
        task="multilabel",
        num_classes=len(class_names),
        class_names=tuple(class_names),
        input_shape=(3, options.image_size, options.image_size),
        train_size=len(train),
        train_class_counts=class_counts(train.targets.numpy()),
        class_groups=groups,
    )
    return DataBundle(train=train, val=val_set, test=test, info=info, num_workers=options.workers)


# -- VOC-MLT -----------------------------------------------------------------------------


def voc_labels(xml_path: Path, skip_difficult: bool) -> list[int]:
    """Class indices of the objects in one VOC annotation file."""
    if not xml_path.is_file():
        raise FileNotFoundError(f"VOC annotation missing: {xml_path}")
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as error:
        raise ValueError(f"{xml_path}: not a readable VOC annotation: {error}") from None
    labels = set()
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise ValueError(f"{xml_path}: unknown VOC class {name!r}")
        if skip_difficult and (obj.findtext("difficult") or "0").strip() == "1":
            continue
        labels.add(VOC_CLASSES.index(name))
    return sorted(labels)


def _voc_split(year_dir: Path, ids: Sequence[str], skip_difficult: bool):
    paths = [year_dir / "JPEGImages" / f"{i}.jpg" for i in ids]
    check_images(paths, f"VOC-MLT ({year_dir.name})")
    labels = [voc_labels(year_dir / "Annotations" / f"{i}.xml", skip_difficult) for i in ids]
    return paths, multi_hot(labels, len(VOC_CLASSES))


def build_voc_mlt(options: VocMltOptions, seed: int) -> DataBundle:
    root = Path(options.root)
    train = _voc_split(root / "VOC2012", read_ids(options.train_ids), options.skip_difficult)
    test = _voc_split(root / "VOC2007", read_ids(options.test_ids), options.skip_difficult)
    return assemble(options, seed, VOC_CLASSES, *train, *test)


# -- COCO-MLT ----------------------------------------------------------------------------


def _read_instances(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a readable instances json: {error}") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise ValueError(f"{path}: an instances json needs a {key!r} list")
    return doc


def _counts_as_label(ann: dict) -> bool:
    """An annotation counts unless marked ignore or its box is degenerate (as in the DB repository)."""
    if ann.get("ignore", False):
        return False
    box = ann.get("bbox")
    if box is not None and len(box) == 4 and (box[2] < 1 or box[3] < 1):
        return False
    return ann.get("area", 1) > 0


def _coco_labels(doc: dict, category_index: dict[int, int], path: Path) -> dict[int, set[int]]:
    labels: dict[int, set[int]] = {}
    for ann in doc["annotations"]:
        if not _counts_as_label(ann):
            continue
        if ann["category_id"] not in category_index:
            raise ValueError(f"{path}: annotation {ann.get('id')} has unknown category {ann['category_id']}")
        labels.setdefault(int(ann["image_id"]), set()).add(category_index[ann["category_id"]])
    return labels


def build_coco_mlt(options: CocoMltOptions, seed: int) -> DataBundle:
    root = Path(options.root)
    train_doc = _read_instances(options.train_annotations)
    categories = sorted(train_doc["categories"], key=lambda c: c["id"])
    category_index = {c["id"]: i for i, c in enumerate(categories)}
    class_names = tuple(str(c["name"]) for c in categories)

    files = {int(img["id"]): img["file_name"] for img in train_doc["images"]}
    train_labels = _coco_labels(train_doc, category_index, options.train_annotations)
    train_ids = []
    for line, text in enumerate(read_ids(options.train_ids), start=1):
        if not text.isdigit() or int(text) not in files:
            raise ValueError(f"{options.train_ids}: id {text!r} (line {line}) is not an image of "
                             f"{options.train_annotations}")
        train_ids.append(int(text))
    train_paths = [root / "train2017" / files[i] for i in train_ids]
    check_images(train_paths, "COCO-MLT (train2017)")
    train_targets = multi_hot([sorted(train_labels.get(i, ())) for i in train_ids], len(class_names))
    del train_doc, train_labels

    test_doc = _read_instances(options.test_annotations)
    test_categories = sorted((c["id"], str(c["name"])) for c in test_doc["categories"])
    if test_categories != [(c["id"], str(c["name"])) for c in categories]:
        raise ValueError(f"{options.test_annotations}: categories differ from {options.train_annotations}")
    test_labels = _coco_labels(test_doc, category_index, options.test_annotations)
    test_images = [img for img in sorted(test_doc["images"], key=lambda m: m["id"]) if test_labels.get(int(img["id"]))]
    test_paths = [root / "val2017" / img["file_name"] for img in test_images]
    check_images(test_paths, "COCO-MLT (val2017)")
    test_targets = multi_hot([sorted(test_labels[int(img["id"])]) for img in test_images], len(class_names))
    return assemble(options, seed, class_names, train_paths, train_targets, test_paths, test_targets)


# -- CSV ---------------------------------------------------------------------------------


def read_label_csv(path: Path, image_root: Path | None) -> list[tuple[Path, list[str], int]]:
    """``(image path, labels, line number)`` rows of a ``path,labels`` CSV; relative image paths
    resolve against ``image_root``, else the CSV's folder."""
    path = Path(path)
    base = Path(image_root) if image_root is not None else path.parent
    rows = []
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        if reader.fieldnames is None or not {"path", "labels"} <= {f.strip() for f in reader.fieldnames}:
            raise ValueError(f"{path}: needs a header with columns path,labels; got {reader.fieldnames}")
        for row in reader:
            row = {(k or "").strip(): v for k, v in row.items()}
            line = reader.line_num
            image = (row.get("path") or "").strip()
            if not image:
                raise ValueError(f"{path}, line {line}: empty image path")
            labels = [t.strip() for t in (row.get("labels") or "").split(";") if t.strip()]
            rows.append((base / image, labels, line))
    if not rows:
        raise ValueError(f"{path}: no images listed")
    return rows


def _csv_split(path: Path, rows, class_names: Sequence[str]):
    index = {name: i for i, name in enumerate(class_names)}
    label_sets = []
    for image, labels, line in rows:
        unknown = [t for t in labels if t not in index]
        if unknown:
            raise ValueError(f"{path}, line {line}: unknown label(s) {unknown}; classes: {', '.join(class_names)}")
        if not image.is_file():
            raise FileNotFoundError(f"{path}, line {line}: image not found: {image}")
        label_sets.append(sorted({index[t] for t in labels}))
    return [image for image, _, _ in rows], multi_hot(label_sets, len(class_names))


def build_multilabel_csv(options: MultiLabelCsvOptions, seed: int) -> DataBundle:
    files = {"train": options.train, "val": options.val, "test": options.test}
    rows = {k: read_label_csv(p, options.image_root) for k, p in files.items() if p is not None}
    if options.classes is not None:
        class_names = tuple(options.classes)
    else:
        class_names = tuple(sorted({t for split in rows.values() for _, labels, _ in split for t in labels}))
        if not class_names:
            raise ValueError(f"{options.train}: no labels in any CSV; list the classes with 'classes'")
    splits = {k: _csv_split(files[k], r, class_names) for k, r in rows.items()}
    return assemble(options, seed, class_names, *splits["train"], *splits["test"], val=splits.get("val"))
