"""Ambiguous digits: scikit-learn's 8x8 digits, part of them blended with a look-alike digit.

What it is. The 1,797 bundled digit images are first split train/val/test, stratified
by digit with the trial's seed (``digits.split_digits``, as noisy digits). Then, within
the train split only, a share ``blend_fraction`` of the images ``a`` (digit ``y_a``) is
replaced by ``lam * a + (1 - lam) * b``: ``b`` a random image, from the same split, of a
look-alike partner digit ``y_b`` of ``y_a`` (one partner drawn at random where a digit
has several), ``lam`` uniform in ``[lambda_low, lambda_high)`` (default ``[0.5, 1)``).
A blended image is labelled as an annotator would label it (``labelling: annotator``):
``y_a`` with probability ``lam``, else ``y_b``; ``labelling: dominant`` keeps ``y_a``.

Why. Symmetric or pairwise noise (noisy digits) flips labels regardless of what the image
shows. Here the label noise follows image content: only ambiguous images are mislabelled,
the more ambiguous the more often, and always towards the digit the image partly shows.
That is the ambiguity that DMUE and SCN model, and its true latent label distribution is
known (``y_a`` with weight ``lam``, ``y_b`` with weight ``1 - lam``), so a run can report
what a method recovers: whether its mined distribution puts the most off-label mass on
``y_b``, whether its uncertainty (SCN's importance weight) falls as ``lam`` falls.

Look-alike partners (symmetric pairs; a digit's partners are every digit paired with it)::

    3-5  3-8  4-9  1-7  5-6  2-7  0-6  8-9

    0: 6      1: 7      2: 7      3: 5, 8   4: 9
    5: 3, 6   6: 0, 5   7: 1, 2   8: 3, 9   9: 4, 8

Splits.

- ``train``: the (partly blended) training images and their (annotator or dominant)
  labels. Per sample, the dataset carries ``clean_targets`` (``y_a``, also the bundle's
  ``train_clean_targets``), ``partner`` (``y_b``, -1 where not blended), ``lam`` (1.0
  where not blended) and ``partner_source`` (the position of ``b`` in scikit-learn's
  digits, -1 where not blended); ``source_indices`` are the positions of ``a``.
- ``val``: clean val images with their true labels. Model selection then works as on a
  curated validation set, and measures the question these methods are judged by: does
  training on ambiguous, noisily labelled data still classify clean digits. (A blended
  val labelled ``y_a`` would reward predicting the dominant digit of a blend, which is
  what the blended test set reports; selecting on it would tie the chosen epoch to this
  synthetic blending rather than to the digits.)
- ``test``: clean test images with their true labels. ``extra_tests["blended"]`` is a second
  test set (reported as ``test_blended/*``): every test image blended with a partner image
  from the test split at ``lam`` uniform in the same range, labelled ``y_a`` (the dominant
  digit); it carries the same ``clean_targets`` / ``partner`` / ``lam`` / ``partner_source``
  attributes.

Pixels are scaled from [0, 16] to [0, 1], blended there, then every split is standardised
with the scalar mean and std of the training inputs (the blended ones the model trains
on; with ``blend_fraction: 0`` exactly noisy digits' statistics). Everything is fixed by
the seed and the options; the test blend has its own random stream, so changing the
train options does not change the blended test set's blends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sweeplab.data.indexed import IndexedTensorDataset

if TYPE_CHECKING:
    from sweeplab.data import DataBundle

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)

LOOKALIKE_PAIRS: tuple[tuple[int, int], ...] = ((3, 5), (3, 8), (4, 9), (1, 7), (5, 6), (2, 7), (0, 6), (8, 9))


def _partners(pairs) -> dict[int, tuple[int, ...]]:
    table: dict[int, set[int]] = {c: set() for c in range(NUM_CLASSES)}
    for x, y in pairs:
        table[x].add(y)
        table[y].add(x)
    return {c: tuple(sorted(p)) for c, p in table.items()}


PARTNERS: dict[int, tuple[int, ...]] = _partners(LOOKALIKE_PAIRS)  # digit -> its look-alike digits

# random streams: [seed, stream]
_TRAIN_STREAM = 1
_TEST_STREAM = 2


class AmbiguousDigitsFields(BaseModel):
    """The ambiguous-digits options (fields and checks), shared by every options class."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5)
    blend_fraction: float = Field(0.4, ge=0.0, le=1.0)  # share of the train images blended
    lambda_low: float = 0.5  # weight of the image's own digit: lam ~ U[lambda_low, lambda_high)
    lambda_high: float = 1.0
    labelling: Literal["annotator", "dominant"] = "annotator"  # y_a with prob. lam, else y_b | always y_a

    @model_validator(mode="after")
    def _lambda_range(self):
        if not 0.5 <= self.lambda_low < self.lambda_high <= 1.0:
            raise ValueError(f"need 0.5 <= lambda_low < lambda_high <= 1, got lambda_low={self.lambda_low}, "
                             f"lambda_high={self.lambda_high} (lam is the weight of the image's own digit, "
                             "so it must stay the dominant one)")
        return self


