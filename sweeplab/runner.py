"""The sweep lifecycle: start or resume a run of a validated sweep, one Ray Tune ``Tuner`` per
method study, one after another.

Each study gets a searcher (``sweeplab.searcher``: Optuna through Tune, its study in the
run's journal), a scheduler (``sweeplab.search``: ASHA by default), MLflow records (a
parent run per study, a child run per trial, ``sweeplab.tracking``) and the driver's
callbacks (``sweeplab.callbacks``); its trials run ``sweeplab.trainable.run_trial``.
What the trials came to is decided in ``sweeplab.results``.

Layout of a sweep run (a folder, or an object-store prefix: see ``storage``)::

    <storage>/<sweep name>/<YYYYmmdd-HHMMSS>/
        sweep.yaml        the resolved sweep file (profile and --set applied)
        search_spaces/    copies of the studies' search spaces
        state.json        MLflow experiment and parent runs, which studies are complete
        optuna.journal    the Optuna studies (one per method)
        <method>/         Tune's experiment folder: trials, checkpoints, results
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from ray import tune

from sweeplab import distributed, storage, tracking
from sweeplab.callbacks import ProgressPrinter, TrialEndRecorder, TrialNamer
from sweeplab.context import TrackingContext, TrialContext
from sweeplab.ray_session import check_resources, environment, ray_session
from sweeplab.checkpoints import (checkpoint_retention, keep_only_weights_of, quiet_forced_snapshot_warnings,
                                  restore_named_checkpoints)
from sweeplab.objective import SELECTION, objective_metric
from sweeplab.results import StudyResult, objectives, outcome_of, planned_epochs, primary, study_note, summarize
from sweeplab.search import make_scheduler
from sweeplab.searcher import PrunedAwareOptunaSearch, make_searcher
from sweeplab.spaces import fixed_values, to_optuna, upper_bound
from sweeplab.spec import Study, Sweep, load_sweep
from sweeplab.state import SweepState, write_resolved
from sweeplab.storage import JOURNAL_FILE, RESOLVED_FILE, STATE_FILE, RunFolder, exclusive
from sweeplab.trainable import run_trial

# Runs started before the runner was split hold pickles (Tune's searcher and callbacks) that name
# these classes as ``sweeplab.runner.<name>``: importing them here keeps those runs resumable.
PICKLED_HERE_BEFORE = (PrunedAwareOptunaSearch, ProgressPrinter, TrialEndRecorder, TrialNamer)

log = logging.getLogger(__name__)


def run_sweep(sweep: Sweep, address: str | None = None, num_cpus: int | None = None) -> tuple[RunFolder, list[StudyResult]]:
    """Start a new run of ``sweep``; returns its run folder and one result per method study."""
    uri = tracking.resolve_tracking_uri(sweep.tracking.uri)
    with ThreadPoolExecutor(1, thread_name_prefix="sweeplab-mlflow") as pool:
        # MLflow's store (a new SQLite file gets its schema first: seconds) gets ready while Ray starts
        experiment = pool.submit(tracking.ensure_experiment, uri, sweep.tracking.experiment or sweep.name)
        with _ray_session(sweep, address, num_cpus):  # _run_studies runs on this Ray
            experiment_id = experiment.result()  # before any folder
            folder = storage.new_run_folder(sweep.storage.path, sweep.name)
            with exclusive(folder.lock_path):
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
                    print(f"warning: with --address, trials on other nodes write to {uri} on their own node unless "
                          "that path is on a shared filesystem; a tracking server (tracking.uri: http://...) is the "
                          "cluster set-up", flush=True)
                return folder, _run_studies(sweep, folder, state, address, num_cpus, restore=False)


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


def _run_studies(sweep, folder: RunFolder, state, address, num_cpus, restore, retry_errored=False) -> list[StudyResult]:
    results = []
    with _ray_session(sweep, address, num_cpus):
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


def _run_study(sweep, study, index, folder: RunFolder, state, restore, retry_errored, address=None) -> StudyResult:
    track = _study_tracking(sweep, study, state, folder)
    trainable = tune.with_resources(run_trial, distributed.trial_resources(sweep.resources))
    exp_dir = folder.tune_path(study.method)
    if restore and tune.Tuner.can_restore(exp_dir):
        print(f"[{study.method}] restoring from {exp_dir}", flush=True)
        quiet_forced_snapshot_warnings()
        for trial_id in restore_named_checkpoints(exp_dir):
            print(f"[{study.method}] trial {trial_id}: its checkpoint in Tune's last snapshot was deleted after "
                  "it; resuming from the newer one", flush=True)
        tuner = tune.Tuner.restore(exp_dir, trainable=trainable, resume_unfinished=True,
                                   resume_errored=retry_errored, restart_errored=False)
    else:
        tuner = _new_tuner(sweep, study, index, folder, track, trainable, restore, address)
    try:
        # for a run in an object store, Tune's snapshot period (and upload) is storage.sync_period
        with environment("TUNE_GLOBAL_CHECKPOINT_S", str(sweep.storage.sync_period) if folder.remote else None):
            tuner.fit()
    except BaseException as exc:  # the driver failed: no trial of this study may stay RUNNING in MLflow
        tracking.close_lost_runs(track.uri, track.experiment_id, track.parent_run_id, set(),
                                 status="failed", error=f"the sweep's driver failed: {type(exc).__name__}: {exc}")
        tracking.finish_study_run(track.uri, track.parent_run_id, None, complete=False)
        raise
    finally:
        upload(folder, JOURNAL_FILE, STATE_FILE)
    analysis = tune.ExperimentAnalysis(exp_dir)
    result = summarize(analysis, study, track.parent_run_id, lambda trial_id: tracking.find_trial_run(
        track.uri, track.experiment_id, track.parent_run_id, trial_id))
    # a trial the scheduler stopped is never resumed (Tune's last snapshot, written by now, says it ended):
    # its checkpoint keeps the weights and loses the optimizer's state (for Adam, twice the weights)
    keep_only_weights_of([t.checkpoint for t in analysis.trials if t.checkpoint and outcome_of(t) == "pruned"])
    if restore:
        trial_ids = {t.trial_id for t in analysis.trials}
        for lost in tracking.close_lost_runs(track.uri, track.experiment_id, track.parent_run_id, trial_ids):
            print(f"[{study.method}] trial {lost} was lost when the sweep was interrupted (recorded as lost)")
    tracking.finish_study_run(track.uri, track.parent_run_id, result.best, result.complete,
                              note=study_note(sweep, result))
    state.studies[study.method].update({"complete": result.complete, "result": result.as_dict()})
    state.save(folder.local)
    upload(folder, JOURNAL_FILE, STATE_FILE)
    return result


def _new_tuner(sweep: Sweep, study: Study, index: int, folder: RunFolder, track: TrackingContext, trainable,
               restore: bool, address: str | None) -> tune.Tuner:
    metric, mode = primary(study.metric), primary(study.mode)
    epochs = study.space.get("epochs")
    max_t = int(upper_bound(epochs)) if epochs else planned_epochs({}, study.method)
    multi_worker = distributed.is_distributed(sweep.resources)
    context = TrialContext(
        method=study.method, dataset=sweep.dataset, model=sweep.model.model_dump(mode="json"), seed=sweep.seed,
        metric=metric, mode=mode, threads=max(1, int(sweep.resources.cpus)), gpus=sweep.resources.gpus,
        precision=sweep.precision_of(study.method), objectives=tuple(objectives(study)), tracking=track,
        distributed=distributed.trial_context(sweep.resources, folder.tune_path(distributed.TRAIN_FOLDER),
                                              sweep.checkpoint.kept) if multi_worker else None,
    )
    searcher = make_searcher(study, sweep, folder, index, track) if to_optuna(study.space) else None
    if searcher is not None and restore:  # killed before Tune saved anything: drop what it asked
        searcher.sync_with_storage()
    searched = f"{sweep.search.sampler} sampler" if searcher is not None else "nothing searched (all fixed)"
    print(f"[{study.method}] {study.num_samples} trials, {searched}, "
          f"{sweep.scheduler.name} scheduler, objective {metric} ({mode}, {SELECTION})", flush=True)
    return tune.Tuner(
        trainable,
        param_space=context.to_config(fixed_values(study.space)),
        tune_config=tune.TuneConfig(
            # the experiment's default metric (ResultGrid, ExperimentAnalysis): the trial's objective
            # (``sweeplab.objective``), which the scheduler follows too (it takes the metric from here)
            metric=objective_metric(metric),
            mode=mode,
            search_alg=searcher,
            scheduler=make_scheduler(sweep.scheduler, None, None, max_t),
            num_samples=study.num_samples,
            max_concurrent_trials=_concurrent_trials(sweep, study, address),
            # a multi-worker trial's actor waits in TorchTrainer.fit(): Tune cannot reuse it, and
            # ends it when it stops the trial (Ray Train then frees that trial's workers)
            reuse_actors=not multi_worker,
            trial_name_creator=TrialNamer(study.method),
            trial_dirname_creator=TrialNamer(study.method),
        ),
        run_config=tune.RunConfig(
            name=study.method,
            storage_path=folder.tune_path(),
            failure_config=tune.FailureConfig(max_failures=sweep.failure.max_failures),
            checkpoint_config=tune.CheckpointConfig(**checkpoint_retention(sweep.checkpoint.kept)),
            callbacks=[ProgressPrinter(study.method, metric, study.num_samples, max_t),
                       TrialEndRecorder(track, study.method)],
            verbose=0,
        ),
    )


def _ray_session(sweep: Sweep, address: str | None, num_cpus: int | None):
    """The sweep's Ray (``ray_session``; one already running is kept)."""
    return ray_session(address, num_cpus, dashboard=distributed.is_distributed(sweep.resources))


