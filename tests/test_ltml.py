"""LTML's losses against hand-checked values (METHODS.md), its branches, its step and its prediction."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from sweeplab.method import DataInfo, all_hyperparameters
from sweeplab.models import build_backbone
from trainables.ltml import (
    LTML,
    LogitCompensation,
    TwoBranchNet,
    class_weights,
    classification_loss,
    consistency_loss,
)

COUNTS = (6, 3, 1)  # training images per class
TRAIN_SIZE = 8  # images (some have several labels, so sum(COUNTS) = 10 > 8)


def data_info(counts=COUNTS, train_size=TRAIN_SIZE) -> DataInfo:
    return DataInfo(task="multilabel", num_classes=len(counts), class_names=tuple("abc"[: len(counts)]),
                    input_shape=(1, 16, 16), train_size=train_size, train_class_counts=tuple(counts))


def make(seed=0, **hp):
    """An LTML model with the learnable compensation on unless a test says otherwise
    (the method's default is off; the compensation is what most of these tests exercise)."""
    torch.manual_seed(seed)
    hp.setdefault("compensation", True)
    method = LTML({**all_hyperparameters(LTML), **hp}, data_info())
    backbone, dim = build_backbone("small_cnn", 1)
    return method, method.build_model(backbone, dim)


def batch(seed, n=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 16, 16, generator=g)
    y = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=torch.float32)[:n]
    return x, y, torch.arange(n)


# -- L_cls --------------------------------------------------------------------------------------
def test_cls_with_unit_weights_and_identity_compensation_is_mean_bce():
    z, y = torch.tensor([[0.0, 2.0, -1.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    assert classification_loss(z, y).item() == pytest.approx(1.044446, abs=1e-6)
    ones = torch.ones(3)
    loss = classification_loss(z, y, ones, ones, LogitCompensation(3))  # s = 1, m = 0 at init
    assert loss.item() == pytest.approx(1.044446, abs=1e-6)


def test_cls_positive_compensation_scales_and_shifts_the_logit():
    comp = LogitCompensation(1)
    with torch.no_grad():
        comp.scale_pos.fill_(2.0)
        comp.shift_pos.fill_(0.5)
        comp.scale_neg.fill_(7.0)  # unused by a positive
    loss = classification_loss(torch.zeros(1, 1), torch.ones(1, 1), compensation=comp)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.5))), abs=1e-6)
    assert loss.item() == pytest.approx(0.474077, abs=1e-6)


def test_cls_negative_uses_the_negative_compensation():
    comp = LogitCompensation(1)
    with torch.no_grad():
        comp.scale_neg.fill_(2.0)
        comp.shift_neg.fill_(-1.0)
    z = torch.tensor([[1.5]])
    loss = classification_loss(z, torch.zeros(1, 1), compensation=comp)
    assert loss.item() == pytest.approx(-math.log(1 - 1 / (1 + math.exp(-(1.5 * 2 - 1)))), abs=1e-6)


def test_cls_without_weights_or_compensation_equals_torch_bce():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 3, generator=g) * 3
    y = (torch.rand(5, 3, generator=g) > 0.5).float()
    expected = F.binary_cross_entropy_with_logits(z, y)
    assert torch.allclose(classification_loss(z, y), expected, atol=1e-6)
    ones = torch.ones(3)
    assert torch.allclose(classification_loss(z, y, ones, ones, LogitCompensation(3)), expected, atol=1e-6)


