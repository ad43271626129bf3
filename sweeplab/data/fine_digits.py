"""Fine-grained digits: a digit plus two small marks on a larger canvas; classes differ by the marks.

What it is. scikit-learn's 8x8 digits of the first ``digits`` classes (default 0..4) are split
train/val/test, stratified by digit with the trial's seed (``digits.split_digits``). Every image
is then drawn once per mark variant v (``variants``, default 4) on a ``canvas`` x ``canvas``
grey canvas (default 24): the digit scaled 2x (16x16) at a random place, and two 3x3 marks at
random places clear of the digit's ink and of each other, both telling v:

- the salient cue: a bright mark (``salient``, default 0.9) of shape ``SALIENT_MARKS[v]``,
- the subtle cue: a fainter mark (``subtle``, default 0.5) of shape ``SUBTLE_MARKS[v]``,

each mark's intensity jittered by up to 10 %, then Gaussian pixel noise (``noise``, std 0.1).
Class = digit * variants + v, named ``<digit><a|b|c|d>``: 20 classes by default, in groups of
``variants`` that share a digit (the confusable classes: their top-k negatives in GCE), told
apart only by a mark, and each mark alone is enough (two redundant subtle cues per class).

Why. A network that finds the salient cue can stop there (cross-entropy's gradient vanishes once
the class is certain); suppressing the most salient class-map responses (DB + GCE's
diversification block) pushes it to use the subtle cue too. ``test`` holds the clean test
drawings; ``extra_tests["cue_erased"]`` (reported as ``test_cue_erased/*``) the same drawings
(same places, same noise) without the salient cue (``erase: subtle`` removes the subtle one
instead), which measures what the model learnt beyond the salient cue: chance within a group
(1 / variants) for a model that reads the salient mark only.

Every split is standardised with the scalar mean and std of the training drawings. Everything
is fixed by the seed and the options; the split uses the seed, each split's drawings their own
random stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from sweeplab.data.indexed import IndexedTensorDataset
from sweeplab.method import DataInfo

if TYPE_CHECKING:
    from sweeplab.data import DataBundle


def _marks(*rows: str) -> tuple[np.ndarray, ...]:
    """3x3 binary marks from rows written as ``"010/111/010"``."""
    return tuple(np.array([[c == "1" for c in row] for row in text.split("/")], dtype=np.float32) for text in rows)


# variant v -> its salient and its subtle mark
SALIENT_MARKS = _marks("010/111/010", "101/010/101", "111/101/111", "110/110/000")  # plus, cross, ring, block
SUBTLE_MARKS = _marks("000/111/000", "001/001/111", "100/010/001", "010/010/010")  # bar, corner, diagonal, stick
MARK = 3
DIGIT_SCALE = 2  # the 8x8 digit drawn 16x16
VARIANT_LETTERS = "abcd"
_STREAMS = {"train": 1, "val": 2, "test": 3}


class FineDigitsFields(BaseModel):
    """The fine-grained-digits options (fields), shared by every options class."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    digits: int = Field(5, ge=2, le=10)  # the digits 0..digits-1
    variants: int = Field(4, ge=2, le=len(SALIENT_MARKS))  # mark variants per digit (classes per group)
    canvas: int = Field(24, ge=20, le=64)  # side of the square grey image
    salient: float = Field(0.9, gt=0.0, le=1.0)  # intensity of the salient mark (the digit's ink is up to 1)
    subtle: float = Field(0.5, gt=0.0, le=1.0)  # intensity of the subtle mark
    noise: float = Field(0.1, ge=0.0, le=1.0)  # std of the Gaussian pixel noise
    erase: Literal["salient", "subtle"] = "salient"  # the cue the cue_erased test set leaves out
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5)


def _free_place(occupied: np.ndarray, rng: np.random.Generator, size: int = MARK) -> tuple[int, int]:
    """A random top-left corner of a ``size`` x ``size`` box whose 1-pixel surround is free in ``occupied``."""
    side = occupied.shape[0]
    for _ in range(1000):
        y, x = rng.integers(0, side - size + 1, size=2)
        if not occupied[max(0, y - 1):y + size + 1, max(0, x - 1):x + size + 1].any():
            return int(y), int(x)
    raise RuntimeError(f"no free {size}x{size} place on a {side}x{side} canvas")  # the canvas is at least 20


