"""The searcher of a study: Ray Tune's ``OptunaSearch``, told the truth about trials that did not
run to the end, with its Optuna study kept in the run's journal file (so ``optuna-dashboard``
watches it live, a resumed sweep continues it, and an object-store run uploads it with each
snapshot of the searcher).
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray.tune.search.optuna import OptunaSearch

from sweeplab import storage, tracking
from sweeplab.context import TrackingContext
from sweeplab.objective import objective_metrics
from sweeplab.results import planned_epochs, trial_outcome
from sweeplab.search import make_sampler
from sweeplab.spaces import fixed_values, to_optuna
from sweeplab.spec import Study, Sweep
from sweeplab.storage import JOURNAL_FILE, RunFolder

log = logging.getLogger(__name__)

# the user attributes linking an Optuna trial to its Ray Tune trial and MLflow run
ATTR_RAY_TRIAL = "ray_trial_id"
ATTR_MLFLOW_RUN = "mlflow_run_id"
ATTR_RUN_NAME = "run_name"


class PrunedAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about trials that did not run to the end.

    Stock OptunaSearch tells Optuna that a trial the scheduler stopped early is COMPLETE with
    its truncated value, which biases TPE towards whatever looks good at the first rung. Here
    such a trial (and a diverged one) is told as PRUNED: Optuna keeps its intermediate values
    (one per epoch) and ranks it below every completed trial.

    On restore, Optuna trials left RUNNING in the study's storage by a killed driver that no
    restored Tune trial will continue are marked FAIL, so the study holds no phantom trials.
    """

    def __init__(self, *args, fixed_epochs: int, run_location: str | None = None,
                 tracking: TrackingContext | None = None, **kwargs):
        self.tracking = tracking  # where the trials' MLflow runs are: each Optuna trial links to its run
        super().__init__(*args, **kwargs)
        self.fixed_epochs = fixed_epochs  # epochs of a trial whose space does not search them
        # The run (folder or object-store URI). A restored searcher reopens the journal of that run on
        # the machine that resumes it (an object-store run is resumed from a local copy of its files),
        # and in an object store the journal is uploaded with each snapshot of the searcher (``save``).
        self.run_location = run_location

    def _setup_study(self, mode):
        """Optuna's study, its objectives named as Tune and MLflow name them (``best/val/acc``:
        the trial's best epoch, ``sweeplab.objective``), not "Objective 0"."""
        super()._setup_study(mode)
        names = self._metric if isinstance(self._metric, list) else [self._metric]
        if self._ot_study.metric_names is None and all(isinstance(n, str) for n in names):
            with warnings.catch_warnings():  # experimental in Optuna (since 3.2) and stable in use
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._ot_study.set_metric_names(names)

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and isinstance(config, dict):
            ot_trial.set_user_attr(ATTR_RAY_TRIAL, trial_id)
        return config

    def _link_run(self, trial_id: str) -> None:
        """Before Optuna is told a trial's end (its attributes are frozen after): the trial's MLflow
        run id as its user attribute, and its Optuna number on the run (tag ``sweeplab.optuna_trial``)."""
        track, ot_trial = getattr(self, "tracking", None), self._ot_trials.get(trial_id)
        if track is None or ot_trial is None:
            return
        try:
            run = tracking.find_trial_run(track.uri, track.experiment_id, track.parent_run_id, trial_id)
            if run is None:
                return
            ot_trial.set_user_attr(ATTR_MLFLOW_RUN, run.info.run_id)
            ot_trial.set_user_attr(ATTR_RUN_NAME, run.info.run_name)
            tracking.client(track.uri).set_tag(run.info.run_id, tracking.TAG_OPTUNA_TRIAL, str(ot_trial.number))
        except Exception as exc:  # noqa: BLE001 - a link is worth a warning, never the sweep
            log.warning("Optuna: could not link trial %s to its MLflow run: %s", trial_id, exc)

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

    def _unknown(self, trial_id) -> bool:
        """A trial Tune restored that the restored searcher never asked for: the driver was killed
        after Tune's snapshot of the trials and before the searcher's reached the store. It runs
        on; Optuna's study goes without it (as ``reopen_journal`` leaves out what the journal lacks)."""
        if trial_id in self._ot_trials or trial_id in self._completed_trials:
            return False
        log.warning("Optuna: trial %s is not in the restored searcher (its snapshot was older than Tune's): "
                    "left out of the study", trial_id)
        self._completed_trials.add(trial_id)
        return True

    def on_trial_complete(self, trial_id, result=None, error=False):
        if self._unknown(trial_id):
            return
        if trial_id not in self._completed_trials:
            self._link_run(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if error or not result or trial_id in self._completed_trials or ot_trial is None:
            return super().on_trial_complete(trial_id, result, error)
        planned = int(ot_trial.params.get("epochs", self.fixed_epochs))
        if trial_outcome(result, planned) not in ("pruned", "diverged"):
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
        if self._unknown(trial_id) or trial_id in self._completed_trials:  # told already: Tune reruns its tail
            return
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


def make_searcher(study: Study, sweep: Sweep, folder: RunFolder, index: int,
                  track: TrackingContext | None = None) -> PrunedAwareOptunaSearch:
    """OptunaSearch over the study's space, its study stored in the run's journal (in the run
    folder, or the local copy of an object-store run: ``optuna-dashboard <it>/optuna.journal``
    shows it live)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = sweep.seed + index
    sampler = make_sampler(sweep.search.sampler, seed, sweep.search.n_startup_trials, sweep.search.max_concurrent > 1)
    return PrunedAwareOptunaSearch(
        space=to_optuna(study.space),
        metric=objective_metrics(study.metric),  # the best epoch's value (``sweeplab.objective``)
        mode=study.mode,
        sampler=sampler,
        seed=seed,
        study_name=f"{sweep.name}.{study.method}",
        storage=JournalStorage(JournalFileBackend(str(folder.local / JOURNAL_FILE))),
        run_location=folder.location,
        fixed_epochs=planned_epochs(fixed_values(study.space), study.method),
        tracking=track,
    )
