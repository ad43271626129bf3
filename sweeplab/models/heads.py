"""Heads that several methods put on a backbone."""

from __future__ import annotations

from torch import nn


class Classifier(nn.Module):
    """Backbone features -> class logits (one linear layer)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(feature_dim, num_classes)

    def forward(self, x):
        return self.fc(self.backbone(x))
