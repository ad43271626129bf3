"""DB + GCE: the diversification block and the gradient-boosting CE, pinned by the hand-checked values
of METHODS.md (DB + GCE section), and the method's validation of its patch size."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from torch.nn import functional as F

from sweeplab.method import DataFacts, DataInfo, all_hyperparameters, data_problems
from sweeplab.models import build_backbone, feature_map_size
from sweeplab.spec import validate_files
from trainables.db_gce import DBGCE, diversify, gradient_boosting_cross_entropy, patch_grid, suppression_mask

GCE = gradient_boosting_cross_entropy
MAP4 = torch.arange(1.0, 17.0).view(1, 1, 4, 4)  # [[1..4], ..., [13..16]], GAP 8.5
MAP5 = torch.arange(1.0, 26.0).view(1, 1, 5, 5)  # 1..25, GAP 13


# -- gradient-boosting cross-entropy ------------------------------------------------------------------
def test_gce_values():
    z, y = torch.tensor([[2.0, 1.0, 0.0, -1.0]]), torch.tensor([0])
    assert F.cross_entropy(z, y).item() == pytest.approx(0.440190, abs=1e-6)
    assert [GCE(z, y, k).item() for k in (1, 2, 3)] == pytest.approx([0.313262, 0.407606, 0.440190], abs=1e-6)
    z = torch.tensor([[0.5, 3.0, -1.0, 2.0, 0.0]])
    assert F.cross_entropy(z, y).item() == pytest.approx(2.917438, abs=1e-6)
    assert GCE(z, y, 2).item() == pytest.approx(2.871539, abs=1e-6)
    batch = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert GCE(batch, torch.tensor([2, 1]), 1).item() == pytest.approx(0.503204, abs=1e-6)


def test_gce_is_ce_at_k_c_minus_1_and_k_is_clamped():
    torch.manual_seed(0)
    z, y = torch.randn(6, 7), torch.randint(0, 7, (6,))
    assert GCE(z, y, 6).item() == pytest.approx(F.cross_entropy(z, y).item(), abs=1e-6)
    assert GCE(z, y, 15).item() == pytest.approx(F.cross_entropy(z, y).item(), abs=1e-6)  # the reference's k > C - 1
    assert GCE(z, y, 0).item() == pytest.approx(GCE(z, y, 1).item())


def test_only_the_top_k_negatives_get_gradient():
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]], requires_grad=True)
    GCE(z, torch.tensor([0]), 1).backward()
    assert z.grad[0].tolist() == pytest.approx([-0.268941, 0.268941, 0.0, 0.0], abs=1e-6)
    z = torch.tensor([[0.5, 3.0, -1.0, 2.0, 0.0]], requires_grad=True)
    GCE(z, torch.tensor([0]), 2).backward()
    assert z.grad[0, 2] == 0 and z.grad[0, 4] == 0  # outside the top 2 negatives (3.0 and 2.0)
    assert z.grad[0, 1] > 0 and z.grad[0, 3] > 0 and z.grad[0, 0] < 0
    assert z.grad.sum().item() == pytest.approx(0.0, abs=1e-6)


# -- diversification block ------------------------------------------------------------------------------
def test_peak_patch_and_both_suppressions():
    assert diversify(MAP4, 0.1, 2, p_peak=1, p_patch=0).mean().item() == pytest.approx(7.6, abs=1e-5)
    assert diversify(MAP4, 0.1, 2, p_peak=0, p_patch=1).mean().item() == pytest.approx(1.75, abs=1e-5)
    assert diversify(MAP4, 0.1, 2, p_peak=1, p_patch=1).mean().item() == pytest.approx(0.85, abs=1e-5)
    assert diversify(MAP4, 0.1, 2, p_peak=0, p_patch=0).mean().item() == pytest.approx(8.5, abs=1e-5)


def test_only_the_top_left_patch():
    no_peak = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    top_left = torch.tensor([[[[True, False], [False, False]]]])
    mask = suppression_mask(MAP4, 2, no_peak, top_left)
    assert (MAP4 * torch.where(mask, 0.1, 1.0)).mean().item() == pytest.approx(7.7125, abs=1e-5)


def test_every_location_is_suppressed_once_when_g_does_not_divide_the_map():
    assert patch_grid((5, 5), 2) == (3, 3) and patch_grid((5, 5), 2, cover_border=False) == (2, 2)
    # every patch marked, the peak excluded: the reference leaves the last row and column untouched
    assert diversify(MAP5, 0.1, 2, 0, 1, cover_border=False).mean().item() == pytest.approx(7.24, abs=1e-5)
    assert diversify(MAP5, 0.1, 2, 0, 1).mean().item() == pytest.approx(2.2, abs=1e-5)
    no_peak, every_patch = torch.zeros(1, 1, 5, 5, dtype=torch.bool), torch.ones(1, 1, 3, 3, dtype=torch.bool)
    mask = suppression_mask(MAP5, 2, no_peak, every_patch)
    assert mask.sum() == 24 and not mask[0, 0, 4, 4]  # all but the peak, each once (a mask, not a count)
    assert (diversify(MAP5, 0.5, 2, 1, 1) == MAP5 * 0.5).all()  # peak and patches together: every location once


def test_suppressed_locations_pass_gradient_scaled_by_alpha():
    cams = MAP4.clone().requires_grad_()
    diversify(cams, 0.1, 2, p_peak=1, p_patch=0).sum().backward()
    expected = torch.ones(4, 4)
    expected[3, 3] = 0.1
    assert torch.allclose(cams.grad[0, 0], expected)


def test_draws_follow_the_generator_and_the_probabilities():
    cams = torch.randn(64, 5, 6, 6)
    a = diversify(cams, 0.1, 3, 0.5, 0.5, generator=torch.Generator().manual_seed(1))
    b = diversify(cams, 0.1, 3, 0.5, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    suppressed = (a != cams).float()
    peaks = cams == cams.amax(dim=(2, 3), keepdim=True)
    assert suppressed[peaks].mean().item() == pytest.approx(0.5, abs=0.07)
    assert suppressed[~peaks].mean().item() == pytest.approx(0.5, abs=0.03)


# -- the method ---------------------------------------------------------------------------------------------
INFO = DataInfo(task="classification", num_classes=6, class_names=tuple("abcdef"), input_shape=(1, 16, 16),
                train_size=60)


def built(**options):
    method = DBGCE({**all_hyperparameters(DBGCE), **options}, INFO)
    backbone, dim = build_backbone("small_cnn", 1, global_pool=False)
    return method, method.build_model(backbone, dim)


def test_the_block_acts_in_training_only_and_the_head_without_it_is_the_pooled_baseline():
    torch.manual_seed(0)
    method, model = built(alpha=0.0, p_peak=1.0, p_patch=1.0)
    x = torch.randn(4, 1, 16, 16)
    model.eval()
    plain = model(x)
    features = model.backbone(x).mean(dim=(2, 3))  # GAP then a linear layer = a 1x1 conv then GAP
    weight = model.class_maps.weight.flatten(1)
    assert torch.allclose(plain, features @ weight.T + model.class_maps.bias, atol=1e-5)
    model.train()
    assert not torch.allclose(model(x), plain)
    _, without = built(diversify=False)
    assert isinstance(without.diversification, torch.nn.Identity)


@pytest.mark.parametrize("loss", ["gce", "ce+gce", "ce"])
def test_a_training_step_trains_the_loss_mode_and_logs_both_terms(loss):
    torch.manual_seed(0)
    method, model = built(loss=loss, top_k=2)
    batch = torch.randn(8, 1, 16, 16), torch.randint(0, 6, (8,)), torch.arange(8)
    torch.manual_seed(1)
    out = method.training_step(model, batch)
    parts = {k: float(v) for k, v in out.items() if k.startswith("loss/")}
    total = {"gce": parts["loss/gce"], "ce": parts["loss/ce"], "ce+gce": parts["loss/ce"] + parts["loss/gce"]}[loss]
    assert out["loss"].item() == pytest.approx(total, rel=1e-5)
    out["loss"].backward()
    assert model.class_maps.weight.grad.abs().sum() > 0


def test_a_patch_larger_than_the_feature_map_is_refused():
    assert feature_map_size("small_cnn", (1, 24, 24)) == (12, 12)
    assert feature_map_size("resnet50", (3, 448, 448)) == (14, 14)
    assert DBGCE.data_problem("patch_size", 12, DataFacts(20, (12, 12))) is None
    assert DBGCE.data_problem("patch_size", 99, DataFacts(20)) is None  # the map not known: nothing to check
    [problem] = data_problems(DBGCE, {"patch_size": 13, "alpha": 0.5}, DataFacts(20, (12, 12)))
    assert "patch_size: 13 does not fit 20 training classes and a 12x12 last feature map" in problem
    assert "allowed: 1..12" in problem


SWEEP = {
    "name": "fine",
    "dataset": {"name": "fine_digits", "canvas": 20},
    "methods": {"db_gce": {"num_samples": 1, "search_space": "space.yaml"}},
}


def test_validation_names_the_patch_size_that_exceeds_the_map(tmp_path):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"patch_size": {"type": "categorical", "choices": [3, 11]}}))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    [issue] = validate_files([path])
    assert issue.key == "methods.db_gce"
    assert "patch_size 11 does not fit the dataset's 20 training classes and backbone 'small_cnn''s last feature " \
        "map, 10x10 for the dataset's 1x20x20 input" in issue.message and "allowed: 1..10" in issue.message
    doc = copy.deepcopy(SWEEP)
    doc["dataset"]["canvas"] = 24  # a 12x12 map
    path.write_text(yaml.safe_dump(doc))
    assert validate_files([path]) == []
