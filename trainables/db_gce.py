"""DB + GCE: the diversification block and the gradient-boosting cross-entropy.

Paper: Sun, Yuan, Xu, Gong, Xie & Lin, "Fine-grained Recognition: Accounting for Subtle
Differences between Similar Classes", AAAI 2020 (https://arxiv.org/abs/1912.06842).
No author code; a co-author-credited third-party version is ``mmaaz60/ssl_for_fgvc``
(``layers/diversification_block.py``, ``loss/gb_loss.py``, ``config/baseline.yml``; read to
understand, this is our own implementation, see /work/shared/METHODS.md).

Model: the backbone without global pooling, a 1x1 convolution to C class activation maps
(CAMs, B x C x h x w), the diversification block (training only), then GAP of each map gives
the logits. Without the block, this is exactly the baseline's GAP + linear classifier (both are
linear, so they commute): ``diversify: false, loss: ce`` is cross-entropy on the same network.

For each image and class map M_c (h x w), in training::

    P_c      = {locations where M_c equals its maximum}, each kept with probability p_peak  (peak)
    Q_c      = the G x G patches of the map, each kept with probability p_patch, P_c's peak
               locations taken out of them                                              (patch)
    M'_c     = M_c * (α on P_c ∪ Q_c, 1 elsewhere)     (scaled, not zeroed: their gradient is x α)
    z_c      = mean(M'_c)                                                                (GAP)
    L_GCE    = -log( e^{z_y} / (e^{z_y} + Σ_{j ∈ top-k negatives} e^{z_j}) )   only the top-k get gradient

Choices and deviations:
- A map whose side G does not divide is covered by smaller patches at its bottom and right
  border (``patch_border: cover``, the default); the reference code's unfold leaves those rows
  and columns never suppressed (``patch_border: skip`` reproduces it).
- k is clamped to C - 1 (the reference's fixed k = 15 crashes when C - 1 < 15); k = C - 1 is CE.
- ``loss``: ``gce`` (what the reference trains with), ``ce+gce`` (their sum) or ``ce``. Both
  terms are logged each step whichever is trained (``train/loss/ce``, ``train/loss/gce``).
- Peak draws are one Bernoulli per location, as the reference's (ties at the maximum are each
  drawn); patch draws one per patch and class map.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sweeplab.method import DataFacts, Method, choice, flag, full_precision, number


# ---------------------------------------------------------------------------
# The diversification block
# ---------------------------------------------------------------------------
@full_precision  # the peak is the map's maximum: in bf16 near-equal values tie and all count as peaks
def diversify(cams: torch.Tensor, alpha: float, patch_size: int, p_peak: float, p_patch: float,
              generator: torch.Generator | None = None, cover_border: bool = True) -> torch.Tensor:
    """``cams`` (B, C, h, w) with its suppressed locations multiplied by ``alpha``: each map's
    peak location(s) with probability ``p_peak``, each ``patch_size`` x ``patch_size`` patch
    (peaks excluded) with probability ``p_patch``. ``cover_border``: patches cut short at the
    bottom and right border cover the rest of a map whose side ``patch_size`` does not divide
    (False: those rows and columns are never in a patch, as the reference code)."""
    b, c, h, w = cams.shape
    rows, cols = patch_grid((h, w), patch_size, cover_border)

    def bernoulli(shape, p: float) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=cams.device) < p

    mask = suppression_mask(cams.detach(), patch_size, bernoulli((b, c, h, w), p_peak),
                            bernoulli((b, c, rows, cols), p_patch))
    return cams * torch.where(mask, torch.full_like(mask, alpha, dtype=cams.dtype),
                              torch.ones_like(mask, dtype=cams.dtype))


def patch_grid(map_size: tuple[int, int], patch_size: int, cover_border: bool = True) -> tuple[int, int]:
    """Patches per column and per row of a map: ceil(side / G) when they cover the border, else floor."""
    g = int(patch_size)
    return tuple(-(-side // g) if cover_border else side // g for side in map_size)


def suppression_mask(cams: torch.Tensor, patch_size: int, peak_draws: torch.Tensor,
                     patch_draws: torch.Tensor) -> torch.Tensor:
    """Where ``diversify`` suppresses (bool, B x C x h x w): the peak locations whose draw
    (``peak_draws``, B x C x h x w) is set, and the locations of the patches whose draw
    (``patch_draws``, B x C x rows x cols, patch (i, j) = rows iG..iG+G-1, columns jG..jG+G-1,
    cut at the border) is set, peaks excluded; locations beyond the patches are never suppressed."""
    h, w = cams.shape[2:]
    g = int(patch_size)
    is_peak = cams == cams.amax(dim=(2, 3), keepdim=True)
    patch = patch_draws.repeat_interleave(g, dim=2).repeat_interleave(g, dim=3)[:, :, :h, :w]
    patch = F.pad(patch, (0, w - patch.shape[3], 0, h - patch.shape[2]))  # uncovered border: never
    return (is_peak & peak_draws) | (patch & ~is_peak)  # B_c' ∪ B_c'' (the patches exclude the peak)


class Diversification(nn.Module):
    """The diversification block as a layer: ``diversify`` in training, the identity in eval."""

    def __init__(self, alpha: float, patch_size: int, p_peak: float, p_patch: float, cover_border: bool = True):
        super().__init__()
        self.alpha, self.patch_size, self.p_peak, self.p_patch = alpha, patch_size, p_peak, p_patch
        self.cover_border = cover_border

    def forward(self, cams: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return cams
        return diversify(cams, self.alpha, self.patch_size, self.p_peak, self.p_patch, cover_border=self.cover_border)

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, patch_size={self.patch_size}, p_peak={self.p_peak}, p_patch={self.p_patch}, "
                f"cover_border={self.cover_border}")


# ---------------------------------------------------------------------------
# The gradient-boosting cross-entropy
# ---------------------------------------------------------------------------
@full_precision  # the top-k negatives, ranked in float32 (bf16 ties change which are kept)
def gradient_boosting_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over the batch of -log(e^{z_y} / (e^{z_y} + Σ_{top-k negatives} e^{z_j})): softmax
    cross-entropy over the true class and the ``k`` highest-scoring other classes (``k`` clamped
    to 1..C-1; at C-1 it is CE). The other negatives get no gradient."""
    num_classes = logits.shape[1]
    k = max(1, min(int(k), num_classes - 1))
    column = targets.view(-1, 1)
    target_logit = logits.gather(1, column)
    negatives = logits.scatter(1, column, float("-inf")).topk(k, dim=1).values
    kept = torch.cat([target_logit, negatives], dim=1)  # the true class first
    return F.cross_entropy(kept, torch.zeros_like(targets))


