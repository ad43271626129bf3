"""Task families: what a method of each family reports, under one metric naming scheme,
and the functions that compute it.

Every metric is named ``<split>/<name>`` (``train/loss``, ``val/acc``, ``test/acc``)
in Tune results, in MLflow and in dashboards. ``best/<split>/<name>`` are the
values of the epoch with the best validation objective. A family is one entry of
``TASKS``: the names of its metrics, the function that computes a split's metrics
from its scores and targets, and the one that writes the per-class details saved
with each trial (``per_class.json``). Adding a family is one entry plus its two
functions (in ``sweeplab.metrics``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from sweeplab import metrics
from sweeplab.method import DataInfo

SplitFunction = Callable[[torch.Tensor, torch.Tensor, DataInfo], Any]


@dataclass(frozen=True)
class TaskFamily:
    name: str
    eval_metrics: tuple[str, ...]  # computed on val and test each time they are evaluated
    train_metrics: tuple[str, ...]  # computed over the training epoch
    split_metrics: SplitFunction  # (scores, targets, info) -> {name: float} for ``eval_metrics``
    split_details: SplitFunction  # (scores, targets, info) -> per-class tables (JSON-ready)

    def epoch_metrics(self) -> tuple[str, ...]:
        """The metrics reported every epoch: the ones a scheduler and a searcher can follow."""
        return tuple(f"train/{m}" for m in self.train_metrics) + tuple(f"val/{m}" for m in self.eval_metrics)

    def reported_metrics(self, extra_tests: tuple[str, ...] = ()) -> tuple[str, ...]:
        """Every metric name the engine reports for a method of this family (the method's loss
        parts, epoch statistics and optimizer groups come on top); ``extra_tests``: the names of
        the dataset's further test sets."""
        tests = ("test", *(extra_test_split(name) for name in extra_tests))
        names = [f"train/{m}" for m in self.train_metrics] + ["train/samples"]
        for split in ("val", *tests):
            names += [f"{split}/{m}" for m in self.eval_metrics]
        names += [f"best/{split}/{m}" for split in ("val", *tests) for m in self.eval_metrics]
        names += ["best/epoch", "epoch", "train/lr"]
        return tuple(names)


TASKS: dict[str, TaskFamily] = {
    "classification": TaskFamily(
        name="classification",
        eval_metrics=("loss", "acc", "mean_class_acc"),
        train_metrics=("loss", "acc"),
        split_metrics=metrics.classification_metrics,
        split_details=metrics.classification_details,
    ),
    # long-tailed multi-label: mAP over all classes and over the head / medium / tail groups
    "multilabel": TaskFamily(
        name="multilabel",
        eval_metrics=("loss", "mAP", "mAP_head", "mAP_medium", "mAP_tail"),
        train_metrics=("loss",),
        split_metrics=metrics.multilabel_metrics,
        split_details=metrics.multilabel_details,
    ),
    # deep metric learning: embeddings of classes never trained on, queried against each other
    "retrieval": TaskFamily(
        name="retrieval",
        eval_metrics=(*(f"recall_at_{k}" for k in metrics.RECALL_KS), "nmi"),
        train_metrics=("loss",),
        split_metrics=metrics.retrieval_metrics,
        split_details=metrics.retrieval_details,
    ),
}


def extra_test_split(name: str) -> str:
    """The split name of a dataset's further test set ``name`` (``cue_erased`` ->
    ``test_cue_erased``, reported as ``test_cue_erased/acc``)."""
    return f"test_{name}"


def task_family(name: str) -> TaskFamily:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task family {name!r}; known: {', '.join(sorted(TASKS))}") from None
