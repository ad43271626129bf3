"""Runs a validated sweep on Ray Tune: one ``Tuner`` per method study.

Each study gets an ``OptunaSearch`` (its study kept in a journal file under the
sweep's run folder, so ``optuna-dashboard`` can watch it live and a resumed
sweep continues it), a Tune scheduler (ASHA by default), and MLflow records
(a parent run per study, a child run per trial, see ``tracking``).

Ray's and Optuna's APIs stay in this module, in its reporters and in ``distributed``
(multi-worker trials on Ray Train).

Layout of a sweep run (a folder, or an object-store prefix: see ``storage``)::

    <storage>/<sweep name>/<YYYYmmdd-HHMMSS>/
        sweep.yaml        the resolved sweep file (profile and --set applied)
        search_spaces/    copies of the studies' search spaces
        state.json        MLflow experiment and parent runs, which studies are complete
        optuna.journal    the Optuna studies (one per method)
        <method>/         Tune's experiment folder: trials, checkpoints, results
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Mapping

import optuna
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from sweeplab import distributed, engine, storage, tracking
from sweeplab.loopback import LOOPBACK_ONLY
from sweeplab.spaces import fixed_values, to_optuna, upper_bound
from sweeplab.spec import Study, Sweep, load_sweep
from sweeplab.storage import JOURNAL_FILE, RESOLVED_FILE, SPACES_FOLDER, STATE_FILE, RunFolder

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "state.pt"


# ---------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------
@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, dashboard: bool = False) -> Iterator[None]:
    """Connect to a Ray cluster at ``address``, or start one inside this process.

    A local Ray is kept on loopback: with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    Ray does not swap 127.0.0.1 for the machine's network address, so nothing a
    local sweep starts listens on the network. Ray's token authentication stays
    as Ray configures it. ``dashboard``: start a local Ray's dashboard (on 127.0.0.1): Ray
    Train asks its state API whether a trial's Train run is gone, to free its workers' CPUs
    and GPUs when the scheduler stopped the trial.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    from ray._private import ray_constants

    # Tune snapshots the experiment (which trials finished, the searcher) at most this often;
    # its default (>= 10 s) means a sweep killed within 10 s of a trial's end reruns that trial's
    # last epochs on resume. A snapshot of a few hundred trials takes milliseconds.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    if address is None:
        if ray_constants.ENABLE_RAY_CLUSTER:  # read once, when ray is first imported
            raise RuntimeError(
                f"a local Ray would listen on this machine's network address: set {LOOPBACK_ONLY}=0 in the "
                "environment before ray is imported (sweeplab's command line does; in your own script call "
                "sweeplab.loopback.keep_local_ray_on_loopback() before importing ray), or pass an address"
            )
        with _dashboard_env(dashboard) as port:
            ray.init(num_cpus=num_cpus, include_dashboard=dashboard, dashboard_host="127.0.0.1",
                     dashboard_port=port, logging_level=logging.WARNING)
            try:
                yield
            finally:
                ray.shutdown()
        return
    ray.init(address=address, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def _dashboard_env(dashboard: bool) -> Iterator[int | None]:
    """A free loopback port for a local dashboard, named in ``RAY_API_SERVER_ADDRESS`` while
    Ray runs (Ray's processes inherit it): Ray Train's state-API client otherwise looks for
    "the" local Ray and gives up when the machine runs several."""
    if not dashboard:
        yield None
        return
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    name = "RAY_API_SERVER_ADDRESS"
    before = os.environ.get(name)
    os.environ[name] = f"http://127.0.0.1:{port}"
    try:
        yield port
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


# ---------------------------------------------------------------------------
# The trainable (runs in Ray workers)
# ---------------------------------------------------------------------------
class TuneReporter:
    """The engine's reporter inside a Tune trial: results and checkpoints go to Tune."""

    def load_checkpoint(self) -> dict | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)

    def report(self, metrics: dict, checkpoint: dict | None) -> None:
        if checkpoint is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(checkpoint, Path(folder) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def run_trial(config: dict) -> None:
    """Tune function trainable: one trial of a method study (on several Ray Train workers
    when its context says so, see ``sweeplab.distributed``)."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one "checkpoint created" line per epoch otherwise
    ctx = config[engine.CONTEXT_KEY]
    if ctx.get("distributed"):
        distributed.fit_trial(config)
        return
    context = tune.get_context()
    engine.train(config, TuneReporter(), trial_tracker(ctx, context.get_trial_id(), context.get_trial_name()))


def trial_tracker(ctx: Mapping[str, Any], trial_id: str, run_name: str) -> engine.TrialTracker:
    """The trial's MLflow child run (nothing when the sweep does not track)."""
    if not ctx.get("tracking"):
        return engine.NullTracker()
    t = ctx["tracking"]
    return tracking.MlflowTrialTracker(
        uri=t["uri"],
        experiment_id=t["experiment_id"],
        parent_run_id=t["parent_run_id"],
        trial_id=trial_id,
        run_name=run_name,
        tags=t["tags"],
        extra_params=context_params(ctx),
        where=where_tags(),
    )


def where_tags() -> dict:
    """The Ray node and host this process runs on, for the trial's MLflow run (on a cluster, which
    node ran which trial; several nodes may share a host)."""
    import socket

    import ray

    return {tracking.TAG_NODE: ray.get_runtime_context().get_node_id(), tracking.TAG_HOST: socket.gethostname()}


def context_params(ctx: Mapping[str, Any]) -> dict:
    """The trial context a trial's MLflow run records beside its hyperparameters."""
    params = {"dataset": ctx["dataset"], "model": ctx["model"], "seed": ctx["seed"]}
    if ctx.get("distributed"):  # data-parallel workers (batch_size is the global batch)
        params["workers"] = ctx["distributed"]["workers"]
    return params


def trial_params(config: Mapping[str, Any]) -> dict:
    """What a trial's MLflow run records as params: its hyperparameters, dataset, model and seed."""
    hp, ctx = engine.split_config(config)
    return {**hp, **context_params(ctx)}


def stopped_early(result: Mapping[str, Any], planned_epochs: int) -> bool:
    """Whether a trial's last result is short of its planned epochs (a scheduler stopped it,
    or it diverged): its objective is not comparable with finished trials'."""
    if result.get("diverged"):
        return True
    return "epoch" in result and int(result["epoch"]) < planned_epochs


def trial_stopped_early(trial) -> bool:
    return stopped_early(trial.last_result or {}, engine.planned_epochs(trial.config))


class PrunedAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about trials that did not run to the end.

    Stock OptunaSearch tells Optuna that a trial the scheduler stopped early is COMPLETE with
    its truncated value, which biases TPE towards whatever looks good at the first rung. Here
    such a trial (and a diverged one) is told as PRUNED: Optuna keeps its intermediate values
    (one per epoch) and ranks it below every completed trial.

    On restore, Optuna trials left RUNNING in the study's storage by a killed driver that no
    restored Tune trial will continue are marked FAIL, so the study holds no phantom trials.
    """

    def __init__(self, *args, fixed_epochs: int, run_location: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fixed_epochs = fixed_epochs  # epochs of a trial whose space does not search them
        # The run (folder or object-store URI). A restored searcher reopens the journal of that run on
        # the machine that resumes it (an object-store run is resumed from a local copy of its files),
        # and in an object store the journal is uploaded with each snapshot of the searcher (``save``).
        self.run_location = run_location

    def _journal_file(self) -> Path | None:
        backend = getattr(self._storage, "_backend", None)
        path = getattr(backend, "_file_path", None)
        return Path(path) if path else None

    def save(self, checkpoint_path: str):
        """Tune's snapshot of the searcher. For a run in an object store the study's journal is
        uploaded first (Tune uploads the snapshot after this returns), so the store never holds a
        searcher that knows trials its journal lacks."""
        location, journal = getattr(self, "run_location", None), self._journal_file()
        if location and storage.is_uri(location) and journal is not None and journal.is_file():
            try:
                storage.upload_file(journal, storage.join(location, JOURNAL_FILE))
            except OSError as exc:  # a resume then drops the trials the stored journal lacks
                log.warning("could not upload the Optuna journal to %s: %s", location, exc)
        super().save(checkpoint_path)

    def on_trial_complete(self, trial_id, result=None, error=False):
        ot_trial = self._ot_trials.get(trial_id)
        if error or not result or trial_id in self._completed_trials or ot_trial is None:
            return super().on_trial_complete(trial_id, result, error)
        if not stopped_early(result, int(ot_trial.params.get("epochs", self.fixed_epochs))):
            return super().on_trial_complete(trial_id, result, error)
        try:
            value = None if isinstance(self.metric, list) else result.get(self.metric)
            if value is not None and math.isfinite(value) and "epoch" in result:
                ot_trial.report(value, int(result["epoch"]))  # the last value, which Tune does not pass on
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
        except Exception as exc:  # noqa: BLE001 - e.g. told already before a restore
            log.warning("Optuna: could not mark trial %s pruned: %s", trial_id, exc)
        self._completed_trials.add(trial_id)

    def on_trial_result(self, trial_id, result):
        if trial_id not in self._completed_trials:  # see restore: told already, Tune reruns its tail
            super().on_trial_result(trial_id, result)

    def restore(self, checkpoint_path: str):
        """The pickled searcher can lag behind the study's storage (the driver was killed between
        Tune's snapshots): trials the storage has finished stay finished, and trials only the
        storage knows (asked after the snapshot, never to be run) are marked FAIL."""
        super().restore(checkpoint_path)
        if getattr(self, "run_location", None):
            self.reopen_journal(str(RunFolder.at(self.run_location).local / JOURNAL_FILE))
        self.sync_with_storage()

    def reopen_journal(self, path: str) -> None:
        """Point the study at the journal file ``path``. A trial the pickled searcher asked for
        that the journal does not hold (the journal was uploaded before the searcher's last
        snapshot) is dropped from the study, with a warning; its Tune trial still runs."""
        self._storage = JournalStorage(JournalFileBackend(path))
        name, sampler = self._ot_study.study_name, self._ot_study.sampler
        try:
            self._ot_study = optuna.load_study(study_name=name, storage=self._storage, sampler=sampler)
        except KeyError:  # the journal lost the whole study: start it again, without the old trials
            log.warning("Optuna: study %s is not in %s: it starts again (earlier trials are not in it)", name, path)
            self._ot_study = optuna.create_study(study_name=name, storage=self._storage, sampler=sampler,
                                                 directions=self._ot_study.directions)
        for trial_id, old in list(self._ot_trials.items()):
            try:
                self._ot_trials[trial_id] = optuna.Trial(self._ot_study, old._trial_id)
            except KeyError:
                log.warning("Optuna: trial %s is not in %s (asked after its last upload): left out of the study",
                            trial_id, path)
                del self._ot_trials[trial_id]
                self._completed_trials.add(trial_id)

    def sync_with_storage(self) -> None:
        running = optuna.trial.TrialState.RUNNING
        stored = {t.number: t.state for t in self._ot_study.get_trials(deepcopy=False)}
        for trial_id, ot_trial in self._ot_trials.items():
            if stored.get(ot_trial.number, running) != running:
                self._completed_trials.add(trial_id)
        live = {t.number for tid, t in self._ot_trials.items() if tid not in self._completed_trials}
        for number, state in stored.items():
            if state == running and number not in live:
                self._ot_study.tell(number, state=optuna.trial.TrialState.FAIL)


def make_searcher(study: Study, sweep: Sweep, folder: RunFolder, index: int) -> PrunedAwareOptunaSearch:
    """OptunaSearch over the study's space, its study stored in the run's journal (in the run
    folder, or the local copy of an object-store run: ``optuna-dashboard <it>/optuna.journal``
    shows it live)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = sweep.seed + index
    sampler = make_sampler(sweep.search.sampler, seed, sweep.search.n_startup_trials, sweep.search.max_concurrent > 1)
    return PrunedAwareOptunaSearch(
        space=to_optuna(study.space),
        metric=study.metric,
        mode=study.mode,
        sampler=sampler,
        seed=seed,
        study_name=f"{sweep.name}.{study.method}",
        storage=JournalStorage(JournalFileBackend(str(folder.local / JOURNAL_FILE))),
        run_location=folder.location,
        fixed_epochs=engine.planned_epochs({**fixed_values(study.space), engine.CONTEXT_KEY: {"method": study.method}}),
    )


def make_sampler(name: str, seed: int, n_startup_trials: int | None, concurrent: bool):
    """The Optuna sampler a sweep file names; TPE lies constantly about running trials when
    several run at once, so concurrent trials do not all sample the same region."""
    import optuna.samplers as s

    startup = {} if n_startup_trials is None else {"n_startup_trials": n_startup_trials}
    if name == "tpe":
        return s.TPESampler(seed=seed, constant_liar=concurrent, **startup)
    if name == "random":
        return s.RandomSampler(seed=seed)
    if name == "cmaes":
        return s.CmaEsSampler(seed=seed, **startup)
    if name == "gp":
        return s.GPSampler(seed=seed, **startup)
    if name == "nsga2":
        return s.NSGAIISampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}")


