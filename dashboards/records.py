"""What a sweep run holds, as typed records: read by ``dashboards.queries`` from MLflow, the
Optuna journal and Tune's folder, drawn by ``dashboards.views``.

Every view takes these records (never a store), so the page can be tested on records built
by hand and the queries on a real run, each without the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

# what ``TrialRecord.role`` says
SEARCH = "search"  # a trial the searcher asked for
CONFIRM = "confirm"  # the selected configuration re-run on a new seed (``sweeplab confirm``)


@dataclass
class TrialRecord:
    """One trial, as MLflow, Optuna and Tune know it."""

    method: str
    trial_id: str  # Ray Tune's trial id
    run_name: str  # its MLflow run's name (and Tune's trial name)
    role: str = SEARCH  # SEARCH | CONFIRM
    number: int | None = None  # Optuna's trial number (None: not searched by Optuna, or a confirmation run)
    run_id: str | None = None  # the MLflow run (None: not in MLflow)
    outcome: str | None = None  # finished | pruned | diverged | failed | lost | None (running, interrupted)
    params: dict[str, Any] = field(default_factory=dict)  # the hyperparameters that apply to it
    objective: float | None = None  # its best epoch's value of the study's objective
    best_epoch: int | None = None
    epochs: int = 0  # epochs it ran
    test: float | None = None  # the objective's metric on the test set, at its best epoch
    seed: int | None = None  # the trial's seed
    candidate: int | None = None  # CONFIRM: rank of the configuration it re-runs (1: the best)
    error: str | None = None  # failed / diverged: why
    metrics: dict[str, float] = field(default_factory=dict)  # its last reported metrics (``best/*`` at the end)
    started_ms: int | None = None  # its MLflow run's start and end (ms since the epoch; None: not in MLflow / running)
    ended_ms: int | None = None


@dataclass
class StudyRecords:
    """One method's study in the run."""

    method: str
    task: str  # classification | multilabel | retrieval
    metric: str  # the objective as the sweep names it, e.g. val/acc
    mode: str  # max | min
    num_samples: int  # the search budget
    parent_run_id: str | None
    trials: list[TrialRecord]
    # per-epoch metrics of every trial (search and confirmation): one row per (trial_id, epoch),
    # columns ``trial_id``, ``epoch`` and every reported metric (``val/acc``, ``train/loss``, ...)
    history: pd.DataFrame
    optuna_study: Any = None  # the ``optuna.Study`` from the run's journal (None: nothing searched)
    milestones: tuple[int, ...] = ()  # ASHA's rungs in epochs (empty: no rung-based scheduler)
    per_class: dict[str, dict] = field(default_factory=dict)  # run_id -> its per_class.json
    baseline: bool = False  # the method the others are compared against

    def by_role(self, role: str) -> list[TrialRecord]:
        return [t for t in self.trials if t.role == role]


@dataclass
class LeaderboardRow:
    """One method's confirmed result, against the baseline's on the same seeds."""

    method: str
    config: dict[str, Any]  # the configuration re-run
    seeds: list[int]
    test: list[float]  # per seed, in ``seeds`` order
    val: list[float]
    test_mean: float
    test_std: float  # sample standard deviation (ddof=1)
    test_ci: tuple[float, float]  # bootstrap 95% CI of the mean
    val_mean: float
    val_std: float
    baseline: bool = False
    diff: float | None = None  # test mean minus the baseline's, over the paired seeds
    diff_ci: tuple[float, float] | None = None  # bootstrap 95% CI of the paired difference
    p_value: float | None = None  # paired t-test across seeds (two-sided)
    paired_seeds: int = 0  # seeds both this method and the baseline ran
    significant: bool = False  # p < alpha and the difference in the objective's good direction
    winner: bool = False  # the best significant method (never the baseline)


@dataclass
class SweepRecords:
    """A whole sweep run."""

    sweep: str
    description: str
    location: str  # the run folder or object-store URI
    dataset: dict[str, Any]
    tracking_uri: str
    experiment_id: str | None
    commit: str | None
    created: str | None  # when the run started (ISO 8601)
    wall_seconds: float | None  # from the first trial's start to the last trial's end
    scheduler: dict[str, Any]
    search: dict[str, Any]
    studies: list[StudyRecords]
    leaderboard: list[LeaderboardRow] = field(default_factory=list)
    alpha: float = 0.05  # the significance level of the leaderboard's paired tests

    def study(self, method: str) -> StudyRecords:
        return next(s for s in self.studies if s.method == method)

    def outcomes(self) -> dict[str, int]:
        """Trials by outcome over every study (searched trials only)."""
        out = {name: 0 for name in ("finished", "pruned", "diverged", "failed", "lost", "unfinished")}
        for s in self.studies:
            for t in s.by_role(SEARCH):
                out[t.outcome or "unfinished"] += 1
        return out

    def mlflow_run_url(self, run_id: str | None) -> str | None:
        """A link into the MLflow UI for a run, when the tracking URI is a server."""
        if not run_id or not self.tracking_uri.startswith(("http://", "https://")) or not self.experiment_id:
            return None
        return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{run_id}"
