"""LTML: collaborative training on uniform and re-balanced samplings.

Paper: Guo & Wang, "Long-Tailed Multi-Label Visual Recognition by Collaborative Training
on Uniform and Re-balanced Samplings", CVPR 2021
(https://openaccess.thecvf.com/content/CVPR2021/html/Guo_Long-Tailed_Multi-Label_Visual_Recognition_by_Collaborative_Training_on_Uniform_and_CVPR_2021_paper.html).
Official code: none exists; this is written from the paper (see /work/shared/METHODS.md).

A shared trunk feeds two branches, U and R, each its own copy of the backbone's last
stage + GAP + a linear head. Each step takes a uniform batch X and a class-aware
re-balanced batch X' (the engine's paired sampler)::

    u = U(X), û = R(X);   r = R(X'), r̂ = U(X')
    L = L_cls(u, y) + L_cls(r, y') + λ · (L_con(u, û) + L_con(r, r̂))

Inference averages the branches' sigmoid outputs on raw (uncompensated) logits.

Unverified (the paper leaves them open, so they are options, defaults ours):
- the class weights' form ``w_k = e^{1-ρ_k}`` / ``e^{ρ_k}`` (``weighting``), and what ρ_k is
  relative to (``rho_denominator``: images, i.e. ρ_k = fraction of training images that
  contain class k, by default; or all labels, Σ_k N_k);
- whether U and R have their own compensation parameters (``compensation_params``:
  per_branch by default, since the two branches see different label distributions);
- the consistency on probabilities or logits, and a stop-gradient on the partner.

Deviation (default): the learnable logit compensation is OFF by default. As METHODS.md
writes it, with separate learnable (s^p, m^p) for positives and (s^n, m^n) for negatives,
L_cls has a minimum that ignores the logits: m^p -> +inf and m^n -> -inf drive both terms to
0 whatever z is. Training finds it: on lt_digits (SGD lr 0.03, 8 epochs) s^p of the rarer
classes fell to about 0 (some below 0) and m^p / m^n drifted to about +1 / -1 while
``loss/cls_*`` dropped. Measured with benchmarks/lt_multilabel.py (3 seeds, test mAP):
76.9 ± 0.7 without compensation, 51.1 ± 0.8 with it, 47.6 ± 1.1 for the uniform BCE
baseline. The paper must constrain or train them differently in a way it does not state;
``compensation: true`` runs the form as written, and the search space sweeps it.

Notes:
- Compensation parameters are model parameters, so the engine's optimizer trains them,
  with its weight decay.
- ``predict`` returns logit(mean probability) (``torch.logit`` with eps 1e-6): mAP ranks
  per class, so it equals the mAP of the mean probability, and the engine's BCE on these
  logits is the BCE of the mean probability (clamped to [1e-6, 1 - 1e-6]).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from sweeplab.data.samplers import class_aware_sampler
from sweeplab.method import Method, choice, flag, full_precision, number
from sweeplab.models import split_last_stage

WEIGHTINGS = ("exp", "none")
RHO_DENOMINATORS = ("images", "labels")
COMPENSATION_PARAMS = ("per_branch", "shared")
CONSISTENCIES = ("probs", "logits")


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------
class LogitCompensation(nn.Module):
    """Learnable per-class affine maps of the logits, one for positives (s^p, m^p) and
    one for negatives (s^n, m^n); initialised to the identity (s = 1, m = 0)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.scale_pos = nn.Parameter(torch.ones(num_classes))  # s^p
        self.shift_pos = nn.Parameter(torch.zeros(num_classes))  # m^p
        self.scale_neg = nn.Parameter(torch.ones(num_classes))  # s^n
        self.shift_neg = nn.Parameter(torch.zeros(num_classes))  # m^n

    def forward(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z s^p + m^p, z s^n + m^n)"""
        return logits * self.scale_pos + self.shift_pos, logits * self.scale_neg + self.shift_neg


def class_weights(counts, total: float, form: str = "exp") -> tuple[torch.Tensor, torch.Tensor]:
    """(w^+, w^-) per class: ρ_k = N_k / total; exp: w^+_k = e^{1-ρ_k}, w^-_k = e^{ρ_k}; none: 1."""
    counts = torch.as_tensor(counts, dtype=torch.float32)
    if form == "none":
        return torch.ones_like(counts), torch.ones_like(counts)
    if form != "exp":
        raise ValueError(f"weighting {form!r} is not one of {', '.join(WEIGHTINGS)}")
    rho = counts / float(total)
    return torch.exp(1.0 - rho), torch.exp(rho)


@full_precision
def classification_loss(logits, targets, pos_weight=None, neg_weight=None, compensation=None) -> torch.Tensor:
    """L_cls = -(1/K) sum_k w_k [y_k log s(z_k s^p_k + m^p_k) + (1-y_k) log(1 - s(z_k s^n_k + m^n_k))],
    averaged over the batch (so over B x K). No weights and no compensation: plain mean BCE."""
    targets = targets.float()
    pos_logits, neg_logits = (logits, logits) if compensation is None else compensation(logits)
    pos = -F.logsigmoid(pos_logits)  # -log s(a)
    neg = -F.logsigmoid(-neg_logits)  # -log(1 - s(b))
    if pos_weight is not None:
        pos = pos * pos_weight
    if neg_weight is not None:
        neg = neg * neg_weight
    return (targets * pos + (1.0 - targets) * neg).mean()


@full_precision
def consistency_loss(a: torch.Tensor, b: torch.Tensor, on: str = "probs") -> torch.Tensor:
    """L_con = MSE(s(a), s(b)) over B x K (``on="logits"``: MSE(a, b))."""
    if on == "probs":
        a, b = torch.sigmoid(a), torch.sigmoid(b)
    elif on != "logits":
        raise ValueError(f"consistency {on!r} is not one of {', '.join(CONSISTENCIES)}")
    return F.mse_loss(a, b)


@full_precision  # in bf16, 1 - 1e-6 rounds to 1 and the logit becomes infinite
def mean_probability_logit(u: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """logit((s(u) + s(r)) / 2): the branches' mean probability, as a logit."""
    return torch.logit((torch.sigmoid(u) + torch.sigmoid(r)) / 2, eps=1e-6)


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------
class TwoBranchNet(nn.Module):
    """Shared trunk -> branch U and branch R (own copies of the last stage + linear head).

    ``forward(x)`` returns the raw logits ``(U(x), R(x))`` of one batch through both branches.
    ``compensation_u`` / ``compensation_r`` hold L_cls's learnable parameters (the same
    module when shared, ``None`` when compensation is off).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, compensation: str | None):
        super().__init__()
        self.trunk, last_stage = split_last_stage(backbone)
        self.branch_u = nn.Sequential(copy.deepcopy(last_stage), nn.Linear(feature_dim, num_classes))
        self.branch_r = nn.Sequential(copy.deepcopy(last_stage), nn.Linear(feature_dim, num_classes))
        self.compensation_u = self.compensation_r = None
        if compensation is not None:
            self.compensation_u = LogitCompensation(num_classes)
            self.compensation_r = self.compensation_u if compensation == "shared" else LogitCompensation(num_classes)

    def forward(self, x):
        features = self.trunk(x)
        return self.branch_u(features), self.branch_r(features)


# ---------------------------------------------------------------------------
# Method
# ---------------------------------------------------------------------------
class LTML(Method):
    loss_parts = ("cls_uniform", "cls_rebalanced", "con")
    hyperparameters = {
        "lambda_con": number(0.1, "λ, weight of the consistency loss L_con (paper: 0.1)", low=0),
        "weighting": choice("exp", WEIGHTINGS, "class weights in L_cls: exp (w+ = e^{1-ρ_k}, w- = e^{ρ_k}) | none"),
        "rho_denominator": choice("images", RHO_DENOMINATORS, "ρ_k = N_k / training images | / labels (Σ_k N_k)"),
        "compensation": flag(False, "learnable logit compensation (s^p, m^p, s^n, m^n) in L_cls (off: see above)"),
        "compensation_params": choice("per_branch", COMPENSATION_PARAMS, "U and R each have their own | share one"),
        "consistency": choice("probs", CONSISTENCIES, "L_con on sigmoid probabilities (paper) | on raw logits"),
        "detach_partner": flag(False, "stop-gradient on û and r̂ (each branch follows the other on its own batch)"),
        "sampler_epoch_length": number(1.0, "re-balanced sampler's draws before it restarts, x training set size",
                                       low=0, low_open=True),
    }

    def __init__(self, hp, data):
        super().__init__(hp, data)
        self.lam = float(self.hp["lambda_con"])
        self.epoch_length = float(self.hp["sampler_epoch_length"])
        self.pos_weight = self.neg_weight = None
        if self.hp["weighting"] != "none":
            counts = data.train_class_counts
            if len(counts) != data.num_classes:
                raise ValueError(f"weighting {self.hp['weighting']!r} needs the training count of each of the "
                                 f"{data.num_classes} classes; the dataset gives {len(counts)} (use weighting: none)")
            total = data.train_size if self.hp["rho_denominator"] == "images" else sum(counts)
            self.pos_weight, self.neg_weight = class_weights(counts, total, self.hp["weighting"])

    def build_model(self, backbone, feature_dim):
        sharing = self.hp["compensation_params"] if self.hp["compensation"] else None
        return TwoBranchNet(backbone, feature_dim, self.data.num_classes, sharing)

    def paired_sampler(self, dataset, generator):
        """X': the class-aware re-balanced batch that comes with each uniform batch X."""
        return class_aware_sampler(dataset, generator, self.epoch_length, self.hp["batch_size"])

    def _cls(self, logits, targets, compensation):
        device = logits.device
        w_pos = None if self.pos_weight is None else self.pos_weight.to(device)
        w_neg = None if self.neg_weight is None else self.neg_weight.to(device)
        return classification_loss(logits, targets, w_pos, w_neg, compensation)

    def _con(self, own, partner):
        if self.hp["detach_partner"]:
            partner = partner.detach()
        return consistency_loss(own, partner, self.hp["consistency"])

    def training_step(self, model, batch):
        (x, y, _), (x_re, y_re, _) = batch
        u, u_hat = model(x)  # uniform batch: u = U(X), û = R(X)
        r_hat, r = model(x_re)  # re-balanced batch: r̂ = U(X'), r = R(X')
        cls_uniform = self._cls(u, y, model.compensation_u)  # L_cls(u, y)
        cls_rebalanced = self._cls(r, y_re, model.compensation_r)  # L_cls(r, y')
        con = self._con(u, u_hat) + self._con(r, r_hat)  # L_con(u, û) + L_con(r, r̂)
        loss = cls_uniform + cls_rebalanced + self.lam * con  # L
        return {
            "loss": loss,
            "logits": u.detach(),
            "loss/cls_uniform": cls_uniform.detach(),
            "loss/cls_rebalanced": cls_rebalanced.detach(),
            "loss/con": con.detach(),  # before the λ weight
        }

    @torch.no_grad()
    def predict(self, model, inputs):
        """logit((s(U(x)) + s(R(x))) / 2): the mean probability, as logits for the engine's BCE and mAP."""
        return mean_probability_logit(*model(inputs))
