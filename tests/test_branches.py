"""K copies of a last stage in one pass (grouped convolutions) equal K copies run one after another."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweeplab.models import build_backbone, split_last_stage
from sweeplab.models.branches import LoopedCopies, stack_copies, unstack


def last_stage(name: str) -> tuple[nn.Module, nn.Module]:
    backbone, _ = build_backbone(name, 1, global_pool=False)
    return split_last_stage(backbone)


@pytest.mark.parametrize("name, side", [("small_cnn", 8), ("resnet18", 32), ("resnet50", 32)])
def test_stacked_copies_give_the_looped_outputs_and_gradients(name, side):
    torch.manual_seed(0)
    trunk, stage = last_stage(name)
    k = 3
    looped = LoopedCopies(stage, k)
    for c in looped.copies:  # the copies differ, as after training
        with torch.no_grad():
            for p in c.parameters():
                p.add_(0.05 * torch.randn_like(p))
    stacked = stack_copies(stage, k)
    for i, c in enumerate(looped.copies):  # ... and the stacked module holds each copy's weights
        _load_into_stacked(stacked, c, i)
    # in float64: the grouped and the dense kernels sum in different orders (float32 differs by ~1e-4
    # on ResNet-50's 2048 channels)
    looped, stacked = looped.double(), stacked.double()
    x = trunk(torch.randn(4, 1, side, side)).detach().double()
    for mode in ("train", "eval"):
        looped.train(mode == "train"), stacked.train(mode == "train")
        a = x.clone().requires_grad_(True)
        b = x.clone().requires_grad_(True)
        out_l, out_s = looped(a), stacked(b)
        assert out_s.shape == out_l.shape
        assert torch.allclose(out_s, out_l, atol=1e-5, rtol=1e-4), mode
        weights = torch.randn_like(out_l)
        (out_l * weights).sum().backward()
        (out_s * weights).sum().backward()
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4)
        for i, c in enumerate(looped.copies):  # each copy's weight gradients: its slice of the stacked ones
            again = unstack_grads(stacked, c, i)
            for (n, p), g in zip(c.named_parameters(), again):
                assert torch.allclose(p.grad, g, atol=1e-5, rtol=1e-4), (mode, i, n)
        looped.zero_grad(), stacked.zero_grad()
    # BatchNorm statistics moved alike in training mode
    for i, c in enumerate(looped.copies):
        plain = unstack(stacked, i, stage.double())
        for (n, t), (_, u) in zip(c.state_dict().items(), plain.state_dict().items()):
            assert torch.allclose(t.float(), u.float(), atol=1e-5), n


def _load_into_stacked(stacked, plain, i):
    """Write ``plain``'s weights into copy ``i`` of ``stacked`` (the inverse of unstack)."""
    for (name, s), (_, p) in zip(_leaves(stacked), _leaves(plain)):
        n = p.shape[0] if p.dim() else None
        with torch.no_grad():
            if n is None:
                s.copy_(p)
            else:
                s[i * n:(i + 1) * n].copy_(p)


def _leaves(module):
    """Parameters and buffers in the order the stacked and the plain form share."""
    return [(n, t) for n, t in list(module.named_parameters()) + list(module.named_buffers())]


def unstack_grads(stacked, plain, i):
    grads = []
    stacked_params = [p for _, p in stacked.named_parameters()]
    for p_plain, p_stacked in zip(plain.parameters(), stacked_params):
        n = p_plain.shape[0]
        grads.append(p_stacked.grad[i * n:(i + 1) * n])
    return grads


def test_unstack_gives_each_copy_back_as_a_plain_stage():
    trunk, stage = last_stage("resnet18")
    stacked = stack_copies(stage, 4)
    stacked.eval(), stage.eval()
    x = trunk(torch.randn(2, 1, 32, 32))
    plain = unstack(stacked, 2, stage).eval()
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in stage.parameters())
    assert torch.allclose(plain(x), stacked(x)[:, 2 * 512:3 * 512], atol=1e-5)


def test_unsupported_layers_are_refused():
    with pytest.raises(TypeError, match="cannot stack copies of Linear"):
        stack_copies(nn.Sequential(nn.Linear(3, 3)), 2)
    with pytest.raises(ValueError):
        stack_copies(nn.Conv2d(1, 1, 1), 0)
