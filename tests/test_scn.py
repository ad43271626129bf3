"""SCN's losses and relabelling against hand-checked values (METHODS.md), its model, its step,
and relabelling through the engine (never, scope, metrics, checkpoint and resume)."""

from __future__ import annotations

import math

import pytest
import torch

from sweeplab.data import build_dataset
from sweeplab.data.indexed import IndexedTensorDataset
from sweeplab.context import CONTEXT_KEY
from sweeplab.engine import MemoryReporter, train
from sweeplab.method import DataInfo, all_hyperparameters
from sweeplab.models import build_backbone
from trainables.scn import (
    SCN,
    SelfCureNet,
    high_group_size,
    rank_regularization,
    relabel_candidates,
    weighted_cross_entropy,
)

ALPHA = [0.60, 0.58, 0.56, 0.55, 0.54, 0.53, 0.52, 0.50, 0.49, 0.48]


def data_info(num_classes=3, train_size=10) -> DataInfo:
    return DataInfo(task="classification", num_classes=num_classes, class_names=tuple(map(str, range(num_classes))),
                    input_shape=(1, 8, 8), train_size=train_size)


def make(num_classes=3, train_size=10, **hp):
    method = SCN({**all_hyperparameters(SCN), **hp}, data_info(num_classes, train_size))
    return method


def attached(targets, clean=None, **hp):
    """An SCN method attached to a tiny in-memory training set with ``targets``."""
    targets = torch.as_tensor(targets)
    method = make(train_size=len(targets), **hp)
    dataset = IndexedTensorDataset(torch.zeros(len(targets), 1, 8, 8), targets)
    method.attach_train_data(dataset, None if clean is None else torch.as_tensor(clean))
    return method, dataset


def step_outputs(alpha, logits, high=None):
    """What ``training_step`` hands ``after_optimizer_step``: α, α · z and the high-group mask."""
    alpha = torch.as_tensor(alpha, dtype=torch.float32)
    logits = torch.as_tensor(logits, dtype=torch.float32)
    if high is None:
        high = torch.zeros(len(alpha), dtype=torch.bool)
    return {"alpha": alpha, "logits": alpha[:, None] * logits, "high": torch.as_tensor(high)}


# -- rank regularisation ---------------------------------------------------------------------
def test_rank_regularization_by_hand_with_its_gradient():
    alpha = torch.tensor(ALPHA, requires_grad=True)
    loss, high = rank_regularization(alpha, beta=0.7, margin=0.15)
    # M = floor(0.7 * 10) = 7: mean high = 3.88 / 7, mean low = 1.47 / 3
    assert high.tolist() == [True] * 7 + [False] * 3
    assert loss.item() == pytest.approx(0.085714, abs=1e-6)
    loss.backward()
    assert alpha.grad[:7].tolist() == pytest.approx([-1 / 7] * 7, abs=1e-6)
    assert alpha.grad[7:].tolist() == pytest.approx([1 / 3] * 3, abs=1e-6)


def test_rank_regularization_groups_by_rank_not_position():
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    alpha = torch.tensor(ALPHA)[order]
    loss, high = rank_regularization(alpha, 0.7, 0.15)
    assert loss.item() == pytest.approx(0.085714, abs=1e-6)
    assert sorted(alpha[high].tolist()) == pytest.approx(sorted(ALPHA[:7]))


def test_rank_regularization_is_zero_for_well_separated_groups():
    alpha = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0], requires_grad=True)
    loss, _ = rank_regularization(alpha, 0.7, 0.15)  # gap = 0.6 - 0.1 = 0.5 > 0.15
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(alpha.grad == 0)
    # groups apart by just more than the margin: still 0; by just less: positive
    tight = torch.tensor([0.66] * 7 + [0.5] * 3)
    assert rank_regularization(tight, 0.7, 0.15)[0].item() == 0.0
    assert rank_regularization(tight, 0.7, 0.17)[0].item() == pytest.approx(0.01, abs=1e-6)


