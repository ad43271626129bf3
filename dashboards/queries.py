"""Read a sweep run into ``dashboards.records``: MLflow (runs, statuses, metrics, params,
per-class tables), the Optuna journal (the studies) and Tune's folder (per-epoch history).

MLflow is the record of what each trial came to (its status, objective and test metric:
the numbers the report shows are MLflow's); Tune's result files give the per-epoch
history without one MLflow request per metric and trial; the journal gives Optuna's
study as optuna-dashboard shows it. Nothing here writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from dashboards.records import CONFIRM, SEARCH, StudyRecords, SweepRecords, TrialRecord

log = logging.getLogger(__name__)

PER_CLASS_FILE = "per_class.json"
TUNE_COLUMNS = ("trial_id", "epoch")  # history keeps these and every metric name (``split/name``)


def load_run(folder) -> SweepRecords:
    """Every record of the run in ``folder`` (a ``sweeplab.storage.RunFolder``)."""
    from sweeplab.spec import load_sweep
    from sweeplab.state import SweepState
    from sweeplab.storage import RESOLVED_FILE

    folder.pull()
    sweep = load_sweep(folder.local / RESOLVED_FILE)
    state = SweepState.load(folder.local)
    baseline = sweep.baseline_method
    studies = [load_study(sweep, study, state, folder, baseline=study.method == baseline)
               for study in sweep.studies if state.studies.get(study.method, {}).get("parent_run_id")]
    records = SweepRecords(
        sweep=sweep.name, description=sweep.description, location=folder.location, dataset=dict(sweep.dataset),
        tracking_uri=state.tracking_uri, experiment_id=state.experiment_id, commit=state.commit,
        created=state.created, wall_seconds=_wall_seconds(studies),
        scheduler=sweep.scheduler.model_dump(mode="json"), search=sweep.search.model_dump(mode="json"),
        studies=studies,
    )
    from dashboards.stats import leaderboard

    records.leaderboard = leaderboard(records)
    return records


def load_study(sweep, study, state, folder, baseline: bool = False) -> StudyRecords:
    from sweeplab import tracking
    from sweeplab.results import primary

    saved = state.studies[study.method]
    parent = saved["parent_run_id"]
    metric, mode = primary(study.metric), primary(study.mode)
    runs = {r.data.tags.get(tracking.TAG_TRIAL_ID): r for r in child_runs(state.tracking_uri, state.experiment_id,
                                                                           parent)}
    optuna_study = load_optuna_study(folder, f"{sweep.name}.{study.method}")
    numbers = optuna_numbers(optuna_study)
    trials, frames = [], []
    experiments = [(SEARCH, folder.tune_path(study.method))] + [
        (CONFIRM, path) for path in confirm_experiments(folder, study.method)]
    for role, path in experiments:
        for trial, history in tune_trials(path, metric, mode):
            run = runs.pop(trial.trial_id, None)
            trials.append(trial_record(study, trial, run, role, metric, mode, numbers))
            if history is not None and not history.empty:
                frames.append(history_frame(trial.trial_id, history))
    for run in runs.values():  # in MLflow only (e.g. lost when the sweep was interrupted)
        trials.append(mlflow_only_record(study.method, run, metric))
    return StudyRecords(
        method=study.method, task=study.entry.task, metric=metric, mode=mode, num_samples=study.num_samples,
        parent_run_id=parent, trials=trials,
        history=pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(TUNE_COLUMNS)),
        optuna_study=optuna_study, milestones=asha_milestones(sweep, study), baseline=baseline,
        per_class=per_class_tables(state.tracking_uri, trials, metric, mode),
    )


# ---------------------------------------------------------------------------
# MLflow
# ---------------------------------------------------------------------------
def child_runs(uri: str, experiment_id: str, parent_run_id: str) -> list:
    from sweeplab import tracking

    return tracking.client(uri).search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=50_000)


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def trial_record(study, trial, run, role: str, metric: str, mode: str, numbers: dict[str, int]) -> TrialRecord:
    """A Tune trial, with what its MLflow run says (its run wins where both know a value)."""
    from sweeplab import tracking
    from sweeplab.confirm import TAG_RANK
    from sweeplab.context import TrialContext, trial_params
    from sweeplab.objective import objective_metric
    from sweeplab.results import outcome_of, run_name_of, trial_number, trial_objective

    last = trial.last_result or {}
    split_metric = metric.split("/", 1)[-1]
    context = TrialContext.from_config(trial.config)
    applying = trial_params(trial.config)
    params = {k: v for k, v in applying.items() if k not in context.run_params()}
    record = TrialRecord(
        method=study.method, trial_id=trial.trial_id, run_name=run_name_of(study.method, trial), role=role,
        number=numbers.get(trial.trial_id, trial_number(trial)) if role == SEARCH else None,
        outcome=outcome_of(trial), params=params,
        objective=trial_objective(last, None, metric, mode), best_epoch=_int(last.get("best/epoch")),
        epochs=int(last.get("epoch", 0) or 0), test=_finite(last.get(f"best/test/{split_metric}")),
        seed=context.seed, metrics={k: v for k, v in last.items() if "/" in k and _finite(v) is not None},
    )
    if run is not None:
        data = run.data
        record.run_id, record.run_name = run.info.run_id, run.info.run_name or record.run_name
        record.started_ms, record.ended_ms = run.info.start_time, run.info.end_time
        status = data.tags.get(tracking.TAG_STATUS)
        record.outcome = None if status in (None, "running") else status
        record.error = data.tags.get(tracking.TAG_ERROR)
        record.objective = _finite(data.metrics.get(objective_metric(metric)))
        record.test = _finite(data.metrics.get(f"best/test/{split_metric}"))
        record.best_epoch = _int(data.metrics.get("best/epoch")) or record.best_epoch
        record.metrics = {**record.metrics, **{k: v for k, v in data.metrics.items() if _finite(v) is not None}}
        if role == CONFIRM and data.tags.get(TAG_RANK, "").isdigit():
            record.candidate = int(data.tags[TAG_RANK])
    if role == CONFIRM and record.candidate is None:
        record.candidate = _int(Path(str(trial.path)).parent.name.rsplit("-", 1)[-1])
    return record


def mlflow_only_record(method: str, run, metric: str) -> TrialRecord:
    from sweeplab import tracking
    from sweeplab.confirm import ROLE, TAG_ROLE
    from sweeplab.objective import objective_metric

    data = run.data
    return TrialRecord(
        method=method, trial_id=data.tags.get(tracking.TAG_TRIAL_ID, "?"), run_name=run.info.run_name or "",
        role=CONFIRM if data.tags.get(TAG_ROLE) == ROLE else SEARCH, run_id=run.info.run_id,
        outcome=data.tags.get(tracking.TAG_STATUS), params=dict(data.params),
        objective=_finite(data.metrics.get(objective_metric(metric))), error=data.tags.get(tracking.TAG_ERROR),
        started_ms=run.info.start_time, ended_ms=run.info.end_time,
    )


def per_class_tables(uri: str, trials: list[TrialRecord], metric: str, mode: str) -> dict[str, dict]:
    """``per_class.json`` of the best searched trial and of every confirmation trial (run id -> table)."""
    from sweeplab import tracking

    searched = [t for t in trials if t.role == SEARCH and t.objective is not None and t.run_id]
    chosen = [t for t in trials if t.role == CONFIRM and t.run_id]
    if searched:
        chosen.append(max(searched, key=lambda t: t.objective if mode == "max" else -t.objective))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per table otherwise
    c, out = tracking.client(uri), {}
    with tempfile.TemporaryDirectory() as tmp:
        for trial in chosen:
            try:
                path = c.download_artifacts(trial.run_id, PER_CLASS_FILE, tmp)
                out[trial.run_id] = json.loads(Path(path).read_text())
            except Exception as exc:  # noqa: BLE001 - a run without the table (it did not finish)
                log.debug("no %s for run %s: %s", PER_CLASS_FILE, trial.run_id, exc)
    return out


# ---------------------------------------------------------------------------
# Tune
# ---------------------------------------------------------------------------
def tune_trials(path: str, metric: str, mode: str):
    """(trial, its per-epoch results) of the Tune experiment at ``path``, with the study's
    objective as the experiment's default metric."""
    from ray import tune

    from sweeplab.objective import objective_metric

    if not tune.Tuner.can_restore(path):
        return []
    analysis = tune.ExperimentAnalysis(path, default_metric=objective_metric(metric), default_mode=mode)
    return [(trial, analysis.trial_dataframes.get(trial.trial_id)) for trial in analysis.trials]