def make_scheduler(sweep: Sweep, metric: str, mode: str, max_t: int):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule

    cfg = sweep.scheduler
    if cfg.name == "asha":
        return ASHAScheduler(
            time_attr="epoch", metric=metric, mode=mode, max_t=max_t,
            grace_period=min(cfg.grace_period, max_t), reduction_factor=cfg.reduction_factor,
        )
    if cfg.name == "hyperband":
        return HyperBandScheduler(time_attr="epoch", metric=metric, mode=mode, max_t=max_t,
                                  reduction_factor=cfg.reduction_factor)
    if cfg.name == "median":
        return MedianStoppingRule(time_attr="epoch", metric=metric, mode=mode, grace_period=cfg.grace_period)
    if cfg.name == "fifo":
        return FIFOScheduler()
    raise ValueError(f"unknown scheduler {cfg.name!r}")


# ---------------------------------------------------------------------------
# Driver-side callbacks
# ---------------------------------------------------------------------------
class TrialNamer:
    """Trial names ``<method>_<trial id>`` (picklable, for restore)."""

    def __init__(self, method: str):
        self.method = method

    def __call__(self, trial) -> str:
        return f"{self.method}_{trial.trial_id}"


def objectives(study: Study) -> list[tuple[str, str]]:
    """Every (metric, mode) of a study: one, or several for a multi-objective search."""
    if isinstance(study.metric, list):
        return list(zip(study.metric, study.mode))
    return [(study.metric, study.mode)]


