"""The worker side of a trial, shared by one-process and multi-worker trials: the reporter that
carries the engine's results and checkpoints to Ray, and the trial's MLflow tracker.

Tune's function-trainable API (``ray.tune``) and Ray Train's worker API (``ray.train``)
spell reporting and checkpoints alike (``report``, ``get_checkpoint``, ``Checkpoint``),
so one ``CheckpointReporter`` serves both; ``sweeplab.trainable`` picks Tune's,
``sweeplab.distributed`` Train's.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from types import ModuleType

import torch

from sweeplab import tracking
from sweeplab.checkpoints import STATE_FILE
from sweeplab.context import TrialContext
from sweeplab.engine import NullTracker, TrialTracker


class CheckpointReporter:
    """The engine's reporter in a Ray process. ``api``: ``ray.tune`` in a Tune trial, ``ray.train``
    in a Train worker. ``saves``: whether this process saves the checkpoint (in a multi-worker
    trial rank 0 alone; every rank still reports, since Train's report is a barrier).

    ``in_background``: each report is handed to Ray by a thread while the next epoch trains.
    Tune's report copies the checkpoint to storage (an upload to an object store) and then waits
    until the driver has processed the result; in the background neither holds up training. The
    checkpoint is serialised before ``report`` returns (the weights change at the next step),
    one report is in flight at a time, and what a hand-over raised is raised in the training
    thread by ``settle``: ``SystemExit`` when the scheduler stopped the trial. The engine settles
    between steps (a stopped trial ends within a step, Tune waits 2 s for it before it reuses the
    process) and waits before it logs an epoch (MLflow never records an epoch Tune did not see).
    """

    def __init__(self, api: ModuleType, saves: bool = True, in_background: bool = False):
        self.api = api
        self.saves = saves
        self.in_background = in_background
        self._pending: threading.Thread | None = None
        self._raised: BaseException | None = None

    def load_checkpoint(self) -> dict | None:
        checkpoint = self.api.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)

    def report(self, metrics: dict, checkpoint: dict | None) -> None:
        self.settle(wait=True)
        folder = None
        if checkpoint is not None and self.saves:
            folder = tempfile.mkdtemp(prefix="sweeplab-checkpoint-")
            torch.save(checkpoint, Path(folder) / STATE_FILE)
        if not self.in_background:
            self._hand_over(metrics, folder)
            return
        self._pending = threading.Thread(target=self._hand_over_noted, args=(metrics, folder), daemon=True,
                                         name="sweeplab-report")
        self._pending.start()

    def settle(self, wait: bool = False) -> None:
        """Raise what the last hand-over raised; ``wait``: first wait until it is done."""
        pending = self._pending
        if pending is not None and (wait or not pending.is_alive()):
            pending.join()
            self._pending = None
        if self._raised is not None:
            raise self._raised

    def drain(self) -> None:
        """Wait for the hand-over in flight, whatever it raises (the trial is ending with an error
        of its own)."""
        if self._pending is not None:
            self._pending.join()
            self._pending = None

    def _hand_over(self, metrics: dict, folder: str | None) -> None:
        try:
            if folder is None:
                self.api.report(metrics)
            else:
                self.api.report(metrics, checkpoint=self.api.Checkpoint.from_directory(folder))
        finally:
            if folder is not None:  # Ray has copied it to the trial's storage
                shutil.rmtree(folder, ignore_errors=True)

    def _hand_over_noted(self, metrics: dict, folder: str | None) -> None:
        try:
            self._hand_over(metrics, folder)
        except BaseException as exc:  # SystemExit: Tune stopping the trial; raised again by ``settle``
            self._raised = exc


def trial_tracker(ctx: TrialContext, trial_id: str, run_name: str) -> TrialTracker:
    """The trial's MLflow child run (nothing when the sweep does not track)."""
    if ctx.tracking is None:
        return NullTracker()
    t = ctx.tracking
    return tracking.MlflowTrialTracker(
        uri=t.uri,
        experiment_id=t.experiment_id,
        parent_run_id=t.parent_run_id,
        trial_id=trial_id,
        run_name=run_name,
        tags=t.tags,
        extra_params=ctx.run_params(),
        where=where_tags(),
    )


def where_tags() -> dict:
    """The Ray node and host this process runs on, for the trial's MLflow run (on a cluster, which
    node ran which trial; several nodes may share a host)."""
    import socket

    import ray

    return {tracking.TAG_NODE: ray.get_runtime_context().get_node_id(), tracking.TAG_HOST: socket.gethostname()}