def confirm_experiments(folder, method: str) -> list[str]:
    """The run's confirmation experiments of ``method`` (``confirm/<method>-<rank>``), by rank."""
    from sweeplab.confirm import CONFIRM_FOLDER

    root = Path(folder.local) / CONFIRM_FOLDER
    if folder.remote:
        return [folder.tune_path(CONFIRM_FOLDER, f"{method}-{rank}") for rank in range(1, 21)
                if _exists(folder.tune_path(CONFIRM_FOLDER, f"{method}-{rank}"))]
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.rsplit("-", 1)[0] == method
             and p.name.rsplit("-", 1)[-1].isdigit()]
    return [str(p) for p in sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[-1]))]


def _exists(path: str) -> bool:
    from ray import tune

    try:
        return tune.Tuner.can_restore(path)
    except Exception:  # noqa: BLE001 - an unreachable store: no confirmation shown
        return False


def history_frame(trial_id: str, history: pd.DataFrame) -> pd.DataFrame:
    keep = [c for c in history.columns if c == "epoch" or ("/" in c and not c.startswith("config/"))]
    frame = history[keep].copy()
    frame.insert(0, "trial_id", trial_id)
    return frame


def asha_milestones(sweep, study) -> tuple[int, ...]:
    """The epochs at which ASHA decides (its rungs, as Tune's ``ASHAScheduler`` builds them:
    ``grace_period * reduction_factor**k`` up to ``max_t``; tests pin it to Tune's); none for
    other schedulers."""
    from sweeplab.results import planned_epochs
    from sweeplab.spaces import upper_bound

    if sweep.scheduler.name != "asha":
        return ()
    epochs = study.space.get("epochs")
    max_t = int(upper_bound(epochs)) if epochs else planned_epochs({}, study.method)
    grace, factor = min(sweep.scheduler.grace_period, max_t), sweep.scheduler.reduction_factor
    rungs, k = [], 0
    while grace * factor**k <= max_t * (1 + 1e-9):
        rungs.append(int(grace * factor**k))
        k += 1
    return tuple(rungs)


