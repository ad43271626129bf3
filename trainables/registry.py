"""The explicit table of methods: name -> where it lives, its task, objective and search space.

No import side effects: a method is imported only when a sweep uses it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

SEARCH_SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"


@dataclass(frozen=True)
class MethodEntry:
    name: str
    target: str  # "module:Class"
    task: str  # a key of sweeplab.tasks.TASKS
    metric: str  # default objective
    mode: str  # "max" | "min"
    summary: str
    paper: str

    @property
    def search_space(self) -> Path:
        """The method's default search space, ``search_spaces/<name>.yaml``."""
        return SEARCH_SPACES_DIR / f"{self.name}.yaml"

    def load(self):
        module_name, class_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), class_name)


METHODS: dict[str, MethodEntry] = {
    entry.name: entry
    for entry in [
        MethodEntry(
            name="ce",
            target="trainables.ce:CrossEntropy",
            task="classification",
            metric="val/acc",
            mode="max",
            summary="cross-entropy baseline (optional label smoothing)",
            paper="baseline",
        ),
        MethodEntry(
            name="bce",
            target="trainables.bce:BinaryCrossEntropy",
            task="multilabel",
            metric="val/mAP",
            mode="max",
            summary="binary cross-entropy baseline for multi-label (uniform or class-aware re-balanced sampling)",
            paper="baseline",
        ),
        MethodEntry(
            name="ltml",
            target="trainables.ltml:LTML",
            task="multilabel",
            metric="val/mAP",
            mode="max",
            summary="two branches on uniform and re-balanced batches, logit-compensated weighted BCE + consistency",
            paper="Guo & Wang, Long-Tailed Multi-Label Visual Recognition by Collaborative Training on "
                  "Uniform and Re-balanced Samplings, CVPR 2021",
        ),
        MethodEntry(
            name="dmue",
            target="trainables.dmue:DMUE",
            task="classification",
            metric="val/acc",
            mode="max",
            summary="C auxiliary branches mine each sample's latent label distribution; pairwise uncertainty "
                    "scales the target branch's logits",
            paper="She et al., Dive into Ambiguity: Latent Distribution Mining and Pairwise Uncertainty "
                  "Estimation for Facial Expression Recognition, CVPR 2021",
        ),
        MethodEntry(
            name="db_gce",
            target="trainables.db_gce:DBGCE",
            task="classification",
            metric="val/acc",
            mode="max",
            summary="class activation maps whose salient parts are randomly suppressed (diversification block), "
                    "cross-entropy over the top-k confusable classes (gradient-boosting CE)",
            paper="Sun et al., Fine-grained Recognition: Accounting for Subtle Differences between Similar Classes, "
                  "AAAI 2020",
        ),
        MethodEntry(
            name="scn",
            target="trainables.scn:SCN",
            task="classification",
            metric="val/acc",
            mode="max",
            summary="self-cure network: importance-weighted logits, rank regularisation, relabelling of noisy labels",
            paper="Wang et al., Suppressing Uncertainties for Large-Scale Facial Expression Recognition, CVPR 2020",
        ),
    ]
}


def get(name: str) -> MethodEntry:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}") from None
