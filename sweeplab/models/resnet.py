"""torchvision's ResNets as backbones: ``fc`` replaced by Identity, so they output
the globally pooled features; the stem convolution is rebuilt for inputs that do
not have 3 channels. Always built with ``weights=None`` (never downloads); trained
weights come from a local file (see ``sweeplab.models.load_backbone_weights``).
"""

from __future__ import annotations

from torch import nn
from torchvision import models

RESNETS = {"resnet18": models.resnet18, "resnet34": models.resnet34, "resnet50": models.resnet50}


def build_resnet(name: str, in_channels: int = 3) -> tuple[nn.Module, int]:
    """``(resnet without its classifier, feature dimension)``: 512 for resnet18/34, 2048 for resnet50."""
    net = RESNETS[name](weights=None)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    if in_channels != 3:
        stem = net.conv1
        net.conv1 = nn.Conv2d(
            in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False
        )
    return net, feature_dim
