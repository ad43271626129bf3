"""What a trial's checkpoint holds, which checkpoints a trial keeps, and the best weights in one.

The engine checkpoints every epoch (``engine.train``) a mapping with ``epoch``, ``model`` (the
weights now), ``optimizer``, ``schedule``, ``precision`` (the fp16 grad scaler), ``method``
(state outside the model, e.g. SCN's relabelled targets), ``rng`` and ``best``: the best epoch
so far by the trial's metric, with its validation metrics and **its weights** (``best["state"]``).
So the latest checkpoint alone resumes a trial exactly and also holds the best epoch's weights:
``checkpoint.keep: 1`` (the default) keeps only it.

The checkpoint of a trial's last epoch keeps the weights (final and best) and drops what only a
resume needs (optimizer, schedule, random state): nothing resumes a finished trial. An epoch
that improved stores its weights once (``best["state"]`` is ``model`` then, and ``torch.save``
writes a tensor once).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

STATE_FILE = "state.pt"  # the file in each Tune checkpoint folder
RESUME_ONLY = ("optimizer", "schedule", "precision", "rng")  # what the last epoch's checkpoint leaves out


def checkpoint_retention(keep: int | None) -> dict:
    """What a trial's ``CheckpointConfig`` (Tune's and Ray Train's) keeps: its latest ``keep``
    checkpoints (None: all)."""
    if keep is not None:
        # Tune then snapshots the experiment after every ``keep`` checkpoints of a trial (so a restore never
        # names a deleted one) and warns whenever two snapshots come within 5 s: with epochs of seconds, at
        # every epoch. The snapshot is the price of deleting checkpoints; the warning asks nothing of the user.
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    return {"num_to_keep": keep}


def final_checkpoint(checkpoint: dict) -> dict:
    """The checkpoint of a trial's last epoch: without what only a resume would read."""
    return {k: v for k, v in checkpoint.items() if k not in RESUME_ONLY}


def best_weights(folder: str | Path) -> dict:
    """The best epoch's weights (a ``state_dict`` of the method's model) from a trial's checkpoint
    folder (``<run>/<method>/<trial>/checkpoint_*``)."""
    state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
    best = state["best"].get("state")
    return best if best is not None else state["model"]
