"""MLflow records of a sweep: one experiment per sweep, a parent run per method study,
a child run per trial.

Everything goes through ``MlflowClient`` and the tracking URI, from wherever the
code runs: a trial logs its own child run from its worker (so this works when
trials run on other nodes), the driver opens and closes the parent runs and
records the end of trials that could not record it themselves (stopped early by
the scheduler, or crashed).

A trial's run is found again by its Tune trial id (tag ``sweeplab.trial_id``
under its parent run), so a restored or retried trial continues the run it
started instead of opening a second one. Metrics of an epoch go in one
``log_batch`` call.

Statuses: tag ``sweeplab.status`` is one of running, finished, pruned, diverged,
failed (with ``sweeplab.error``), or lost (a trial that started just before the
sweep was killed and that Tune's last snapshot did not hold, so the resumed sweep
ran another in its place); MLflow's own run status follows (FINISHED, KILLED for
pruned and lost, FAILED for diverged and failed).
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import sweeplab

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
RUN_STATUS = {"finished": "FINISHED", "pruned": "KILLED", "diverged": "FAILED", "failed": "FAILED", "lost": "KILLED"}
TAG_TRIAL_ID = "sweeplab.trial_id"
TAG_STATUS = "sweeplab.status"
TAG_ERROR = "sweeplab.error"
TAG_NODE = "sweeplab.node_id"  # the Ray node a trial (its rank 0) last ran on
TAG_HOST = "sweeplab.host"
MAX_TAG_CHARS = 5000
PARAM_MAX_CHARS = 6000

T = TypeVar("T")


# ---------------------------------------------------------------------------
# URIs and experiments
# ---------------------------------------------------------------------------
def resolve_tracking_uri(uri: str | None) -> str:
    """The sweep's URI, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the
    working directory; a relative SQLite path is made absolute (trials run elsewhere)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    prefix = "sqlite:///"
    path = uri[len(prefix):]
    if uri.startswith(prefix) and not path.startswith("/") and path not in ("", ":memory:"):
        uri = prefix + str(Path(path).expanduser().resolve())
    return uri


