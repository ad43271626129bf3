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