@pytest.mark.parametrize("beta, batch", [(0.0, 10), (1.0, 10), (0.7, 1), (0.05, 10)])
def test_rank_regularization_with_an_empty_group_is_zero_and_backward_works(beta, batch):
    alpha = torch.rand(batch, requires_grad=True)
    loss, high = rank_regularization(alpha, beta, 0.15)
    assert loss.item() == 0.0 and int(high.sum()) == high_group_size(batch, beta)
    loss.backward()
    assert alpha.grad is not None and torch.all(alpha.grad == 0)


def test_high_group_size_is_the_floor_of_beta_times_batch():
    assert high_group_size(10, 0.7) == 7
    assert high_group_size(64, 0.7) == 44
    assert high_group_size(100, 0.57) == 57  # 0.57 * 100 = 56.999... in floating point
    assert high_group_size(3, 0.5) == 1


# -- logit-weighted cross-entropy ---------------------------------------------------------
@pytest.mark.parametrize("alpha, expected", [(1.0, 0.407606), (0.5, 0.680270)])
def test_weighted_cross_entropy_by_hand(alpha, expected):
    z, y = torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([0])
    assert weighted_cross_entropy(alpha * z, y).item() == pytest.approx(expected, abs=1e-6)


def test_model_scales_the_logits_by_alpha():
    torch.manual_seed(0)
    backbone, dim = build_backbone("small_cnn", 1)
    model = SelfCureNet(backbone, dim, 3).eval()
    x = torch.randn(4, 1, 8, 8)
    alpha, scaled = model(x)
    features = model.backbone(x)
    assert alpha.shape == (4, 1) and torch.all((alpha > 0) & (alpha < 1))
    assert torch.allclose(alpha, torch.sigmoid(model.importance(features)))
    assert torch.allclose(scaled, alpha * model.fc(features), atol=1e-6)
    method = make()
    assert torch.allclose(method.predict(model, x), scaled)  # prediction = α · z (same arg-max as z)


def test_training_step_is_wce_plus_weighted_rr():
    torch.manual_seed(0)
    method = make(rr_weight=2.0, margin_1=0.3)
    backbone, dim = build_backbone("small_cnn", 1)
    model = method.build_model(backbone, dim)
    x, y = torch.randn(10, 1, 8, 8), torch.randint(0, 3, (10,))
    out = method.training_step(model, (x, y, torch.arange(10)))
    assert out["loss"].item() == pytest.approx(float(out["loss/wce"] + 2.0 * out["loss/rr"]), rel=1e-5)
    assert out["loss/rr"] > 0  # at initialisation α barely varies, so the gap is under 0.3
    assert int(out["high"].sum()) == 7 and out["alpha"].shape == (10,)
    out["loss"].backward()
    assert model.importance.weight.grad.abs().sum() > 0 and model.fc.weight.grad.abs().sum() > 0


def test_dropout_applies_in_training_only():
    torch.manual_seed(0)
    method = make(dropout=0.5)
    backbone, dim = build_backbone("small_cnn", 1)
    model = method.build_model(backbone, dim).eval()
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(model(x)[1], model(x)[1])  # eval: no dropout (the official code drops at eval too)
    model.train()
    assert not torch.equal(model(x)[1], model(x)[1])


# -- relabelling ------------------------------------------------------------------------------
def test_relabel_by_hand():
    # α = 0.5, z = [0, 2, 1]: p = softmax([0, 1, 0.5]) = [0.186, 0.507, 0.307]; p_max - p_0 = 0.32 > 0.2
    mask, new = relabel_candidates(0.5 * torch.tensor([[0.0, 2.0, 1.0]]), torch.tensor([0]), 0.2)
    assert mask.tolist() == [True] and new.tolist() == [1]
    method, dataset = attached([0], relabel_epoch=1, margin_2=0.2)
    method.after_optimizer_step(None, (None, torch.tensor([0]), torch.tensor([0])),
                                step_outputs([0.5], [[0.0, 2.0, 1.0]]))
    assert dataset.targets.tolist() == [1]


