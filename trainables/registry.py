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
            name="proxygml",
            target="trainables.proxygml:ProxyGML",
            task="retrieval",
            metric="val/recall_at_1",
            mode="max",
            summary="N proxies per class; each sample's top-k proxies form a sub-graph whose similarities, summed "
                    "per class (reverse label propagation), are classified by a masked softmax",
            paper="Zhu et al., Fewer is More: A Deep Graph Metric Learning Perspective Using Fewer Proxies, "
                  "NeurIPS 2020",
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
        MethodEntry(
            name="proxy_nca",
            target="trainables.pml_proxies:ProxyNCA",
            task="retrieval",
            metric="val/recall_at_1",
            mode="max",
            summary="one proxy per class; softmax over the scaled squared distances to the proxies "
                    "(pml's ProxyNCALoss)",
            paper="Movshovitz-Attias et al., No Fuss Distance Metric Learning using Proxies, ICCV 2017",
        ),
        MethodEntry(
            name="proxy_anchor",
            target="trainables.pml_proxies:ProxyAnchor",
            task="retrieval",
            metric="val/recall_at_1",
            mode="max",
            summary="each proxy an anchor pulling its batch samples in and pushing the others out, with margin "
                    "and scale (pml's ProxyAnchorLoss)",
            paper="Kim et al., Proxy Anchor Loss for Deep Metric Learning, CVPR 2020",
        ),
        MethodEntry(
            name="soft_triple",
            target="trainables.pml_proxies:SoftTriple",
            task="retrieval",
            metric="val/recall_at_1",
            mode="max",
            summary="K centres per class, a softmax over each class's centres, a margin softmax over the classes, "
                    "centres of a class merged by a regulariser (pml's SoftTripleLoss)",
            paper="Qian et al., SoftTriple Loss: Deep Metric Learning Without Triplet Sampling, ICCV 2019",
        ),
        MethodEntry(
            name="normalized_softmax",
            target="trainables.pml_proxies:NormalizedSoftmax",
            task="retrieval",
            metric="val/recall_at_1",
            mode="max",
            summary="softmax over temperature-scaled cosines to L2-normalised class weights "
                    "(pml's NormalizedSoftmaxLoss)",
            paper="Zhai & Wu, Classification is a Strong Baseline for Deep Metric Learning, BMVC 2019",
        ),
    ]
}


def get(name: str) -> MethodEntry:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}") from None
