"""A trial's DataLoaders: how many processes decode and augment, pinned memory, and one
training loader whose workers live through the whole trial.

Decoding and augmenting JPEGs is CPU work that a GPU trial must not do on its training
thread. ``loader_plan`` chooses from the CPUs the trial was given (``resources.cpus``):

- a dataset held in memory (the built-in ones, FERPlus) asks for no worker: ``workers: 0``;
- a dataset read from files asks for ``workers`` (its option), else (``None``) one per CPU
  the trial has beyond its training thread, and at least one on a GPU (the training thread
  mostly waits for the GPU there);
- pinned host memory when the trial trains on CUDA (batches copy with ``non_blocking``);
- persistent workers: the training and validation loaders keep their worker processes from
  epoch to epoch instead of starting them again every epoch.

The training loader is built once per trial; each epoch gives it the epoch's sampler
(``EpochSampler``): the method's, else a shuffle seeded by ``(seed, epoch)``, cut to this
rank's shard with several workers. Worker processes seed their random augmentations once,
when they start; a resumed trial starts them again, so its augmentations (not its batches)
differ from an uninterrupted run's after the resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler


@dataclass(frozen=True)
class LoaderPlan:
    workers: int  # DataLoader worker processes (0: the training process loads)
    pin_memory: bool

    @property
    def persistent(self) -> bool:
        return self.workers > 0


def loader_plan(dataset_workers: int | None, cpus: float, device: torch.device) -> LoaderPlan:
    """The loading plan of a trial with ``cpus`` CPUs training on ``device``, for a dataset that
    asks for ``dataset_workers`` (None: as many as the trial's CPUs allow)."""
    on_gpu = device.type == "cuda"
    if dataset_workers is None:
        workers = max(int(cpus) - 1, 1 if on_gpu else 0)
    else:
        workers = int(dataset_workers)
    return LoaderPlan(workers=workers, pin_memory=on_gpu)


class EpochSampler(Sampler):
    """Yields the indices of the sampler it was last given (``use``): one DataLoader, and its
    worker processes, serve every epoch while the order changes each epoch."""

    def __init__(self):
        self.current: Sampler | None = None

    def use(self, sampler: Sampler) -> None:
        self.current = sampler

    def __iter__(self) -> Iterator[int]:
        if self.current is None:
            raise RuntimeError("EpochSampler: no sampler for this epoch (call use() first)")
        return iter(self.current)

    def __len__(self) -> int:
        return len(self.current) if self.current is not None else 0


class EpochLoader:
    """A training DataLoader over ``dataset`` whose sampler is set every epoch."""

    def __init__(self, dataset, batch_size: int, drop_last: bool, plan: LoaderPlan):
        self.dataset = dataset
        self.sampler = EpochSampler()
        self.loader = DataLoader(
            dataset, batch_size=batch_size, sampler=self.sampler, drop_last=drop_last,
            num_workers=plan.workers, pin_memory=plan.pin_memory, persistent_workers=plan.persistent,
        )

    def for_epoch(self, sampler: Sampler | None, generator: torch.Generator) -> DataLoader:
        """The loader with ``sampler`` this epoch (None: a shuffle drawn from ``generator``)."""
        self.sampler.use(RandomSampler(self.dataset, generator=generator) if sampler is None else sampler)
        return self.loader


def evaluation_loader(dataset, batch_size: int, plan: LoaderPlan, every_epoch: bool) -> DataLoader:
    """A split evaluated in order; its workers persist when it is evaluated every epoch (validation)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=plan.workers,
                      pin_memory=plan.pin_memory, persistent_workers=plan.persistent and every_epoch)


class TrainLoaders:
    """The epoch's training loader and, for a method that draws a second batch each step
    (``Method.paired_sampler``), the loader of that sampler; both built once per trial.

    ``shard(sampler, dataset, generator, drop_last)`` cuts a sampler (None: a seeded shuffle)
    to this rank's part (``engine.Parallel.shard``)."""

    def __init__(self, dataset, batch_size: int, drop_last: bool, plan: LoaderPlan, shard: Callable):
        self.dataset, self.drop_last, self.shard = dataset, drop_last, shard
        self.batch_size, self.plan = batch_size, plan
        self.first = EpochLoader(dataset, batch_size, drop_last, plan)
        self.second: EpochLoader | None = None

    def for_epoch(self, sampler: Sampler | None, paired: Sampler | None, generator: torch.Generator):
        """(training loader, paired loader or None) for an epoch with the method's samplers."""
        first = self.first.for_epoch(self.shard(sampler, self.dataset, generator, self.drop_last), generator)
        if paired is None:
            return first, None
        if self.second is None:
            self.second = EpochLoader(self.dataset, self.batch_size, self.drop_last, self.plan)
        return first, self.second.for_epoch(self.shard(paired, self.dataset, generator, self.drop_last), generator)
