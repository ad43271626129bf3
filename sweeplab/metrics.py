"""Metrics computed from a split's predictions, one function per task family.

Each takes the split's scores (logits), its targets and the dataset's ``DataInfo``
and returns named floats; ``*_details`` give the per-class tables saved as
artifacts at the end of a trial. ``sweeplab.tasks`` names which family uses which.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch.nn import functional as F

from sweeplab.method import DataInfo


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of samples whose arg-max class is the target."""
    if targets.numel() == 0:
        return float("nan")
    return (logits.argmax(dim=1) == targets).float().mean().item()


def mean_class_accuracy(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> float:
    """Accuracy averaged over the classes present in ``targets`` (balanced accuracy)."""
    preds = logits.argmax(dim=1)
    per_class = []
    for c in range(num_classes):
        mask = targets == c
        if mask.any():
            per_class.append((preds[mask] == c).float().mean().item())
    return sum(per_class) / len(per_class) if per_class else float("nan")


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, info: DataInfo) -> dict[str, float]:
    """``loss`` (mean cross-entropy), ``acc`` and ``mean_class_acc`` of one split."""
    return {
        "loss": F.cross_entropy(logits, targets).item(),
        "acc": accuracy(logits, targets),
        "mean_class_acc": mean_class_accuracy(logits, targets, info.num_classes),
    }


def per_class_ap(scores: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Average precision of each class (area under its precision-recall curve, as
    scikit-learn computes it); NaN for a class with no positive in the split."""
    from sklearn.metrics import average_precision_score  # here: validation imports this module, not sklearn

    y = targets.numpy() > 0.5
    s = scores.numpy()
    ap = np.full(y.shape[1], np.nan)
    for k in range(y.shape[1]):
        if y[:, k].any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ap[k] = average_precision_score(y[:, k], s[:, k])
    return ap


def _nanmean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def multilabel_metrics(logits: torch.Tensor, targets: torch.Tensor, info: DataInfo) -> dict[str, float]:
    """``loss`` (mean binary cross-entropy), ``mAP`` (mean of per-class AP over the classes with
    a positive in the split) and ``mAP_<group>`` over the head / medium / tail classes."""
    ap = per_class_ap(logits, targets)
    out = {
        "loss": F.binary_cross_entropy_with_logits(logits, targets.float()).item(),
        "mAP": _nanmean(ap),
    }
    for group in ("head", "medium", "tail"):
        out[f"mAP_{group}"] = _nanmean(ap[list(info.class_groups.get(group, ()))])
    return out


def multilabel_details(logits: torch.Tensor, targets: torch.Tensor, info: DataInfo) -> dict:
    """Per-class AP with each class's name, group and number of training images."""
    ap = per_class_ap(logits, targets)
    group_of = {k: g for g, members in info.class_groups.items() for k in members}
    return {
        "classes": [
            {
                "class": info.class_names[k],
                "group": group_of.get(k),
                "train_images": info.train_class_counts[k] if info.train_class_counts else None,
                "ap": None if math.isnan(ap[k]) else float(ap[k]),
            }
            for k in range(len(ap))
        ]
    }


def classification_details(logits: torch.Tensor, targets: torch.Tensor, info: DataInfo) -> dict:
    """Per-class accuracy (recall) with each class's name."""
    preds = logits.argmax(dim=1)
    rows = []
    for k, name in enumerate(info.class_names):
        mask = targets == k
        rows.append({"class": name, "n": int(mask.sum()),
                     "acc": float((preds[mask] == k).float().mean()) if mask.any() else None})
    return {"classes": rows}


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two 1-D tensors (scipy's); NaN when either is constant."""
    from scipy.stats import spearmanr

    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    if a.numel() < 2 or a.min() == a.max() or b.min() == b.max():
        return float("nan")
    return float(spearmanr(a.numpy(), b.numpy()).statistic)
