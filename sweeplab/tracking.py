"""MLflow records of a sweep: one experiment per sweep, a parent run per method study,
a child run per trial.

Everything goes through ``MlflowClient`` and the tracking URI, from wherever the
code runs: a trial logs its own child run from its worker (so this works when
trials run on other nodes), the driver opens and closes the parent runs and
records the end of trials that could not record it themselves (stopped early by
the scheduler, or crashed).

A trial's run is found again by its Tune trial id (tag ``sweeplab.trial_id``
under its parent run), so a restored or retried trial continues the run it
started instead of opening a second one (``create_trial_run`` is the one place a
trial's run is created). Metrics of an epoch go in one ``log_batch`` call.

What MLflow refuses is told apart from an outage: a metric or param name MLflow would
refuse (``metric_name_problem``) is left out with a warning, and a batch the store
refuses all the same (a bad request, ``refusal_reason``) is dropped with a warning;
only an unreachable or failing store keeps batches for later.

Statuses: tag ``sweeplab.status`` is one of running, finished, pruned, diverged,
failed (with ``sweeplab.error``), or lost (a trial that started just before the
sweep was killed and that Tune's last snapshot did not hold, so the resumed sweep
ran another in its place); MLflow's own run status follows (FINISHED for finished and
pruned, KILLED for lost, FAILED for diverged and failed).

A study's parent run carries its objective (tags ``sweeplab.objective``, ``sweeplab.mode``,
``sweeplab.selection``) and, once it ends, a note (MLflow's run description) summing it up.
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import sweeplab

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
# a pruned trial ran as planned by the scheduler: FINISHED (MLflow's UI draws KILLED as a failure)
RUN_STATUS = {"finished": "FINISHED", "pruned": "FINISHED", "diverged": "FAILED", "failed": "FAILED", "lost": "KILLED"}
TAG_TRIAL_ID = "sweeplab.trial_id"
TAG_STATUS = "sweeplab.status"
TAG_ERROR = "sweeplab.error"
TAG_NODE = "sweeplab.node_id"  # the Ray node a trial (its rank 0) last ran on
TAG_HOST = "sweeplab.host"
TAG_BEST = "sweeplab.best"  # "true" on the run of a study's best trial
TAG_OPTUNA_TRIAL = "sweeplab.optuna_trial"  # the Optuna trial number of a searched trial
MAX_TAG_CHARS = 5000
PARAM_MAX_CHARS = 6000
MAX_NAME_CHARS = 250  # MLflow's MAX_ENTITY_KEY_LENGTH, for metric and param names
# MLflow's validate_param_and_metric_name: no colon on Windows
_NAME_RE = re.compile(r"^[/\w.\- ]*$" if os.name == "nt" else r"^[/\w.\- :]*$")
_NAME_CHARS = ("letters, digits, underscores (_), dashes (-), periods (.), spaces, "
               + ("" if os.name == "nt" else "colons (:), ") + "and slashes (/)")
# MlflowException error codes that mean "the store refuses this request" (retrying cannot help). Not
# BAD_REQUEST: the SQL store reports its database errors (a malformed file, ...) under that code.
REFUSAL_CODES = frozenset({"INVALID_PARAMETER_VALUE"})

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


def metric_name_problem(name: str) -> str | None:
    """Why MLflow would refuse ``name`` as a metric (or param) name, or None when it takes it.

    MLflow's own rules (``mlflow.utils.validation``: allowed characters, names that would
    resolve to another path, the key length limit), without importing mlflow."""
    if not isinstance(name, str):
        return f"is {type(name).__name__}, not a string"
    if not _NAME_RE.match(name):
        bad = "".join(dict.fromkeys(ch for ch in name if not _NAME_RE.match(ch)))
        return f"has {bad!r}; MLflow names may only contain {_NAME_CHARS}"
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith("..") or norm.startswith("/"):
        return (f"would resolve to {norm!r} as a path; MLflow names must not start with '/' or "
                "have empty, '.' or '..' parts or a trailing '/'")
    if len(name) > MAX_NAME_CHARS:
        return f"is {len(name)} characters long; MLflow's limit is {MAX_NAME_CHARS}"
    return None


def refusal_reason(exc: BaseException) -> str | None:
    """The store's reason when ``exc`` says it refuses the request itself (a bad request:
    sending it again cannot help), else None (an outage: a connection error, a timeout, a
    locked SQLite file, a 5xx)."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return None
    if exc.error_code in REFUSAL_CODES:  # also a server's JSON 400 of that code (RestException)
        return exc.message
    return None


