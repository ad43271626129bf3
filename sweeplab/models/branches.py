"""K copies of a backbone's last stage, computed in one pass.

Multi-branch methods give each branch its own copy of the backbone's last stage on a shared
trunk (DMUE: C auxiliary branches and a target branch, each a copy of ResNet's ``layer4``,
initialised identically). The official code runs the copies one after another. Here the K
copies become one module of grouped convolutions: the stage's first convolution (and a
residual block's downsampling), which read the trunk's shared features, become one
convolution with K times the output channels; every later convolution becomes a grouped
convolution with K groups; BatchNorm over K times the channels is each copy's BatchNorm. The
output is the K copies' outputs side by side on the channel axis, ``(B, K * C, h, w)``: the
same numbers as K separate copies (the tests hold it to 1e-5, gradients too), in one launch
per layer.

``stack_copies(stage, K)`` builds it from one stage (every copy starts from its weights);
``unstack(stacked, k)`` gives copy ``k`` back as a plain module (to export one branch);
``LoopedCopies(stage, K)`` is the one-after-another form (the reference, and the baseline of
``benchmarks/dmue_branches.py``). Supported layers: Conv2d (groups 1), BatchNorm2d, stateless
layers (ReLU, pooling, Identity), nn.Sequential, and torchvision's BasicBlock / Bottleneck.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

STATELESS = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Identity, nn.Dropout)


def stack_copies(stage: nn.Module, copies: int) -> nn.Module:
    """One module equal to ``copies`` copies of ``stage`` side by side: (B, C, h, w) -> (B, K C', h', w')."""
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    stacked, shared = _stack(stage, copies, shared=True)
    if shared:  # a stage of stateless layers only: every copy gives the same output
        raise TypeError(f"{type(stage).__name__} has no layer with weights to copy")
    return stacked


def _stack(module: nn.Module, k: int, shared: bool) -> tuple[nn.Module, bool]:
    """(stacked module, whether its output is still the one shared input's)."""
    if isinstance(module, nn.Conv2d):
        return _stack_conv(module, k, shared), False
    if isinstance(module, nn.BatchNorm2d):
        if shared:
            raise TypeError("a BatchNorm2d before any convolution of the stage is not supported")
        return _stack_batchnorm(module, k), False
    if isinstance(module, STATELESS):
        return copy.deepcopy(module), shared
    if isinstance(module, nn.Sequential):
        layers = []
        for child in module:
            layer, shared = _stack(child, k, shared)
            layers.append(layer)
        return nn.Sequential(*layers), shared
    if isinstance(module, (BasicBlock, Bottleneck)):
        return StackedResidual(module, k, shared), False
    raise TypeError(f"cannot stack copies of {type(module).__name__}")


def _stack_conv(conv: nn.Conv2d, k: int, shared: bool) -> nn.Conv2d:
    if conv.groups != 1:
        raise TypeError("only convolutions with groups=1 can be stacked")
    # skip_init: the weights are copied in below, and building must not draw from the random generator
    # (a model's other initial weights are then the same whether its branches are stacked or looped)
    out = nn.utils.skip_init(nn.Conv2d, conv.in_channels * (1 if shared else k), conv.out_channels * k,
                             conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups=1 if shared else k,
                             bias=conv.bias is not None, padding_mode=conv.padding_mode)
    with torch.no_grad():
        out.weight.copy_(conv.weight.repeat(k, 1, 1, 1))  # copy i: output channels i C' .. (i+1) C' - 1
        if conv.bias is not None:
            out.bias.copy_(conv.bias.repeat(k))
    return out


def _stack_batchnorm(bn: nn.BatchNorm2d, k: int) -> nn.BatchNorm2d:
    out = nn.BatchNorm2d(bn.num_features * k, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(bn, name) is not None:
                getattr(out, name).copy_(getattr(bn, name).repeat(k))
        if bn.num_batches_tracked is not None:
            out.num_batches_tracked.copy_(bn.num_batches_tracked)
    return out


class StackedResidual(nn.Module):
    """K copies of a torchvision residual block (BasicBlock or Bottleneck) as grouped layers."""

    def __init__(self, block: nn.Module, k: int, shared: bool):
        super().__init__()
        self.kind = type(block).__name__
        self.copies = k
        self.shared_input = shared
        names = ["conv1", "bn1", "conv2", "bn2"] + (["conv3", "bn3"] if isinstance(block, Bottleneck) else [])
        for i, name in enumerate(names):
            layer, _ = _stack(getattr(block, name), k, shared and i == 0)
            setattr(self, name, layer)
        self.layers = tuple(names)
        self.downsample = None if block.downsample is None else _stack(block.downsample, k, shared)[0]
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x
        out = x
        for i, name in enumerate(self.layers):
            out = getattr(self, name)(out)
            if name.startswith("bn") and i < len(self.layers) - 1:
                out = self.relu(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        elif self.shared_input:
            identity = x.repeat(1, self.copies, 1, 1)
        return self.relu(out + identity)


class LoopedCopies(nn.Module):
    """The same K copies, run one after another (the official code's form): the reference."""

    def __init__(self, stage: nn.Module, copies: int):
        super().__init__()
        self.copies = nn.ModuleList(copy.deepcopy(stage) for _ in range(copies))

    def forward(self, x):
        return torch.cat([c(x) for c in self.copies], dim=1)


def unstack(stacked: nn.Module, index: int, like: nn.Module) -> nn.Module:
    """Copy ``index`` of ``stacked`` (built by ``stack_copies`` from ``like``) as a module of ``like``'s form."""
    out = copy.deepcopy(like)
    _copy_out(stacked, out, index)
    return out


def _copy_out(stacked: nn.Module, plain: nn.Module, i: int) -> None:
    if isinstance(plain, nn.Conv2d):
        n = plain.out_channels
        with torch.no_grad():
            plain.weight.copy_(stacked.weight[i * n:(i + 1) * n])
            if plain.bias is not None:
                plain.bias.copy_(stacked.bias[i * n:(i + 1) * n])
    elif isinstance(plain, nn.BatchNorm2d):
        n = plain.num_features
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                if getattr(plain, name) is not None:
                    getattr(plain, name).copy_(getattr(stacked, name)[i * n:(i + 1) * n])
            if plain.num_batches_tracked is not None:
                plain.num_batches_tracked.copy_(stacked.num_batches_tracked)
    elif isinstance(plain, nn.Sequential):
        for a, b in zip(stacked, plain):
            _copy_out(a, b, i)
    elif isinstance(plain, (BasicBlock, Bottleneck)):
        for name in stacked.layers:
            _copy_out(getattr(stacked, name), getattr(plain, name), i)
        if plain.downsample is not None:
            _copy_out(stacked.downsample, plain.downsample, i)
