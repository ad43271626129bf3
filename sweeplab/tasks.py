"""Task families: what a method of each family reports, under one metric naming scheme.

Every metric is named ``<split>/<name>`` (``train/loss``, ``val/acc``, ``test/acc``)
in Tune results, in MLflow and in dashboards. ``best/<split>/<name>`` are the
values of the epoch with the best validation objective.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskFamily:
    name: str
    eval_metrics: tuple[str, ...]  # computed on val and test each time they are evaluated
    train_metrics: tuple[str, ...]  # computed over the training epoch

    def epoch_metrics(self) -> tuple[str, ...]:
        """The metrics reported every epoch: the ones a scheduler and a searcher can follow."""
        return tuple(f"train/{m}" for m in self.train_metrics) + tuple(f"val/{m}" for m in self.eval_metrics)

    def reported_metrics(self) -> tuple[str, ...]:
        """Every metric name a method of this family reports (loss parts come on top)."""
        names = [f"train/{m}" for m in self.train_metrics]
        for split in ("val", "test"):
            names += [f"{split}/{m}" for m in self.eval_metrics]
        names += [f"best/{split}/{m}" for split in ("val", "test") for m in self.eval_metrics]
        names += ["best/epoch", "epoch", "lr"]
        return tuple(names)


TASKS: dict[str, TaskFamily] = {
    "classification": TaskFamily(
        name="classification",
        eval_metrics=("loss", "acc", "mean_class_acc"),
        train_metrics=("loss", "acc"),
    ),
    # long-tailed multi-label: mAP over all classes and over the head / medium / tail groups
    "multilabel": TaskFamily(
        name="multilabel",
        eval_metrics=("loss", "mAP", "mAP_head", "mAP_medium", "mAP_tail"),
        train_metrics=("loss",),
    ),
}


def task_family(name: str) -> TaskFamily:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task family {name!r}; known: {', '.join(sorted(TASKS))}") from None
