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

BEST_PREFIX = "best/"
SELECTION = "best epoch"  # how a trial's objective is chosen among its epochs, in words


def objective_metric(metric: str) -> str:
    """The name under which a trial's objective (the running best of ``metric``) is reported."""
    return BEST_PREFIX + metric


def objective_metrics(metric):
    """``objective_metric`` of a study's metric, or of each of its metrics (multi-objective)."""
    return [objective_metric(m) for m in metric] if isinstance(metric, list) else objective_metric(metric)