def blend_images(a: np.ndarray, b: np.ndarray, lam) -> np.ndarray:
    """``lam * a + (1 - lam) * b`` per image: ``a``, ``b`` (N, ...) float arrays, ``lam`` (N,) or a scalar."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    lam = np.asarray(lam, dtype=np.float32).reshape(-1, *([1] * (a.ndim - 1))) if np.ndim(lam) else np.float32(lam)
    return (lam * a + (1.0 - lam) * b).astype(np.float32)


def blend_split(images: np.ndarray, labels: np.ndarray, positions: np.ndarray, chosen: np.ndarray,
                low: float, high: float, rng: np.random.Generator):
    """Blend ``positions[chosen]`` (``chosen``: indices into ``positions``) with partner images from
    ``positions``. Returns ``(inputs, partner, lam, partner_source)`` for every position: the images
    (blended where chosen), ``y_b`` (-1 elsewhere), ``lam`` (1.0 elsewhere), ``b``'s position (-1)."""
    split_labels = labels[positions]
    by_digit = {c: positions[split_labels == c] for c in range(NUM_CLASSES)}
    n = len(positions)
    partner = np.full(n, -1, dtype=np.int64)
    partner_source = np.full(n, -1, dtype=np.int64)
    lam = np.ones(n, dtype=np.float32)
    for i in np.sort(np.asarray(chosen, dtype=np.int64)):
        options = PARTNERS[int(split_labels[i])]
        y_b = options[int(rng.integers(len(options)))]
        pool = by_digit[y_b]
        if len(pool) == 0:
            raise ValueError(f"no image of digit {y_b} in this split to blend digit {split_labels[i]} with")
        partner[i] = y_b
        partner_source[i] = pool[int(rng.integers(len(pool)))]
        lam[i] = rng.uniform(low, high)
    inputs = images[positions].copy()
    blended = partner >= 0
    inputs[blended] = blend_images(images[positions[blended]], images[partner_source[blended]], lam[blended])
    return inputs, partner, lam, partner_source


def annotate(clean: np.ndarray, partner: np.ndarray, lam: np.ndarray, labelling: str,
             rng: np.random.Generator) -> np.ndarray:
    """Labels as an annotator gives them: ``y_a`` with probability ``lam``, else ``y_b`` (blended
    samples only); ``dominant``: ``y_a`` always."""
    labels = clean.astype(np.int64).copy()
    if labelling == "dominant":
        return labels
    if labelling != "annotator":
        raise ValueError(f"unknown labelling {labelling!r}; known: annotator, dominant")
    draws = rng.random(len(labels))
    flip = (partner >= 0) & (draws >= lam)
    labels[flip] = partner[flip]
    return labels


def _dataset(inputs: np.ndarray, targets: np.ndarray, positions: np.ndarray, clean: np.ndarray,
             partner: np.ndarray, lam: np.ndarray, partner_source: np.ndarray) -> IndexedTensorDataset:
    dataset = IndexedTensorDataset(torch.from_numpy(inputs), torch.from_numpy(targets), source_indices=positions)
    dataset.clean_targets = torch.from_numpy(clean.astype(np.int64).copy())
    dataset.partner = torch.from_numpy(partner)
    dataset.lam = torch.from_numpy(lam)
    dataset.partner_source = torch.from_numpy(partner_source)
    return dataset


def build_ambiguous_digits(options: AmbiguousDigitsFields, seed: int) -> DataBundle:
    """The ambiguous-digits ``DataBundle`` for one trial; ``seed`` (with the options) fixes the
    split, which images blend, their partners, ``lam`` and the annotators' labels."""
    from sklearn.datasets import load_digits

    from sweeplab.data import DataBundle
    from sweeplab.data.digits import digits_info, split_digits

    digits = load_digits()
    images = (digits.data.astype(np.float32) / 16.0).reshape(-1, *IMAGE_SHAPE)
    labels = digits.target.astype(np.int64)
    train_idx, val_idx, test_idx = split_digits(labels, options.val_fraction, options.test_fraction, seed)
    low, high = options.lambda_low, options.lambda_high

    rng = np.random.default_rng([seed, _TRAIN_STREAM])
    num_blended = int(round(options.blend_fraction * len(train_idx)))
    chosen = rng.choice(len(train_idx), size=num_blended, replace=False)
    train_x, partner, lam, partner_source = blend_split(images, labels, train_idx, chosen, low, high, rng)
    clean_train = labels[train_idx]
    noisy_train = annotate(clean_train, partner, lam, options.labelling, rng)

    test_rng = np.random.default_rng([seed, _TEST_STREAM])
    test_blended_x, test_partner, test_lam, test_source = blend_split(
        images, labels, test_idx, np.arange(len(test_idx)), low, high, test_rng)

    mean = float(train_x.mean())
    std = float(train_x.std())

    def standardise(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std).astype(np.float32)

    def clean_split(idx: np.ndarray) -> IndexedTensorDataset:
        n = len(idx)
        return _dataset(standardise(images[idx]), labels[idx], idx, labels[idx], np.full(n, -1, dtype=np.int64),
                        np.ones(n, dtype=np.float32), np.full(n, -1, dtype=np.int64))

    train = _dataset(standardise(train_x), noisy_train, train_idx, clean_train, partner, lam, partner_source)
    train.pixel_mean, train.pixel_std = mean, std  # to undo the standardisation (reports, tests)
    test = clean_split(test_idx)
    blended = _dataset(standardise(test_blended_x), labels[test_idx], test_idx, labels[test_idx],
                       test_partner, test_lam, test_source)

    return DataBundle(
        train=train,
        val=clean_split(val_idx),
        test=test,
        info=digits_info(noisy_train),
        train_clean_targets=torch.from_numpy(clean_train.copy()),
        num_workers=0,
        extra_tests={"blended": blended},
    )
