"""The driver's Tune callbacks: a line per trial event, and the MLflow record of trials that
cannot record their own end (stopped by the scheduler, or failed for good)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ray import tune

from sweeplab import tracking
from sweeplab.context import TrackingContext, hyperparameters_of, trial_params
from sweeplab.objective import objective_metric
from sweeplab.results import outcome_of, run_name_of, short


class TrialNamer:
    """Trial names and folders ``<method>_<trial id>`` (picklable, for restore)."""

    def __init__(self, method: str):
        self.method = method

    def __call__(self, trial) -> str:
        return run_name_of(self.method, trial)


def trial_error_text(trial) -> str:
    path = getattr(trial, "error_file", None)
    if path and os.path.exists(path):
        return Path(path).read_text()[-tracking.MAX_TAG_CHARS:]
    try:
        return repr(trial.get_error())
    except Exception:  # noqa: BLE001
        return "trial failed (no error text available)"


class TrialEndRecorder(tune.Callback):
    """Records in MLflow the end of trials that cannot record it themselves: stopped early
    by the scheduler (pruned) or failed for good (with the error text)."""

    def __init__(self, track: TrackingContext, method: str, namer=None):
        self.track = track
        self.method = method
        self.namer = namer  # the trials' run names (None: ``run_name_of``)

    @property
    def study_tracking(self) -> TrackingContext:
        """The study's tracking (a run started before the context was typed pickled a mapping)."""
        return self.track if isinstance(self.track, TrackingContext) else TrackingContext(**self.track)

    def _record(self, trial, status: str, error: str | None = None) -> None:
        t = self.study_tracking
        tracking.record_trial_end(
            t.uri, t.experiment_id, t.parent_run_id, trial.trial_id, status, error=error,
            run_name=(getattr(self, "namer", None) or TrialNamer(self.method))(trial), tags=t.tags, params=trial_params(trial.config),
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        outcome = outcome_of(trial, "TERMINATED")
        # a diverged trial records itself; "finished" is recorded by the trial too, and recording it here
        # covers a trial whose worker could not (it is skipped when the run already says finished)
        if outcome in ("finished", "pruned"):
            self._record(trial, outcome)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(trial, "failed", error=trial_error_text(trial))


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
        params = ", ".join(f"{k}={short(v)}" for k, v in sorted(hyperparameters_of(trial.config).items()))
        self._say(f"trial {trial.trial_id} started: {params}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("diverged"):
            return
        value, best = result.get(self.metric), result.get(objective_metric(self.metric))
        self._say(f"trial {trial.trial_id} epoch {result.get('epoch')}: {self.metric}={short(value)}"
                  f" (best {short(best)}) train/loss={short(result.get('train/loss'))}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        epoch = (trial.last_result or {}).get("epoch")
        status = {"diverged": f"diverged at epoch {epoch}", "pruned": f"stopped early at epoch {epoch} (pruned)"}
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial) + 1
        self._say(f"trial {trial.trial_id} {status.get(outcome_of(trial, 'TERMINATED'), 'finished')} "
                  f"[{done}/{self.num_samples} done]")

    def on_trial_error(self, iteration, trials, trial, **info):
        first_line = trial_error_text(trial).strip().splitlines()[-1:] or ["?"]
        self._say(f"trial {trial.trial_id} FAILED: {first_line[0]}")
