"""Metrics computed from a split's predictions (one function per task family)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


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


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> dict[str, float]:
    """``loss`` (mean cross-entropy), ``acc`` and ``mean_class_acc`` of one split."""
    return {
        "loss": F.cross_entropy(logits, targets).item(),
        "acc": accuracy(logits, targets),
        "mean_class_acc": mean_class_accuracy(logits, targets, num_classes),
    }


# task family -> metrics of a split from (scores, targets, num_classes)
SPLIT_METRICS = {
    "classification": classification_metrics,
}
