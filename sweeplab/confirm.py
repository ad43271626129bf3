"""Confirmation runs: each method's selected configurations re-run on new seeds, so a comparison
of methods rests on a distribution per method, not on the one lucky trial a search selects.

``sweeplab confirm RUN --seeds N --top K`` (or ``confirm: {seeds: N, top: K}`` in the sweep
file, run when the search ends) takes, per method study, its K best finished trials by the
objective (``sweeplab.objective``) and runs each again on N seeds, the same seeds for every
method so that the report can pair them (``dashboards.stats``). Each configuration is a Tune
experiment of its own, ``<run>/confirm/<method>-<rank>/``, run by the same engine and tracked
as child runs of the study's parent run, tagged ``sweeplab.role=confirm`` with the rank, the
seed and the trial it re-runs. All its trials run their full epochs (no scheduler, no
searcher). An interrupted confirmation continues when the same command is given again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ray import tune

from sweeplab import distributed, tracking
from sweeplab.callbacks import ProgressPrinter, TrialEndRecorder
from sweeplab.context import CONTEXT_KEY, TrialContext
from sweeplab.checkpoints import checkpoint_retention
from sweeplab.objective import objective_metric
from sweeplab.ray_session import check_resources, ray_session
from sweeplab.results import outcome_of, planned_epochs, primary, run_name_of, trial_objective
from sweeplab.spec import Study, Sweep, load_sweep
from sweeplab.state import SweepState
from sweeplab.storage import RESOLVED_FILE, STATE_FILE, RunFolder, exclusive
from sweeplab.trainable import run_trial

CONFIRM_FOLDER = "confirm"  # inside the run folder: one Tune experiment per (method, rank)
ROLE = "confirm"  # tag sweeplab.role of a confirmation trial's run (a study's parent run is "study")
TAG_ROLE = "sweeplab.role"
TAG_RANK = "sweeplab.confirm.rank"
TAG_SOURCE = "sweeplab.confirm.source_trial"  # the searched trial whose configuration it re-runs
TAG_SEED = "sweeplab.seed"


class ConfirmationError(Exception):
    """A confirmation that cannot run as asked (the message says why and what to do)."""


@dataclass(frozen=True)
class Candidate:
    """A configuration selected for confirmation: a searched trial, ranked by its objective."""

    method: str
    rank: int  # 1: the study's best
    trial_id: str
    run_name: str
    config: dict  # the trial's hyperparameters, as Tune holds them (nested)
    objective: float


def confirmation_seeds(sweep: Sweep, count: int) -> list[int]:
    """``count`` seeds the search did not use (it ran every trial on ``sweep.seed``), the same for
    every method so that each method's run on a seed pairs with the baseline's."""
    return [sweep.seed + 1 + i for i in range(count)]


def experiment_name(method: str, rank: int) -> str:
    return f"{method}-{rank}"


def select_candidates(analysis, study: Study, top: int) -> list[Candidate]:
    """The ``top`` finished trials of a study, best objective first (pruned trials stopped before
    their planned epochs: they are candidates only when no trial finished)."""
    metric, mode = primary(study.metric), primary(study.mode)
    ranked = {"finished": [], "pruned": []}
    for trial in analysis.trials:
        outcome = outcome_of(trial)
        if outcome not in ranked:
            continue
        value = trial_objective(trial.last_result, analysis.trial_dataframes.get(trial.trial_id), metric, mode)
        if value is not None:
            ranked[outcome].append((value, trial))
    pool = ranked["finished"] or ranked["pruned"]
    pool.sort(key=lambda pair: pair[0], reverse=mode == "max")
    return [Candidate(study.method, rank, trial.trial_id, run_name_of(study.method, trial),
                      {k: v for k, v in trial.config.items() if k != CONTEXT_KEY}, value)
            for rank, (value, trial) in enumerate(pool[:top], start=1)]


class ConfirmNamer:
    """Names of confirmation trials and their runs: ``<method>_c<rank>_s<seed>_<trial id>`` (picklable)."""

    def __init__(self, method: str, rank: int):
        self.method, self.rank = method, rank

    def __call__(self, trial) -> str:
        seed = TrialContext.from_config(trial.config).seed
        return f"{self.method}_c{self.rank}_s{seed}_{trial.trial_id}"


def confirm_run(run: RunFolder, seeds: int = 3, top: int = 1, address: str | None = None,
                num_cpus: int | None = None) -> Sweep:
    """Run (or continue) the confirmation of every method study of a finished sweep run."""
    with exclusive(run.lock_path):
        run.pull()
        sweep = load_sweep(run.local / RESOLVED_FILE)
        state = SweepState.load(run.local)
        wanted = {"seeds": confirmation_seeds(sweep, seeds), "top": top}
        planned = [s for s in sweep.studies if state.studies.get(s.method, {}).get("parent_run_id")]
        if not planned:
            raise ConfirmationError(f"{run.location}: no study of this run has started: nothing to confirm")
        for study in planned:
            before = state.studies[study.method].get("confirm")
            if before and (before["seeds"], before["top"]) != (wanted["seeds"], wanted["top"]):
                raise ConfirmationError(
                    f"{run.location}: {study.method} was confirmed with seeds {before['seeds']} and top "
                    f"{before['top']}; asked for seeds {wanted['seeds']} and top {top}. Give the same "
                    f"--seeds {len(before['seeds'])} --top {before['top']} to continue it")
        with ray_session(address, num_cpus, dashboard=distributed.is_distributed(sweep.resources)):
            check_resources(sweep, address_given=address is not None)
            for study in planned:
                _confirm_study(sweep, study, run, state, wanted["seeds"], top)
        return sweep


def _confirm_study(sweep: Sweep, study: Study, run: RunFolder, state: SweepState, seeds: list[int], top: int):
    saved = state.studies[study.method]
    analysis = tune.ExperimentAnalysis(run.tune_path(study.method))
    chosen = [Candidate(**c) for c in saved["confirm"]["candidates"]] if saved.get("confirm") else \
        select_candidates(analysis, study, top)
    if not chosen:
        print(f"[{study.method}] no finished trial to confirm", flush=True)
        return
    saved["confirm"] = {"seeds": seeds, "top": top, "candidates": [c.__dict__ for c in chosen], "complete": False}
    state.save(run.local)
    run.push(STATE_FILE)
    study_context = TrialContext.from_config(analysis.trials[0].config)
    metric = primary(study.metric)
    complete = True
    for candidate in chosen:
        print(f"[{study.method}] confirming #{candidate.rank} {candidate.run_name} ({metric} "
              f"{candidate.objective:.4g}) on seeds {', '.join(map(str, seeds))}", flush=True)
        exp_dir = run.tune_path(CONFIRM_FOLDER, experiment_name(study.method, candidate.rank))
        trainable = tune.with_resources(run_trial, distributed.trial_resources(sweep.resources))
        if tune.Tuner.can_restore(exp_dir):
            tuner = tune.Tuner.restore(exp_dir, trainable=trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = _new_tuner(sweep, study, candidate, study_context, seeds, run, trainable)
        grid = tuner.fit()
        outcomes = [outcome_of(t) for t in tune.ExperimentAnalysis(exp_dir).trials]
        complete &= len(outcomes) == len(seeds) and all(o is not None for o in outcomes)
        if grid.errors:
            print(f"[{study.method}] {len(grid.errors)} confirmation trial(s) of #{candidate.rank} failed", flush=True)
    saved["confirm"]["complete"] = complete
    state.save(run.local)
    run.push(STATE_FILE)
    tags = {"sweeplab.confirm.seeds": ",".join(map(str, seeds)), "sweeplab.confirm.top": str(len(chosen))}
    c = tracking.client(state.tracking_uri)
    for key, value in tags.items():
        c.set_tag(saved["parent_run_id"], key, value)


def _new_tuner(sweep: Sweep, study: Study, candidate: Candidate, study_context: TrialContext, seeds: list[int],
               run: RunFolder, trainable) -> tune.Tuner:
    metric, mode = primary(study.metric), primary(study.mode)
    track = study_context.tracking

    def context_for(seed: int) -> dict:
        if track is None:
            return study_context.but(seed=seed).to_dict()
        tags = {**track.tags, TAG_ROLE: ROLE, TAG_RANK: str(candidate.rank), TAG_SOURCE: candidate.trial_id,
                TAG_SEED: str(seed)}
        return study_context.but(seed=seed, tracking=replace(track, tags=tags)).to_dict()

    namer = ConfirmNamer(study.method, candidate.rank)
    callbacks = [ProgressPrinter(f"{study.method} #{candidate.rank}", metric, len(seeds),
                                 planned_epochs(candidate.config, study.method))]
    if track is not None:
        callbacks.append(TrialEndRecorder(replace(track, tags={**track.tags, TAG_ROLE: ROLE}), study.method,
                                          namer=namer))
    return tune.Tuner(
        trainable,
        param_space={**candidate.config, CONTEXT_KEY: tune.grid_search([context_for(s) for s in seeds])},
        tune_config=tune.TuneConfig(
            metric=objective_metric(metric), mode=mode, num_samples=1,
            max_concurrent_trials=sweep.search.max_concurrent,
            reuse_actors=not distributed.is_distributed(sweep.resources),
            trial_name_creator=namer, trial_dirname_creator=namer,
        ),
        run_config=tune.RunConfig(
            name=experiment_name(study.method, candidate.rank),
            storage_path=run.tune_path(CONFIRM_FOLDER),
            failure_config=tune.FailureConfig(max_failures=sweep.failure.max_failures),
            checkpoint_config=tune.CheckpointConfig(**checkpoint_retention(sweep.checkpoint.kept)),
            callbacks=callbacks,
            verbose=0,
        ),
    )
