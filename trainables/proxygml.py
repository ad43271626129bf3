"""ProxyGML: deep graph metric learning with fewer proxies.

Paper: Zhu, Yang, Li, Shen, Chen & Chen, "Fewer is More: A Deep Graph Metric Learning
Perspective Using Fewer Proxies", NeurIPS 2020 (https://arxiv.org/abs/2010.13636).
Official code: ``YuehuaZhu/ProxyGML`` (``loss/ProxyGML.py``, ``train.py``; read to understand,
this is our own implementation, see /work/shared/METHODS.md).

Model: the backbone's pooled features, a linear embedding of ``dim``, L2-normalised (X, B x d);
N trainable proxies per class, P (d x C*N, each column normalised at every call; class c's N
proxies are columns cN .. cN+N-1, so proxy m has label m // N). For a batch::

    S        = X P                                     cosine similarity of each sample to each proxy
    k        = ceil(r C N)                             the sub-graph's size per sample
    top-k of S + 1000 pos                              pos: the sample's own class's proxies (forced in)
    W        = S on the selected entries, 0 elsewhere  (relation-guided sub-graph)
    Z        = W Y_p                                   reverse label propagation: per class, the sum of
                                                       its selected similarities (Y_p: proxy one-hot)
    p        = masked softmax(scale Z), classes with Z = 0 left out
    L_cls    = mean -log p_y
    L_p      = CE((P^T P) Y_p, proxy labels)           proxies classified as samples (regulariser)
    L        = L_cls + λ L_p

Choices and deviations:
- k = ceil(r C N) with C N r rounded to 9 decimals first: the official ``math.ceil(r * C * N)``
  turns a float artefact (0.07 * 100 = 7.000000000000001) into one proxy more.
- Validation refuses an r whose k is not in N < k <= C N, i.e. r outside (1/C, 1]: with k <= N
  no negative proxy is ever selected (L_cls ~ 0, nothing learns), and k > C N (the official
  default r = 20) makes ``topk`` fail.
- The proxies are a parameter group of their own (official: lr 0.03 with the model at 1e-4:
  ``proxy_lr_scale`` 300); the engine's optimizer options hold for both (the official Adam's
  eps 0.01 is ``adam_eps`` in ``search_spaces/proxygml.yaml``).
- The loss runs inside the model's forward (``sweeplab.models.heads.EmbeddingNet``), so the
  proxies are saved with the model and data-parallel training sees them used.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sweeplab.method import DataFacts, Method, full_precision, number
from sweeplab.models.heads import EmbeddingNet


def neighbourhood_size(r: float, num_classes: int, proxies_per_class: int) -> int:
    """k = ceil(r C N), the proxies each sample's sub-graph keeps (float artefacts rounded off)."""
    return math.ceil(round(r * num_classes * proxies_per_class, 9))


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """softmax(scale z) over the entries where ``mask`` is 1 (the others 0), as the official code:
    exp(scale z) mask / (1e-8 + Σ exp(scale z) mask)."""
    weighted = torch.exp(logits * scale) * mask.detach()
    return weighted / (1e-8 + weighted.sum(dim=1, keepdim=True))


