"""The seams a method asks the engine through (``sweeplab.method.Method``), each exercised by a
tiny method written here: a proxy-like parameter in its own optimizer group, a head on the
backbone's feature map, an epoch-dependent loss weight. (An unused branch under 2-rank DDP is
in test_distributed.py, which owns the gloo group.)"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import StopAfter
from sweeplab.context import CONTEXT_KEY
from sweeplab.engine import MemoryReporter, train
from sweeplab.optim import make_optimizer, optimizer_groups
from sweeplab.method import DataInfo, Method, ParamGroup, groups_by_prefix, number
from sweeplab.models import build_backbone, split_last_stage
from sweeplab.models.heads import Classifier

DIGITS = {"name": "noisy_digits", "noise_rate": 0.2}


def config(epochs=2, **hp):
    return {"epochs": epochs, "batch_size": 64, "optimizer": "sgd", "lr": 0.01, "lr_schedule": "constant", **hp,
            CONTEXT_KEY: {"method": "tiny", "dataset": DIGITS, "seed": 0}}


# ---------------------------------------------------------------------------
# param_groups: a proxy-like parameter at 100x the backbone's rate
# ---------------------------------------------------------------------------
class ProxyNet(nn.Module):
    def __init__(self, backbone, feature_dim, num_classes):
        super().__init__()
        self.backbone = backbone
        self.proxies = nn.Parameter(torch.randn(num_classes, feature_dim) * 0.1)

    def forward(self, x):
        return F.normalize(self.backbone(x), dim=1) @ F.normalize(self.proxies, dim=1).t() * 10.0


class PlainHead(Method):
    def build_model(self, backbone, feature_dim):
        return Classifier(backbone, feature_dim, self.data.num_classes)

    def training_step(self, model, batch):
        inputs, targets, _ = batch
        logits = model(inputs)
        return {"loss": F.cross_entropy(logits, targets), "logits": logits}


class WithProxies(PlainHead):
    hyperparameters = {"proxy_lr_scale": number(100.0, "the proxies' rate, x the backbone's", low=0, low_open=True)}

    def build_model(self, backbone, feature_dim):
        return ProxyNet(backbone, feature_dim, self.data.num_classes)

    def param_groups(self, model):
        return groups_by_prefix(model, {"proxies": self.hp["proxy_lr_scale"]})


def test_a_group_trains_at_its_own_rate_and_the_engine_logs_each_groups_rate():
    class KeepFirst(MemoryReporter):
        def report(self, metrics, checkpoint):
            super().report(metrics, checkpoint)
            self.first = getattr(self, "first", checkpoint)

    reporter = KeepFirst()
    train(config(lr_schedule="cosine"), reporter, method_cls=WithProxies)
    first, second = reporter.results
    assert first["train/lr/model"] == pytest.approx(0.01) and first["train/lr/proxies"] == pytest.approx(1.0)
    assert first["train/lr"] == pytest.approx(0.01)  # the engine's rate (scale 1)
    assert second["train/lr/proxies"] / second["train/lr/model"] == pytest.approx(100.0)  # the schedule scales both
    assert second["train/lr/model"] < first["train/lr/model"]
    groups = [(g["name"], g["lr_scale"]) for g in reporter.first["optimizer"]["param_groups"]]
    assert groups == [("proxies", 100.0), ("model", 1.0)]


def test_a_single_group_logs_the_rate_as_before():
    reporter = MemoryReporter()
    train(config(epochs=1), reporter, method_cls=PlainHead)
    assert "train/lr" in reporter.results[0] and not any(k.startswith("train/lr/") for k in reporter.results[0])


def test_a_resumed_trial_keeps_its_groups():
    straight = MemoryReporter()
    train(config(epochs=2), straight, method_cls=WithProxies)

    stopper = StopAfter(1)
    with pytest.raises(KeyboardInterrupt):
        train(config(epochs=2), stopper, method_cls=WithProxies)
    resumed = MemoryReporter(stopper.checkpoint)
    train(config(epochs=2), resumed, method_cls=WithProxies)
    assert torch.equal(resumed.checkpoint["model"]["proxies"], straight.checkpoint["model"]["proxies"])


def info():
    return DataInfo(task="classification", num_classes=3, class_names=("a", "b", "c"), input_shape=(1, 8, 8),
                    train_size=6)


def built(method_cls):
    method = method_cls({**{k: d.default for k, d in method_cls.hyperparameters.items()}, "lr": 0.1,
                         "optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0, "epochs": 1, "batch_size": 4,
                         "lr_schedule": "constant", "lr_gamma": 0.9}, info())
    backbone, dim = build_backbone("small_cnn", 1, global_pool=method_cls.global_pool)
    return method, method.build_model(backbone, dim)


class LeavesOneOut(WithProxies):
    def param_groups(self, model):
        return [ParamGroup("model", list(model.backbone.parameters()))]  # the proxies are forgotten


class CountsOneTwice(WithProxies):
    def param_groups(self, model):
        return [ParamGroup("model", list(model.parameters())), ParamGroup("proxies", [model.proxies], 100.0)]


def test_a_parameter_left_out_of_the_groups_or_in_two_is_refused():
    method, model = built(LeavesOneOut)
    with pytest.raises(ValueError, match=r"left out \['proxies'\]"):
        optimizer_groups(method, model)
    method, model = built(CountsOneTwice)
    with pytest.raises(ValueError, match="in param groups 'model' and 'proxies'"):
        optimizer_groups(method, model)


def test_every_trainable_parameter_is_in_one_group_and_changes_after_a_step():
    method, model = built(WithProxies)
    groups = optimizer_groups(method, model)
    assert sorted(id(p) for g in groups for p in g.params) == sorted(id(p) for p in model.parameters())
    optimizer = make_optimizer(method.hp, groups)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(4, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 0]), torch.arange(4))
    method.training_step(model, batch)["loss"].backward()
    optimizer.step()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []


# ---------------------------------------------------------------------------
# global_pool = False: a head on the feature map (a 1x1 convolution to class maps, then GAP)
# ---------------------------------------------------------------------------
class ClassMapNet(nn.Module):
    def __init__(self, backbone, feature_dim, num_classes):
        super().__init__()
        self.backbone = backbone
        self.to_classes = nn.Conv2d(feature_dim, num_classes, kernel_size=1)
        self.seen_shape = None

    def forward(self, x):
        maps = self.backbone(x)
        self.seen_shape = tuple(maps.shape)
        return self.to_classes(maps).mean(dim=(2, 3))  # GAP of each class activation map


class OnTheMap(PlainHead):
    global_pool = False

    def build_model(self, backbone, feature_dim):
        return ClassMapNet(backbone, feature_dim, self.data.num_classes)


def test_a_head_on_the_feature_map_trains_through_the_engine():
    reporter = MemoryReporter()
    final = train(config(epochs=2, lr=0.05), reporter, method_cls=OnTheMap)
    assert [r["epoch"] for r in reporter.results] == [1, 2]
    assert math.isfinite(final["train/loss"]) and final["val/acc"] > 0.2
    method, model = built(OnTheMap)
    model(torch.zeros(2, 1, 8, 8))
    assert model.seen_shape == (2, 128, 4, 4)  # the small CNN's last map: 128 channels, 8x8 pooled once


@pytest.mark.parametrize("name, channels, side", [("small_cnn", 128, 8), ("resnet18", 512, 2), ("resnet50", 2048, 2)])
def test_backbones_without_global_pooling_end_at_their_last_map(name, channels, side):
    size = 16 if name == "small_cnn" else 64
    pooled, dim = build_backbone(name, 3)
    mapped, map_dim = build_backbone(name, 3, global_pool=False)
    mapped.load_state_dict({k: v for k, v in pooled.state_dict().items() if not k.startswith("fc.")})
    pooled.eval(), mapped.eval()
    x = torch.randn(2, 3, size, size)
    maps = mapped(x)
    assert map_dim == dim == channels and maps.shape == (2, channels, side, side)
    assert torch.allclose(maps.mean(dim=(2, 3)), pooled(x), atol=1e-5)  # GAP of the map = the pooled output


def test_a_feature_map_backbone_splits_into_trunk_and_last_stage():
    for name in ("small_cnn", "resnet18"):
        backbone, _ = build_backbone(name, 1, global_pool=False)
        backbone.eval()
        trunk, last = split_last_stage(backbone)
        x = torch.randn(2, 1, 32, 32)
        assert torch.equal(last(trunk(x)), backbone(x))


# ---------------------------------------------------------------------------
# on_epoch_start: an epoch-dependent weight (a ramp), without the method checkpointing a counter
# ---------------------------------------------------------------------------
def ramp_up(epoch: int, length: int = 3) -> float:
    return math.exp(-5 * (1 - epoch / length) ** 2) if epoch <= length else 1.0


class Ramped(PlainHead):
    loss_parts = ("weight",)

    def __init__(self, hp, data):
        super().__init__(hp, data)
        self.weight = None

    def on_epoch_start(self, epoch):
        self.weight = ramp_up(epoch)

    def training_step(self, model, batch):
        out = super().training_step(model, batch)
        return {**out, "loss": self.weight * out["loss"], "loss/weight": self.weight}


def test_an_epoch_dependent_weight_follows_the_engines_epoch_also_after_a_resume():
    straight = MemoryReporter()
    train(config(epochs=3), straight, method_cls=Ramped)
    assert [r["train/loss/weight"] for r in straight.results] == pytest.approx([ramp_up(e) for e in range(3)])

    stopper = StopAfter(2)
    with pytest.raises(KeyboardInterrupt):
        train(config(epochs=3), stopper, method_cls=Ramped)
    assert stopper.checkpoint["method"] == {}  # nothing of its own to save
    resumed = MemoryReporter(stopper.checkpoint)
    train(config(epochs=3), resumed, method_cls=Ramped)
    assert resumed.results[-1]["train/loss/weight"] == pytest.approx(ramp_up(2))
    assert resumed.results[-1]["val/acc"] == straight.results[-1]["val/acc"]


DRAWN_IN: list = []  # the epoch each training sampler was drawn in


class EpochSampler(PlainHead):
    """A sampler that depends on the epoch (a curriculum): it must see the epoch being trained."""

    def on_epoch_start(self, epoch):
        self.epoch = epoch

    def train_sampler(self, dataset, generator):
        DRAWN_IN.append(self.epoch)
        return None


def test_samplers_are_drawn_after_on_epoch_start():
    DRAWN_IN.clear()
    train(config(epochs=2), MemoryReporter(), method_cls=EpochSampler)
    assert DRAWN_IN == [0, 1]


# ---------------------------------------------------------------------------
# hyperparameters: declared once, read by validation and by the method alike
# ---------------------------------------------------------------------------
def test_a_method_gets_only_values_its_declarations_allow():
    with pytest.raises(ValueError, match=r"proxy_lr_scale: 0 is out of range; allowed: a number > 0"):
        WithProxies({"proxy_lr_scale": 0}, info())
    with pytest.raises(ValueError, match="not a hyperparameter"):
        WithProxies({"proxy_lr": 1.0}, info())
