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

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from sweeplab import catalog
from sweeplab.context import TrialContext, hyperparameters_of
from sweeplab.engine import is_better
from sweeplab.method import all_hyperparameters
from sweeplab.objective import SELECTION, objective_metric

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


def trial_number(trial) -> int | None:
    """A Tune trial's 0-based number in its study, in the order Tune created the trials: Optuna's
    trial number for a searched study (unless the journal dropped a trial on a resume; the
    Optuna trial's user attribute ``ray_trial_id`` links them for certain). None when unknown."""
    trial_id, tag = str(trial.trial_id), str(getattr(trial, "experiment_tag", "") or "")
    head = trial_id.rsplit("_", 1)
    if len(head) == 2 and head[1].isdigit():  # Tune's own variants: <uuid>_<5-digit 0-based index>
        return int(head[1])
    first = tag.split("_", 1)[0]
    return int(first) - 1 if first.isdigit() else None  # a searcher's trials: tags count from 1


def trial_run_name(method: str, trial_id: str, number: int | None = None) -> str:
    """A trial's name in Tune, its folder, and its MLflow run's name: ``<method>_t<number>_<trial
    id>`` (``ce_t09_1736deee``), or ``<method>_<trial id>`` when its number is unknown."""
    return f"{method}_t{number:02d}_{trial_id}" if number is not None else f"{method}_{trial_id}"


def run_name_of(method: str, trial) -> str:
    """``trial_run_name`` of a Tune ``Trial``."""
    return trial_run_name(method, trial.trial_id, trial_number(trial))


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
        value = trial_objective(trial.last_result, analysis.trial_dataframes.get(trial.trial_id), metric, mode)
        if value is None:
            continue
        if is_better(value, best_value, mode):
            best_value = value
            out.best = {
                "trial_id": trial.trial_id,
                "run_name": run_name_of(study.method, trial),
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


def trial_objective(last: Mapping[str, Any] | None, history, metric: str, mode: str) -> float | None:
    """A trial's objective (``sweeplab.objective``: its best epoch's ``metric``): the running best
    its last result carries, else (a run from before it was reported) the best of its history."""
    value = (last or {}).get(objective_metric(metric))
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if history is None or metric not in history:
        return None
    values = history[metric].dropna()
    return None if values.empty else float(values.max() if mode == "max" else values.min())


def study_note(sweep, result: StudyResult) -> str:
    """The parent run's description in MLflow: what the study searched and what it came to."""
    lines = [
        f"**{result.method}** in sweep `{sweep.name}` on dataset `{sweep.dataset['name']}`.",
        "",
        f"Objective: `{result.metric}` ({result.mode}), each trial's {SELECTION} (logged as "
        f"`{objective_metric(result.metric)}`). Budget {result.num_samples} trials, "
        f"{sweep.search.sampler} sampler, {sweep.scheduler.name} scheduler.",
        "",
        f"Trials: {result.trials} ({result.finished} finished, {result.pruned} pruned, {result.diverged} diverged, "
        f"{result.failed} failed{', ' + str(result.unfinished) + ' unfinished' if result.unfinished else ''})"
        + ("" if result.complete else " — incomplete: `sweeplab resume` continues it") + ".",
    ]
    best = result.best
    if best:
        split_metric = result.metric.split("/", 1)[-1]
        test = best.get("metrics", {}).get(f"best/test/{split_metric}")
        config = ", ".join(f"{k}={short(v)}" for k, v in sorted(best.get("config", {}).items()))
        lines += ["", f"Best trial `{best.get('run_name') or best['trial_id']}`: {result.metric} = "
                      f"{short(best['value'])}" + (f", test/{split_metric} = {short(test)}" if test is not None else "")
                  + (f" with {config}" if config else "") + "."]
    lines += ["", "A single best trial is one draw: `sweeplab confirm <run>` re-runs it on new seeds; "
                  "`sweeplab report <run>` compares the methods."]
    return "\n".join(lines)


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