@full_precision  # the +1000 that ranks a sample's own proxies first would swallow bf16's similarities
def proxygml_terms(embeddings: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, num_classes: int,
                   proxies_per_class: int, r: float, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_cls, L_p)``: the sub-graph classification loss and the proxy regulariser, for
    ``embeddings`` X (B x d, L2-normalised), ``proxies`` P (d x C*N, normalised here) and
    0-based ``labels`` (B,)."""
    n = proxies_per_class
    centers = F.normalize(proxies, dim=0)
    proxy_labels = torch.arange(num_classes, device=proxies.device).repeat_interleave(n)  # proxy m -> m // N
    proxy_onehot = F.one_hot(proxy_labels, num_classes).to(centers.dtype)  # Y_p, (C*N, C)
    similarity = embeddings @ centers  # S, (B, C*N)
    positive = (labels.view(-1, 1) == proxy_labels.view(1, -1)).to(similarity.dtype)
    k = neighbourhood_size(r, num_classes, n)
    chosen = torch.topk(similarity + 1000 * positive, k, dim=1).indices  # the sample's own proxies first
    selected = torch.zeros_like(similarity).scatter(1, chosen, 1.0)
    propagated = (selected * similarity) @ proxy_onehot  # Z = W Y_p, (B, C)
    probs = masked_softmax(propagated, (propagated != 0).to(propagated.dtype), scale)
    classification = -torch.log(probs.gather(1, labels.view(-1, 1)) + 1e-20).mean()
    regulariser = F.cross_entropy((centers.T @ centers) @ proxy_onehot, proxy_labels)
    return classification, regulariser


def proxygml_loss(embeddings: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  proxies_per_class: int, r: float, lam: float, scale: float = 1.0) -> torch.Tensor:
    """L = L_cls + λ L_p (``proxygml_terms``)."""
    classification, regulariser = proxygml_terms(embeddings, proxies, labels, num_classes, proxies_per_class, r,
                                                 scale)
    return classification + lam * regulariser


class ProxyGraphLoss(nn.Module):
    """The proxies and the loss: ``(embeddings, labels) -> {"loss", "cls", "proxy"}``."""

    def __init__(self, dim: int, num_classes: int, proxies_per_class: int, r: float, lam: float, scale: float):
        super().__init__()
        self.num_classes, self.proxies_per_class = num_classes, proxies_per_class
        self.r, self.lam, self.scale = r, lam, scale
        self.proxies = nn.Parameter(torch.empty(dim, num_classes * proxies_per_class))
        nn.init.kaiming_uniform_(self.proxies, a=math.sqrt(5))  # as the official code

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        cls, proxy = proxygml_terms(embeddings, self.proxies, labels, self.num_classes, self.proxies_per_class,
                                    self.r, self.scale)
        return {"loss": cls + self.lam * proxy, "cls": cls, "proxy": proxy}


class ProxyGML(Method):
    loss_parts = ("cls", "proxy")
    hyperparameters = {
        "N": number(12, "proxies per class", low=1, whole=True),
        "r": number(0.05, "share of the C N proxies in each sample's sub-graph: k = ceil(r C N), "
                    "which must satisfy N < k <= C N", low=0, high=1, low_open=True),
        "lam": number(0.3, "weight λ of the proxy regulariser (official: 0.3, 0 for SOP)", low=0),
        "scale": number(1.0, "temperature of the masked softmax over the classes (official: 1)", low=0, low_open=True),
        "dim": number(512, "embedding size", low=2, whole=True),
        "proxy_lr_scale": number(300.0, "the proxies' learning rate, x the model's (official: 0.03 / 1e-4)",
                                 low=0, low_open=True),
    }

    @classmethod
    def data_problem(cls, name: str, value: Any, data: DataFacts) -> str | None:
        c = data.num_classes
        if name == "r" and c and isinstance(value, (int, float)) and not 1 / c < value <= 1:
            return (f"k = ceil(r C N) must exceed N (else no negative proxy is selected and the loss is ~0) and "
                    f"stay within the C N proxies, which with C = {c} classes holds for {1 / c:.4g} < r <= 1 "
                    f"(k = ceil({value:g} x {c} x N) for every N)")
        return None

    def build_model(self, backbone: nn.Module, feature_dim: int) -> nn.Module:
        hp = self.hp
        criterion = ProxyGraphLoss(int(hp["dim"]), self.data.num_classes, int(hp["N"]), float(hp["r"]),
                                   float(hp["lam"]), float(hp["scale"]))
        return EmbeddingNet(backbone, feature_dim, int(hp["dim"]), criterion)

    def param_groups(self, model: EmbeddingNet):
        return model.param_groups(float(self.hp["proxy_lr_scale"]))

    def training_step(self, model: nn.Module, batch) -> dict[str, Any]:
        inputs, targets, _ = batch
        _, losses = model(inputs, targets)
        return {"loss": losses["loss"], "loss/cls": losses["cls"].detach(), "loss/proxy": losses["proxy"].detach()}
