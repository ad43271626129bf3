"""Proxy-based metric-learning baselines, each a thin method around a loss of pytorch-metric-learning.

Library: Musgrave, Belongie & Lim, pytorch-metric-learning (``pytorch_metric_learning.losses``,
https://github.com/KevinMusgrave/pytorch-metric-learning), the field's reference implementations.
The losses are used as they are: the methods here only choose their options, put them on an
embedding and train their proxies.

- ``proxy_nca``: ``ProxyNCALoss``. Movshovitz-Attias, Toshev, Leung, Ioffe & Singh, "No Fuss
  Distance Metric Learning using Proxies", ICCV 2017 (https://arxiv.org/abs/1703.07464). No official
  code; reimplementations: dichotomies/proxy-nca, and ProxyNCA++ (Teh, DeVries & Taylor, ECCV 2020,
  euwern/proxynca_pp).
- ``proxy_anchor``: ``ProxyAnchorLoss``. Kim, Kim, Cho & Kwak, "Proxy Anchor Loss for Deep Metric
  Learning", CVPR 2020 (https://arxiv.org/abs/2003.13911). Official code:
  tjddus9597/Proxy-Anchor-CVPR2020 (``code/losses.py``, ``code/train.py``).
- ``soft_triple``: ``SoftTripleLoss`` (+ ``SparseCentersRegularizer``). Qian, Shang, Sun, Hu, Li & Jin,
  "SoftTriple Loss: Deep Metric Learning Without Triplet Sampling", ICCV 2019
  (https://arxiv.org/abs/1909.05235). Official code: idstcv/SoftTriple (``loss/SoftTriple.py``,
  ``train.py``). K centres per class: the "fewer proxies" comparison for ProxyGML.
- ``normalized_softmax``: ``NormalizedSoftmaxLoss``. Zhai & Wu, "Classification is a Strong Baseline
  for Deep Metric Learning", BMVC 2019 (https://arxiv.org/abs/1811.12649). Official code:
  azgo14/classification_metric_learning (``metric_learning/train_classification.py``).

Model (all four): backbone -> linear layer to ``dim`` -> L2 normalisation (``EmbeddingNet``), the
loss as the model's ``criterion``: its proxies are parameters of the model (checkpoints hold them,
data-parallel training sees them used) and train in their own optimizer group ``proxies`` at
``proxy_lr_scale`` x the engine's rate. Evaluation retrieves with the normalised embeddings.
For embeddings x (unit), a batch's labels y, C classes::

    proxy_nca           L = mean_i -log softmax_c(-s ||x_i - p_c||^2)[y_i]          p_c unit proxies
    proxy_anchor        L = 1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} exp(-α (cos(x, p) - δ)))
                          + 1/C   sum_{p}       log(1 + sum_{x in X_p-} exp( α (cos(x, p) + δ)))
    soft_triple         S_c(x) = sum_k softmax_k(cos(x, w_ck) / γ) cos(x, w_ck)      K centres a class
                        L = mean_i CE(λ (S(x_i) - δ 1[c = y_i]), y_i) + τ R(w)   R: a class's centres merged
    normalized_softmax  L = mean_i CE(cos(x_i, w_c) / σ, y_i)

Choices and deviations:
- The proxies' learning rate: each paper's recipe as a multiple of the model's (``proxy_lr_scale``,
  sourced at each declaration); the engine's schedule scales both groups alike.
- ProxyNCA: pml's softmax runs over every proxy, the positive one included (the paper's NCA sums
  over the negatives only in the denominator; dichotomies/proxy-nca does the same as pml and reports
  no difference). pml silently drops a sample whose positive probability underflows to 0 in float32,
  which happens once s (||x - p_y||^2 - min_c ||x - p_c||^2) > ~103, so ``softmax_scale`` stops at 25
  (squared distances of unit vectors differ by at most 4).
- SoftTriple: the centre regulariser (weight τ, the paper's 0.2) is pml's ``SparseCentersRegularizer``,
  the official code's ``sqrt(2 + eps - 2 cos)`` over each class's pairs of centres; as there, none
  with a single centre a class. It holds two (C K)^2 boolean masks: for Stanford Online Products
  (11,318 classes) use few centres or ``tau: 0``.
- Not reproduced from the official recipes (engine-wide, or a sweep's choice): a warm-up epoch that
  trains only the new layers (Proxy-Anchor, Normalized Softmax), frozen BatchNorm, gradient clipping at
  10 (Proxy-Anchor), class-balanced batches (Normalized Softmax). SoftTriple's Adam eps 0.01 is the
  engine's ``adam_eps``, fixed in ``search_spaces/soft_triple.yaml``.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import regularizers as pml_regularizers
from torch import nn

from sweeplab.method import Hyperparameter, Method, number
from sweeplab.models.heads import EmbeddingNet



def common_hyperparameters(proxy_lr_scale: float, source: str) -> dict[str, Hyperparameter]:
    """The options every method here has; ``proxy_lr_scale``: its paper's recipe (``source``)."""
    return {
        "dim": number(512, "embedding size d (512: Proxy-Anchor's and ProxyGML's, also reported by SoftTriple, "
                             "Normalized Softmax; ProxyNCA used 64)",
                      low=2, whole=True),
        "proxy_lr_scale": number(proxy_lr_scale, f"the proxies' learning rate, x the model's ({source})",
                                 low=0, low_open=True),
    }