def default_artifact_location(uri: str) -> str | None:
    """With a SQLite store, artifacts go beside the database (``mlartifacts/``), not into
    whichever directory a worker happens to run in. A server decides for itself."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    return None


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store (loopback only)."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment ``name``, created (with a sensible artifact location) if missing."""
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return c.create_experiment(name, artifact_location=default_artifact_location(uri))
    except Exception:  # created meanwhile by another process
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def git_commit(path: Path | str = ".") -> str | None:
    """The checkout's commit; for a submitted sweep (no .git on the cluster), the one
    ``sweeplab submit`` recorded in ``SWEEPLAB_GIT_COMMIT``."""
    if os.environ.get("SWEEPLAB_GIT_COMMIT"):
        return os.environ["SWEEPLAB_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def base_tags(sweep: str, method: str, dataset: str, commit: str | None) -> dict[str, str]:
    tags = {
        "sweeplab.sweep": sweep,
        "sweeplab.method": method,
        "sweeplab.dataset": dataset,
        "sweeplab.version": sweeplab.__version__,
    }
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["sweeplab.git_commit"] = commit
    return tags


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested keys joined with ``/``; values as MLflow param strings."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, name + "/"))
        else:
            out[name] = str(value)[:PARAM_MAX_CHARS]
    return out


def _succeeds(fn: Callable[[], Any], what: str, attempts: int = 4) -> bool:
    """Whether ``fn`` ran (with retries) without raising."""
    return _retry(lambda: (fn(), True)[1], what, attempts) is True


def _retry(fn: Callable[[], T], what: str, attempts: int = 4, delay: float = 0.5) -> T | None:
    """Call ``fn``; retry on errors (a locked SQLite file, a server that is briefly away).
    Logging never ends a trial: after the last attempt the failure is logged and skipped."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - any tracking failure is retried the same way
            if attempt == attempts - 1:
                log.warning("MLflow: could not %s after %d attempts: %s", what, attempts, exc)
                return None
            time.sleep(delay * 2**attempt)
    return None


def _finite_metrics(metrics: Mapping[str, Any], step: int, timestamp_ms: int):
    from mlflow.entities import Metric

    return [
        Metric(key, float(value), timestamp_ms, step)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ]


# ---------------------------------------------------------------------------
# Parent runs (one per method study), driver side
# ---------------------------------------------------------------------------
def start_study_run(
    uri: str,
    experiment_id: str,
    method: str,
    tags: Mapping[str, str],
    resolved_sweep_file: Path,
    run_id: str | None = None,
) -> str:
    """Open the study's parent run (or reopen ``run_id`` on resume) and attach the resolved sweep file."""
    c = client(uri)
    if run_id is not None:
        c.update_run(run_id, status="RUNNING")
        return run_id
    run = c.create_run(experiment_id, tags={**tags, "mlflow.runName": method, "sweeplab.role": "study"})
    c.log_artifact(run.info.run_id, str(resolved_sweep_file))
    return run.info.run_id


def finish_study_run(uri: str, run_id: str, best: Mapping[str, Any] | None, complete: bool) -> None:
    """Record the best trial's summary on the parent run and close it (KILLED if the study
    was interrupted, so the UI shows it is not complete)."""
    c = client(uri)
    if best:
        now = int(time.time() * 1000)
        # the best config as tags (params cannot change, and a resume may find a better trial)
        tags = [_tag(f"best.{k}", v) for k, v in flatten_params(best.get("config", {})).items()]
        c.log_batch(run_id, metrics=_finite_metrics(best.get("metrics", {}), 0, now), tags=tags)
        c.set_tag(run_id, "sweeplab.best_trial_id", str(best.get("trial_id")))
        if best.get("run_id"):
            c.set_tag(run_id, "sweeplab.best_run_id", best["run_id"])
        c.log_dict(run_id, dict(best), "best_trial.json")
    c.set_terminated(run_id, "FINISHED" if complete else "KILLED")


def _tag(key: str, value: str):
    from mlflow.entities import RunTag

    return RunTag(key, value)


def _params(flat: Mapping[str, str]):
    from mlflow.entities import Param

    return [Param(k, v) for k, v in flat.items()]


# ---------------------------------------------------------------------------
# Child runs (one per trial)
# ---------------------------------------------------------------------------
def find_trial_run(uri: str, experiment_id: str, parent_run_id: str, trial_id: str):
    runs = client(uri).search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_TRIAL_ID}` = '{trial_id}' and tags.`mlflow.parentRunId` = '{parent_run_id}'",
        max_results=2,
    )
    return runs[0] if runs else None


class MlflowTrialTracker:
    """A trial's child run, written from where the trial runs.

    A tracking server that is briefly unreachable does not stop the trial: an epoch's
    metrics that cannot be logged stay in a buffer and go out, in order, with the next
    epoch's (or when the trial ends). What is still unlogged when the trial ends is in
    Tune's results, and ``sweeplab sync-mlflow <run folder>`` backfills it.
    """

    def __init__(
        self,
        uri: str,
        experiment_id: str,
        parent_run_id: str,
        trial_id: str,
        run_name: str,
        tags: Mapping[str, str],
        extra_params: Mapping[str, Any] | None = None,
        where: Mapping[str, str] | None = None,
    ):
        self.uri = uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.trial_id = trial_id
        self.run_name = run_name
        self.tags = dict(tags)
        self.extra_params = dict(extra_params or {})
        self.where = dict(where or {})  # node and host tags: set again when a trial continues elsewhere
        self.run_id: str | None = None
        self._params: dict[str, str] = {}
        self._pending: list = []  # metric batches not logged yet, oldest first
        self._logged_through = 0  # epochs already in the run (a resumed trial repeats none of them)
        if uri.startswith(("http://", "https://")):
            # MLflow's own HTTP retries back off for minutes; the buffer here covers outages instead
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        self._client = client(uri)

    def start(self, params: Mapping[str, Any]) -> None:
        self._params = flatten_params({**params, **self.extra_params})
        self._open()

    def _open(self) -> bool:
        """Find or create the trial's run (once); False while the store is unreachable."""
        if self.run_id is not None:
            return True

        def open_run():
            found = find_trial_run(self.uri, self.experiment_id, self.parent_run_id, self.trial_id)
            if found is not None:  # a resumed, retried or restored trial continues its run
                self._client.update_run(found.info.run_id, status="RUNNING")
                self._client.log_batch(found.info.run_id, tags=[
                    _tag(k, v) for k, v in {**self.where, TAG_STATUS: "running"}.items()])
                logged = self._client.get_metric_history(found.info.run_id, "epoch")
                self._logged_through = max((m.step for m in logged), default=0)
                return found.info.run_id, set(found.data.params)
            run = self._client.create_run(
                self.experiment_id,
                tags={
                    **self.tags,
                    **self.where,
                    "mlflow.parentRunId": self.parent_run_id,
                    "mlflow.runName": self.run_name,
                    TAG_TRIAL_ID: self.trial_id,
                    TAG_STATUS: "running",
                },
            )
            return run.info.run_id, set()

        opened = _retry(open_run, "open the trial's run", attempts=2)
        if opened is None:
            return False
        self.run_id, logged = opened
        todo = {k: v for k, v in self._params.items() if k not in logged}
        if todo:
            _retry(lambda: self._client.log_batch(self.run_id, params=_params(todo)), "log params")
        self._pending = [b for b in self._pending if b[0].step > self._logged_through]
        return True

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if step <= self._logged_through:
            return
        batch = _finite_metrics(metrics, step, int(time.time() * 1000))
        if batch:
            self._pending.append(batch)
        self._flush(attempts=2)

    def _flush(self, attempts: int) -> None:
        """Log the buffered batches in order; stop at the first that fails (kept for later)."""
        if not self._pending or not self._open():
            return
        while self._pending:
            batch = self._pending[0]
            if not _succeeds(lambda: self._client.log_batch(self.run_id, metrics=batch), "log metrics", attempts):
                return
            self._pending.pop(0)

    def log_dict(self, obj: Mapping[str, Any], name: str) -> None:
        if self._open():
            _retry(lambda: self._client.log_dict(self.run_id, dict(obj), name), f"log {name}")

    def finish(self, status: str, error: str | None = None) -> None:
        self._flush(attempts=4)
        if self._pending:
            log.warning("MLflow: %d epoch(s) of trial %s could not be logged; `sweeplab sync-mlflow <run "
                        "folder>` backfills them from Tune's results", len(self._pending), self.trial_id)
        if self.run_id is not None:
            _retry(lambda: close_run(self._client, self.run_id, status, error), "close the trial's run")


