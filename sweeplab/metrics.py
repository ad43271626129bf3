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


# -- retrieval (metric learning): neighbours among the split's own embeddings -------------------
RECALL_KS = (1, 2, 4, 8)
_BLOCK_ENTRIES = 1 << 25  # similarities held at once by recall_at_k (32 M floats, 128 MB)


def nearest_neighbours(embeddings: torch.Tensor, k: int, block_entries: int = _BLOCK_ENTRIES) -> torch.Tensor:
    """(N, k) indices of each row's k most cosine-similar other rows (itself excluded), most
    similar first; computed a block of queries at a time, so memory stays at ``block_entries``
    similarities whatever N (no N x N matrix)."""
    x = F.normalize(embeddings.float(), dim=1)
    n = x.shape[0]
    k = min(k, n - 1)
    rows = max(1, block_entries // max(n, 1))
    out = torch.empty(n, k, dtype=torch.long)
    for start in range(0, n, rows):
        block = x[start:start + rows] @ x.T  # (rows, N) cosine similarities
        block[torch.arange(block.shape[0]), torch.arange(start, start + block.shape[0])] = float("-inf")
        out[start:start + rows] = block.topk(k, dim=1).indices
    return out


def recall_hits(embeddings: torch.Tensor, labels: torch.Tensor, ks=RECALL_KS,
                block_entries: int = _BLOCK_ENTRIES) -> dict[int, torch.Tensor]:
    """``{K: (N,) bool}``: whether any of each sample's K nearest others shares its label."""
    labels = torch.as_tensor(labels).reshape(-1)
    neighbours = nearest_neighbours(embeddings, max(ks), block_entries)
    same = labels[neighbours] == labels[:, None]  # (N, max K), nearest first
    return {k: same[:, :k].any(dim=1) for k in ks}


def recall_at_k(embeddings: torch.Tensor, labels: torch.Tensor, ks=RECALL_KS,
                block_entries: int = _BLOCK_ENTRIES) -> dict[int, float]:
    """``{K: Recall@K}``: the share of samples with at least one of their K nearest others
    (cosine, the query itself excluded) of the same label, as metric learning reports it."""
    return {k: hit.float().mean().item() for k, hit in recall_hits(embeddings, labels, ks, block_entries).items()}


KMEANS_MAX_ITER = 100  # Lloyd iterations of NMI's k-means (bounds its cost on large splits; see benchmarks)


def nmi(embeddings: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """Normalised mutual information (scikit-learn's, arithmetic mean) between the labels and a
    k-means clustering of the L2-normalised embeddings into as many clusters as labels (seeded,
    one initialisation, at most ``KMEANS_MAX_ITER`` iterations)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    labels = torch.as_tensor(labels).reshape(-1).numpy()
    clusters = len(np.unique(labels))
    if clusters < 2:
        return float("nan")
    x = F.normalize(embeddings.float(), dim=1).numpy()
    kmeans = KMeans(n_clusters=clusters, n_init=1, max_iter=KMEANS_MAX_ITER, random_state=seed)
    assigned = kmeans.fit_predict(x)
    return float(normalized_mutual_info_score(labels, assigned))


def retrieval_metrics(embeddings: torch.Tensor, labels: torch.Tensor, info: DataInfo) -> dict[str, float]:
    """``recall_at_1`` .. ``recall_at_8`` and ``nmi`` of one split, queried against itself."""
    out = {f"recall_at_{k}": v for k, v in recall_at_k(embeddings, labels).items()}
    out["nmi"] = nmi(embeddings, labels)
    return out


def retrieval_details(embeddings: torch.Tensor, labels: torch.Tensor, info: DataInfo) -> dict:
    """Recall@1 of each class of the split (its label as given; the classes are not the
    training classes)."""
    labels = torch.as_tensor(labels).reshape(-1)
    hit = recall_hits(embeddings, labels, ks=(1,))[1]
    rows = []
    for label in torch.unique(labels).tolist():
        mask = labels == label
        rows.append({"class": str(label), "n": int(mask.sum()), "recall_at_1": float(hit[mask].float().mean())})
    return {"classes": rows}