def test_cls_weights_multiply_each_term():
    z, y = torch.tensor([[0.0, 2.0, -1.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    w_pos, w_neg = torch.tensor([2.0, 9.0, 9.0]), torch.tensor([9.0, 3.0, 0.5])
    terms = [2.0 * math.log(2), 3.0 * math.log(1 + math.exp(2)), 0.5 * math.log(1 + math.exp(-1))]
    assert classification_loss(z, y, w_pos, w_neg).item() == pytest.approx(sum(terms) / 3, abs=1e-5)


def test_class_weights_by_hand():
    # rho = N_k / N with N = 8 images: [0.75, 0.375, 0.125]
    w_pos, w_neg = class_weights(COUNTS, TRAIN_SIZE, "exp")
    assert w_pos.tolist() == pytest.approx([math.exp(0.25), math.exp(0.625), math.exp(0.875)], abs=1e-6)
    assert w_pos.tolist() == pytest.approx([1.284025, 1.868246, 2.398875], abs=1e-6)
    assert w_neg.tolist() == pytest.approx([2.117000, 1.454991, 1.133148], abs=1e-6)
    w_pos, w_neg = class_weights(COUNTS, TRAIN_SIZE, "none")
    assert w_pos.tolist() == w_neg.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("denominator, total", [("images", TRAIN_SIZE), ("labels", sum(COUNTS))])
def test_method_weights_follow_rho_denominator(denominator, total):
    method, _ = make(rho_denominator=denominator)
    rho = torch.tensor(COUNTS, dtype=torch.float32) / total
    assert torch.allclose(method.pos_weight, torch.exp(1 - rho))
    assert torch.allclose(method.neg_weight, torch.exp(rho))
    # labels: rho = [0.6, 0.3, 0.1] -> w+ = e^0.4, e^0.7, e^0.9
    if denominator == "labels":
        assert method.pos_weight.tolist() == pytest.approx([1.491825, 2.013753, 2.459603], abs=1e-6)


def test_degenerate_batches_give_finite_loss_and_gradients():
    # row 1 has no label at all; class 2 is absent from the batch
    z = torch.tensor([[3.0, -2.0, 0.5], [-40.0, 40.0, 0.0]], requires_grad=True)
    y = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    comp = LogitCompensation(3)
    w_pos, w_neg = class_weights(COUNTS, TRAIN_SIZE)
    loss = classification_loss(z, y, w_pos, w_neg, comp)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(z.grad).all()
    for p in comp.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    # an all-negative batch only has negative terms; the positive compensation gets zero gradient
    comp.zero_grad()
    loss = classification_loss(z.detach(), torch.zeros(2, 3), w_pos, w_neg, comp)
    loss.backward()
    assert torch.isfinite(loss) and comp.shift_pos.grad.abs().sum() == 0


# -- L_con --------------------------------------------------------------------------------------
@pytest.mark.parametrize("on", ["probs", "logits"])
def test_consistency_of_identical_branches_is_zero(on):
    z = torch.randn(4, 3)
    assert consistency_loss(z, z.clone(), on).item() == 0.0


def test_consistency_by_hand():
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    sig2 = 1 / (1 + math.exp(-2))
    assert consistency_loss(a, b, "probs").item() == pytest.approx((sig2 - 0.5) ** 2 / 2, abs=1e-7)
    assert consistency_loss(a, b, "logits").item() == pytest.approx(2.0, abs=1e-7)


def test_identical_branches_give_zero_consistency_in_a_step():
    method, model = make()
    model.branch_r.load_state_dict(model.branch_u.state_dict())
    out = method.training_step(model, (batch(1), batch(2)))
    assert float(out["loss/con"]) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("detach", [False, True])
def test_detach_partner_stops_the_gradient_to_the_partner_branch(detach):
    method, model = make(detach_partner=detach)
    x, _, _ = batch(1)
    u, u_hat = model(x)  # u = U(X), û = R(X): the partner is branch R
    method._con(u, u_hat).backward()
    partner_grads = [p.grad for p in model.branch_r.parameters()]
    if detach:
        assert all(g is None for g in partner_grads)
    else:
        assert any(g is not None and g.abs().sum() > 0 for g in partner_grads)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.branch_u.parameters())

    model.zero_grad(set_to_none=True)
    r_hat, r = model(x)  # r̂ = U(X'), r = R(X'): the partner is branch U
    method._con(r, r_hat).backward()
    partner_grads = [p.grad for p in model.branch_u.parameters()]
    assert all(g is None for g in partner_grads) if detach else any(g is not None for g in partner_grads)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.branch_r.parameters())


# -- model, step, prediction -------------------------------------------------------------------
def test_branches_are_own_copies_of_the_last_stage_over_a_shared_trunk():
    _, model = make()
    assert isinstance(model, TwoBranchNet)
    u_params = {id(p) for p in model.branch_u.parameters()}
    r_params = {id(p) for p in model.branch_r.parameters()}
    trunk_params = {id(p) for p in model.trunk.parameters()}
    assert not (u_params & r_params) and not (trunk_params & (u_params | r_params))
    # the last stages start identical (copies of one), the heads are initialised independently
    assert torch.equal(model.branch_u[0][0][0].weight, model.branch_r[0][0][0].weight)


@pytest.mark.parametrize("sharing, sets", [("per_branch", 2), ("shared", 1)])
def test_compensation_parameters_are_model_parameters(sharing, sets):
    method, model = make(compensation_params=sharing)
    params = {id(p) for p in model.parameters()}
    comps = {id(m) for m in (model.compensation_u, model.compensation_r)}
    assert len(comps) == sets
    for comp in (model.compensation_u, model.compensation_r):
        assert all(id(p) in params for p in comp.parameters())
    assert not any(isinstance(v, torch.nn.Parameter) for v in vars(method).values())


def test_compensation_off_has_no_parameters_and_gives_plain_bce():
    method, model = make(compensation=False, weighting="none", lambda_con=0.0)
    assert model.compensation_u is None and model.compensation_r is None
    assert method.pos_weight is None
    (x, y, i), (x2, y2, i2) = batch(1), batch(2)
    out = method.training_step(model, ((x, y, i), (x2, y2, i2)))
    u, _ = model(x)
    _, r = model(x2)
    expected = F.binary_cross_entropy_with_logits(u, y) + F.binary_cross_entropy_with_logits(r, y2)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_training_step_returns_named_parts_and_backpropagates():
    method, model = make()
    out = method.training_step(model, (batch(1), batch(2)))
    assert torch.isfinite(out["loss"])
    for key in ("loss/cls_uniform", "loss/cls_rebalanced", "loss/con"):
        assert out[key].dim() == 0 and not out[key].requires_grad and math.isfinite(out[key])
    total = float(out["loss/cls_uniform"] + out["loss/cls_rebalanced"] + 0.1 * out["loss/con"])
    assert out["loss"].item() == pytest.approx(total, rel=1e-5)
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.compensation_r.shift_neg.grad.abs().sum() > 0


def test_predict_is_the_logit_of_the_mean_probability():
    method, model = make()
    model.eval()
    x, _, _ = batch(3)
    with torch.no_grad():
        u, r = model(x)
    scores = method.predict(model, x)
    mean = (torch.sigmoid(u) + torch.sigmoid(r)) / 2
    assert torch.allclose(torch.sigmoid(scores), mean, atol=1e-6)
    assert torch.allclose(scores, torch.log(mean / (1 - mean)), atol=1e-5)
    # identical branches: the prediction is the branch's own logits
    model.branch_r.load_state_dict(model.branch_u.state_dict())
    assert torch.allclose(method.predict(model, x), model(x)[0], atol=1e-4)


def test_predict_ignores_the_compensation():
    method, model = make()
    model.eval()
    x, _, _ = batch(3)
    before = method.predict(model, x)
    with torch.no_grad():
        for p in model.compensation_u.parameters():
            p.add_(3.0)
    assert torch.equal(method.predict(model, x), before)


@pytest.mark.parametrize("key, value", [
    ("weighting", "focal"), ("rho_denominator", "pixels"), ("compensation_params", "both"),
    ("consistency", "kl"), ("compensation", "yes"), ("detach_partner", 1), ("sampler_epoch_length", 0.0),
])
def test_bad_options_are_refused(key, value):
    with pytest.raises(ValueError, match=key):
        make(**{key: value})


def test_exp_weighting_needs_class_counts():
    info = DataInfo(task="multilabel", num_classes=3, class_names=("a", "b", "c"), input_shape=(1, 8, 8),
                    train_size=8)
    with pytest.raises(ValueError, match="weighting"):
        LTML(all_hyperparameters(LTML), info)
    LTML({**all_hyperparameters(LTML), "weighting": "none"}, info)  # fine without counts


def test_an_epoch_of_the_engine_with_paired_batches():
    """The engine's loop hands (uniform batch, second batch) to the step (second loader uniform here)."""
    from torch.utils.data import DataLoader

    from sweeplab.data.indexed import IndexedTensorDataset
    from sweeplab.engine import train_one_epoch
    from sweeplab.optim import make_optimizer

    method, model = make(batch_size=4, optimizer="sgd", lr=0.01)
    g = torch.Generator().manual_seed(0)
    data = IndexedTensorDataset(torch.randn(12, 1, 16, 16, generator=g),
                                (torch.rand(12, 3, generator=g) > 0.6).float())
    loader = DataLoader(data, batch_size=4, shuffle=True, generator=g, drop_last=True)
    second = DataLoader(data, batch_size=4, shuffle=True, generator=g, drop_last=True)
    opt = make_optimizer(method.hp, method.param_groups(model))
    before = model.compensation_u.shift_pos.detach().clone()
    metrics = train_one_epoch(method, model, loader, opt, torch.device("cpu"), second)
    for key in ("train/loss", "train/loss/cls_uniform", "train/loss/cls_rebalanced", "train/loss/con"):
        assert math.isfinite(metrics[key]), key
    assert not torch.equal(model.compensation_u.shift_pos, before)  # the optimizer trains the compensation


def test_paired_sampler_is_the_class_aware_sampler():
    samplers = pytest.importorskip("sweeplab.data.samplers", reason="ClassAwareSampler not written yet")
    from sweeplab.data.indexed import IndexedTensorDataset

    method, _ = make(sampler_epoch_length=0.5, batch_size=2)
    targets = torch.tensor([[1, 0, 0]] * 6 + [[1, 1, 0], [0, 1, 1]], dtype=torch.float32)
    data = IndexedTensorDataset(torch.zeros(8, 1, 4, 4), targets)
    sampler = method.paired_sampler(data, torch.Generator().manual_seed(0))
    assert isinstance(sampler, samplers.ClassAwareSampler)
    assert len(list(sampler)) == 4  # 0.5 x 8 images


def test_compensation_is_off_by_default():
    """Its learnable form has a minimum that ignores the logits (see trainables/ltml.py)."""
    assert LTML.hyperparameters["compensation"].default is False
    method = LTML(all_hyperparameters(LTML), data_info())
    backbone, dim = build_backbone("small_cnn", 1)
    model = method.build_model(backbone, dim)
    assert model.compensation_u is None and model.compensation_r is None


def test_the_learnable_compensation_alone_can_drive_l_cls_to_zero():
    """The degenerate minimum, shown: with m^p large and m^n very negative the loss vanishes
    for logits that are all wrong."""
    comp = LogitCompensation(2)
    with torch.no_grad():
        comp.shift_pos.fill_(50.0)
        comp.shift_neg.fill_(-50.0)
    wrong = torch.tensor([[-3.0, 3.0]])  # class 0 positive scored low, class 1 negative scored high
    loss = classification_loss(wrong, torch.tensor([[1.0, 0.0]]), compensation=comp)
    assert loss.item() < 1e-10
