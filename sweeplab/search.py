"""Search algorithms and schedulers by name: the one table of each that sweep files choose from.

``sweeplab.sweep_schema`` reads the allowed names (and what each one takes) from here,
and the runner builds them from here, so a name is added in one place. Optuna and
Ray are imported only when one is built (validation stays fast).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class SamplerEntry:
    build: Callable[..., Any]  # (seed, n_startup_trials or None, concurrent) -> optuna sampler
    startup_trials: bool = False  # takes n_startup_trials
    multi_objective: bool = False  # optimises a list of metrics


def _startup(n: int | None) -> dict:
    return {} if n is None else {"n_startup_trials": n}


def _tpe(seed, n_startup_trials, concurrent):
    from optuna.samplers import TPESampler

    # TPE lies constantly about running trials when several run at once, so concurrent trials
    # do not all sample the same region
    return TPESampler(seed=seed, constant_liar=concurrent, **_startup(n_startup_trials))


def _random(seed, n_startup_trials, concurrent):
    from optuna.samplers import RandomSampler

    return RandomSampler(seed=seed)


def _cmaes(seed, n_startup_trials, concurrent):
    from optuna.samplers import CmaEsSampler

    return CmaEsSampler(seed=seed, **_startup(n_startup_trials))


def _gp(seed, n_startup_trials, concurrent):
    from optuna.samplers import GPSampler

    return GPSampler(seed=seed, **_startup(n_startup_trials))


def _nsga2(seed, n_startup_trials, concurrent):
    from optuna.samplers import NSGAIISampler

    return NSGAIISampler(seed=seed)


SAMPLERS: dict[str, SamplerEntry] = {
    "tpe": SamplerEntry(_tpe, startup_trials=True, multi_objective=True),
    "random": SamplerEntry(_random, multi_objective=True),
    "cmaes": SamplerEntry(_cmaes, startup_trials=True),
    "gp": SamplerEntry(_gp, startup_trials=True),
    "nsga2": SamplerEntry(_nsga2, multi_objective=True),
}


def make_sampler(name: str, seed: int, n_startup_trials: int | None, concurrent: bool):
    """The Optuna sampler a sweep file names."""
    return SAMPLERS[name].build(seed, n_startup_trials, concurrent)


@dataclass(frozen=True)
class SchedulerEntry:
    build: Callable[..., Any]  # (config, metric, mode, max_t) -> a Tune scheduler
    grace_period: bool = False  # uses scheduler.grace_period


def _asha(cfg, metric, mode, max_t):
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="epoch", metric=metric, mode=mode, max_t=max_t,
                         grace_period=min(cfg.grace_period, max_t), reduction_factor=cfg.reduction_factor)


def _hyperband(cfg, metric, mode, max_t):
    from ray.tune.schedulers import HyperBandScheduler

    return HyperBandScheduler(time_attr="epoch", metric=metric, mode=mode, max_t=max_t,
                              reduction_factor=cfg.reduction_factor)


def _median(cfg, metric, mode, max_t):
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(time_attr="epoch", metric=metric, mode=mode, grace_period=cfg.grace_period)


def _fifo(cfg, metric, mode, max_t):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


SCHEDULERS: dict[str, SchedulerEntry] = {
    "asha": SchedulerEntry(_asha, grace_period=True),
    "hyperband": SchedulerEntry(_hyperband),
    "median": SchedulerEntry(_median, grace_period=True),
    "fifo": SchedulerEntry(_fifo),
}


def make_scheduler(cfg, metric: str, mode: str, max_t: int):
    """The Tune scheduler of a sweep's ``scheduler`` section; trials are timed in epochs."""
    return SCHEDULERS[cfg.name].build(cfg, metric, mode, max_t)
