"""The worker side of a trial, shared by one-process and multi-worker trials: the reporter that
carries the engine's results and checkpoints to Ray, and the trial's MLflow tracker.

Tune's function-trainable API (``ray.tune``) and Ray Train's worker API (``ray.train``)
spell reporting and checkpoints alike (``report``, ``get_checkpoint``, ``Checkpoint``),
so one ``CheckpointReporter`` serves both; ``sweeplab.trainable`` picks Tune's,
``sweeplab.distributed`` Train's.
"""

from __future__ import annotations

import tempfile
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
    trial rank 0 alone; every rank still reports, since Train's report is a barrier)."""

    def __init__(self, api: ModuleType, saves: bool = True):
        self.api = api
        self.saves = saves

    def load_checkpoint(self) -> dict | None:
        checkpoint = self.api.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)

    def report(self, metrics: dict, checkpoint: dict | None) -> None:
        if checkpoint is None or not self.saves:
            self.api.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(checkpoint, Path(folder) / STATE_FILE)
            self.api.report(metrics, checkpoint=self.api.Checkpoint.from_directory(folder))


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
