"""Retrieval digits: two-digit numbers drawn from scikit-learn's 8x8 digits, in two styles, class-disjoint.

What it is. A class is a two-digit number: 00-49 are the training classes, 50-99 the test classes
(never trained on, as metric learning is evaluated). An image is a 16x16 grey canvas with the tens
and the units digit side by side (two 8x8 digit images, each shifted by up to one pixel) and
Gaussian pixel noise (``noise``). Each class is drawn in ``styles`` styles: style 0 as the digits
are, style 1 with both digits' contrast inverted (light strokes on a dark ground become dark
strokes on a light ground), so a class has two modes an embedding must bring together (the case
for several proxies per class). ``per_class`` images a class, the style drawn at random for each.

The 1,797 digit images are first split in two halves, stratified by digit with the seed: the
training classes are drawn from one half, the test classes from the other, so no digit image is
in both. Validation (``val_source: train_fraction``) is a seeded share ``val_fraction`` of the
training classes held out of training (``retrieval.hold_out_classes``); ``val_source: test`` uses
the test set. Labels are 0-based within each split (the number itself is in ``numbers``). Every
split is standardised with the scalar mean and std of the training images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from sweeplab.data.indexed import IndexedTensorDataset
from sweeplab.data.retrieval import held_out_count, hold_out_classes
from sweeplab.method import DataInfo

if TYPE_CHECKING:
    from sweeplab.data import DataBundle

TRAIN_NUMBERS = range(0, 50)
TEST_NUMBERS = range(50, 100)
SIDE = 16
_STREAMS = {"train": 1, "test": 2}


class RetrievalDigitsFields(BaseModel):
    """The retrieval-digits options (fields), shared by every options class."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    per_class: int = Field(30, ge=2)  # images of each number
    styles: int = Field(2, ge=1, le=2)  # 1: plain digits; 2: also contrast-inverted ones
    noise: float = Field(0.05, ge=0.0, le=1.0)  # std of the Gaussian pixel noise
    val_source: Literal["train_fraction", "test"] = "train_fraction"
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)  # share of the training classes held out for validation

    @property
    def training_classes(self) -> int:
        """The classes trained on (50, less those held out for validation)."""
        held = held_out_count(len(TRAIN_NUMBERS), self.val_fraction) if self.val_source == "train_fraction" else 0
        return len(TRAIN_NUMBERS) - held


def draw_number(tens: np.ndarray, units: np.ndarray, style: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """A (16, 16) image of two 8x8 digits (in [0, 1]) side by side, each shifted by up to a pixel;
    style 1 inverts each digit's contrast; then Gaussian noise."""
    canvas = np.zeros((SIDE, SIDE), dtype=np.float32)
    for column, digit in ((0, tens), (8, units)):
        tile = 1.0 - digit if style == 1 else digit
        dy, dx = rng.integers(-1, 2, size=2)
        shifted = np.roll(np.roll(tile, dy, axis=0), dx, axis=1)
        canvas[4:12, column:column + 8] = shifted
    return canvas + rng.normal(0.0, noise, size=canvas.shape).astype(np.float32)


def draw_numbers(numbers, pool: np.ndarray, pool_labels: np.ndarray, options: RetrievalDigitsFields,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` drawings of each number, digits taken at random from ``pool``: ``(images, numbers)``."""
    by_digit = {d: np.flatnonzero(pool_labels == d) for d in range(10)}
    images, drawn = [], []
    for number in numbers:
        for _ in range(options.per_class):
            tens, units = (pool[rng.choice(by_digit[d])] for d in divmod(number, 10))
            images.append(draw_number(tens, units, int(rng.integers(options.styles)), options.noise, rng))
            drawn.append(number)
    return np.stack(images)[:, None], np.asarray(drawn, dtype=np.int64)


def build_retrieval_digits(options: RetrievalDigitsFields, seed: int) -> DataBundle:
    """The retrieval-digits ``DataBundle`` for one trial; ``seed`` fixes the pools, drawings and hold-out."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from sweeplab.data import DataBundle

    digits = load_digits()
    images = (digits.data.astype(np.float32) / 16.0).reshape(-1, 8, 8)
    train_pool, test_pool = train_test_split(np.arange(len(images)), test_size=0.5, stratify=digits.target,
                                             random_state=seed)
    drawn = {}
    for split, numbers, pool in (("train", TRAIN_NUMBERS, train_pool), ("test", TEST_NUMBERS, test_pool)):
        rng = np.random.default_rng([seed, _STREAMS[split]])
        drawn[split] = draw_numbers(numbers, images[pool], digits.target[pool], options, rng)
    train_x, train_numbers = drawn["train"]
    if options.val_source == "train_fraction":
        keep, held = hold_out_classes(train_numbers, options.val_fraction, seed)
        drawn["val"] = (train_x[held], train_numbers[held])
        train_x, train_numbers = train_x[keep], train_numbers[keep]
    mean, std = float(train_x.mean()), float(train_x.std())

    def dataset(x: np.ndarray, numbers: np.ndarray) -> IndexedTensorDataset:
        classes, labels = np.unique(numbers, return_inverse=True)
        split = IndexedTensorDataset(torch.from_numpy(((x - mean) / std).astype(np.float32)),
                                     torch.from_numpy(labels.astype(np.int64)))
        split.numbers = torch.from_numpy(numbers.copy())  # the two-digit number of each image
        split.class_numbers = tuple(int(c) for c in classes)
        return split

    train = dataset(train_x, train_numbers)
    test = dataset(*drawn["test"])
    names = tuple(f"{n:02d}" for n in train.class_numbers)
    info = DataInfo(
        task="retrieval",
        num_classes=len(names),
        class_names=names,
        input_shape=(1, SIDE, SIDE),
        train_size=len(train),
        train_class_counts=tuple(int(n) for n in np.bincount(train.targets.numpy(), minlength=len(names))),
    )
    return DataBundle(train=train, val=dataset(*drawn["val"]) if "val" in drawn else test, test=test, info=info,
                      train_clean_targets=None, num_workers=0)
