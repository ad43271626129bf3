"""DMUE's loss functions, pinned by the hand-checked values of METHODS.md (DMUE section)."""

from __future__ import annotations

import pytest
import torch

from trainables.dmue import (insert_zero, minmax_rows, ramp_down, ramp_up, sharpen, similarity_preserving_loss,
                             soft_loss, uncertainty_inputs)


def test_sharpen():
    p = torch.tensor([0.5, 0.3, 0.2])
    assert sharpen(p, 1.2).tolist() == pytest.approx([0.471850, 0.308269, 0.219881], abs=1e-6)
    assert sharpen(p, 0.5).tolist() == pytest.approx([0.657895, 0.236842, 0.105263], abs=1e-6)
    assert sharpen(p, 1.0).tolist() == pytest.approx(p.tolist())
    assert sharpen(torch.rand(5, 6), 0.7).sum(dim=1).tolist() == pytest.approx([1.0] * 5)


def test_insert_zero_at_each_rows_label():
    t = torch.tensor([[0.1, 0.2, 0.7]])
    assert insert_zero(t, 2).tolist() == [[pytest.approx(0.1), pytest.approx(0.2), 0.0, pytest.approx(0.7)]]
    rows = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert insert_zero(rows, torch.tensor([0, 3])).tolist() == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 0.0]]


def test_soft_loss():
    z = torch.zeros(1, 3)
    assert soft_loss(z, torch.tensor([0]), torch.tensor([[0.0, 0.5, 0.5]])).item() == pytest.approx(0.018519, abs=1e-6)
    z = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
    latent = torch.tensor([[0.0, 0.8, 0.2], [0.5, 0.5, 0.0]])
    assert soft_loss(z, torch.tensor([0, 2]), latent).item() == pytest.approx(0.113170, abs=1e-6)


def test_similarity_preserving_loss_and_its_scale_invariance():
    aux = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    features = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    value = similarity_preserving_loss(aux, features).item()
    assert value == pytest.approx(0.170655, abs=1e-6)
    assert similarity_preserving_loss(3.0 * aux, features).item() == pytest.approx(value, abs=1e-6)
    assert similarity_preserving_loss(aux, 0.25 * features).item() == pytest.approx(value, abs=1e-6)


def test_similarity_preserving_loss_gets_gradient_through_both_inputs():
    aux = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    features = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    similarity_preserving_loss(aux, features).backward()
    assert aux.grad.abs().sum() > 0 and features.grad.abs().sum() > 0  # nothing detached, as the code


def test_ramps():
    assert [ramp_up(e, 6) for e in range(7)] == pytest.approx(
        [0.006738, 0.031048, 0.108368, 0.286505, 0.573753, 0.870325, 1.0], abs=1e-6)
    assert ramp_up(20, 6) == 1.0
    assert [ramp_down(e, 6) for e in (0, 5, 6, 7, 12, 35)] == pytest.approx(
        [1.0, 1.0, 1.0, 0.979799, 0.778801, 0.503319], abs=1e-6)


def test_row_min_max_and_its_all_equal_guard():
    assert minmax_rows(torch.tensor([[0.2, 0.5, 0.8]])).tolist() == [[0.0, pytest.approx(0.5), 1.0]]
    assert minmax_rows(torch.tensor([[0.3, 0.3, 0.3]])).tolist() == [[0.0, 0.0, 0.0]]  # no NaN


def test_uncertainty_inputs_are_class_similarities_then_one_hot():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    targets = torch.tensor([0, 1, 1, 0])
    out = uncertainty_inputs(features, targets, num_classes=3)
    assert out.shape == (4, 6)
    # sample 0: mean cosine to class 0 = (1 + 1)/2 = 1, to class 1 = (0 + 0.7071)/2 = 0.354, class 2 absent
    # takes the lowest (0.354): min-max -> [1, 0, 0]. Sample 1: class 0 -> 0, class 1 -> (1 + 0.7071)/2
    assert out[0, :3].tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-6)
    assert out[1, :3].tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-6)
    assert out[:, 3:].tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert torch.isfinite(out).all()


