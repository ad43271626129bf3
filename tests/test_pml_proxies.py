"""The pytorch-metric-learning proxy baselines (trainables/pml_proxies.py): the proxies live in the
model and train in their own group, the embeddings are what retrieval ranks, and the loss is pml's
own, with each paper's options (the wrapper adds nothing)."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from pytorch_metric_learning import losses as L
from pytorch_metric_learning import regularizers as R

from sweeplab import optim
from sweeplab.method import DataInfo, all_hyperparameters, declarations
from sweeplab.models import build_backbone
from sweeplab.spaces import parse_space
from trainables.pml_proxies import NormalizedSoftmax, ProxyAnchor, ProxyNCA, SoftTriple
from trainables.registry import METHODS

C, DIM = 5, 16
INFO = DataInfo(task="retrieval", num_classes=C, class_names=tuple("abcde"), input_shape=(1, 8, 8), train_size=40)
CLASSES = {"proxy_nca": ProxyNCA, "proxy_anchor": ProxyAnchor, "soft_triple": SoftTriple,
           "normalized_softmax": NormalizedSoftmax}

# (method, its options, the same loss written directly with pml): the papers' defaults, then others
REFERENCES = [
    ("proxy_nca", {}, lambda: L.ProxyNCALoss(C, DIM, softmax_scale=1.0)),
    ("proxy_nca", {"softmax_scale": 9.0}, lambda: L.ProxyNCALoss(C, DIM, softmax_scale=9.0)),
    ("proxy_anchor", {}, lambda: L.ProxyAnchorLoss(C, DIM, margin=0.1, alpha=32)),
    ("proxy_anchor", {"margin": 0.2, "alpha": 16.0}, lambda: L.ProxyAnchorLoss(C, DIM, margin=0.2, alpha=16)),
    ("soft_triple", {}, lambda: L.SoftTripleLoss(
        C, DIM, centers_per_class=10, la=20, gamma=0.1, margin=0.01,
        weight_regularizer=R.SparseCentersRegularizer(C, 10), weight_reg_weight=0.2)),
    ("soft_triple", {"centers_per_class": 3, "la": 10.0, "gamma": 0.2, "margin": 0.05, "tau": 0.5},
     lambda: L.SoftTripleLoss(C, DIM, centers_per_class=3, la=10, gamma=0.2, margin=0.05,
                              weight_regularizer=R.SparseCentersRegularizer(C, 3), weight_reg_weight=0.5)),
    ("soft_triple", {"centers_per_class": 1}, lambda: L.SoftTripleLoss(C, DIM, centers_per_class=1, la=20,
                                                                       gamma=0.1, margin=0.01)),
    ("normalized_softmax", {}, lambda: L.NormalizedSoftmaxLoss(C, DIM, temperature=0.05)),
    ("normalized_softmax", {"temperature": 0.1}, lambda: L.NormalizedSoftmaxLoss(C, DIM, temperature=0.1)),
]


def build(name: str, **options):
    """(method, model) of ``name`` on small_cnn, 16-d, plain SGD (options override the defaults)."""
    cls = CLASSES[name]
    hp = {**all_hyperparameters(cls), "dim": DIM, "optimizer": "sgd", "lr": 0.1, "momentum": 0.0,
          "weight_decay": 0.0, **options}
    torch.manual_seed(0)
    method = cls(hp, INFO)
    backbone, feature_dim = build_backbone("small_cnn", 1)
    return method, method.build_model(backbone, feature_dim)


def batch(n: int = 20, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % C, torch.arange(n)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_the_proxies_are_the_models_and_exactly_the_proxies_group(name):
    method, model = build(name, proxy_lr_scale=7.0)
    proxies = list(model.criterion.parameters())
    assert proxies and all(any(p is q for q in model.parameters()) for p in proxies)
    assert set(model.state_dict()) >= {f"criterion.{n}" for n, _ in model.criterion.named_parameters()}
    groups = {g.name: g for g in optim.optimizer_groups(method, model)}  # every parameter in exactly one
    assert set(groups) == {"model", "proxies"}
    assert groups["proxies"].lr_scale == 7.0 and groups["model"].lr_scale == 1.0
    assert {id(p) for p in groups["proxies"].params} == {id(p) for p in proxies}
    rest = [p for n, p in model.named_parameters() if not n.startswith("criterion.")]
    assert {id(p) for p in groups["model"].params} == {id(p) for p in rest}


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_predict_gives_the_unit_embeddings(name):
    method, model = build(name)
    inputs, _, _ = batch()
    model.eval()
    embeddings = method.predict(model, inputs)
    assert embeddings.shape == (len(inputs), DIM) and not embeddings.requires_grad
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(len(inputs)))
    torch.testing.assert_close(embeddings, model(inputs))


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_one_sgd_step_moves_the_proxies_and_the_backbone(name):
    method, model = build(name)
    optimizer = optim.make_optimizer(method.hp, optim.optimizer_groups(method, model))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = method.training_step(model, batch())
    assert set(out) == {"loss"} and out["loss"].ndim == 0 and math.isfinite(out["loss"].item())
    optimizer.zero_grad()
    out["loss"].backward()
    optimizer.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert any(n.startswith("criterion.") for n in moved), moved
    assert any(n.startswith("backbone.") for n in moved), moved


@pytest.mark.parametrize("name, options, reference", REFERENCES,
                         ids=[f"{n}-{'-'.join(o) or 'defaults'}" for n, o, _ in REFERENCES])
def test_the_loss_is_pmls_own(name, options, reference):
    method, model = build(name, **options)
    inputs, targets, indices = batch()
    embeddings, loss = model(inputs, targets)
    pml = reference()
    pml.load_state_dict(model.criterion.state_dict())  # the same proxies
    expected = pml(embeddings.detach(), targets)
    assert loss.item() > 0
    torch.testing.assert_close(loss.detach(), expected)
    torch.testing.assert_close(method.training_step(model, (inputs, targets, indices))["loss"].detach(), expected)


def test_soft_triple_with_tau_is_the_papers_loss():
    """L = CE(λ (S - δ 1[c = y]), y) + τ Σ_c Σ_{k<k'} sqrt(2 - 2 cos(w_ck, w_ck')) / (C K (K - 1)), the
    official code's equation (its 1e-5 inside the root aside), computed here from the centres."""
    K, la, gamma, delta, tau = 3, 20.0, 0.1, 0.01, 0.2
    method, model = build("soft_triple", centers_per_class=K)
    inputs, targets, _ = batch()
    embeddings, loss = model(inputs, targets)
    x = embeddings.detach()
    centres = torch.nn.functional.normalize(model.criterion.fc.detach(), dim=0)  # (DIM, C K), class-major
    cos = (x @ centres).view(-1, C, K)
    similarity = (torch.softmax(cos / gamma, dim=2) * cos).sum(dim=2)
    ce = torch.nn.functional.cross_entropy(la * (similarity - delta * torch.nn.functional.one_hot(targets, C)), targets)
    pairs = centres.t() @ centres
    reg = sum(torch.sqrt(2.0 - 2.0 * pairs[c * K + i, c * K + j])
              for c in range(C) for i in range(K) for j in range(i + 1, K)) / (C * K * (K - 1))
    torch.testing.assert_close(loss.detach(), ce + tau * reg, rtol=1e-5, atol=1e-5)