def test_relabel_leaves_samples_under_the_margin():
    # gaps p_max - p_y: 0.32 (relabel), 0 (the label is the arg-max), 0 and 0 (ties)
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    targets = torch.tensor([0, 0, 1, 2])
    p = torch.softmax(0.5 * logits, 1)
    assert (p.max(1).values - p[torch.arange(4), targets])[:2].tolist() == pytest.approx([0.3202, 0.0], abs=1e-3)
    mask, _ = relabel_candidates(0.5 * logits, targets, 0.2)
    assert mask.tolist() == [True, False, False, False]
    # a sample whose gap is just under δ2 keeps its label
    z = torch.tensor([[math.log(0.595 / 0.405), 0.0]])  # p = [0.595, 0.405]: gap 0.19 for label 1
    assert relabel_candidates(z, torch.tensor([1]), 0.2)[0].tolist() == [False]
    assert relabel_candidates(z, torch.tensor([1]), 0.18)[0].tolist() == [True]

    method, dataset = attached(targets.tolist(), relabel_epoch=1)
    method.after_optimizer_step(None, (None, targets, torch.arange(4)), step_outputs([0.5] * 4, logits))
    assert dataset.targets.tolist() == [1, 0, 1, 2]


def test_relabel_writes_at_the_samples_dataset_positions():
    method, dataset = attached([0, 0, 0, 0, 0], relabel_epoch=1)
    indices = torch.tensor([4, 1])
    method.after_optimizer_step(None, (None, torch.tensor([0, 0]), indices),
                                step_outputs([1.0, 1.0], [[0.0, 5.0, 0.0], [0.0, 0.0, 5.0]]))
    assert dataset.targets.tolist() == [0, 2, 0, 0, 1]


def test_relabel_epoch_counts_from_one():
    method, dataset = attached([0, 0], relabel_epoch=2)
    batch = (None, torch.tensor([0, 0]), torch.tensor([0, 1]))
    outputs = step_outputs([1.0, 1.0], [[0.0, 5.0, 0.0], [0.0, 5.0, 0.0]])
    method.on_epoch_start(0)  # the engine's epoch, counted from 0
    assert not method.relabelling()
    method.after_optimizer_step(None, batch, outputs)  # epoch 1: before relabel_epoch
    assert dataset.targets.tolist() == [0, 0]
    assert method.on_epoch_end(0)["relabel_count"] == 0
    method.on_epoch_start(1)
    assert method.relabelling()
    method.after_optimizer_step(None, batch, outputs)  # epoch 2: relabels
    assert dataset.targets.tolist() == [1, 1]
    assert method.on_epoch_end(1)["relabel_count"] == 2


def test_never_disables_relabelling():
    method, dataset = attached([0, 0], relabel_epoch="never")
    for epoch in range(30):
        method.after_optimizer_step(None, (None, torch.tensor([0, 0]), torch.tensor([0, 1])),
                                    step_outputs([1.0, 1.0], [[0.0, 9.0, 0.0], [0.0, 0.0, 9.0]]))
        assert method.on_epoch_end(epoch)["relabel_count"] == 0
    assert dataset.targets.tolist() == [0, 0]


@pytest.mark.parametrize("bad", [0, -1, 2.5, "sometimes", True, None])
def test_relabel_epoch_must_be_a_positive_whole_number_or_never(bad):
    with pytest.raises(ValueError, match="relabel_epoch"):
        make(relabel_epoch=bad)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="relabel_scope"):
        make(relabel_scope="high")
    with pytest.raises(ValueError, match="beta"):
        make(beta=1.5)
    with pytest.raises(ValueError, match="margin_2"):
        make(margin_2=-0.1)


