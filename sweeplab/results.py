"""What a sweep's trials came to: the one place that decides a trial's outcome, names its
MLflow run, and sums a study up (the summary table a sweep ends with).

The driver's callbacks, the searcher, ``sync-mlflow``, ``submit`` and dashboards read
results through this module, so they agree on every trial.

Outcomes (``OUTCOMES``): ``finished`` (ran its planned epochs), ``pruned`` (a scheduler
stopped it early: its objective is not comparable with finished trials'), ``diverged``
(its loss became non-finite), ``failed`` (an error, for good); ``None`` while it has not
ended (pending, running, paused, or interrupted with the sweep). ``lost`` is decided by
tracking: a run whose trial Tune no longer knows after a resume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from sweeplab import catalog
from sweeplab.context import TrialContext, hyperparameters_of
from sweeplab.engine import is_better
from sweeplab.method import all_hyperparameters

OUTCOMES = ("finished", "pruned", "diverged", "failed")


# ---------------------------------------------------------------------------
# One trial
# ---------------------------------------------------------------------------
def planned_epochs(config: Mapping[str, Any], method: str | None = None) -> int:
    """The epochs a trial config asks for (its method's default when not given). ``method``:
    the method's name when ``config`` holds only hyperparameters (no context)."""
    given = hyperparameters_of(config)
    if "epochs" in given:
        return int(given["epochs"])
    name = method or TrialContext.from_config(config).method
    return int(all_hyperparameters(catalog.method_class(name))["epochs"])


def trial_outcome(last: Mapping[str, Any] | None, planned: int, status: str = "TERMINATED") -> str | None:
    """The outcome of a trial whose Tune status is ``status`` and whose last result is ``last``."""
    last = last or {}
    if status == "ERROR":
        return "failed"
    if status != "TERMINATED" or "epoch" not in last:
        return None
    if last.get("diverged"):
        return "diverged"
    return "pruned" if int(last["epoch"]) < planned else "finished"


def outcome_of(trial, status: str | None = None) -> str | None:
    """``trial_outcome`` of a Tune ``Trial`` (``status``: what it is ending as, in a callback
    called before Tune updates ``trial.status``)."""
    return trial_outcome(trial.last_result, planned_epochs(trial.config), status or trial.status)


def trial_run_name(method: str, trial_id: str) -> str:
    """A trial's name in Tune and its MLflow run's name: ``<method>_<trial id>``."""
    return f"{method}_{trial_id}"


# ---------------------------------------------------------------------------
# A study
# ---------------------------------------------------------------------------
def objectives(study) -> list[tuple[str, str]]:
    """Every (metric, mode) of a study: one, or several for a multi-objective search."""
    if isinstance(study.metric, list):
        return list(zip(study.metric, study.mode))
    return [(study.metric, study.mode)]


def primary(metric):
    """The first of a study's metrics (or modes): what schedulers and the summary follow."""
    return metric[0] if isinstance(metric, list) else metric


@dataclass
class StudyResult:
    method: str
    metric: str
    mode: str
    num_samples: int
    trials: int = 0
    finished: int = 0
    pruned: int = 0
    diverged: int = 0
    failed: int = 0
    unfinished: int = 0  # started but neither ended nor failed (the sweep was interrupted)
    complete: bool = False
    best: dict | None = None  # trial_id, run_id, value, config, metrics
    parent_run_id: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(analysis, study, parent_run_id: str, find_run=None) -> StudyResult:
    """The study's outcome from Tune's persisted experiment (``tune.ExperimentAnalysis``, what a
    resume acts on): a trial running when the sweep was interrupted is unfinished, not pruned.
    The best trial is the best value of the objective at any epoch of a finished or pruned
    trial; ``find_run(trial_id)``: its MLflow run (or None)."""
    metric, mode = primary(study.metric), primary(study.mode)
    out = StudyResult(study.method, metric, mode, study.num_samples, parent_run_id=parent_run_id)
    best_value = None
    for trial in analysis.trials:
        out.trials += 1
        outcome = outcome_of(trial)
        if outcome is None:
            out.unfinished += 1
            continue
        setattr(out, outcome, getattr(out, outcome) + 1)
        if outcome not in ("finished", "pruned"):
            continue
        history = analysis.trial_dataframes.get(trial.trial_id)
        if history is None or metric not in history:
            continue
        values = history[metric].dropna()
        if values.empty:
            continue
        value = float(values.max() if mode == "max" else values.min())
        if is_better(value, best_value, mode):
            best_value = value
            out.best = {
                "trial_id": trial.trial_id,
                "value": value,
                "config": hyperparameters_of(trial.config),
                "metrics": {k: v for k, v in (trial.last_result or {}).items()
                            if "/" in k and isinstance(v, (int, float))},
            }
    if out.best and find_run is not None:
        run = find_run(out.best["trial_id"])
        out.best["run_id"] = run.info.run_id if run else None
    ended = out.finished + out.pruned + out.diverged + out.failed
    out.complete = out.unfinished == 0 and ended >= study.num_samples
    return out


def format_summary(results: list[StudyResult], ui_command: str) -> str:
    """The table a sweep ends with: the best trial of each study, and how to open the results."""
    rows = [("method", "trials/budget (finished/pruned/diverged/failed)", "objective", "best", "best/test",
             "MLflow run", "config")]
    for r in results:
        best = r.best or {}
        split_metric = r.metric.split("/", 1)[-1]
        test = best.get("metrics", {}).get(f"best/test/{split_metric}")
        config = ", ".join(f"{k}={short(v)}" for k, v in sorted(best.get("config", {}).items()))
        rows.append((
            r.method + ("" if r.complete else " (incomplete)"),
            f"{r.trials}/{r.num_samples} ({r.finished}/{r.pruned}/{r.diverged}/{r.failed})",
            f"{r.metric} ({r.mode})",
            short(best.get("value")) if best else "-",
            short(test) if test is not None else "-",
            best.get("run_id") or "-",
            config or "-",
        ))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + str(row[-1]))
        if n == 0:
            lines.append("-" * len(lines[0]))
    lines.append("")
    lines.append(f"Open the results:  {ui_command}")
    return "\n".join(lines)


def short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
