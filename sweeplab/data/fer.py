"""Facial expression datasets (single-label classification): RAF-DB, and CSV manifests
(FERPlus, AffectNet or any other set prepared as ``path,label`` lists).

Layouts read here:

* RAF-DB basic (Li, Deng & Du, CVPR 2017), ``root`` = the ``basic`` folder:
  ``EmoLabel/list_patition_label.txt`` (the file's own spelling) with lines
  ``train_00001.jpg 5``, labels 1..7 = Surprise, Fear, Disgust, Happiness, Sadness,
  Anger, Neutral (shifted to 0..6 here); train = the ``train_*`` lines, test = the
  ``test_*`` lines. Images: ``Image/aligned/<stem>_aligned.jpg`` (the 100x100 aligned
  faces, as the SCN code reads them), or ``Image/original/<name>`` with ``images: original``.
* CSV manifests: a header with columns ``path,label``; one image a row. Labels are class
  names from ``classes`` or integer indices (``label_base`` is the integer of the first
  class: 1 for 1-based lists). A label that equals a name in ``classes`` is that class;
  otherwise it must be an integer. Without ``classes``: integer labels give classes
  ``"0".."C-1"`` (C = the largest label + 1 over all CSVs), name labels give the sorted
  names. Relative image paths resolve against ``image_root``, else the CSV's folder.

Validation: the papers report on test; a sweep needs a split for model selection, so by
default val is a seeded, class-stratified share of the training list (``val_source:
train_fraction``), which the model does not train on; ``val_source: test`` uses the test
set (the papers' protocol), and a CSV dataset may give its own ``val`` file.

Synthetic label noise (``noise.py``, ``noise_rate`` / ``noise_type``) touches the images
trained on only, with the trial's seed, after val is held out: val and test keep their
labels, and ``train_clean_targets`` holds the labels as read (RAF-DB's own labels are
themselves not noise-free: "clean" means "as published").
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from sweeplab.data.folders import ImageFiles, check_images, image_transforms
from sweeplab.data.noise import inject_label_noise
from sweeplab.method import DataInfo

if TYPE_CHECKING:
    from sweeplab.data import DataBundle, FerCsvOptions, FerFileOptions, RafDbOptions

RAF_DB_CLASSES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
RAF_DB_LABEL_FILE = "EmoLabel/list_patition_label.txt"


class LabelledImages(ImageFiles):
    """Image files with integer labels (relabellable ``targets``, int64)."""

    dtype = np.int64


def stratified_holdout(labels: Sequence[int], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(keep, held_out)`` (sorted): round(fraction * N) held out (at least 1), each
    class contributing floor(fraction * n_c) plus, by largest remainder, the rest; seeded."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) < 2:
        raise ValueError(f"cannot hold out a validation share of {len(labels)} training image(s)")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    want = fraction * np.array([np.sum(labels == c) for c in classes], dtype=float)
    take = np.floor(want).astype(int)
    total = min(max(1, int(round(fraction * len(labels)))), len(labels) - 1)
    # classes with the largest remainders (ties broken at random) get one more each
    order = sorted(range(len(classes)), key=lambda i: (-(want[i] - take[i]), rng.random()))
    for i in order[: max(0, total - int(take.sum()))]:
        take[i] += 1
    held = []
    for c, k in zip(classes, take):
        held += rng.permutation(np.flatnonzero(labels == c))[:k].tolist()
    held = np.sort(np.asarray(held, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), held), held


def assemble(options: FerFileOptions, seed: int, class_names: Sequence[str],
             train: tuple[list[Path], np.ndarray], test: tuple[list[Path], np.ndarray],
             val: tuple[list[Path], np.ndarray] | None = None) -> DataBundle:
    """The ``DataBundle``: val from ``val``, else held out of train or = test (``val_source``);
    label noise on the images trained on only."""
    from sweeplab.data import DataBundle

    num_classes = len(class_names)
    train_transform, eval_transform = image_transforms(options.image_size, options.augment)
    train_paths, train_labels = train
    if val is None and options.val_source == "train_fraction":
        keep, held_out = stratified_holdout(train_labels, options.val_fraction, seed)
        val = ([train_paths[i] for i in held_out], train_labels[held_out])
        train_paths, train_labels = [train_paths[i] for i in keep], train_labels[keep]
    clean = train_labels.astype(np.int64)
    noisy = inject_label_noise(clean, num_classes, options.noise_rate, options.noise_type, seed)

    test_set = LabelledImages(*test, eval_transform)
    val_set = test_set if val is None else LabelledImages(*val, eval_transform)
    info = DataInfo(
        task="classification",
        num_classes=num_classes,
        class_names=tuple(class_names),
        input_shape=(3, options.image_size, options.image_size),
        train_size=len(train_paths),
        train_class_counts=tuple(int(n) for n in np.bincount(noisy, minlength=num_classes)),
    )
    return DataBundle(
        train=LabelledImages(train_paths, noisy, train_transform),
        val=val_set,
        test=test_set,
        info=info,
        train_clean_targets=torch.from_numpy(clean.copy()),
        num_workers=options.workers,
    )


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