def _primary(metric):
    return metric[0] if isinstance(metric, list) else metric


class TrialEndRecorder(tune.Callback):
    """Records in MLflow the end of trials that cannot record it themselves: stopped early
    by the scheduler (pruned) or failed for good (with the error text)."""

    def __init__(self, track: Mapping[str, Any], method: str):
        self.track = dict(track)
        self.method = method

    def _record(self, trial, status: str, error: str | None = None) -> None:
        tracking.record_trial_end(
            self.track["uri"], self.track["experiment_id"], self.track["parent_run_id"], trial.trial_id,
            status, error=error, run_name=f"{self.method}_{trial.trial_id}", tags=self.track["tags"],
            params=trial_params(trial.config),
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        if result.get("diverged"):
            return  # recorded by the trial itself
        # "finished" is recorded by the trial too; recording it here covers a trial whose worker
        # could not (it is skipped when the run already says finished)
        self._record(trial, "pruned" if trial_stopped_early(trial) else "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(trial, "failed", error=trial_error_text(trial))


def upload(folder: RunFolder, *names: str) -> None:
    """Upload driver files of an object-store run; an unreachable store is a warning, not the end
    of the sweep (the next upload carries the files; trials write to the store themselves)."""
    try:
        folder.push(*names)
    except OSError as exc:
        log.warning("could not upload %s to %s (%s); the newest copy is in %s", ", ".join(names),
                    folder.location, exc, folder.local)


def trial_error_text(trial) -> str:
    path = getattr(trial, "error_file", None)
    if path and os.path.exists(path):
        return Path(path).read_text()[-tracking.MAX_TAG_CHARS:]
    try:
        return repr(trial.get_error())
    except Exception:  # noqa: BLE001
        return "trial failed (no error text available)"


class ProgressPrinter(tune.Callback):
    """One line per trial event, on the driver."""

    def __init__(self, method: str, metric: str, num_samples: int, planned: int):
        self.method, self.metric, self.num_samples, self.planned = method, metric, num_samples, planned
        self.started = time.monotonic()

    def setup(self, **info):
        self.started = time.monotonic()  # also after a restore, which unpickles this callback

    def _say(self, text: str) -> None:
        print(f"[{self.method} {time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(_hp(trial.config).items()))
        self._say(f"trial {trial.trial_id} started: {params}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("diverged"):
            return
        value = result.get(self.metric)
        self._say(f"trial {trial.trial_id} epoch {result.get('epoch')}: {self.metric}={_short(value)}"
                  f" train/loss={_short(result.get('train/loss'))}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        if result.get("diverged"):
            status = f"diverged at epoch {result.get('epoch')}"
        elif trial_stopped_early(trial):
            status = f"stopped early at epoch {result.get('epoch')} (pruned)"
        else:
            status = "finished"
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial) + 1
        self._say(f"trial {trial.trial_id} {status} [{done}/{self.num_samples} done]")

    def on_trial_error(self, iteration, trials, trial, **info):
        first_line = trial_error_text(trial).strip().splitlines()[-1:] or ["?"]
        self._say(f"trial {trial.trial_id} FAILED: {first_line[0]}")


def _hp(config: Mapping[str, Any]) -> dict:
    flat, _ = engine.split_config(config)
    return flat


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------
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


@dataclass
class SweepState:
    """What ``sweeplab resume`` needs beyond Tune's own experiment folders."""

    sweep: str
    tracking_uri: str
    experiment_id: str
    commit: str | None
    created: str
    studies: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: Path) -> "SweepState":
        return cls(**json.loads((run_dir / STATE_FILE).read_text()))

    def save(self, run_dir: Path) -> None:
        tmp = run_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, default=str))
        tmp.replace(run_dir / STATE_FILE)


def summarize(analysis, study: Study, parent_run_id: str, track: Mapping[str, Any] | None) -> StudyResult:
    """The study's outcome from Tune's persisted experiment (``tune.ExperimentAnalysis``, what a
    resume acts on): a trial running when the sweep was interrupted is unfinished, not pruned."""
    metric, mode = _primary(study.metric), _primary(study.mode)
    out = StudyResult(study.method, metric, mode, study.num_samples, parent_run_id=parent_run_id)
    best_value = None
    for trial in analysis.trials:
        config, last = trial.config, trial.last_result or {}
        out.trials += 1
        if trial.status == "ERROR":
            out.failed += 1
            continue
        if trial.status != "TERMINATED" or "epoch" not in last:  # pending, running or paused
            out.unfinished += 1
            continue
        if last.get("diverged"):
            out.diverged += 1
            continue
        if stopped_early(last, engine.planned_epochs(config)):
            out.pruned += 1
        else:
            out.finished += 1
        history = analysis.trial_dataframes.get(trial.trial_id)
        if history is None or metric not in history:
            continue
        values = history[metric].dropna()
        if values.empty:
            continue
        value = float(values.max() if mode == "max" else values.min())
        if engine.is_better(value, best_value, mode):
            best_value = value
            out.best = {
                "trial_id": trial.trial_id,
                "value": value,
                "config": _hp(config),
                "metrics": {k: v for k, v in last.items() if "/" in k and isinstance(v, (int, float))},
            }
    if out.best and track:
        run = tracking.find_trial_run(track["uri"], track["experiment_id"], parent_run_id, out.best["trial_id"])
        out.best["run_id"] = run.info.run_id if run else None
    out.complete = out.unfinished == 0 and (out.finished + out.pruned + out.diverged + out.failed) >= study.num_samples
    return out


# ---------------------------------------------------------------------------
# Sweeps
# ---------------------------------------------------------------------------
def write_resolved(sweep: Sweep, run_dir: Path) -> None:
    """Save the resolved sweep file in the run folder with copies of its search spaces, so a
    resume runs exactly what was started even if the files in the repository change."""
    import yaml

    doc = copy.deepcopy(sweep.document)
    (run_dir / SPACES_FOLDER).mkdir()
    for study in sweep.studies:
        copied = run_dir / SPACES_FOLDER / f"{study.method}.yaml"
        shutil.copyfile(study.space_file, copied)
        doc["methods"][study.method]["search_space"] = str(copied.relative_to(run_dir))
    (run_dir / RESOLVED_FILE).write_text(yaml.safe_dump(doc, sort_keys=False))


def run_sweep(sweep: Sweep, address: str | None = None, num_cpus: int | None = None) -> tuple[RunFolder, list[StudyResult]]:
    """Start a new run of ``sweep``; returns its run folder and one result per method study."""
    uri = tracking.resolve_tracking_uri(sweep.tracking.uri)
    experiment_id = tracking.ensure_experiment(uri, sweep.tracking.experiment or sweep.name)  # before any folder
    folder = storage.new_run_folder(sweep.storage.path, sweep.name)
    with exclusive(folder.lock_path):
        return folder, _start(sweep, folder, uri, experiment_id, address, num_cpus)


def _start(sweep: Sweep, folder: RunFolder, uri: str, experiment_id: str, address, num_cpus) -> list[StudyResult]:
    write_resolved(sweep, folder.local)
    state = SweepState(
        sweep=sweep.name,
        tracking_uri=uri,
        experiment_id=experiment_id,
        commit=tracking.git_commit(Path(sweep.file).parent),
        created=datetime.now().isoformat(timespec="seconds"),
    )
    state.save(folder.local)
    folder.push()
    print(f"sweep {sweep.name}: run folder {folder.location}", flush=True)
    if address is not None and uri.startswith("sqlite:"):
        print(f"warning: with --address, trials on other nodes write to {uri} on their own node unless that "
              "path is on a shared filesystem; a tracking server (tracking.uri: http://...) is the cluster "
              "set-up", flush=True)
    return _run_studies(sweep, folder, state, address, num_cpus, restore=False)


def resume_sweep(
    run: RunFolder | Path | str, address: str | None = None, num_cpus: int | None = None, retry_errored: bool = False
) -> tuple[Sweep, list[StudyResult]]:
    """Continue an interrupted sweep run: complete studies are kept, the others restored from
    Tune's experiment folder (unfinished trials continue from their checkpoints)."""
    folder = run if isinstance(run, RunFolder) else storage.find_run(str(run))
    with exclusive(folder.lock_path):
        folder.pull()  # an object-store run: its driver files, into this machine's local copy
        sweep = load_sweep(folder.local / RESOLVED_FILE)
        state = SweepState.load(folder.local)
        print(f"resuming sweep {sweep.name} from {folder.location}", flush=True)
        return sweep, _run_studies(sweep, folder, state, address, num_cpus, restore=True,
                                   retry_errored=retry_errored)


class ResourcesUnavailable(ValueError):
    """A trial asks for more than the (local) cluster has."""


def check_resources(sweep: Sweep, address_given: bool) -> None:
    """A trial that asks for more than the cluster has would wait forever: say so instead.
    (On a cluster that can grow, nodes may still come: only a local Ray is checked.)"""
    import ray

    if address_given:
        return
    have = ray.cluster_resources()
    res = sweep.resources
    for key, each in (("CPU", res.cpus), ("GPU", res.gpus)):
        want = each * res.workers
        if want > have.get(key, 0):
            asks = f"{want:g} {key}(s)" if res.workers == 1 else f"{res.workers} workers x {each:g} {key}(s)"
            raise ResourcesUnavailable(
                f"{sweep.file}: resources.{key.lower()}s{'' if res.workers == 1 else '_per_worker'}: each trial "
                f"asks for {asks} but this machine's Ray has {have.get(key, 0):g}; lower it or run on a cluster "
                "(--address)"
            )


class RunInUse(RuntimeError):
    """Another sweeplab process is running this sweep run."""


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold a run's lock (``RunFolder.lock_path``): two processes driving one sweep run on a machine
    (a resume started while the sweep still shuts down) would tell Optuna and MLflow everything twice."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            raise RunInUse(f"this sweep run is in use by another sweeplab process on this machine (pid {holder}, "
                           f"lock {lock_path}); wait for it to end or stop it, then resume") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def _run_studies(sweep, folder: RunFolder, state, address, num_cpus, restore, retry_errored=False) -> list[StudyResult]:
    results = []
    with ray_session(address, num_cpus, dashboard=distributed.is_distributed(sweep.resources)):
        check_resources(sweep, address_given=address is not None)
        for index, study in enumerate(sweep.studies):
            saved = state.studies.get(study.method, {})
            if saved.get("complete"):
                print(f"[{study.method}] complete already: not rerun", flush=True)
                results.append(StudyResult(**saved["result"]))
                continue
            result = _run_study(sweep, study, index, folder, state, restore, retry_errored, address)
            results.append(result)
            if not result.complete:  # interrupted (Ctrl-C): the remaining studies wait for resume
                waiting = [s.method for s in sweep.studies[index + 1:]]
                if waiting:
                    print(f"[{study.method}] interrupted; not started: {', '.join(waiting)}", flush=True)
                break
    return results


def _study_tracking(sweep: Sweep, study: Study, state: SweepState, folder: RunFolder) -> dict:
    saved = state.studies.setdefault(study.method, {})
    dataset_name = sweep.dataset["name"]
    tags = tracking.base_tags(sweep.name, study.method, dataset_name, state.commit)
    tags["sweeplab.run_dir"] = folder.location
    parent = tracking.start_study_run(
        state.tracking_uri, state.experiment_id, study.method, tags, folder.local / RESOLVED_FILE,
        run_id=saved.get("parent_run_id"),
    )
    saved["parent_run_id"] = parent
    state.save(folder.local)
    upload(folder, STATE_FILE)
    return {"uri": state.tracking_uri, "experiment_id": state.experiment_id, "parent_run_id": parent, "tags": tags}


def _concurrent_trials(sweep: Sweep, study: Study, address: str | None) -> int:
    """``search.max_concurrent``, or fewer for multi-worker trials on a local Ray: their trial
    reserves next to nothing, so Tune would start trials whose workers then wait for CPUs."""
    wanted = sweep.search.max_concurrent
    if address is not None or not distributed.is_distributed(sweep.resources):
        return wanted
    import ray

    fits = distributed.trials_that_fit(sweep.resources, ray.cluster_resources())
    if fits < wanted:
        print(f"[{study.method}] {fits} multi-worker trial(s) at a time: that is what this machine's Ray "
              f"holds (search.max_concurrent: {wanted})", flush=True)
    return min(wanted, fits)


@contextmanager
def _snapshot_period(seconds: int | None) -> Iterator[None]:
    """Tune snapshots its experiment state (and the searcher, with its journal) every
    ``TUNE_GLOBAL_CHECKPOINT_S`` and uploads each snapshot to an object store at once (and when
    a trial's old checkpoints are deleted). For a run in an object store that period is
    ``storage.sync_period``: what a driver killed without warning may lose."""
    name = "TUNE_GLOBAL_CHECKPOINT_S"
    before = os.environ.get(name)
    if seconds is not None:
        os.environ[name] = str(seconds)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _run_study(sweep, study, index, folder: RunFolder, state, restore, retry_errored, address=None) -> StudyResult:
    track = _study_tracking(sweep, study, state, folder)
    metric, mode = _primary(study.metric), _primary(study.mode)
    epochs_param = study.space.get("epochs")
    max_t = int(upper_bound(epochs_param)) if epochs_param else engine.planned_epochs({engine.CONTEXT_KEY: {"method": study.method}})
    trainable = tune.with_resources(run_trial, distributed.trial_resources(sweep.resources))
    exp_dir = folder.tune_path(study.method)

    if restore and tune.Tuner.can_restore(exp_dir):
        print(f"[{study.method}] restoring from {exp_dir}", flush=True)
        tuner = tune.Tuner.restore(
            exp_dir, trainable=trainable, resume_unfinished=True,
            resume_errored=retry_errored, restart_errored=False,
        )
    else:
        context = {
            "method": study.method,
            "dataset": sweep.dataset,
            "model": sweep.model.model_dump(mode="json"),
            "seed": sweep.seed,
            "metric": metric,
            "mode": mode,
            "threads": max(1, int(sweep.resources.cpus)),
            "gpus": sweep.resources.gpus,
            "objectives": [list(pair) for pair in objectives(study)],
            "tracking": track,
        }
        if distributed.is_distributed(sweep.resources):  # per-worker cpus/gpus (threads, gpus above)
            context["distributed"] = distributed.trial_context(
                sweep.resources, folder.tune_path(distributed.TRAIN_FOLDER), sweep.checkpoint.keep)
        searcher = make_searcher(study, sweep, folder, index) if to_optuna(study.space) else None
        if searcher is not None and restore:  # killed before Tune saved anything: drop what it asked
            searcher.sync_with_storage()
        searched = f"{sweep.search.sampler} sampler" if searcher is not None else "nothing searched (all fixed)"
        print(f"[{study.method}] {study.num_samples} trials, {searched}, "
              f"{sweep.scheduler.name} scheduler, objective {metric} ({mode})", flush=True)
        tuner = tune.Tuner(
            trainable,
            param_space={**fixed_values(study.space), engine.CONTEXT_KEY: context},
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=make_scheduler(sweep, metric, mode, max_t),
                num_samples=study.num_samples,
                max_concurrent_trials=_concurrent_trials(sweep, study, address),
                # a multi-worker trial's actor waits in TorchTrainer.fit(): Tune cannot reuse it, and
                # ends it when it stops the trial (Ray Train then frees that trial's workers)
                reuse_actors=not distributed.is_distributed(sweep.resources),
                trial_name_creator=TrialNamer(study.method),
                trial_dirname_creator=TrialNamer(study.method),
            ),
            run_config=tune.RunConfig(
                name=study.method,
                storage_path=folder.tune_path(),
                failure_config=tune.FailureConfig(max_failures=sweep.failure.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=sweep.checkpoint.keep),
                callbacks=[
                    ProgressPrinter(study.method, metric, study.num_samples, max_t),
                    TrialEndRecorder(track, study.method),
                ],
                verbose=0,
            ),
        )
    try:
        with _snapshot_period(sweep.storage.sync_period if folder.remote else None):
            tuner.fit()
    except BaseException as exc:  # the driver failed: no trial of this study may stay RUNNING in MLflow
        tracking.close_lost_runs(track["uri"], track["experiment_id"], track["parent_run_id"], set(),
                                 status="failed", error=f"the sweep's driver failed: {type(exc).__name__}: {exc}")
        tracking.finish_study_run(track["uri"], track["parent_run_id"], None, complete=False)
        raise
    finally:
        upload(folder, JOURNAL_FILE, STATE_FILE)
    analysis = tune.ExperimentAnalysis(exp_dir)
    result = summarize(analysis, study, track["parent_run_id"], track)
    if restore:
        trial_ids = {t.trial_id for t in analysis.trials}
        for lost in tracking.close_lost_runs(track["uri"], track["experiment_id"], track["parent_run_id"], trial_ids):
            print(f"[{study.method}] trial {lost} was lost when the sweep was interrupted (recorded as lost)")
    tracking.finish_study_run(track["uri"], track["parent_run_id"], result.best, result.complete)
    state.studies[study.method].update({"complete": result.complete, "result": result.as_dict()})
    state.save(folder.local)
    upload(folder, JOURNAL_FILE, STATE_FILE)
    return result


# ---------------------------------------------------------------------------
# Summary table
# ---------------------------------------------------------------------------
def format_summary(results: list[StudyResult], uri: str) -> str:
    rows = [("method", "trials/budget (finished/pruned/diverged/failed)", "objective", "best", "best/test", "MLflow run", "config")]
    for r in results:
        best = r.best or {}
        split_metric = r.metric.split("/", 1)[-1]
        test = best.get("metrics", {}).get(f"best/test/{split_metric}")
        config = ", ".join(f"{k}={_short(v)}" for k, v in sorted(best.get("config", {}).items()))
        rows.append((
            r.method + ("" if r.complete else " (incomplete)"),
            f"{r.trials}/{r.num_samples} ({r.finished}/{r.pruned}/{r.diverged}/{r.failed})",
            f"{r.metric} ({r.mode})",
            _short(best.get("value")) if best else "-",
            _short(test) if test is not None else "-",
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
    lines.append(f"Open the results:  {tracking.ui_command(uri)}")
    return "\n".join(lines)