# ---------------------------------------------------------------------------
# The model: batched branches = looped branches; the exported target branch
# ---------------------------------------------------------------------------
from sweeplab.method import DataInfo, all_hyperparameters  # noqa: E402
from sweeplab.models import build_backbone  # noqa: E402
from sweeplab.models.heads import Classifier  # noqa: E402
from trainables.dmue import DMUE, inference_model  # noqa: E402

INFO = DataInfo(task="classification", num_classes=4, class_names=("a", "b", "c", "d"), input_shape=(1, 8, 8),
                train_size=16)


def built(branches: str, backbone: str = "small_cnn", **hp):
    torch.manual_seed(0)  # the same initial weights for either form
    method = DMUE({**all_hyperparameters(DMUE), "batch_size": 8, "branches": branches, **hp}, INFO)
    net, dim = build_backbone(backbone, 1, global_pool=False)
    return method, method.build_model(net, dim)


def batch(n=8):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 3] * (n // 4)), torch.arange(n)


@pytest.mark.parametrize("backbone", ["small_cnn", "resnet18"])
def test_batched_branches_give_the_looped_losses_and_gradients(backbone):
    outputs, models = [], []
    for form in ("batched", "looped"):
        method, model = built(form, backbone, dropout=0.0, train_uncertainty=True)
        model.double().train()
        x, y, idx = batch()
        method.on_epoch_start(7)  # past the ramps' start: every loss counts
        out = method.training_step(model, (x.double(), y, idx))
        out["loss"].backward()
        outputs.append(out)
        models.append(model)
    batched, looped = outputs
    for key in ("loss", "loss/target", "loss/soft", "loss/sp", "loss/aux"):
        value = (lambda v: v.item() if torch.is_tensor(v) else v)
        assert value(batched[key]) == pytest.approx(value(looped[key]), abs=1e-5, rel=1e-5), key
    stacked_net, looped_net = models
    for (name, a), (_, b) in zip(stacked_net.trunk.named_parameters(), looped_net.trunk.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name
    copies = looped_net.branches.copies
    for p_stacked, *per_copy in zip(stacked_net.branches.parameters(), *(c.parameters() for c in copies)):
        assert torch.allclose(p_stacked.grad, torch.cat([p.grad for p in per_copy]), atol=1e-5)
    for name in ("aux_heads", "head.weight", "neck.weight"):
        a, b = stacked_net.get_parameter(name), looped_net.get_parameter(name)
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name


@pytest.mark.parametrize("form", ["batched", "looped"])
def test_the_exported_target_branch_is_a_plain_classifier_with_the_same_predictions(form):
    method, model = built(form)
    model.train()
    for _ in range(2):  # move the neck's running statistics off their start
        model(batch()[0], batch()[1])
    model.eval()
    x = batch(12)[0]
    plain = inference_model(model)
    assert torch.allclose(plain(x), method.predict(model, x), atol=1e-5)
    backbone, dim = build_backbone("small_cnn", 1)
    baseline = Classifier(backbone, dim, INFO.num_classes)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in baseline.parameters())


def test_the_heads_train_at_their_own_rate_and_the_official_optimizer_leaves_the_mlp_and_neck():
    method, model = built("batched")
    groups = {g.name: g for g in method.param_groups(model)}
    assert groups["heads"].lr_scale == 10.0
    assert {id(p) for p in groups["heads"].params} == {id(model.aux_heads), id(model.head.weight)}
    assert not any(p.requires_grad for p in model.uncertainty.parameters()) and not model.neck.weight.requires_grad
    method, model = built("batched", train_uncertainty=True)
    heads = {id(p) for p in {g.name: g for g in method.param_groups(model)}["heads"].params}
    assert id(model.neck.weight) in heads and all(id(p) in heads for p in model.uncertainty.parameters())
    assert not model.neck.bias.requires_grad  # frozen, as the official neck


def test_a_batch_below_twice_the_classes_is_refused():
    with pytest.raises(ValueError, match="batch_size: 6 is below 8: DMUE compares each sample"):
        DMUE({**all_hyperparameters(DMUE), "batch_size": 6}, INFO)
