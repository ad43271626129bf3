"""Multi-worker trials: one Tune trial trains data-parallel on several Ray Train workers.

A sweep whose ``resources.workers`` is more than 1 runs each trial as a Tune function
trainable (``trainable.run_trial``) that builds and fits a ``ray.train.torch.TorchTrainer``
(``fit_trial``): Train V2 does not accept a trainer as a Tune trainable. The trial itself
reserves no CPU (``DRIVER_RESOURCES``: Ray refuses an empty request, and a sliver of a CPU
starves the workers); each of the ``workers`` Train workers gets ``cpus`` CPUs (and
``gpus`` GPUs) and runs the same engine (``train_worker``), with ``TorchDistributed`` as its
``engine.Parallel``:

- the model is wrapped in ``DistributedDataParallel`` (NCCL on GPUs, gloo on CPUs);
- every rank draws the whole epoch from the engine's seeded sampler (the method's own,
  e.g. LTML's class-aware paired sampler, or the plain shuffle) and takes every
  ``world_size``-th index from its rank on (``ShardedSampler``), with ``batch_size /
  workers`` per step: step k of the workers together trains on the batch step k of a
  single process would (up to BatchNorm statistics, which each worker keeps for its part);
- the training metrics are summed over the ranks (``train/samples`` counts every worker's
  samples); a loss that is not finite on any rank ends the trial as diverged on every rank;
- labels a method rewrites (SCN relabels the samples of each rank's shard) reach every rank
  at the end of each epoch; a method's own per-epoch statistics (SCN's relabel counts) are
  rank 0's, and a loss computed across a batch (SCN's rank regularisation) sees each
  worker's part of it;
- rank 0 evaluates, logs the trial's MLflow run and saves the checkpoints
  (``ray.train.Checkpoint``); the other ranks get ``engine.NullTracker``;
- ``ray.train.report`` carries each epoch's metrics (the names a single-process trial
  reports) to Tune through ``TuneReportCallback``, so schedulers and Optuna see no difference.

When a scheduler stops a trial, Tune ends the trial's actor and with it the Train controller;
Ray Train's placement-group cleaner then frees the workers. It asks Ray's state API, so a
local sweep with multi-worker trials starts Ray's dashboard (``ray_session.ray_session``).

Checkpoints live in Train's run ``<run folder>/train/<trial name>`` (a name derived from the
Tune trial id). Tune sees none, so a retried or restored trial finds them by that name: Train
V2 reloads the run's checkpoint list and ``ray.train.get_checkpoint()`` hands every worker the
latest, which the engine resumes from.

Only the Ray parts import Ray (lazily): ``ShardedSampler`` and ``TorchDistributed`` need only
``torch.distributed`` and run in any process group.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
from dataclasses import replace
from typing import Any, Iterator, Mapping

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import RandomSampler, Sampler

from sweeplab import engine
from sweeplab.context import CONTEXT_KEY, DistributedContext, TrialContext, TrialIdentity
from sweeplab.checkpoints import checkpoint_retention
from sweeplab.trial import CheckpointReporter, trial_tracker

TRAIN_FOLDER = "train"  # Train runs of multi-worker trials, in the sweep's run folder
DRIVER_RESOURCES = {"cpu": 0, "memory": 64 * 1024**2}  # what the Tune trial itself reserves


# ---------------------------------------------------------------------------
# Data parallelism (torch.distributed only)
# ---------------------------------------------------------------------------
class ShardedSampler(Sampler[int]):
    """Rank ``rank``'s part of an epoch of ``sampler``.

    Every rank iterates the whole of ``sampler`` (seeded alike on every rank, so the same
    order everywhere) and keeps the indices at positions ``rank, rank + world_size, ...``. With
    ``drop_last`` the epoch is cut to a multiple of ``world_size``; otherwise it is padded by
    repeating its start. Every rank gets the same number of indices (DDP needs the same number
    of steps on every rank).
    """

    def __init__(self, sampler, rank: int, world_size: int, drop_last: bool):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.sampler, self.rank, self.world_size, self.drop_last = sampler, rank, world_size, drop_last

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.world_size if self.drop_last else math.ceil(n / self.world_size)

    def __iter__(self) -> Iterator[int]:
        # lazily, as a single process would: a sampler drawing from the same generator as another
        # (LTML's paired sampler beside the shuffle) then sees the same random numbers
        w, n = self.world_size, len(self.sampler)
        if self.drop_last:
            yield from itertools.islice(self.sampler, self.rank, n - n % w, w)
            return
        head, count = [], 0
        for count, index in enumerate(self.sampler, start=1):
            if len(head) < w:
                head.append(index)
            if (count - 1) % w == self.rank:
                yield index
        if count % w:  # pad from the start of the epoch
            padding = head * math.ceil(w / len(head))
            for position in range(count, count + w - count % w):
                if position % w == self.rank:
                    yield padding[position - count]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


class DDP(DistributedDataParallel):
    """DistributedDataParallel whose wrapped module's attributes stay reachable, for methods
    whose steps use more than the forward pass (e.g. LTML's logit compensation modules).
    Every trainable parameter must get a gradient in every step, as with plain DDP, unless the
    method says otherwise (``Method.find_unused_parameters``)."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


class TorchDistributed:
    """``engine.Parallel`` for a rank of the default ``torch.distributed`` process group."""

    def __init__(self, device: torch.device | None = None):
        if not dist.is_initialized():
            raise RuntimeError("TorchDistributed needs an initialised torch.distributed process group")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self._device = device
        # collectives run where the backend can: NCCL on the GPU, gloo on the CPU
        self._comm = device if dist.get_backend() == "nccl" and device is not None else torch.device("cpu")

    def device(self, gpus: float | None) -> torch.device:
        return self._device if self._device is not None else engine.pick_device(gpus)

    def wrap_model(self, model: torch.nn.Module, find_unused_parameters: bool = False) -> torch.nn.Module:
        device = next(model.parameters()).device
        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                   find_unused_parameters=find_unused_parameters)

    def shard(self, sampler, dataset, generator, drop_last):
        if sampler is None:  # the shuffle a single process gets from DataLoader(shuffle=True, generator=...)
            sampler = RandomSampler(dataset, generator=generator)
        return ShardedSampler(sampler, self.rank, self.world_size, drop_last)

    def all_finite(self, loss: torch.Tensor) -> bool:
        bad = torch.tensor([0.0 if bool(torch.isfinite(loss)) else 1.0], device=self._comm)
        dist.all_reduce(bad)
        return bad.item() == 0

    def sum(self, values: Mapping[str, float]) -> dict[str, float]:
        keys = sorted(values)
        totals = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self._comm)
        dist.all_reduce(totals)
        return dict(zip(keys, totals.tolist()))

    @contextlib.contextmanager
    def shared_targets(self, dataset):
        """A label one rank changed (SCN relabels the samples of its shard) is changed on every
        rank when the epoch ends; where two ranks changed the same label, the lower rank wins."""
        targets = getattr(dataset, "targets", None)
        if not isinstance(targets, torch.Tensor):
            yield
            return
        before = targets.clone()
        yield  # an exception skips the exchange on this rank (the others fail at their next collective)
        changed = (targets != before).to(self._comm)
        count = changed.sum().reshape(1)
        dist.all_reduce(count)
        if count.item() == 0:
            return
        owner = torch.where(changed, torch.full_like(changed, self.rank, dtype=torch.int64),
                            torch.full_like(changed, self.world_size, dtype=torch.int64))
        dist.all_reduce(owner, op=dist.ReduceOp.MIN)
        mine = (owner == self.rank)
        value = torch.where(mine, targets.to(self._comm), torch.zeros_like(targets, device=self._comm))
        dist.all_reduce(value)
        merged = torch.where(owner < self.world_size, value, before.to(self._comm))
        targets.copy_(merged.to(targets.device))  # in place: loaders' workers may share the tensor