def _study_tracking(sweep: Sweep, study: Study, state: SweepState, folder: RunFolder) -> TrackingContext:
    """The study's parent run in MLflow (opened, or reopened on resume), as its trials see it."""
    saved = state.studies.setdefault(study.method, {})
    tags = tracking.base_tags(sweep.name, study.method, sweep.dataset["name"], state.commit)
    tags["sweeplab.run_dir"] = folder.location
    objective = {"sweeplab.objective": primary(study.metric), "sweeplab.mode": primary(study.mode),
                 "sweeplab.selection": SELECTION, "sweeplab.budget": str(study.num_samples)}
    parent = tracking.start_study_run(
        state.tracking_uri, state.experiment_id, study.method, {**tags, **objective}, folder.local / RESOLVED_FILE,
        run_id=saved.get("parent_run_id"),
    )
    saved["parent_run_id"] = parent
    state.save(folder.local)
    upload(folder, STATE_FILE)
    return TrackingContext(uri=state.tracking_uri, experiment_id=state.experiment_id, parent_run_id=parent, tags=tags)


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


def upload(folder: RunFolder, *names: str) -> None:
    """Upload driver files of an object-store run; an unreachable store is a warning, not the end
    of the sweep (the next upload carries the files; trials write to the store themselves)."""
    try:
        folder.push(*names)
    except OSError as exc:
        log.warning("could not upload %s to %s (%s); the newest copy is in %s", ", ".join(names),
                    folder.location, exc, folder.local)
