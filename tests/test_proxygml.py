"""ProxyGML's loss, pinned by the hand-checked values of METHODS.md (ProxyGML section), and the
check of its neighbourhood ratio r against the dataset's classes."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from sweeplab.method import DataFacts, DataInfo, all_hyperparameters
from sweeplab.models import build_backbone
from sweeplab.spec import validate_files
from trainables.proxygml import ProxyGML, neighbourhood_size, proxygml_loss, proxygml_terms

# d = 2, C = 2, N = 2: class 0's proxies (1, 0), (0.6, 0.8); class 1's (0, 1), (-1, 0) (the columns)
PROXIES = torch.tensor([[1.0, 0.6, 0.0, -1.0], [0.0, 0.8, 1.0, 0.0]])
X = torch.tensor([[0.8, 0.6]])
Y = torch.tensor([0])


def r_for(k: int) -> float:
    return k / 4  # k = ceil(r C N) with C N = 4


def test_the_classification_term_at_each_k():
    cls = [proxygml_terms(X, PROXIES, Y, 2, 2, r_for(k))[0].item() for k in (2, 3, 4)]
    assert cls == pytest.approx([0.0, 0.272685, 0.131781], abs=1e-6)  # k = 2: class 1 masked out


def test_the_proxy_regulariser_and_the_total():
    assert proxygml_terms(X, PROXIES, Y, 2, 2, r_for(3))[1].item() == pytest.approx(0.240461, abs=1e-6)
    assert proxygml_loss(X, PROXIES, Y, 2, 2, r_for(3), lam=0.3).item() == pytest.approx(0.344823, abs=1e-6)
    assert proxygml_loss(X, PROXIES, Y, 2, 2, r_for(4), lam=0.3).item() == pytest.approx(0.203919, abs=1e-6)


def test_a_batch_and_the_proxies_normalised_at_each_call():
    batch, labels = torch.tensor([[0.8, 0.6], [-0.6, 0.8]]), torch.tensor([0, 1])
    assert proxygml_terms(batch, PROXIES, labels, 2, 2, r_for(3))[0].item() == pytest.approx(0.277531, abs=1e-6)
    assert proxygml_terms(batch, 5.0 * PROXIES, labels, 2, 2, r_for(3))[0].item() == pytest.approx(0.277531, abs=1e-6)


def test_the_proxies_and_the_embeddings_get_gradient():
    proxies, x = PROXIES.clone().requires_grad_(), X.clone().requires_grad_()
    proxygml_loss(x, proxies, Y, 2, 2, r_for(3), lam=0.3).backward()
    assert proxies.grad.abs().sum() > 0 and x.grad.abs().sum() > 0


def test_k_rounds_off_float_artefacts():
    assert math.ceil(0.07 * 100) == 8 and neighbourhood_size(0.07, 100, 1) == 7
    assert neighbourhood_size(0.05, 100, 12) == 60 and neighbourhood_size(0.051, 100, 12) == 62


def test_an_r_outside_one_over_c_to_one_is_refused():
    assert ProxyGML.data_problem("r", 0.05, DataFacts(num_classes=45)) is None
    assert ProxyGML.data_problem("r", 1.0, DataFacts(num_classes=45)) is None
    problem = ProxyGML.data_problem("r", 0.02, DataFacts(num_classes=45))
    assert "0.02222 < r <= 1" in problem and "must exceed N" in problem
    assert ProxyGML.data_problem("r", 0.02, DataFacts()) is None  # classes unknown: nothing to check


def test_validation_names_r_and_the_range_that_works(tmp_path):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"r": {"type": "float", "low": 0.01, "high": 0.5}}))
    sweep = {"name": "ml", "dataset": {"name": "retrieval_digits"},
             "methods": {"proxygml": {"num_samples": 1, "search_space": "space.yaml"}}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    [issue] = validate_files([tmp_path / "sweep.yaml"])
    assert issue.key == "methods.proxygml" and "r 0.01 does not fit the dataset's 45 training classes" in issue.message
    assert "0.02222 < r <= 1" in issue.message


def test_the_method_puts_the_proxies_in_their_own_group_and_predicts_unit_embeddings():
    info = DataInfo(task="retrieval", num_classes=5, class_names=tuple("abcde"), input_shape=(1, 8, 8), train_size=50)
    method = ProxyGML({**all_hyperparameters(ProxyGML), "N": 3, "dim": 16}, info)
    backbone, dim = build_backbone("small_cnn", 1)
    model = method.build_model(backbone, dim)
    groups = {g.name: g for g in method.param_groups(model)}
    assert groups["proxies"].lr_scale == 300.0 and [p.shape for p in groups["proxies"].params] == [(16, 15)]
    x = torch.randn(6, 1, 8, 8)
    model.eval()
    assert torch.allclose(method.predict(model, x).norm(dim=1), torch.ones(6), atol=1e-5)
    model.train()
    out = method.training_step(model, (x, torch.tensor([0, 1, 2, 3, 4, 0]), torch.arange(6)))
    assert out["loss"].item() == pytest.approx(float(out["loss/cls"] + 0.3 * out["loss/proxy"]), rel=1e-5)