# ---------------------------------------------------------------------------
# Optuna
# ---------------------------------------------------------------------------
def load_optuna_study(folder, name: str):
    """The study ``name`` in the run's journal, or None (nothing was searched)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from sweeplab.storage import JOURNAL_FILE

    journal = Path(folder.local) / JOURNAL_FILE
    if not journal.is_file():
        return None
    try:
        return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(journal))))
    except KeyError:
        return None


def optuna_numbers(study) -> dict[str, int]:
    """Ray trial id -> Optuna trial number, from the trials' ``ray_trial_id`` user attribute."""
    from sweeplab.searcher import ATTR_RAY_TRIAL

    if study is None:
        return {}
    return {t.user_attrs[ATTR_RAY_TRIAL]: t.number for t in study.get_trials(deepcopy=False)
            if ATTR_RAY_TRIAL in t.user_attrs}


# ---------------------------------------------------------------------------
def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and math.isfinite(float(value)) else None
    except (TypeError, ValueError):
        return None


def _wall_seconds(studies: list[StudyRecords]) -> float | None:
    """From the first trial run's start to the last one's end, as MLflow recorded them."""
    starts = [t.started_ms for s in studies for t in s.trials if t.started_ms]
    ends = [t.ended_ms for s in studies for t in s.trials if t.ended_ms]
    return (max(ends) - min(starts)) / 1000 if starts and ends else None
