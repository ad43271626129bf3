"""What ``sweeplab.objective`` decides for every tool: the name of a trial's objective."""

from __future__ import annotations

from sweeplab.objective import objective_metric, objective_metrics


def test_the_objective_is_the_running_best_of_the_metric():
    assert objective_metric("val/acc") == "best/val/acc"
    assert objective_metrics(["val/acc", "val/loss"]) == ["best/val/acc", "best/val/loss"]

