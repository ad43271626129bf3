"""DMUE: latent distribution mining and pairwise uncertainty estimation.

Paper: She, Hu, Shi, Wang, Shen & Mei, "Dive into Ambiguity: Latent Distribution Mining and
Pairwise Uncertainty Estimation for Facial Expression Recognition", CVPR 2021
(https://arxiv.org/abs/2104.00232).
Official code: JDAI-CV/FaceX-Zoo, ``addition_module/DMUE`` (``losses/softLoss.py``,
``losses/SP_KD_Loss.py``, ``utils/ramp.py``, ``models/make_model.py``; read to understand, this is
our own implementation, see /work/shared/METHODS.md).

Model: a shared trunk (the backbone up to its last stage), then C auxiliary branches and one
target branch, each its own copy of the last stage (initialised identically), GAP, dropout, one
shared BatchNorm1d neck (bias frozen) and a bias-free linear head (normal init, std 0.001).
Auxiliary branch j is a (C-1)-way classifier of the samples whose label is not j (labels above j
shifted down). The C + 1 copies of the last stage run in one pass of grouped convolutions
(``sweeplab.models.branches``; ``branches: looped`` runs them one after another, as the official
code). At inference only the target branch counts (``inference_model`` exports it as a plain
classifier, the neck folded into the head). The loss functions are pure and pinned by
hand-checked values (tests/test_dmue.py).

For a batch of B samples, C classes, with C auxiliary branches and one target branch::

    latent_i   = insert_j(sharpen(softmax(aux_j(x_i)), T))    for y_i = j   (detached)
    L_soft     = MSE(softmax(z_i) with entry y_i zeroed, latent_i)         over B x C
    L_sp       = mean_j MSE(rownorm(A_j A_j^T), rownorm(F_j F_j^T))       A_j: aux_j's logits, F_j: target
                                                                           features, on the rows y != j
    s_i        = MLP([minmax_c S_ic, onehot(y_i)])  S_ic: mean cosine of i to the batch's class c
    L          = ramp_up(e) [CE(s z, y) + w L_soft + γ L_sp] + ramp_down(e) mean_j CE_aux_j

Choices and deviations:
- Batches: the official code skips a batch unless every class appears twice; here the sampler is
  class-balanced (the class-aware sampler) and a batch must hold at least 2C samples (validation
  and the method refuse fewer). A class still missing from a batch gets no similarity column
  (``uncertainty_inputs``); an all-equal row normalises to 0 instead of the official NaN.
- ``train_uncertainty: false`` (default) reproduces the official optimizer, which holds neither the
  uncertainty MLP nor the neck: both stay at their initial weights (gradient still reaches the
  backbone through the similarities). ``true`` trains them at the heads' rate.
- The shared neck normalises each branch with its own batch statistics, as one call per branch
  does; its running statistics move once per branch, auxiliary branches first, then the target.
- Every branch runs on every batch (their losses mask the rows), so all parameters get a gradient
  each step and DDP needs no ``find_unused_parameters``.
- The learning-rate schedule is the engine's (constant, cosine, exponential, or step: x gamma every
  n epochs), not the official step table.

Reported each epoch (``train/*``): ``ramp_up`` / ``ramp_down`` (the losses' weights),
``uncertainty_mean`` (mean score s); where the data knows each image's look-alike partner and
blend weight λ (``ambiguous_digits``), ``latent_agreement`` (share of blended images whose mined
distribution puts the most mass on the true partner) and ``uncertainty_lambda_corr`` (Spearman
correlation of s with λ: positive when the score falls with ambiguity).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from sweeplab.data.samplers import class_aware_sampler
from sweeplab.method import Method, ParamGroup, choice, flag, full_precision, number
from sweeplab.metrics import spearman
from sweeplab.models import split_last_stage
from sweeplab.models.branches import LoopedCopies, stack_copies, unstack
from sweeplab.models.heads import Classifier


# ---------------------------------------------------------------------------
# Latent distribution mining
# ---------------------------------------------------------------------------
@full_precision  # this and the losses below: softmax, Gram-matrix and min-max parts in float32 under autocast
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


@full_precision
def soft_loss(logits: torch.Tensor, targets: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """L_soft = mean over B x C of (softmax(z) with the label's entry zeroed, not renormalised - latent)^2."""
    probs = torch.softmax(logits, dim=1).scatter(1, targets.view(-1, 1), 0.0)
    return F.mse_loss(probs, latent)


# ---------------------------------------------------------------------------
# Multi-branch similarity preserving
# ---------------------------------------------------------------------------
@full_precision
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
@full_precision
def minmax_rows(rows: torch.Tensor) -> torch.Tensor:
    """Each row scaled to [0, 1] by its own min and max; a row whose values are all equal becomes 0
    (the official code divides by zero there)."""
    low = rows.min(dim=1, keepdim=True).values
    span = rows.max(dim=1, keepdim=True).values - low
    return torch.where(span > 0, (rows - low) / span.clamp_min(torch.finfo(rows.dtype).tiny), torch.zeros_like(rows))


@full_precision
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


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------
class SharedNeck(nn.Module):
    """One BatchNorm1d applied to every branch's features (B, K, D) with that branch's own batch
    statistics, as the official code calls one neck per branch; its running statistics move once
    per branch, in branch order (auxiliary 0..C-1, then the target). The bias is frozen (official)."""

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim), requires_grad=False)
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.momentum, self.eps = momentum, eps

    @full_precision  # batch statistics in float32, as nn.BatchNorm does under autocast
    def forward(self, x: torch.Tensor, update: bool = True) -> torch.Tensor:
        if not self.training:
            return (x - self.running_mean) / torch.sqrt(self.running_var + self.eps) * self.weight + self.bias
        mean, var = x.mean(dim=0), x.var(dim=0, unbiased=False)  # (K, D): each branch's batch statistics
        if update:
            with torch.no_grad():
                unbiased = var * x.shape[0] / max(x.shape[0] - 1, 1)
                for k in range(x.shape[1]):
                    self.running_mean.lerp_(mean[k], self.momentum)
                    self.running_var.lerp_(unbiased[k], self.momentum)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class DMUENet(nn.Module):
    """Trunk -> K = C + 1 copies of the last stage (auxiliary 0..C-1, then the target) -> GAP ->
    dropout -> shared neck -> heads, and the pairwise-uncertainty MLP. ``forward(x, targets)``
    computes everything a training step uses (so DDP sees every parameter used from the outputs);
    ``forward(x)`` the target branch's logits."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.5,
                 looped: bool = False):
        super().__init__()
        self.num_classes, self.feature_dim = num_classes, feature_dim
        self.trunk, stage = split_last_stage(backbone)  # a feature-map backbone: the stage ends at its map
        copies = num_classes + 1
        self.branches = LoopedCopies(stage, copies) if looped else stack_copies(stage, copies)
        self._stage_form = (copy.deepcopy(stage),)  # one plain copy's layout (not a submodule), for export
        self.dropout = nn.Dropout(dropout)
        self.neck = SharedNeck(feature_dim)
        self.aux_heads = nn.Parameter(torch.randn(num_classes, num_classes - 1, feature_dim) * 0.001)
        self.head = nn.Linear(feature_dim, num_classes, bias=False)
        nn.init.normal_(self.head.weight, std=0.001)
        self.uncertainty = nn.Sequential(nn.Linear(2 * num_classes, num_classes), nn.PReLU(),
                                         nn.Linear(num_classes, 1))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K, D): each branch's globally pooled features."""
        maps = self.branches(self.trunk(x))  # (B, K * D, h, w)
        return maps.mean(dim=(2, 3)).view(x.shape[0], -1, self.feature_dim)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None):
        pooled = self.pooled(x)
        if targets is None:  # inference: the target branch alone (dropout is off in eval mode)
            return self.head(self.neck(self.dropout(pooled))[:, -1])
        necked = self.neck(self.dropout(pooled))  # (B, K, D)
        aux = torch.einsum("bcd,ced->bce", necked[:, :-1], self.aux_heads)  # (B, C, C-1)
        with torch.no_grad():  # the latent distributions: the auxiliary branches without dropout
            clean = torch.einsum("bcd,ced->bce", self.neck(pooled[:, :-1], update=False), self.aux_heads)
        score = torch.sigmoid(self.uncertainty(uncertainty_inputs(pooled[:, -1], targets, self.num_classes)))
        return {"aux": aux, "aux_clean": clean, "logits": self.head(necked[:, -1]), "features": necked[:, -1],
                "aux_features": necked[:, :-1], "score": score}