def _succeeds(fn: Callable[[], Any], what: str, attempts: int = 4, refused: list[str] | None = None) -> bool:
    """Whether ``fn`` ran (with retries) without raising."""
    return _retry(lambda: (fn(), True)[1], what, attempts, refused=refused) is True


def _retry(
    fn: Callable[[], T], what: str, attempts: int = 4, delay: float = 0.5, refused: list[str] | None = None
) -> T | None:
    """Call ``fn``; retry on errors (a locked SQLite file, a server that is briefly away).
    Logging never ends a trial: after the last attempt the failure is logged and skipped.
    With a ``refused`` list, a request the store refuses (``refusal_reason``) is not retried:
    its reason is appended there and None returned at once."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - any tracking failure is retried the same way
            if refused is not None and (reason := refusal_reason(exc)) is not None:
                refused.append(reason)
                return None
            if attempt == attempts - 1:
                log.warning("MLflow: could not %s after %d attempts: %s", what, attempts, exc)
                return None
            time.sleep(delay * 2**attempt)
    return None


_WARNED_NAMES: set[str] = set()  # names already warned about by callers that keep no set of their own


def _accepted_names(names, what: str, warned: set[str] | None) -> set[str]:
    """The names MLflow takes; one warning (per ``warned`` set) for each name it would refuse."""
    warned = _WARNED_NAMES if warned is None else warned
    ok = set()
    for name in names:
        problem = metric_name_problem(name)
        if problem is None:
            ok.add(name)
        elif name not in warned:
            warned.add(name)
            log.warning("MLflow: %s %r is not logged: it %s", what, name, problem)
    return ok


def loggable_metrics(metrics: Mapping[str, Any], step: int, timestamp_ms: int, warned: set[str] | None = None):
    """The ``Metric`` entities MLflow takes from ``metrics``: finite numbers whose names it
    accepts; a refused name is left out with one warning (once per name in ``warned``)."""
    from mlflow.entities import Metric

    numbers = {
        key: value for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }
    ok = _accepted_names(numbers, "metric", warned)
    return [Metric(key, float(value), timestamp_ms, step) for key, value in numbers.items() if key in ok]


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


TAG_NOTE = "mlflow.note.content"  # the run's description in MLflow's UI


def finish_study_run(uri: str, run_id: str, best: Mapping[str, Any] | None, complete: bool,
                     note: str | None = None) -> None:
    """Record the best trial's summary (and ``note``, the run's description) on the parent run
    and close it (KILLED if the study was interrupted, so the UI shows it is not complete)."""
    c = client(uri)
    if note:
        c.set_tag(run_id, TAG_NOTE, note[:MAX_TAG_CHARS])
    if best:
        now = int(time.time() * 1000)
        # the best config as tags (params cannot change, and a resume may find a better trial)
        config = {f"best.{k}": v for k, v in flatten_params(best.get("config", {})).items()}
        ok = _accepted_names(config, "tag", None)
        tags = [_tag(k, v) for k, v in config.items() if k in ok]
        c.log_batch(run_id, metrics=loggable_metrics(best.get("metrics", {}), 0, now), tags=tags)
        c.set_tag(run_id, "sweeplab.best_trial_id", str(best.get("trial_id")))
        if best.get("run_id"):
            c.set_tag(run_id, "sweeplab.best_run_id", best["run_id"])
            c.set_tag(best["run_id"], TAG_BEST, "true")  # the study's best trial, marked in the run list
        c.log_dict(run_id, dict(best), "best_trial.json")
    c.set_terminated(run_id, "FINISHED" if complete else "KILLED")


def _tag(key: str, value: str):
    from mlflow.entities import RunTag

    return RunTag(key, value)


def _params(flat: Mapping[str, str]):
    from mlflow.entities import Param

    return [Param(k, v) for k, v in flat.items()]


def log_params(c, run_id: str, params: Mapping[str, Any], warned: set[str] | None = None) -> bool:
    """Log ``params`` (nested keys flattened with ``flatten_params``) on ``run_id``; a name MLflow
    would refuse is left out with a warning. Raises on an outage (the caller retries); a batch
    the store refuses all the same is warned about and skipped: False then, else True."""
    flat = flatten_params(params)
    ok = _accepted_names(flat, "param", warned)
    todo = {k: v for k, v in flat.items() if k in ok}
    if not todo:
        return True
    try:
        c.log_batch(run_id, params=_params(todo))
    except Exception as exc:
        reason = refusal_reason(exc)
        if reason is None:
            raise
        _warn_refused(f"the params of run {run_id} ({_names(todo)})", reason)
        return False
    return True


def _names(keys, most: int = 8) -> str:
    keys = list(keys)
    return ", ".join(keys[:most]) + (f", ... ({len(keys)} in all)" if len(keys) > most else "")


def _warn_refused(what: str, reason: str) -> None:
    reason = reason if len(reason) <= 500 else reason[:500] + "..."
    log.warning("MLflow refused %s; dropped, not retried: %s", what, reason)


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


def create_trial_run(
    c,
    experiment_id: str,
    parent_run_id: str,
    trial_id: str,
    run_name: str,
    tags: Mapping[str, str],
    params: Mapping[str, Any] | None = None,
    status: str | None = "running",
    extra_tags: Mapping[str, str] | None = None,
    warned: set[str] | None = None,
) -> str:
    """Create a trial's child run and return its id: the only place one is created.

    ``tags`` and ``extra_tags`` (e.g. node and host), then the parent, run name and trial id
    tags, and the status tag (none with ``status=None``: the caller sets it, with
    ``close_run``); ``params`` are logged with ``log_params``. Raises when the store is
    unreachable: a caller retrying finds the run again with ``find_trial_run``."""
    run_tags = {
        **tags,
        **(extra_tags or {}),
        "mlflow.parentRunId": parent_run_id,
        "mlflow.runName": run_name,
        TAG_TRIAL_ID: trial_id,
    }
    if status is not None:
        run_tags[TAG_STATUS] = status
    run_id = c.create_run(experiment_id, tags=run_tags).info.run_id
    if params:
        log_params(c, run_id, params, warned)
    return run_id


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
        self._warned: set[str] = set()  # metric and param names already warned about
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
            # params are logged below, in the same way for a found run
            run_id = create_trial_run(self._client, self.experiment_id, self.parent_run_id, self.trial_id,
                                      self.run_name, self.tags, extra_tags=self.where)
            return run_id, set()

        opened = _retry(open_run, "open the trial's run", attempts=2)
        if opened is None:
            return False
        self.run_id, logged = opened
        todo = {k: v for k, v in self._params.items() if k not in logged}
        if todo:
            _retry(lambda: log_params(self._client, self.run_id, todo, self._warned), "log params")
        self._pending = [b for b in self._pending if b[0].step > self._logged_through]
        return True

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if step <= self._logged_through:
            return
        batch = loggable_metrics(metrics, step, int(time.time() * 1000), self._warned)
        if batch:
            self._pending.append(batch)
        self._flush(attempts=2)

    def _flush(self, attempts: int) -> None:
        """Log the buffered batches in order; stop at the first that fails (kept for later).
        A batch the store refuses is dropped with a warning: it would block every later one."""
        if not self._pending or not self._open():
            return
        while self._pending:
            batch, refused = self._pending[0], []
            logged = _succeeds(lambda: self._client.log_batch(self.run_id, metrics=batch), "log metrics",
                               attempts, refused=refused)
            if refused:
                _warn_refused(f"epoch {batch[0].step} of trial {self.trial_id} ({_names(m.key for m in batch)})",
                              refused[0])
            elif not logged:
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
        if found is None:  # no status tag yet: close_run sets it
            run_id = create_trial_run(c, experiment_id, parent_run_id, trial_id, run_name or trial_id, tags or {},
                                      params=params, status=None)
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