def draw(digit: np.ndarray, variant: int, options: FineDigitsFields, rng: np.random.Generator
         ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One drawing of ``digit`` (8x8, in [0, 1]) with variant ``variant``'s marks: ``(image,
    image without one cue)`` as (canvas, canvas) float32 arrays, the cue named by ``options.erase``;
    both share the digit's place, the marks' places and the noise."""
    side = options.canvas
    big = np.kron(digit, np.ones((DIGIT_SCALE, DIGIT_SCALE), dtype=np.float32))
    base = np.zeros((side, side), dtype=np.float32)
    y, x = rng.integers(0, side - big.shape[0] + 1, size=2)
    base[y:y + big.shape[0], x:x + big.shape[1]] = big
    occupied = base > 0.1
    layers = {}
    cues = (("salient", SALIENT_MARKS, options.salient), ("subtle", SUBTLE_MARKS, options.subtle))
    for cue, marks, intensity in cues:
        my, mx = _free_place(occupied, rng)
        layer = np.zeros_like(base)
        layer[my:my + MARK, mx:mx + MARK] = marks[variant] * intensity * rng.uniform(0.9, 1.1)
        occupied[my:my + MARK, mx:mx + MARK] = True
        layers[cue] = layer
    noise = rng.normal(0.0, options.noise, size=base.shape).astype(np.float32)
    full = base + layers["salient"] + layers["subtle"] + noise
    return full, full - layers[options.erase]


def draw_split(images: np.ndarray, labels: np.ndarray, options: FineDigitsFields, rng: np.random.Generator):
    """Every image drawn once per variant: ``(drawings, drawings without one cue, classes, source positions)``."""
    full, erased, classes, sources = [], [], [], []
    for position, (image, digit) in enumerate(zip(images, labels)):
        for variant in range(options.variants):
            a, b = draw(image, variant, options, rng)
            full.append(a)
            erased.append(b)
            classes.append(int(digit) * options.variants + variant)
            sources.append(position)
    shape = (-1, 1, options.canvas, options.canvas)
    return (np.stack(full).reshape(shape), np.stack(erased).reshape(shape), np.asarray(classes, dtype=np.int64),
            np.asarray(sources, dtype=np.int64))


def class_names(options: FineDigitsFields) -> tuple[str, ...]:
    return tuple(f"{d}{VARIANT_LETTERS[v]}" for d in range(options.digits) for v in range(options.variants))


def build_fine_digits(options: FineDigitsFields, seed: int) -> DataBundle:
    """The fine-grained-digits ``DataBundle`` for one trial; ``seed`` fixes the split and the drawings."""
    from sklearn.datasets import load_digits

    from sweeplab.data import DataBundle
    from sweeplab.data.digits import split_digits

    digits = load_digits()
    keep = np.flatnonzero(digits.target < options.digits)
    images = (digits.data[keep].astype(np.float32) / 16.0).reshape(-1, 8, 8)
    labels = digits.target[keep].astype(np.int64)
    positions = dict(zip(("train", "val", "test"), split_digits(labels, options.val_fraction, options.test_fraction,
                                                                seed)))
    drawn = {split: draw_split(images[idx], labels[idx], options, np.random.default_rng([seed, _STREAMS[split]]))
             for split, idx in positions.items()}
    mean, std = float(drawn["train"][0].mean()), float(drawn["train"][0].std())

    def dataset(split: str, erased: bool = False) -> IndexedTensorDataset:
        full, without, classes, sources = drawn[split]
        inputs = ((without if erased else full) - mean) / std
        return IndexedTensorDataset(torch.from_numpy(inputs.astype(np.float32)), torch.from_numpy(classes),
                                    source_indices=keep[positions[split][sources]])

    names = class_names(options)
    train_classes = drawn["train"][2]
    info = DataInfo(
        task="classification",
        num_classes=len(names),
        class_names=names,
        input_shape=(1, options.canvas, options.canvas),
        train_size=len(train_classes),
        train_class_counts=tuple(int(n) for n in np.bincount(train_classes, minlength=len(names))),
    )
    return DataBundle(
        train=dataset("train"),
        val=dataset("val"),
        test=dataset("test"),
        info=info,
        train_clean_targets=torch.from_numpy(train_classes.copy()),
        num_workers=0,
        extra_tests={"cue_erased": dataset("test", erased=True)},
    )
