"""Long-tailed multi-label digits: mosaics of scikit-learn's bundled 8x8 digits.

A built-in, offline stand-in for VOC-MLT / COCO-MLT (see METHODS.md, LTML).

1. The 1,797 real digit images are split into train/val/test *pools*
   (60/20/20 %, stratified by digit, seeded), so no digit image appears in two splits.
2. Each split is a set of mosaics of ``tiles`` x ``tiles`` tiles (8x8 each). A mosaic
   has ``k`` distinct classes, ``k`` uniform in 1..``max_labels_per_image``; each of
   its classes fills one tile with a pool image of that digit (taken in shuffled
   passes over the class's pool images, so they are used evenly), every other
   tile is either empty (zeros) or, with probability 1/2, one more image of one of
   its classes. Tile positions are shuffled. The label is the set of digits present.
3. How often each class occurs is fixed exactly, not sampled: the label slots
   ``S = sum(k)`` are dealt out to the classes in proportion to a profile -- for
   train the exponential profile ``imbalance ** (-rank / (C - 1))`` (ratio of the
   most to the least frequent class = ``imbalance``), for val and test a flat one --
   then shuffled onto the mosaics and repaired by swaps so no mosaic repeats a class.
   Class rank = digit order (0 most frequent ... 9 rarest), or a seeded permutation
   with ``shuffle_classes``.

Under the defaults (1,200 train mosaics, up to 3 labels, imbalance 100) the train
counts are about 970, 580, 350, 210, 125, 75, 45, 27, 16, 10 images: head
(>= 100) 0-4, medium (20-99) 5-7, tail (< 20) 8-9. Every mosaic has at least one
label, so ``sum(counts) >= train_size``; with imbalance 100 and a tail below 20,
that bounds the useful ``train_size`` to about 2,000 mosaics at 1-2 labels each.

Pixels are scaled from [0, 16] to [0, 1], then standardised with the train
mosaics' scalar mean and std. Deterministic for a seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.datasets import load_digits

from sweeplab.data.digits import split_digits
from sweeplab.data.indexed import IndexedTensorDataset
from sweeplab.data.multilabel import class_counts, groups_from_counts, multi_hot
from sweeplab.method import DataInfo

if TYPE_CHECKING:
    from sweeplab.data import DataBundle, LongTailedDigitsOptions

NUM_CLASSES = 10
TILE = 8
POOL_VAL_FRACTION = 0.2  # of the 1,797 digit images
POOL_TEST_FRACTION = 0.2
EXTRA_TILE_PROBABILITY = 0.5  # a tile left after each class has one: another image of a present class


def apportion(total: int, weights: np.ndarray, cap: int) -> np.ndarray:
    """Integers proportional to ``weights`` summing to ``total``, none above ``cap`` (largest remainders)."""
    weights = np.asarray(weights, dtype=float)
    counts = np.zeros(len(weights), dtype=np.int64)
    free = np.ones(len(weights), dtype=bool)
    left = total
    while left > 0 and free.any():
        share = left * weights[free] / weights[free].sum()
        base = np.floor(share).astype(np.int64)
        order = np.argsort(-(share - base), kind="stable")
        base[order[: left - base.sum()]] += 1
        add = np.zeros(len(weights), dtype=np.int64)
        add[free] = base
        counts += add
        over = counts > cap
        left = int((counts[over] - cap).sum())
        counts[over] = cap
        free &= counts < cap
    if left > 0:
        raise ValueError(f"cannot place {total} labels on {cap} mosaics with at most one per class")
    return counts


def deal_labels(counts: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
    """Label sets, one per mosaic, mosaic ``i`` with ``sizes[i]`` distinct classes and class ``c``
    in exactly ``counts[c]`` mosaics: a random deal repaired by swaps."""
    slots = rng.permutation(np.repeat(np.arange(len(counts)), counts))
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    sets = [list(slots[bounds[i]: bounds[i + 1]]) for i in range(len(sizes))]
    total = len(slots)
    for i, labels in enumerate(sets):
        for a in range(len(labels)):
            if labels.index(labels[a]) == a:
                continue  # first occurrence
            c = labels[a]
            for _ in range(100 * total):
                flat = int(rng.integers(total))
                m = int(np.searchsorted(bounds, flat, side="right") - 1)
                b, d = flat - bounds[m], sets[m][flat - bounds[m]]
                if m != i and d not in labels and c not in sets[m]:
                    labels[a], sets[m][b] = d, c
                    break
            else:
                raise ValueError("could not deal the labels without repeats; lower max_labels_per_image "
                                 "or the imbalance, or raise train_size")
    return [sorted(int(c) for c in labels) for labels in sets]


def make_mosaics(pool_images: np.ndarray, pool_labels: np.ndarray, pool_positions: np.ndarray,
                 weights: np.ndarray, num_mosaics: int, tiles: int, max_labels: int,
                 rng: np.random.Generator):
    """``(images (N, 1, 8t, 8t), label sets, tile sources (N, t*t) with -1 for empty tiles)``."""
    sizes = rng.integers(1, max_labels + 1, size=num_mosaics)
    counts = apportion(int(sizes.sum()), weights, cap=num_mosaics)
    label_sets = deal_labels(counts, sizes, rng)
    by_class = [pool_positions[pool_labels[pool_positions] == c] for c in range(NUM_CLASSES)]
    queues: list[list[int]] = [[] for _ in range(NUM_CLASSES)]

    def next_image(c: int) -> int:  # pool images of a class in shuffled passes: even use, few repeats
        if not queues[c]:
            queues[c] = rng.permutation(by_class[c]).tolist()
        return queues[c].pop()

    num_tiles = tiles * tiles
    images = np.zeros((num_mosaics, 1, TILE * tiles, TILE * tiles), dtype=np.float32)
    sources = np.full((num_mosaics, num_tiles), -1, dtype=np.int64)
    for i, labels in enumerate(label_sets):
        tile_classes = list(labels)
        for _ in range(num_tiles - len(labels)):
            tile_classes.append(int(rng.choice(labels)) if rng.random() < EXTRA_TILE_PROBABILITY else -1)
        for slot, c in zip(rng.permutation(num_tiles), tile_classes):
            if c < 0:
                continue
            source = next_image(c)
            row, col = divmod(int(slot), tiles)
            images[i, 0, row * TILE:(row + 1) * TILE, col * TILE:(col + 1) * TILE] = pool_images[source]
            sources[i, slot] = source
    return images, label_sets, sources


def build_lt_digits(options: LongTailedDigitsOptions, seed: int) -> DataBundle:
    """The long-tailed multi-label digits ``DataBundle`` for one trial; ``seed`` fixes everything."""
    from sweeplab.data import DataBundle

    digits = load_digits()
    pixels = (digits.images.astype(np.float32) / 16.0)  # (1797, 8, 8)
    labels = digits.target.astype(np.int64)
    pools = split_digits(labels, POOL_VAL_FRACTION, POOL_TEST_FRACTION, seed)

    order = np.random.default_rng([seed, 0]).permutation(NUM_CLASSES) if options.shuffle_classes \
        else np.arange(NUM_CLASSES)
    rank = np.empty(NUM_CLASSES, dtype=float)
    rank[order] = np.arange(NUM_CLASSES)
    long_tail = float(options.imbalance) ** (-rank / (NUM_CLASSES - 1))
    flat = np.ones(NUM_CLASSES)

    splits = {}
    for stream, (name, pool, weights, size) in enumerate([
        ("train", pools[0], long_tail, options.train_size),
        ("val", pools[1], flat, options.val_size),
        ("test", pools[2], flat, options.test_size),
    ], start=1):
        rng = np.random.default_rng([seed, stream])
        splits[name] = make_mosaics(pixels, labels, pool, weights, size, options.tiles,
                                    options.max_labels_per_image, rng)

    mean = float(splits["train"][0].mean())
    std = float(splits["train"][0].std())

    def dataset(name: str) -> IndexedTensorDataset:
        images, label_sets, sources = splits[name]
        return IndexedTensorDataset(torch.from_numpy((images - mean) / std),
                                    multi_hot(label_sets, NUM_CLASSES), source_indices=sources)

    train = dataset("train")
    counts = class_counts(train.targets.numpy())
    side = TILE * options.tiles
    info = DataInfo(
        task="multilabel",
        num_classes=NUM_CLASSES,
        class_names=tuple(str(c) for c in range(NUM_CLASSES)),
        input_shape=(1, side, side),
        train_size=len(train),
        train_class_counts=counts,
        class_groups=groups_from_counts(counts, options.head_min, options.tail_max),
    )
    return DataBundle(train=train, val=dataset("val"), test=dataset("test"), info=info, num_workers=0)