def test_scope_low_relabels_only_the_low_importance_group():
    logits = [[0.0, 50.0, 0.0]] * 4  # every sample is a candidate (label 0, prediction 1)
    high = [True, True, False, False]
    for scope, expected in (("all", [1, 1, 1, 1]), ("low", [0, 0, 1, 1])):
        method, dataset = attached([0, 0, 0, 0], relabel_epoch=1, relabel_scope=scope)
        method.after_optimizer_step(None, (None, torch.zeros(4, dtype=torch.long), torch.arange(4)),
                                    step_outputs([0.9, 0.8, 0.2, 0.1], logits, high))
        assert dataset.targets.tolist() == expected


def test_scope_low_uses_the_steps_ranking():
    torch.manual_seed(0)
    method, dataset = attached([0] * 10, relabel_epoch=1, relabel_scope="low", margin_2=0.0)
    backbone, dim = build_backbone("small_cnn", 1)
    model = method.build_model(backbone, dim)
    with torch.no_grad():  # the classifier predicts class 2 for everything: all are candidates
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor([0.0, 0.0, 10.0]))
    x = torch.randn(10, 1, 8, 8)
    out = method.training_step(model, (x, dataset.targets.clone(), torch.arange(10)))
    method.after_optimizer_step(model, (x, torch.zeros(10, dtype=torch.long), torch.arange(10)), out)
    low = torch.argsort(out["alpha"])[:3]  # B - floor(0.7 B) = 3 lowest α
    assert sorted(torch.nonzero(dataset.targets).flatten().tolist()) == sorted(low.tolist())


def test_epoch_metrics_count_changes_and_their_precision():
    # clean labels [1, 2, 0, 0]; given [0, 0, 0, 0]; predictions 1, 1, 2, 0 (sample 3 agrees)
    method, dataset = attached([0, 0, 0, 0], clean=[1, 2, 0, 0], relabel_epoch=1)
    logits = [[0.0, 5.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]]
    method.after_optimizer_step(None, (None, torch.zeros(4, dtype=torch.long), torch.arange(4)),
                                step_outputs([0.9, 0.5, 0.7, 0.3], logits, [True, False, True, False]))
    metrics = method.on_epoch_end(0)
    assert dataset.targets.tolist() == [1, 1, 2, 0]
    assert metrics["relabel_count"] == 3
    assert metrics["relabel_precision"] == pytest.approx(1 / 3)  # only sample 0 got its true label
    assert metrics["label_noise"] == pytest.approx(2 / 4)  # samples 1 and 2 are wrong now (were 2 of 4)
    assert metrics["alpha_mean"] == pytest.approx(0.6)
    # right before the step: samples 2 and 3 (α 0.7, 0.3); wrong: 0 and 1 (α 0.9, 0.5)
    assert metrics["alpha_clean"] == pytest.approx(0.5) and metrics["alpha_noisy"] == pytest.approx(0.7)
    assert metrics["alpha_gap"] == pytest.approx(0.8 - 0.4)
    # an epoch without change: no precision (not NaN), counters reset
    again = method.on_epoch_end(1)
    assert again["relabel_count"] == 0 and "relabel_precision" not in again
    # without true labels: counts only
    method, _ = attached([0], relabel_epoch=1)
    method.after_optimizer_step(None, (None, torch.tensor([0]), torch.tensor([0])),
                                step_outputs([1.0], [[0.0, 5.0, 0.0]]))
    metrics = method.on_epoch_end(0)
    assert metrics["relabel_count"] == 1 and "relabel_precision" not in metrics and "label_noise" not in metrics


