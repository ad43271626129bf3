"""What ``sweeplab.objective`` decides for every tool: the objective's name and which checkpoints a trial keeps."""

from __future__ import annotations

from sweeplab.objective import checkpoint_retention, objective_metric, objective_metrics


def test_the_objective_is_the_running_best_of_the_metric():
    assert objective_metric("val/acc") == "best/val/acc"
    assert objective_metrics(["val/acc", "val/loss"]) == ["best/val/acc", "best/val/loss"]


def test_checkpoint_retention_keeps_the_best_epochs_by_the_metric_and_all_when_asked():
    assert checkpoint_retention(1, "val/acc", "max") == {"num_to_keep": 1, "checkpoint_score_attribute": "val/acc",
                                                         "checkpoint_score_order": "max"}
    assert checkpoint_retention(None, "val/loss", "min") == {"num_to_keep": None}
