"""torchvision's ResNets as backbones: ``fc`` replaced by Identity, so they output
the globally pooled features; the stem convolution is rebuilt for inputs that do
not have 3 channels. Always built with ``weights=None`` (never downloads); trained
weights come from a local file (see ``sweeplab.models.load_backbone_weights``).

Without global pooling (``feature_map``) the backbone is the same layers up to
``layer4`` in an ``nn.Sequential`` whose children keep torchvision's names, so a
torchvision state dict loads into either form.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torchvision import models

RESNETS = {"resnet18": models.resnet18, "resnet34": models.resnet34, "resnet50": models.resnet50}
TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")  # everything before layer4


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


def feature_map(net: models.ResNet) -> nn.Sequential:
    """The ResNet's layers up to ``layer4`` (no pooling, no classifier): (B, C, H, W) -> (B, C', h, w)."""
    return nn.Sequential(OrderedDict((name, getattr(net, name)) for name in (*TRUNK, "layer4")))


def is_feature_map(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and list(dict(module.named_children())) == [*TRUNK, "layer4"]