# ---------------------------------------------------------------------------
# The network and the method
# ---------------------------------------------------------------------------
class ClassActivationNet(nn.Module):
    """Backbone feature map -> 1x1 conv to C class activation maps -> diversification -> GAP."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, block: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.class_maps = nn.Conv2d(feature_dim, num_classes, kernel_size=1)
        self.diversification = block

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cams = self.diversification(self.class_maps(self.backbone(images)))
        return cams.mean(dim=(2, 3))  # z_c = GAP(M'_c)


LOSSES = ("gce", "ce+gce", "ce")


class DBGCE(Method):
    global_pool = False  # the head is a 1x1 convolution on the last feature map
    loss_parts = ("ce", "gce")
    hyperparameters = {
        "alpha": number(0.1, "suppression factor: suppressed CAM locations are multiplied by it", low=0, high=1),
        "p_peak": number(0.5, "probability that a class map's peak is suppressed", low=0, high=1),
        "p_patch": number(0.5, "probability that each patch of a class map is suppressed", low=0, high=1),
        "patch_size": number(3, "side G of the suppressed patches, in feature-map locations", low=1, whole=True),
        "patch_border": choice("cover", ("cover", "skip"),
                               "cover: patches cut short at the border cover every location; "
                               "skip: the reference code's unfold, the border never suppressed"),
        "top_k": number(15, "negatives in the gradient-boosting CE (clamped to C - 1; C - 1 is CE)",
                        low=1, whole=True),
        "loss": choice("gce", LOSSES, "what trains: gce (the reference), ce+gce (their sum) or ce"),
        "diversify": flag(True, "the diversification block in training (false: plain CAM head)"),
    }

    @classmethod
    def data_problem(cls, name: str, value: Any, data: DataFacts) -> str | None:
        side = min(data.feature_map) if data.feature_map else None
        if name == "patch_size" and side is not None and isinstance(value, (int, float)) and value > side:
            return f"a patch side larger than the map makes one patch of the whole map; allowed: 1..{side} " \
                   "(or a larger input)"
        return None

    def build_model(self, backbone: nn.Module, feature_dim: int) -> nn.Module:
        hp = self.hp
        block = (Diversification(float(hp["alpha"]), int(hp["patch_size"]), float(hp["p_peak"]),
                                 float(hp["p_patch"]), cover_border=hp["patch_border"] == "cover")
                 if hp["diversify"] else nn.Identity())
        return ClassActivationNet(backbone, feature_dim, self.data.num_classes, block)

    def training_step(self, model: nn.Module, batch) -> dict[str, Any]:
        inputs, targets, _ = batch
        logits = model(inputs)
        ce = F.cross_entropy(logits, targets)
        gce = gradient_boosting_cross_entropy(logits, targets, int(self.hp["top_k"]))
        loss = {"gce": gce, "ce+gce": ce + gce, "ce": ce}[self.hp["loss"]]
        return {"loss": loss, "logits": logits, "loss/ce": ce.detach(), "loss/gce": gce.detach()}