# ---------------------------------------------------------------------------
# Resources and context (driver side)
# ---------------------------------------------------------------------------
def is_distributed(resources) -> bool:
    return resources.workers > 1


def trial_resources(resources) -> dict:
    """What Tune reserves for one trial: all of it for a single worker, else next to nothing
    (the Train workers reserve their own)."""
    if is_distributed(resources):
        return dict(DRIVER_RESOURCES)
    return {"cpu": resources.cpus, "gpu": resources.gpus}


def worker_resources(cpus: float, gpus: float) -> dict:
    return {"CPU": cpus, **({"GPU": gpus} if gpus > 0 else {})}


def trials_that_fit(resources, have: Mapping[str, float]) -> int:
    """How many multi-worker trials a cluster with ``have`` resources runs at once (at least 1)."""
    fits = [have.get(key, 0) // (each * resources.workers)
            for key, each in (("CPU", resources.cpus), ("GPU", resources.gpus)) if each > 0]
    return max(1, int(min(fits)))


def trial_context(resources, storage: str, keep: int | None) -> DistributedContext:
    """The ``distributed`` part of a multi-worker trial's context; ``storage``: where Ray Train
    keeps the trials' Train runs (``TRAIN_FOLDER`` of the run: a folder or an object-store URI)."""
    return DistributedContext(workers=resources.workers, cpus_per_worker=resources.cpus,
                              gpus_per_worker=resources.gpus, storage=storage, keep=keep)


