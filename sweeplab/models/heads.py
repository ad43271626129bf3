"""Heads that several methods put on a backbone."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sweeplab.method import ParamGroup
from sweeplab.precision import full_precision


class Classifier(nn.Module):
    """Backbone features -> class logits (one linear layer)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(feature_dim, num_classes)

    def forward(self, x):
        return self.fc(self.backbone(x))


class EmbeddingNet(nn.Module):
    """Backbone features -> a linear embedding of ``dim``, L2-normalised (metric learning).

    ``criterion(embeddings, targets)`` is the method's loss as a module holding the loss's own
    parameters (proxies); ``model(x, targets)`` returns ``(embeddings, criterion's output)``, so the
    loss is computed inside ``forward``: checkpoints and the optimizer's groups hold the proxies
    with the model, and data-parallel training sees them used. ``model(x)``: the embeddings."""

    def __init__(self, backbone: nn.Module, feature_dim: int, dim: int, criterion: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.embedding = nn.Linear(feature_dim, dim)
        self.criterion = criterion

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> Any:
        # unit embeddings and the proxy loss in float32 under autocast: its similarities are
        # scaled (up to 1/γ = 10, s = 25) and ranked, which bf16's 3 digits would blur
        embeddings = F.normalize(self.embedding(self.backbone(x)).float(), dim=1)
        if targets is None:
            return embeddings
        return embeddings, full_precision(self.criterion)(embeddings, targets)

    def param_groups(self, proxy_lr_scale: float) -> list[ParamGroup]:
        """The optimizer's groups: ``model`` (backbone and embedding, the engine's rate) and
        ``proxies`` (the criterion's parameters, at ``proxy_lr_scale`` times it; logged as
        ``lr/proxies``)."""
        own = [p for p in self.criterion.parameters() if p.requires_grad]
        ids = {id(p) for p in own}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [ParamGroup("model", rest), ParamGroup("proxies", own, float(proxy_lr_scale))]
