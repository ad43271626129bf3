"""DMUE: latent distribution mining and pairwise uncertainty estimation (the losses).

Paper: She, Hu, Shi, Wang, Shen & Mei, "Dive into Ambiguity: Latent Distribution Mining and
Pairwise Uncertainty Estimation for Facial Expression Recognition", CVPR 2021
(https://arxiv.org/abs/2104.00232).
Official code: JDAI-CV/FaceX-Zoo, ``addition_module/DMUE`` (``losses/softLoss.py``,
``losses/SP_KD_Loss.py``, ``utils/ramp.py``, ``models/make_model.py``; read to understand, this is
our own implementation, see /work/shared/METHODS.md).

This module holds DMUE's pure loss functions, each pinned by unit tests on hand-checked values
(tests/test_dmue.py). The multi-branch model, the method and its registry entry are still to
come (issue 10): it is not registered yet, so no sweep can name it.

For a batch of B samples, C classes, with C auxiliary branches and one target branch::

    latent_i   = insert_j(sharpen(softmax(aux_j(x_i)), T))    for y_i = j   (detached)
    L_soft     = MSE(softmax(z_i) with entry y_i zeroed, latent_i)         over B x C
    L_sp       = mean_j MSE(rownorm(A_j A_j^T), rownorm(F_j F_j^T))       A_j: aux_j's logits, F_j: target
                                                                           features, on the rows y != j
    s_i        = MLP([minmax_c S_ic, onehot(y_i)])  S_ic: mean cosine of i to the batch's class c
    L          = ramp_up(e) [CE(s z, y) + w L_soft + γ L_sp] + ramp_down(e) mean_j CE_aux_j
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


# ---------------------------------------------------------------------------
# Latent distribution mining
# ---------------------------------------------------------------------------
def sharpen(probs: torch.Tensor, T: float) -> torch.Tensor:
    """p^(1/T) / Σ p^(1/T) along the last dimension (T > 1 flattens, as the official T = 1.2 does)."""
    powered = probs.clamp_min(0) ** (1.0 / T)
    return powered / powered.sum(dim=-1, keepdim=True)


def insert_zero(probs: torch.Tensor, position: torch.Tensor | int) -> torch.Tensor:
    """(B, C-1) -> (B, C): a 0 inserted at ``position`` (each row's own label), the others shifted up."""
    batch, others = probs.shape
    position = torch.as_tensor(position, device=probs.device).expand(batch).view(-1, 1)
    columns = torch.arange(others + 1, device=probs.device).expand(batch, -1)
    source = columns - (columns > position).long()  # column k of the result reads column k (or k-1) of probs
    out = probs.gather(1, source.clamp(max=others - 1))
    return out.masked_fill(columns == position, 0.0)


def soft_loss(logits: torch.Tensor, targets: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """L_soft = mean over B x C of (softmax(z) with the label's entry zeroed, not renormalised - latent)^2."""
    probs = torch.softmax(logits, dim=1).scatter(1, targets.view(-1, 1), 0.0)
    return F.mse_loss(probs, latent)


# ---------------------------------------------------------------------------
# Multi-branch similarity preserving
# ---------------------------------------------------------------------------
def similarity_preserving_loss(aux_logits: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
    """L_sp of one auxiliary branch: MSE between the row-L2-normalised Gram matrices of its logits
    (rows: the samples it trains on) and of the target branch's features on the same rows. Nothing
    is detached (as the official SP_KD_Loss); invariant to the scale of either input."""
    aux_gram = F.normalize(aux_logits @ aux_logits.t(), dim=1)
    target_gram = F.normalize(target_features @ target_features.t(), dim=1)
    return F.mse_loss(aux_gram, target_gram)


# ---------------------------------------------------------------------------
# Pairwise uncertainty
# ---------------------------------------------------------------------------
def minmax_rows(rows: torch.Tensor) -> torch.Tensor:
    """Each row scaled to [0, 1] by its own min and max; a row whose values are all equal becomes 0
    (the official code divides by zero there)."""
    low = rows.min(dim=1, keepdim=True).values
    span = rows.max(dim=1, keepdim=True).values - low
    return torch.where(span > 0, (rows - low) / span.clamp_min(torch.finfo(rows.dtype).tiny), torch.zeros_like(rows))


def uncertainty_inputs(features: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, 2C): per sample, its mean cosine similarity to the batch's samples of each class (itself
    included), min-max normalised over the classes, then its one-hot label. A class absent from the
    batch takes the row's lowest present value (so 0 after normalising; the official code needs every
    class in every batch and skips other batches)."""
    unit = F.normalize(features, dim=1)
    cosine = unit @ unit.t()  # (B, B)
    onehot = F.one_hot(targets, num_classes).to(features.dtype)  # (B, C)
    counts = onehot.sum(dim=0)  # (C,)
    per_class = (cosine @ onehot) / counts.clamp_min(1)  # S_ic
    present = (counts > 0).expand_as(per_class)
    lowest = per_class.masked_fill(~present, float("inf")).min(dim=1, keepdim=True).values
    per_class = torch.where(present, per_class, lowest.expand_as(per_class))
    return torch.cat([minmax_rows(per_class), onehot], dim=1)


# ---------------------------------------------------------------------------
# Schedules (epoch e counted from 0, as the official ramps)
# ---------------------------------------------------------------------------
def ramp_up(epoch: int, a: int) -> float:
    """exp(-5 (1 - e/a)^2) for e <= a, else 1: the weight of the target branch's losses."""
    return math.exp(-5.0 * (1.0 - epoch / a) ** 2) if epoch <= a else 1.0


def ramp_down(epoch: int, a: int) -> float:
    """1 for e < a, else exp(-(1 - a/e)^2): the weight of the auxiliary branches' losses."""
    return 1.0 if epoch < a else math.exp(-((1.0 - a / epoch) ** 2))