def close_run(c, run_id: str, status: str, error: str | None = None) -> None:
    c.set_tag(run_id, TAG_STATUS, status)
    if error:
        c.set_tag(run_id, TAG_ERROR, error[-MAX_TAG_CHARS:])
    c.set_terminated(run_id, RUN_STATUS[status])


def record_trial_end(
    uri: str,
    experiment_id: str,
    parent_run_id: str,
    trial_id: str,
    status: str,
    error: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> None:
    """Driver side: close a trial's run that the trial could not close itself (stopped by
    the scheduler, or its worker died). A trial that failed before opening its run gets one,
    so every trial of the sweep is in MLflow."""

    def record():
        c = client(uri)
        found = find_trial_run(uri, experiment_id, parent_run_id, trial_id)
        if found is None:
            run = c.create_run(
                experiment_id,
                tags={
                    **(tags or {}),
                    "mlflow.parentRunId": parent_run_id,
                    "mlflow.runName": run_name or trial_id,
                    TAG_TRIAL_ID: trial_id,
                },
            )
            run_id = run.info.run_id
            if params:
                c.log_batch(run_id, params=_params(flatten_params(params)))
        else:
            if found.data.tags.get(TAG_STATUS) in ("finished", "diverged") and status != "failed":
                return  # the trial already recorded its own end
            run_id = found.info.run_id
        close_run(c, run_id, status, error)

    _retry(record, f"record the end of trial {trial_id}")


LOST_ERROR = ("started just before the sweep was interrupted and not in Tune's last snapshot of the "
              "experiment; the resumed sweep ran another trial in its place")


def close_lost_runs(
    uri: str, experiment_id: str, parent_run_id: str, trial_ids: set[str],
    status: str = "lost", error: str = LOST_ERROR,
) -> list[str]:
    """Close the still-running child runs of a study whose trial is not among ``trial_ids``
    (the study's trials after a resume; none when the driver failed) with ``status``;
    returns their trial ids."""
    runs = client(uri).search_runs(
        [experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'",
        max_results=10_000,
    )
    lost = [r for r in runs if r.data.tags.get(TAG_TRIAL_ID) not in trial_ids]
    for run in lost:
        _retry(
            lambda run=run: close_run(client(uri), run.info.run_id, status, error),
            "close a lost trial's run",
        )
    return [r.data.tags.get(TAG_TRIAL_ID) for r in lost]
