"""Class-aware (re-balanced) sampling, as LTML's re-balanced branch uses it (METHODS.md, LTML).

Sampling cycles over the classes, in a freshly shuffled class order each cycle;
for each class it takes the next image from that class's list, a shuffled list of
every image containing the class (an image is listed under each of its classes),
reshuffled whenever it runs out. Each class is thus drawn for equally often, and
the images containing rare classes are seen far more often than under uniform
sampling. Classes without images are skipped.

Randomness, per epoch: pass ``generator=`` a ``torch.Generator`` (e.g. the
engine's per-epoch generator, as it gives ``DataLoader(generator=...)``); each
``iter()`` draws from it, so the same generator state gives the same epoch.
Without one, each ``iter()`` uses a generator seeded from ``(seed, epoch)``;
call ``set_epoch(epoch)`` before each epoch (as with ``DistributedSampler``),
else every epoch repeats epoch 0's order.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class ClassAwareSampler(Sampler[int]):
    """Indices of a dataset drawn class by class.

    ``targets``: (N, C) multi-hot (multi-label) or (N,) integer labels (single-label).
    ``num_samples``: indices per epoch (default N).
    """

    def __init__(self, targets: Any, num_samples: int | None = None, generator: torch.Generator | None = None,
                 seed: int = 0):
        labels = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
        if labels.ndim == 2:
            members = [torch.nonzero(labels[:, c] > 0).flatten() for c in range(labels.shape[1])]
        elif labels.ndim == 1 and not labels.is_floating_point():
            labels = labels.long()
            num_classes = int(labels.max()) + 1 if len(labels) else 0
            members = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
        else:
            raise ValueError(f"targets must be (N, C) multi-hot or (N,) integer labels, got shape "
                             f"{tuple(labels.shape)} {labels.dtype}")
        self.class_members = [m for m in members if len(m)]
        self.classes = [c for c, m in enumerate(members) if len(m)]
        if not self.class_members:
            raise ValueError("no class has any image to sample")
        self.num_samples = len(labels) if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        self.generator = generator
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next ``iter()`` gives (when no generator was passed)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def draws(self) -> Iterator[tuple[int, int]]:
        """One epoch of ``(index, class it was drawn for)``."""
        if self.generator is not None:
            gen = self.generator
        else:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        queues: list[list[int]] = [[] for _ in self.class_members]
        positions = [0] * len(self.class_members)
        produced = 0
        while True:
            for k in torch.randperm(len(self.class_members), generator=gen).tolist():
                if positions[k] == len(queues[k]):
                    members = self.class_members[k]
                    queues[k] = members[torch.randperm(len(members), generator=gen)].tolist()
                    positions[k] = 0
                yield queues[k][positions[k]], self.classes[k]
                positions[k] += 1
                produced += 1
                if produced == self.num_samples:
                    return

    def __iter__(self) -> Iterator[int]:
        return (index for index, _ in self.draws())


def class_aware_sampler(dataset, generator: torch.Generator, epoch_length: float, batch_size: int) -> ClassAwareSampler:
    """The class-aware re-balanced sampler over ``dataset.targets`` with ``epoch_length`` x
    len(dataset) draws per epoch (at least one batch, so a short epoch is never empty)."""
    num_samples = max(int(round(float(epoch_length) * len(dataset))), int(batch_size))
    return ClassAwareSampler(dataset.targets, num_samples=num_samples, generator=generator)
