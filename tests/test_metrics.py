"""Metrics pinned on hand-checkable inputs."""

import math

import numpy as np
import pytest
import torch

from sweeplab.method import DataInfo
from sweeplab.metrics import (classification_metrics, mean_class_accuracy, multilabel_details, multilabel_metrics,
                              per_class_ap)


def info(num_classes, groups=None, task="multilabel"):
    return DataInfo(task=task, num_classes=num_classes, class_names=tuple(map(str, range(num_classes))),
                    input_shape=(1, 8, 8), train_size=10, train_class_counts=(5,) * num_classes,
                    class_groups=groups or {})


def test_average_precision_by_hand():
    # class 0: ranking pos, neg, pos -> precision at the positives 1/1 and 2/3 -> AP = (1 + 2/3) / 2
    # class 1: positives ranked first -> AP = 1;  class 2: no positive -> NaN (left out of mAP)
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.5, 0.1, 0.2], [0.3, 0.7, 0.3]])
    targets = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    ap = per_class_ap(scores, targets)
    assert ap[0] == pytest.approx(5 / 6) and ap[1] == pytest.approx(1.0) and math.isnan(ap[2])
    m = multilabel_metrics(scores, targets, info(3, {"head": (0,), "medium": (1,), "tail": (2,)}))
    assert m["mAP"] == pytest.approx((5 / 6 + 1) / 2)
    assert m["mAP_head"] == pytest.approx(5 / 6) and m["mAP_medium"] == pytest.approx(1.0)
    assert math.isnan(m["mAP_tail"])  # no tail class has a positive in this split


def test_multilabel_loss_is_mean_bce_with_logits():
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0]])
    expected = np.mean([math.log(2), math.log(1 + math.e**2), math.log(1 + math.e**-1)])
    assert multilabel_metrics(logits, targets, info(3))["loss"] == pytest.approx(expected)  # 1.044446
    assert expected == pytest.approx(1.044446, abs=1e-6)


def test_multilabel_details_name_group_and_count():
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    rows = multilabel_details(scores, targets, info(2, {"head": (0,), "tail": (1,)}))["classes"]
    assert rows[0] == {"class": "0", "group": "head", "train_images": 5, "ap": 1.0}
    assert rows[1]["group"] == "tail"


def test_classification_metrics():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0], [0.0, 3.0, 0.0], [1.0, 0.0, 0.0]])
    targets = torch.tensor([0, 1, 2, 2])
    m = classification_metrics(logits, targets, info(3, task="classification"))
    assert m["acc"] == 0.5
    assert m["mean_class_acc"] == pytest.approx((1 + 1 + 0) / 3)
    assert mean_class_accuracy(logits, targets, 3) == m["mean_class_acc"]


# -- retrieval ----------------------------------------------------------------------------------------
def _at_angles(*degrees):
    radians = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([radians.cos(), radians.sin()], dim=1).float()


def test_recall_at_k_excludes_the_query_and_counts_a_hit_among_the_k_nearest():
    from sweeplab.metrics import recall_at_k

    # neighbours by angle: 0° -> 10°, 25°; 10° -> 0°, 25°, 90°; 25° -> 10°, 0°; 90° -> 100°; 100° -> 90°
    embeddings, labels = _at_angles(0, 10, 25, 90, 100), torch.tensor([0, 1, 0, 1, 1])
    assert recall_at_k(embeddings, labels) == pytest.approx({1: 0.4, 2: 0.8, 4: 1.0, 8: 1.0})
    assert recall_at_k(3.0 * embeddings, labels) == recall_at_k(embeddings, labels)  # cosine


def test_chunked_neighbours_equal_the_dense_ones():
    from sweeplab.metrics import nearest_neighbours, recall_at_k

    torch.manual_seed(0)
    x, y = torch.randn(300, 8), torch.randint(0, 12, (300,))
    unit = torch.nn.functional.normalize(x, dim=1)
    dense = unit @ unit.T
    dense.fill_diagonal_(float("-inf"))
    expected = dense.topk(8, dim=1).indices
    for block in (1, 301, 10_000, 1 << 25):  # one query at a time .. all at once
        assert torch.equal(nearest_neighbours(x, 8, block_entries=block), expected)
    assert recall_at_k(x, y, block_entries=1) == recall_at_k(x, y)


def test_nmi_of_clear_clusters_and_retrieval_details():
    from sweeplab.metrics import nmi, retrieval_details, retrieval_metrics

    torch.manual_seed(0)
    centres = _at_angles(0, 120, 240)
    labels = torch.arange(3).repeat_interleave(20)
    x = centres[labels] + 0.01 * torch.randn(60, 2)
    assert nmi(x, labels) == pytest.approx(1.0) and nmi(x, (labels + 1) % 3) == pytest.approx(1.0)
    assert math.isnan(nmi(x, torch.zeros(60, dtype=torch.long)))  # one label: nothing to cluster
    metrics = retrieval_metrics(x, labels, None)
    assert set(metrics) == {"recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8", "nmi"}
    assert metrics["recall_at_1"] == 1.0
    rows = retrieval_details(_at_angles(0, 10, 25, 90, 100), torch.tensor([0, 1, 0, 1, 1]), None)["classes"]
    assert rows == [{"class": "0", "n": 2, "recall_at_1": 0.0},
                    {"class": "1", "n": 3, "recall_at_1": pytest.approx(2 / 3)}]