def inference_model(model: DMUENet) -> Classifier:
    """The target branch as a plain classifier (trunk + its last stage + GAP + one linear layer),
    with the neck's inference-time affine map folded into the head: the same predictions as
    ``model`` in eval mode, and the parameter count of the cross-entropy baseline's network."""
    trunk_and_stage = nn.Sequential(model.trunk, _target_stage(model), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    out = Classifier(trunk_and_stage, model.feature_dim, model.num_classes)
    neck = model.neck
    scale = neck.weight / torch.sqrt(neck.running_var + neck.eps)  # neck(x) = scale * x + shift
    shift = neck.bias - neck.running_mean * scale
    with torch.no_grad():
        out.fc.weight.copy_(model.head.weight * scale)
        out.fc.bias.copy_(model.head.weight @ shift)
    return out.eval()


def _target_stage(model: DMUENet) -> nn.Module:
    if isinstance(model.branches, LoopedCopies):
        return copy.deepcopy(model.branches.copies[-1])
    return unstack(model.branches, model.num_classes, model._stage_form[0])


# ---------------------------------------------------------------------------
# Method
# ---------------------------------------------------------------------------
class DMUE(Method):
    loss_parts = ("target", "soft", "sp", "aux")
    epoch_metrics = ("ramp_up", "ramp_down", "uncertainty_mean", "latent_agreement", "uncertainty_lambda_corr")
    global_pool = False  # the branches copy the last stage: the trunk hands over the map before it
    hyperparameters = {
        "T": number(1.2, "sharpening temperature of the mined latent distribution (official 1.2; > 1 flattens)",
                    low=0, low_open=True),
        "w": number(0.5, "weight of L_soft (official 0.5)", low=0),
        "gamma": number(1000.0, "γ, weight of L_sp (official 1000)", low=0),
        "ramp_a": number(6, "a, the epoch (from 0) where the target losses reach full weight and the auxiliary "
                            "ones start to fade (official: AffectNet 6, RAF-DB 9-10, FERPlus 10-14)",
                         low=1, whole=True),
        "train_uncertainty": flag(False, "train the uncertainty MLP and the neck's weight (the official optimizer "
                                         "never updates them: false)"),
        "sp_on": choice("logits", ("logits", "features"), "L_sp compares the auxiliary branch's logits (official "
                        "code) | its features (after the neck) with the target branch's features"),
        "heads_lr_scale": number(10.0, "the heads' learning rate, x the backbone's (official: 1e-3 vs 1e-4)",
                                 low=0, low_open=True),
        "dropout": number(0.5, "dropout on each branch's pooled features (official 0.5)", low=0, high=1,
                          high_open=True),
        "branches": choice("batched", ("batched", "looped"), "the C + 1 last-stage copies in one pass of grouped "
                           "convolutions | one after another (official; the same numbers)"),
    }

    @classmethod
    def smallest_batch(cls, num_classes):
        return 2 * num_classes, ("DMUE compares each sample with the batch's mean of every class, so every class "
                                 "must appear at least twice in a batch (its sampler is class-balanced)")

    def __init__(self, hp, data):
        super().__init__(hp, data)
        if data.num_classes < 3:
            raise ValueError(f"DMUE needs at least 3 classes (its auxiliary branches classify C - 1 >= 2 of them), "
                             f"got {data.num_classes}")
        self.T, self.w, self.gamma = float(self.hp["T"]), float(self.hp["w"]), float(self.hp["gamma"])
        self.a = int(self.hp["ramp_a"])
        self.epoch = 0
        self.dataset = None
        self._reset_epoch_stats()

    def _reset_epoch_stats(self):
        self.agree = self.blended = 0
        self.scores: list[torch.Tensor] = []
        self.lams: list[torch.Tensor] = []

    # -- data and model ------------------------------------------------------------------
    def attach_train_data(self, dataset, clean_targets):
        self.dataset = dataset

    def train_sampler(self, dataset, generator):
        """Class-balanced batches: every class in every batch (the class means of the uncertainty)."""
        return class_aware_sampler(dataset, generator, 1.0, self.hp["batch_size"])

    def build_model(self, backbone, feature_dim):
        model = DMUENet(backbone, feature_dim, self.data.num_classes, float(self.hp["dropout"]),
                        looped=self.hp["branches"] == "looped")
        if not self.hp["train_uncertainty"]:  # as the official optimizer, which holds neither
            for p in [*model.uncertainty.parameters(), model.neck.weight]:
                p.requires_grad_(False)
        return model

    def param_groups(self, model):
        heads = [model.aux_heads, model.head.weight]
        if self.hp["train_uncertainty"]:
            heads += [*model.uncertainty.parameters(), model.neck.weight]
        ids = {id(p) for p in heads}
        backbone = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        return [ParamGroup("model", backbone), ParamGroup("heads", heads, float(self.hp["heads_lr_scale"]))]

    # -- training --------------------------------------------------------------------------
    def on_epoch_start(self, epoch):
        self.epoch = epoch

    def training_step(self, model, batch):
        inputs, targets, indices = batch
        out = model(inputs, targets)
        aux, classes = out["aux"], self.data.num_classes
        aux_ce, sp = [], []
        latent_rows = out["aux_clean"].new_zeros(len(targets), classes - 1, dtype=torch.float32)
        for j in range(classes):
            rows = targets != j
            if rows.any():
                shifted = targets[rows] - (targets[rows] > j).long()  # labels above j shift down by one
                aux_ce.append(F.cross_entropy(aux[rows, j], shifted))  # CE_aux_j
                other = aux[rows, j] if self.hp["sp_on"] == "logits" else out["aux_features"][rows, j]
                sp.append(similarity_preserving_loss(other, out["features"][rows]))  # L_sp of branch j
            own = targets == j  # the latent distribution of a class-j sample: branch j's view of it
            latent_rows[own] = torch.softmax(out["aux_clean"][own, j].float(), dim=1)
        latent = insert_zero(sharpen(latent_rows, self.T), targets)  # detached (computed without gradient)
        soft = soft_loss(out["logits"], targets, latent)  # L_soft
        l_sp = torch.stack(sp).mean()  # L_sp, mean over the branches
        target = F.cross_entropy(out["logits"] * out["score"], targets)  # CE(s z, y)
        l_aux = torch.stack(aux_ce).mean()
        up, down = ramp_up(self.epoch, self.a), ramp_down(self.epoch, self.a)
        loss = up * (target + self.w * soft + self.gamma * l_sp) + down * l_aux
        self._record(latent, out["score"].detach(), targets, indices)
        return {"loss": loss, "logits": out["logits"].detach(), "loss/target": target.detach(),
                "loss/soft": soft.detach(), "loss/sp": l_sp.detach(), "loss/aux": l_aux.detach()}

    def _record(self, latent, score, targets, indices):
        """Where the dataset knows each sample's true partner and λ (built-in ambiguous digits)."""
        self.scores.append(score.reshape(-1).cpu())
        partner = getattr(self.dataset, "partner", None)
        lam = getattr(self.dataset, "lam", None)
        if partner is None or lam is None:
            return
        idx = indices.detach().cpu().long()
        self.lams.append(lam[idx].float())
        blended = partner[idx] >= 0
        if blended.any():
            self.blended += int(blended.sum())
            self.agree += int((latent.argmax(dim=1).cpu()[blended] == partner[idx][blended]).sum())

    def on_epoch_end(self, epoch):
        out = {"ramp_up": ramp_up(epoch, self.a), "ramp_down": ramp_down(epoch, self.a)}
        if self.scores:
            scores = torch.cat(self.scores)
            out["uncertainty_mean"] = float(scores.mean())
            if self.lams:
                out["uncertainty_lambda_corr"] = spearman(scores, torch.cat(self.lams))
        if self.blended:
            out["latent_agreement"] = self.agree / self.blended
        self._reset_epoch_stats()
        return {k: v for k, v in out.items() if v == v}  # NaN (a constant input) left out

    @torch.no_grad()
    def predict(self, model, inputs):
        """The target branch's logits (the auxiliary branches are for training only)."""
        return model(inputs)
