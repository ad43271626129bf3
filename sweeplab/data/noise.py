"""Synthetic label noise for the training split.

``symmetric``: each chosen sample gets a label drawn uniformly from the *other*
classes. ``pairwise``: each chosen sample of class ``c`` becomes ``(c + 1) % C``.
Exactly ``round(rate * n)`` samples are chosen (at random, seeded), and every chosen
label changes, so the realised noise rate equals the requested one up to rounding.
(Many papers instead flip with probability ``rate`` or may redraw the true class,
which makes the realised rate lower and random; we make it exact.)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

NOISE_KINDS = ("symmetric", "pairwise")


def inject_label_noise(
    targets: np.ndarray | torch.Tensor,
    num_classes: int,
    rate: float,
    kind: Literal["symmetric", "pairwise"] = "symmetric",
    seed: int = 0,
) -> np.ndarray:
    """A noisy copy of ``targets`` (int64): ``round(rate * n)`` labels changed to another class.

    Deterministic for a given ``seed``; ``rate == 0`` returns an unchanged copy.
    """
    clean = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets).astype(np.int64).ravel()
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; known kinds: {', '.join(NOISE_KINDS)}")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"noise rate must be in [0, 1), got {rate}")
    if clean.size and (clean.min() < 0 or clean.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{clean.min()}, {clean.max()}]")
    noisy = clean.copy()
    num_flipped = int(round(rate * clean.size))
    if num_flipped == 0:
        return noisy
    if num_classes < 2:
        raise ValueError("label noise needs at least 2 classes")

    rng = np.random.default_rng(seed)
    flipped = rng.choice(clean.size, size=num_flipped, replace=False)
    if kind == "pairwise":
        noisy[flipped] = (clean[flipped] + 1) % num_classes
    else:
        # An offset in [1, C-1] added modulo C is uniform over the other classes.
        offsets = rng.integers(1, num_classes, size=num_flipped)
        noisy[flipped] = (clean[flipped] + offsets) % num_classes
    return noisy
