"""Backfill MLflow from Tune's own records of a sweep run (``sweeplab sync-mlflow RUN``).

Trials log to MLflow as they run; when the tracking server was unreachable for
longer than a trial's retries, epochs are missing there. Tune keeps every result
of every trial in ``<run folder>/<method>/<trial>/result.json`` (a folder or an
object store, read through pyarrow); this module
replays them into the trials' MLflow runs. It is idempotent: a run is found by its
trial id, and only the epochs MLflow does not have yet are logged.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from sweeplab import storage, tracking
from sweeplab.context import trial_params
from sweeplab.results import outcome_of, run_name_of
from sweeplab.state import SweepState
from sweeplab.storage import STATE_FILE, RunFolder

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    trials: int = 0
    runs_created: int = 0
    epochs_logged: int = 0
    statuses_set: int = 0


def trial_results(fs, trial_path: str) -> list[dict]:
    """Every result a trial reported, in order (one JSON object per line of result.json on the
    pyarrow filesystem ``fs``)."""
    import pyarrow.fs

    path = f"{trial_path}/result.json"
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return []
    with fs.open_input_stream(path) as stream:
        text = stream.read().decode()
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a killed process
                continue
    return rows


def sync_run(run: RunFolder | Path | str) -> SyncReport:
    """Bring the MLflow runs of a sweep run (a folder or an object-store URI) up to date with
    Tune's results."""
    import pyarrow.fs
    from ray import tune

    folder = run if isinstance(run, RunFolder) else RunFolder.at(str(run))
    fs, base = storage.filesystem(folder.location)
    with fs.open_input_stream(f"{base}/{STATE_FILE}") as stream:  # read where the run is, in a store too
        state = SweepState.from_json(stream.read())
    c = tracking.client(state.tracking_uri)
    report = SyncReport()
    for method, saved in state.studies.items():
        parent = saved.get("parent_run_id")
        if parent is None or fs.get_file_info(f"{base}/{method}").type != pyarrow.fs.FileType.Directory:
            continue
        tags = tracking.base_tags(state.sweep, method, "", state.commit)
        for trial in tune.ExperimentAnalysis(folder.tune_path(method)).trials:
            report.trials += 1
            rows = trial_results(fs, trial.path)
            run = tracking.find_trial_run(state.tracking_uri, state.experiment_id, parent, trial.trial_id)
            if run is None:
                run_id = tracking.create_trial_run(c, state.experiment_id, parent, trial.trial_id,
                                                   run_name_of(method, trial),
                                                   {k: v for k, v in tags.items() if v},
                                                   params=trial_params(trial.config))
                report.runs_created += 1
                logged = 0
            else:
                run_id = run.info.run_id
                logged = max((m.step for m in c.get_metric_history(run_id, "epoch")), default=0)
            for row in rows:
                step = int(row.get("epoch", 0))
                if step > logged and not row.get("diverged"):
                    metrics = {k: v for k, v in row.items() if "/" in k or k in ("epoch", "lr")}
                    stamp = int(row.get("timestamp", 0)) * 1000
                    try:
                        c.log_batch(run_id, metrics=tracking.loggable_metrics(metrics, step, stamp))
                    except Exception as exc:  # noqa: BLE001 - a refusal is skipped; anything else stops the sync
                        reason = tracking.refusal_reason(exc)
                        if reason is None:
                            raise
                        log.warning("MLflow refused epoch %d of trial %s; skipped: %s", step, trial.trial_id, reason)
                        continue
                    report.epochs_logged += 1
            ended = outcome_of(trial)
            current = c.get_run(run_id).data.tags.get(tracking.TAG_STATUS)
            if ended is not None and current != ended:
                tracking.close_run(c, run_id, ended, "recorded by sync-mlflow from Tune's results"
                                   if ended == "failed" else None)
                report.statuses_set += 1
    return report
