"""The multi-label BCE baseline: its loss is torch's mean BCE-with-logits; its sampler option."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from sweeplab.method import DataInfo, all_hyperparameters
from sweeplab.models import build_backbone
from trainables.bce import BinaryCrossEntropy
from trainables.registry import METHODS

INFO = DataInfo(task="multilabel", num_classes=3, class_names=("a", "b", "c"), input_shape=(1, 16, 16),
                train_size=8, train_class_counts=(6, 3, 1))


def make(**hp):
    torch.manual_seed(0)
    method = BinaryCrossEntropy({**all_hyperparameters(BinaryCrossEntropy), **hp}, INFO)
    backbone, dim = build_backbone("small_cnn", 1)
    return method, method.build_model(backbone, dim)


def test_loss_is_mean_bce_with_logits_and_backpropagates():
    method, model = make()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 1, 16, 16, generator=g)
    y = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=torch.float32)
    out = method.training_step(model, (x, y, torch.arange(4)))
    assert out["logits"].shape == (4, 3)
    expected = F.binary_cross_entropy_with_logits(out["logits"], y)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    # by hand: the mean over B x C of -[y log s(z) + (1 - y) log(1 - s(z))]
    z = out["logits"].double()
    by_hand = -(y * torch.log(torch.sigmoid(z)) + (1 - y) * torch.log(1 - torch.sigmoid(z))).mean()
    assert out["loss"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert math.isfinite(out["loss"].item())


def test_predict_returns_per_class_logits():
    method, model = make()
    model.eval()
    assert method.predict(model, torch.randn(2, 1, 16, 16)).shape == (2, 3)


def test_uniform_sampler_is_the_engines_shuffle():
    method, _ = make(sampler="uniform")
    assert method.train_sampler(object(), torch.Generator()) is None
    assert method.paired_sampler(object(), torch.Generator()) is None


def test_class_aware_variant_returns_a_sampler():
    samplers = pytest.importorskip("sweeplab.data.samplers", reason="ClassAwareSampler not written yet")
    from sweeplab.data.indexed import IndexedTensorDataset

    targets = torch.tensor([[1, 0, 0]] * 6 + [[1, 1, 0], [0, 1, 1]], dtype=torch.float32)
    data = IndexedTensorDataset(torch.zeros(8, 1, 4, 4), targets)
    method, _ = make(sampler="class_aware", sampler_epoch_length=2.0, batch_size=4)
    sampler = method.train_sampler(data, torch.Generator().manual_seed(0))
    assert isinstance(sampler, samplers.ClassAwareSampler)
    assert len(list(sampler)) == 16  # 2 x 8 images
    short, _ = make(sampler="class_aware", sampler_epoch_length=0.1, batch_size=4)
    assert len(list(short.train_sampler(data, torch.Generator().manual_seed(0)))) == 4  # at least one batch


@pytest.mark.parametrize("key, value", [("sampler", "balanced"), ("sampler_epoch_length", -1.0)])
def test_bad_options_are_refused(key, value):
    with pytest.raises(ValueError, match=key):
        make(**{key: value})


@pytest.mark.parametrize("name", ["bce", "ltml"])
def test_registry_entries(name):
    entry = METHODS[name]
    assert (entry.task, entry.metric, entry.mode) == ("multilabel", "val/mAP", "max")
    assert entry.search_space.is_file()
