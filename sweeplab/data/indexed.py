"""Datasets whose items are ``(input, target, index)``, with relabellable targets.

Both classes keep the labels in a ``targets`` tensor that ``__getitem__`` reads on
every access, so a method can relabel sample ``i`` by writing
``dataset.targets[i] = k`` (SCN does this). The tensor is moved to shared memory,
so DataLoader worker processes forked from the trial (persistent or not) see
relabels too; batches already prefetched keep the labels they were read with.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


def _as_targets(targets: Any) -> torch.Tensor:
    """A contiguous CPU tensor in shared memory; integer labels become int64."""
    tensor = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
    if not tensor.is_floating_point():
        tensor = tensor.long()
    return tensor.detach().cpu().contiguous().clone().share_memory_()


class IndexedTensorDataset(Dataset):
    """In-memory ``inputs`` (N, ...) and ``targets`` (N, ...) yielding ``(input, target, index)``.

    ``source_indices``, where given, are the samples' positions in the data they were
    taken from (e.g. scikit-learn's digits), for provenance and tests.
    """

    def __init__(self, inputs: torch.Tensor, targets: Any, source_indices: Sequence[int] | None = None):
        self.inputs = torch.as_tensor(inputs)
        self.targets = _as_targets(targets)
        if len(self.inputs) != len(self.targets):
            raise ValueError(f"{len(self.inputs)} inputs but {len(self.targets)} targets")
        self.source_indices = None if source_indices is None else np.asarray(source_indices)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.inputs[index], self.targets[index].clone(), index


class IndexedDataset(Dataset):
    """Wraps any dataset of ``(input, target)`` items (e.g. torchvision's ImageFolder) to yield
    ``(input, target, index)``, the target read from ``self.targets``, not from ``base``.

    ``targets`` defaults to ``base.targets`` where the dataset has them, else to the
    targets of every item (which loads every item once).
    """

    def __init__(self, base: Dataset, targets: Any = None):
        self.base = base
        if targets is None:
            targets = getattr(base, "targets", None)
        if targets is None:
            targets = [base[i][1] for i in range(len(base))]
        self.targets = _as_targets(targets)
        if len(self.targets) != len(base):
            raise ValueError(f"dataset has {len(base)} items but {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        item = self.base[index]
        return item[0], self.targets[index].clone(), index

    def __getattr__(self, name: str):
        # Reached only for attributes not found normally: expose the wrapped dataset's
        # (``classes``, ``class_to_idx``, ``samples``, ...).
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)