def test_state_dict_round_trips_the_targets_and_the_engine_tells_the_epoch():
    method, dataset = attached([0, 0, 0], relabel_epoch=2)
    method.on_epoch_start(0)
    method.on_epoch_end(0)
    dataset.targets[1] = 2
    state = method.state_dict()
    assert state["targets"].tolist() == [0, 2, 0] and set(state) == {"targets"}  # no epoch counter of its own
    fresh, fresh_data = attached([0, 0, 0], relabel_epoch=2)
    shared = fresh_data.targets
    fresh.load_state_dict(state)
    assert fresh_data.targets.tolist() == [0, 2, 0] and fresh_data.targets is shared  # written in place
    fresh.on_epoch_start(1)  # what the engine calls before epoch 2 of the resumed trial
    assert fresh.relabelling()
    other, _ = attached([0, 0], relabel_epoch=2)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(state)


def test_attach_refuses_multi_label_targets():
    method = make()
    with pytest.raises(TypeError, match="targets"):
        method.attach_train_data(IndexedTensorDataset(torch.zeros(2, 1), torch.zeros(2, 3)), None)


# -- through the engine ------------------------------------------------------------------------
NOISE = 0.4


def config(epochs=3, **hp):
    return {
        "epochs": epochs, "batch_size": 64, "optimizer": "adam", "lr": 3e-3, "lr_schedule": "exponential",
        "lr_gamma": 0.9, **hp,
        CONTEXT_KEY: {"method": "scn", "dataset": {"name": "noisy_digits", "noise_rate": NOISE}, "seed": 0},
    }


@pytest.fixture(scope="module")
def given_labels():
    """The noisy training labels the trial starts from, and the true ones."""
    data = build_dataset({"name": "noisy_digits", "noise_rate": NOISE}, seed=0)
    return data.train.targets.clone(), data.train_clean_targets


class StopAfter(MemoryReporter):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def report(self, metrics, checkpoint):
        super().report(metrics, checkpoint)
        if len(self.results) == self.epochs:
            raise KeyboardInterrupt


def test_never_changes_no_label_in_training(given_labels):
    reporter = MemoryReporter()
    train(config(relabel_epoch="never"), reporter)
    given, _ = given_labels
    assert torch.equal(reporter.checkpoint["method"]["targets"], given)
    for result in reporter.results:
        assert result["train/relabel_count"] == 0 and "train/relabel_precision" not in result
        assert result["train/label_noise"] == pytest.approx(NOISE, abs=1e-3)


@pytest.fixture(scope="module")
def straight_run():
    reporter = MemoryReporter()
    train(config(relabel_epoch=1), reporter)
    return reporter


def test_relabelling_in_training_reports_its_metrics(straight_run, given_labels):
    given, clean = given_labels
    final = straight_run.checkpoint["method"]["targets"]
    changed = int((final != given).sum())
    assert changed > 0
    counts = [r["train/relabel_count"] for r in straight_run.results]
    assert all(c > 0 for c in counts) and sum(counts) >= changed  # a label may change twice
    for r in straight_run.results:
        assert 0 <= r["train/relabel_precision"] <= 1
        assert {"train/alpha_mean", "train/alpha_gap", "train/loss/wce", "train/loss/rr"} <= set(r)
    assert straight_run.results[-1]["train/label_noise"] == pytest.approx(float((final != clean).float().mean()))
    assert straight_run.results[-1]["train/label_noise"] < NOISE  # relabelling cured more than it broke


def test_a_resumed_trial_continues_with_the_relabelled_set(straight_run, given_labels):
    stopper = StopAfter(2)
    with pytest.raises(KeyboardInterrupt):
        train(config(relabel_epoch=1), stopper)
    relabelled = stopper.checkpoint["method"]["targets"]
    assert not torch.equal(relabelled, given_labels[0])  # the checkpoint holds relabels
    resumed = MemoryReporter(checkpoint=stopper.checkpoint)
    train(config(relabel_epoch=1), resumed)
    assert [r["epoch"] for r in resumed.results] == [3]
    assert resumed.results[-1]["val/acc"] == straight_run.results[-1]["val/acc"]
    assert resumed.results[-1]["train/loss"] == straight_run.results[-1]["train/loss"]
    assert torch.equal(resumed.checkpoint["method"]["targets"], straight_run.checkpoint["method"]["targets"])