class ProxyLossMethod(Method):
    """An embedding trained by a proxy-based pml loss; a subclass says which loss (``make_loss``)."""

    def make_loss(self, num_classes: int, dim: int) -> nn.Module:
        """The pml loss, holding its proxies for ``num_classes`` training classes in ``dim`` dimensions."""
        raise NotImplementedError

    def build_model(self, backbone, feature_dim):
        dim = int(self.hp["dim"])
        return EmbeddingNet(backbone, feature_dim, dim, criterion=self.make_loss(self.data.num_classes, dim))

    def param_groups(self, model: EmbeddingNet):
        return model.param_groups(float(self.hp["proxy_lr_scale"]))  # groups "model" and "proxies"

    def training_step(self, model, batch) -> dict[str, Any]:
        inputs, targets, _ = batch
        _, loss = model(inputs, targets)  # the loss runs inside forward (EmbeddingNet)
        return {"loss": loss}

    @torch.no_grad()
    def predict(self, model, inputs):
        return model(inputs)  # (B, dim) unit embeddings: what retrieval ranks by


class ProxyNCA(ProxyLossMethod):
    hyperparameters = {
        "softmax_scale": number(
            1.0, "s, the scale of -||x - p||^2 in the softmax (the paper has none: 1; ProxyNCA++'s T = 1/9 is 9); "
                 "at most 25, above it pml drops samples in float32", low=0, low_open=True, high=25),
        # No official code. Reimplementations use Adam with eps 1, so their ratios do not carry over:
        # dichotomies/proxy-nca 1 / 0.045 (~22x), ProxyNCA++ 4e2 / 4e-3 (1e5x); 100x as Proxy-Anchor's code,
        # which started from dichotomies/proxy-nca.
        **common_hyperparameters(100.0, "no official recipe; 100 as Proxy-Anchor's"),
    }

    def make_loss(self, num_classes, dim):
        return pml_losses.ProxyNCALoss(num_classes, dim, softmax_scale=float(self.hp["softmax_scale"]))


class ProxyAnchor(ProxyLossMethod):
    hyperparameters = {
        "margin": number(0.1, "δ, the cosine margin (the paper: 0.1)", low=0, high=1),
        "alpha": number(32.0, "α, the scale of the cosines (the paper: 32)", low=0, low_open=True),
        # official code/train.py: param group {'params': criterion.proxies, 'lr': args.lr * 100}
        **common_hyperparameters(100.0, "official code: 100"),
    }

    def make_loss(self, num_classes, dim):
        return pml_losses.ProxyAnchorLoss(num_classes, dim, margin=float(self.hp["margin"]),
                                          alpha=float(self.hp["alpha"]))


class SoftTriple(ProxyLossMethod):
    hyperparameters = {
        "centers_per_class": number(10, "K, centres per class (the paper: 10)", low=1, whole=True),
        "la": number(20.0, "λ, the scale of the class similarities in the softmax (the paper: 20)",
                     low=0, low_open=True),
        "gamma": number(0.1, "γ, the temperature of the softmax over a class's centres (the paper: 0.1)",
                        low=0, low_open=True),
        "margin": number(0.01, "δ, the margin subtracted from the true class's similarity (the paper: 0.01)",
                         low=0),
        "tau": number(0.2, "τ, weight of the regulariser that merges a class's near-duplicate centres "
                           "(the paper: 0.2; unused with one centre a class)", low=0),
        # official train.py: Adam groups model lr 1e-4 (--modellr), centres 1e-2 (--centerlr)
        **common_hyperparameters(100.0, "official code: 0.01 / 1e-4 = 100"),
    }

    def make_loss(self, num_classes, dim):
        k, tau = int(self.hp["centers_per_class"]), float(self.hp["tau"])
        regulariser = {}
        if tau > 0 and k > 1:  # as the official code: no regulariser with a single centre
            regulariser = {"weight_regularizer": pml_regularizers.SparseCentersRegularizer(num_classes, k),
                           "weight_reg_weight": tau}
        return pml_losses.SoftTripleLoss(num_classes, dim, centers_per_class=k, la=float(self.hp["la"]),
                                         gamma=float(self.hp["gamma"]), margin=float(self.hp["margin"]),
                                         **regulariser)


class NormalizedSoftmax(ProxyLossMethod):
    hyperparameters = {
        "temperature": number(0.05, "σ, the temperature of the cosine logits (the paper: 0.05)",
                              low=0, low_open=True),
        # official train_classification.py: one SGD over model and class weights at the same rate
        **common_hyperparameters(1.0, "official code: 1, the class weights train with the model"),
    }

    def make_loss(self, num_classes, dim):
        return pml_losses.NormalizedSoftmaxLoss(num_classes, dim, temperature=float(self.hp["temperature"]))
