"""Noisy digits: scikit-learn's bundled 8x8 handwritten digits with synthetic label noise.

1,797 real images (offline everywhere), split train/val/test stratified by class
with the trial's seed. Pixels are scaled from [0, 16] to [0, 1], then standardised
with the train split's scalar mean and std. Label noise (``noise.py``) touches the
train split only; val and test keep their true labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sweeplab.data.indexed import IndexedTensorDataset
from sweeplab.data.noise import inject_label_noise
from sweeplab.method import DataInfo

if TYPE_CHECKING:
    from sweeplab.data import DataBundle, NoisyDigitsOptions

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)


def split_digits(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int):
    """Stratified positions ``(train, val, test)`` into ``labels``, each sorted, fixed by ``seed``."""
    positions = np.arange(len(labels))
    rest, test = train_test_split(positions, test_size=test_fraction, stratify=labels, random_state=seed)
    # val_fraction is of the whole set, so take that share of what test left.
    val_share_of_rest = val_fraction / (1.0 - test_fraction)
    train, val = train_test_split(rest, test_size=val_share_of_rest, stratify=labels[rest], random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)


def digits_info(train_targets: np.ndarray, input_shape: tuple[int, int, int] = IMAGE_SHAPE) -> DataInfo:
    """What a method may know of a dataset of the ten digits, trained on ``train_targets``."""
    return DataInfo(
        task="classification",
        num_classes=NUM_CLASSES,
        class_names=tuple(str(c) for c in range(NUM_CLASSES)),
        input_shape=input_shape,
        train_size=len(train_targets),
        train_class_counts=tuple(int(n) for n in np.bincount(train_targets, minlength=NUM_CLASSES)),
    )


def build_noisy_digits(options: NoisyDigitsOptions, seed: int) -> DataBundle:
    """The noisy-digits ``DataBundle`` for one trial; ``seed`` fixes the split and the noise."""
    from sweeplab.data import DataBundle

    digits = load_digits()
    images = (digits.data.astype(np.float32) / 16.0).reshape(-1, *IMAGE_SHAPE)
    labels = digits.target.astype(np.int64)
    train_idx, val_idx, test_idx = split_digits(labels, options.val_fraction, options.test_fraction, seed)

    mean = float(images[train_idx].mean())
    std = float(images[train_idx].std())
    images = torch.from_numpy((images - mean) / std)
    if options.image_size != IMAGE_SHAPE[-1]:
        images = F.interpolate(images, size=(options.image_size,) * 2, mode="bilinear", align_corners=False)

    clean_train = labels[train_idx]
    noisy_train = inject_label_noise(clean_train, NUM_CLASSES, options.noise_rate, options.noise_type, seed)

    def split(idx: np.ndarray, targets: np.ndarray) -> IndexedTensorDataset:
        return IndexedTensorDataset(images[idx].clone(), torch.from_numpy(targets), source_indices=idx)

    return DataBundle(
        train=split(train_idx, noisy_train),
        val=split(val_idx, labels[val_idx]),
        test=split(test_idx, labels[test_idx]),
        info=digits_info(noisy_train, tuple(images.shape[1:])),
        train_clean_targets=torch.from_numpy(clean_train.copy()),
        num_workers=0,
    )