def test_proxy_nca_scale_stops_where_float32_keeps_every_sample():
    """pml drops a sample whose positive probability underflows to 0: at s = 25 the farthest positive
    (squared distance 4, the nearest proxy at 0) still counts, -log p = 4 s; above 25 it is refused."""
    pml = L.ProxyNCALoss(2, 2, softmax_scale=25.0)
    pml.proxies.data = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    x, y = torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 0])  # the first is on the wrong proxy
    assert pml(x, y).item() == pytest.approx((100.0 + 0.0) / 2, rel=1e-3)
    with pytest.raises(ValueError, match="softmax_scale"):
        ProxyNCA({"softmax_scale": 26.0}, INFO)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_registry_and_search_space(name):
    entry = METHODS[name]
    assert entry.load() is CLASSES[name]
    assert (entry.task, entry.metric, entry.mode) == ("retrieval", "val/recall_at_1", "max")
    decls = declarations(CLASSES[name])
    space = parse_space(yaml.safe_load(entry.search_space.read_text()), str(entry.search_space))
    for key, param in space.items():  # every value the space can give is one its declaration allows
        values = {"fixed": [param.value], "categorical": list(param.choices or ())}.get(param.kind,
                                                                                      [param.low, param.high])
        assert key in decls, key
        assert all(decls[key].problem(v) is None for v in values), (key, values)
