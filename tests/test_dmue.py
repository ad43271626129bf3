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