def train_run_name(trial_name: str) -> str:
    """Train's run of a trial: one per Tune trial, the same again when the trial is retried or
    restored (so it resumes from its checkpoints)."""
    return trial_name


# ---------------------------------------------------------------------------
# Ray (imported lazily)
# ---------------------------------------------------------------------------
def train_worker(config: Mapping[str, Any]) -> None:
    """One Train worker of a multi-worker trial: the engine, as one rank of the DDP group."""
    import ray.train
    import ray.train.torch

    logging.getLogger("ray.train").setLevel(logging.WARNING)
    _quiet_reports()
    ctx = TrialContext.from_config(config)
    train_context = ray.train.get_context()
    rank = train_context.get_world_rank()
    ctx = ctx.but(distributed=replace(ctx.distributed, workers=train_context.get_world_size()))  # as it ran
    device = ray.train.torch.get_device() if ctx.distributed.gpus_per_worker > 0 else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    tracker = trial_tracker(ctx, ctx.trial.id, ctx.trial.name) if rank == 0 else engine.NullTracker()
    engine.train(config, CheckpointReporter(ray.train, saves=rank == 0), tracker, TorchDistributed(device))


def _quiet_reports() -> None:
    """Ray Train logs every report of every rank, metrics included, at INFO under a logger named
    by its file (so ``LoggingConfig`` does not reach it); the trial's results are in Tune and MLflow."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def fit_trial(config: Mapping[str, Any]) -> None:
    """Body of a multi-worker Tune trial: fit a TorchTrainer whose workers run ``train_worker``
    and whose reports reach Tune as this trial's results."""
    import ray.train
    from ray import tune
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    # Ray Train's controller collects one report per worker each poll (every 2 s by default), so
    # epochs shorter than the poll waited for it; a shorter poll costs one small call per worker
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    ctx = TrialContext.from_config(config)
    spec = ctx.distributed
    context = tune.get_context()
    trial = TrialIdentity(id=context.get_trial_id(), name=context.get_trial_name())
    gpus = float(spec.gpus_per_worker)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={**config, CONTEXT_KEY: ctx.but(trial=trial).to_dict()},
        torch_config=TorchConfig(backend="nccl" if gpus > 0 else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=int(spec.workers), use_gpu=gpus > 0,
            resources_per_worker=worker_resources(float(spec.cpus_per_worker), gpus),
        ),
        run_config=ray.train.RunConfig(
            name=train_run_name(trial.name),
            storage_path=spec.storage,
            callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(**checkpoint_retention(spec.keep)),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # not every report, twice
        ),
    )
    trainer.fit()
