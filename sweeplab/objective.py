"""A trial's objective, decided once for every tool that reads it.

A trial's objective is its **best epoch's** value of the study's metric (``val/acc``): the
epoch whose weights the engine keeps and tests (``best/test/*``). The engine reports it
every epoch as a running best under ``objective_metric(metric)`` (``best/val/acc``), so:

- ASHA compares trials at each rung on it, and Tune's experiment has it as its default
  metric (``ResultGrid.get_best_result()`` picks what the summary picks);
- Optuna is told it (the intermediate values are the running best, the value the best
  epoch's), under that name (``study.metric_names``);
- MLflow has it as the metric ``best/val/acc`` of each trial's run (its last step is the
  trial's objective), and the report and ``sweeplab status`` rank trials by it.
"""

from __future__ import annotations

import os

BEST_PREFIX = "best/"
SELECTION = "best epoch"  # how a trial's objective is chosen among its epochs, in words


def objective_metric(metric: str) -> str:
    """The name under which a trial's objective (the running best of ``metric``) is reported."""
    return BEST_PREFIX + metric


def objective_metrics(metric):
    """``objective_metric`` of a study's metric, or of each of its metrics (multi-objective)."""
    return [objective_metric(m) for m in metric] if isinstance(metric, list) else objective_metric(metric)


def checkpoint_retention(keep: int | None, metric: str, mode: str) -> dict:
    """What a trial's ``CheckpointConfig`` (Tune's and Ray Train's) keeps: the ``keep`` epochs
    best by ``metric`` (None: every epoch) and, always, the latest (Ray never deletes it): what
    resume, retries and ASHA's pauses restart from. Every checkpoint also holds the best epoch's
    weights so far, so the latest alone is enough to resume; the best is kept for the user to
    load (``Result.best_checkpoints``)."""
    if keep is None:
        return {"num_to_keep": None}
    # Tune then snapshots the experiment after every ``keep`` checkpoints of a trial (so a restore never
    # names a deleted one), and warns whenever two snapshots come within 5 s: with epochs of seconds, at
    # every epoch. The snapshot is the price of deleting checkpoints; the warning asks nothing of the user.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    return {"num_to_keep": int(keep), "checkpoint_score_attribute": metric, "checkpoint_score_order": mode}
