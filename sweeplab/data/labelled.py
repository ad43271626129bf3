"""Single-label image files, from the lists a reader made to the trial's ``DataBundle``.

Shared by the datasets read from files (``fer.py``: RAF-DB, AffectNet, CSV manifests;
``fine_grained.py``: CUB-200-2011, Stanford Cars, FGVC-Aircraft): the dataset classes
(``LabelledImages``, and ``BoxCrops`` for images cropped to a box), the seeded
class-stratified validation share (``stratified_holdout``) and ``assemble``, which holds
val out of train (or takes it as given, or = test) and adds label noise to the images
trained on only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from sweeplab.data.folders import ImageFiles, image_transforms, load_rgb
from sweeplab.data.noise import inject_label_noise
from sweeplab.method import DataInfo

if TYPE_CHECKING:
    from sweeplab.data import DataBundle, FerFileOptions

Box = tuple[float, float, float, float]  # x, y, width, height in pixels


class LabelledImages(ImageFiles):
    """Image files with integer labels (relabellable ``targets``, int64); ``load`` reads an
    image before the transform (subclasses crop it there)."""

    dtype = np.int64

    def load(self, index: int):
        return load_rgb(self.paths[index])

    def __getitem__(self, index: int):
        image = self.load(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index].clone(), index


def crop_to_box(image, box: Box | None):
    """``image`` cropped to ``(x, y, width, height)`` clipped to its bounds (whole when the box
    is None or wholly outside)."""
    if box is None:
        return image
    x, y, width, height = box
    left, top = max(0, int(round(x))), max(0, int(round(y)))
    right, bottom = min(image.width, int(round(x + width))), min(image.height, int(round(y + height)))
    if right <= left or bottom <= top:
        return image
    return image.crop((left, top, right, bottom))


class BoxCrops(LabelledImages):
    """Image files with integer labels, each cropped to its box (when it has one) before the
    transform; items are ``(path, box or None)``, ``boxes`` the boxes."""

    def __init__(self, items, targets, transform=None):
        items = list(items)
        super().__init__([path for path, _ in items], targets, transform)
        self.boxes = [box for _, box in items]

    def load(self, index: int):
        return crop_to_box(super().load(index), self.boxes[index])


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
             train: tuple[list[Any], np.ndarray], test: tuple[list[Any], np.ndarray],
             val: tuple[list[Any], np.ndarray] | None = None,
             images: type[LabelledImages] | None = None,
             transforms: tuple[Any, Any] | None = None) -> DataBundle:
    """The ``DataBundle``: val from ``val``, else held out of train or = test (``val_source``);
    label noise on the images trained on only. ``images(items, labels, transform)`` makes each
    split (default ``LabelledImages``: the items are paths); ``transforms`` is the ``(train,
    eval)`` pair (default ``image_transforms(options.image_size, options.augment)``)."""
    from sweeplab.data import DataBundle

    images = images or LabelledImages
    num_classes = len(class_names)
    train_transform, eval_transform = transforms or image_transforms(options.image_size, options.augment)
    train_items, train_labels = train
    if val is None and options.val_source == "train_fraction":
        keep, held_out = stratified_holdout(train_labels, options.val_fraction, seed)
        val = ([train_items[i] for i in held_out], train_labels[held_out])
        train_items, train_labels = [train_items[i] for i in keep], train_labels[keep]
    clean = np.asarray(train_labels).astype(np.int64)
    noisy = inject_label_noise(clean, num_classes, options.noise_rate, options.noise_type, seed)

    test_set = images(*test, eval_transform)
    val_set = test_set if val is None else images(*val, eval_transform)
    info = DataInfo(
        task="classification",
        num_classes=num_classes,
        class_names=tuple(class_names),
        input_shape=(3, options.image_size, options.image_size),
        train_size=len(train_items),
        train_class_counts=tuple(int(n) for n in np.bincount(noisy, minlength=num_classes)),
    )
    return DataBundle(
        train=images(train_items, noisy, train_transform),
        val=val_set,
        test=test_set,
        info=info,
        train_clean_targets=torch.from_numpy(clean.copy()),
        num_workers=options.workers,
    )
