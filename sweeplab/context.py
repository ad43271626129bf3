"""A trial's context: what a trial knows besides its hyperparameters, typed.

A Tune trial's config is the sampled hyperparameters (nested by ``/``) plus one
entry, ``config["sweeplab"]``, that the driver fills and every trial of a study
shares: the method, dataset, model, seed, objective, resources, where to track,
and for a multi-worker trial how its workers run. Tune carries it as a plain
mapping (it is saved with every trial), so the driver writes it with
``TrialContext.to_config`` and every reader (the engine, the worker side, the
driver's callbacks, ``sync-mlflow``) reads it back with ``TrialContext.from_config``;
nobody reads its keys by hand.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from sweeplab.spaces import flatten

log = logging.getLogger(__name__)

CONTEXT_KEY = "sweeplab"


@dataclass(frozen=True)
class TrackingContext:
    """Where a trial logs its MLflow child run."""

    uri: str
    experiment_id: str
    parent_run_id: str
    tags: dict = field(default_factory=dict)  # the study's tags, copied onto every trial run


@dataclass(frozen=True)
class DistributedContext:
    """How a multi-worker trial runs on Ray Train (see ``sweeplab.distributed``)."""

    workers: int
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    storage: str = ""  # where Ray Train keeps the trials' Train runs (a folder or an object-store URI)
    keep: int | None = None  # checkpoints kept per trial (None: all)


@dataclass(frozen=True)
class TrialIdentity:
    """The Tune trial a Train worker belongs to (Train workers cannot ask Tune)."""

    id: str
    name: str


@dataclass(frozen=True)
class TrialContext:
    method: str
    dataset: dict
    model: dict = field(default_factory=lambda: {"backbone": "small_cnn", "weights": None})
    seed: int = 0
    metric: str = "val/acc"
    mode: str = "max"
    threads: int = 1  # torch intra-op threads (the trial's CPUs)
    gpus: float | None = None  # GPUs the trial was given (None: use CUDA when present, for plain loops)
    precision: str = "auto"  # what the trial asks for (``sweeplab.precision``); the device decides auto
    objectives: tuple = ()  # every (metric, mode) the searcher follows (several for multi-objective)
    tracking: TrackingContext | None = None  # None: the trial is not tracked
    distributed: DistributedContext | None = None  # None: one process
    trial: TrialIdentity | None = None  # set for Train workers

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "TrialContext":
        """The context a trial config holds. It may have been stored by another version of
        sweeplab (a run resumed later): keys this version does not know are left out, with a warning."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            log.warning("trial context keys %s are not known to this version of sweeplab: left out", unknown)
        values = {k: v for k, v in raw.items() if k in known}
        values.setdefault("precision", "fp32")  # stored before precision was a choice: trained in fp32
        for name, kind in (("tracking", TrackingContext), ("distributed", DistributedContext),
                           ("trial", TrialIdentity)):
            part = values.get(name)
            if isinstance(part, Mapping):  # an empty mapping: none (older runs wrote {} for "not tracked")
                values[name] = kind(**part) if part else None
        values["objectives"] = tuple(tuple(pair) for pair in values.get("objectives", ()))
        return cls(**values)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "TrialContext":
        return cls.from_dict(config[CONTEXT_KEY])

    def to_dict(self) -> dict:
        """A plain mapping (what Tune stores with each trial)."""
        out = asdict(self)
        out["objectives"] = [list(pair) for pair in self.objectives]
        return out

    def to_config(self, hyperparameters: Mapping[str, Any]) -> dict:
        return {**hyperparameters, CONTEXT_KEY: self.to_dict()}

    def but(self, **changes) -> "TrialContext":
        return replace(self, **changes)

    def all_objectives(self) -> tuple:
        return self.objectives or ((self.metric, self.mode),)

    def run_params(self) -> dict:
        """What a trial's MLflow run records beside its hyperparameters."""
        params = {"dataset": self.dataset, "model": self.model, "seed": self.seed}
        if self.distributed is not None:  # data-parallel workers (batch_size is the global batch)
            params["workers"] = self.distributed.workers
        return params


def hyperparameters_of(config: Mapping[str, Any]) -> dict:
    """A trial config's hyperparameters, flattened with ``/``."""
    return flatten({k: v for k, v in config.items() if k != CONTEXT_KEY})


def trial_params(config: Mapping[str, Any]) -> dict:
    """What a trial's MLflow run records as params: its hyperparameters that apply to it
    (``sweeplab.method.applicable``), dataset, model and seed."""
    from sweeplab import catalog
    from sweeplab.method import all_hyperparameters, applicable

    ctx = TrialContext.from_config(config)
    given = hyperparameters_of(config)
    try:
        method_cls = catalog.method_class(ctx.method)
    except KeyError:  # a method no longer registered: its params as given
        return {**given, **ctx.run_params()}
    applying = applicable(method_cls, {**all_hyperparameters(method_cls), **given})
    return {**{k: v for k, v in given.items() if k in applying}, **ctx.run_params()}
