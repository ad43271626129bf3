"""SCN: Self-Cure Network.

Paper: Wang, Peng, Yang, Meng & Qiao, "Suppressing Uncertainties for Large-Scale Facial
Expression Recognition", CVPR 2020 (https://arxiv.org/abs/2002.10392).
Official code: kaiwang960112/Self-Cure-Network, ``src/train.py`` (read to understand; this is
our own implementation, see /work/shared/METHODS.md).

Model: backbone -> pooled feature x -> dropout -> classifier ``fc`` and importance head
``α = σ(Linear(x, 1))``; the forward returns ``(α, α · fc(x))``: the logits are scaled by α.
Each step, on a batch of B samples::

    L_WCE = CE(α · z, y)                                      logit-weighted cross-entropy
    M = floor(β · B); high = top-M α, low = the other B - M
    L_RR  = max(0, δ1 - (mean α_high - mean α_low))          rank regularisation
    L     = L_WCE + rr_weight · L_RR

Relabelling, from epoch ``relabel_epoch`` on, after the optimizer step: with ``p =
softmax(α · z)`` of that step's forward pass, a sample with ``p_max - p_y > δ2`` gets
the stored label ``argmax p``, written into the training set's ``targets`` (served from
the next time the sample is drawn, i.e. the next epoch).

Choices and deviations:
- ``relabel_epoch`` counts epochs from 1, as the official loop does (``for epoch in
  range(1, epochs + 1)`` ... ``if epoch >= relabel_epoch``) and as the engine reports
  ``epoch``: 10 means nine epochs on the given labels, relabelling from the tenth on.
  The string ``"never"`` disables relabelling (a plain value that YAML, Optuna's
  categorical choices and MLflow all carry as is).
- ``relabel_scope``: ``all`` relabels every sample of the batch (official code, default);
  ``low`` only the low-importance group of the step's ranking (paper, Sec. 3.4).
- Relabelling uses the outputs of the forward pass that the step trained on (computed
  before the optimizer step), as the official code does; no second forward pass.
- ``dropout``: the official default ``drop_rate`` is 0. The official forward builds a new
  ``nn.Dropout`` on every call, so with a rate > 0 it also drops at evaluation; ours is a
  module and is off in eval mode.
- M = floor(β · B) with a 1e-9 tolerance (0.57 · 100 gives 57, not 56 as the official
  ``int(batch_sz * beta)`` would). When M = 0 or M = B one group is empty and L_RR = 0
  (the official code takes the mean of an empty tensor, NaN). The hinge is ``relu``.
- ``predict`` returns α · z, as the official test loop does: same arg-max as z (α > 0);
  the engine's ``val/loss`` is therefore the cross-entropy of the scaled logits.
- The RR margin depends on the batch size (the official README runs δ1 = 0.07 at batch 64
  while ``train.py`` defaults to 0.15): the means of two groups of random α differ less
  in larger batches.

Measured (benchmarks/noisy_labels.py: built-in digits, small_cnn, 30 epochs, 3 seeds, test
accuracy of the final weights): SCN 98.9 ± 0.3 vs CE 94.2 ± 1.0 at 20 % symmetric noise,
99.4 ± 0.6 vs 86.9 ± 1.0 at 40 %; the gain comes from relabelling (about 96 % of the
changes set the true label; 40 % noise falls to about 2 %). Without relabelling SCN is
close to CE (88.6 ± 1.1 at 40 %). The importance α sees only the image, not its label, so
on synthetic noise (independent of how ambiguous the image is) it ranks wrong labels little
better than chance (AUC 0.54-0.61 over training); L_RR holds the groups' gap at about δ1, and
without it (rr_weight 0) α saturates at about 0.99. ``relabel_scope: low`` therefore leaves
most wrong labels alone (about 22 % of 40 % remain). On real expression data, where noise
goes with ambiguous faces, α has more to go on.

Reported each epoch (``train/*``): ``relabel_count`` (labels changed in the epoch);
where the true labels are known (built-in data with synthetic noise), ``label_noise``
(fraction of training labels that are wrong now) and ``relabel_precision`` (fraction of
the epoch's changes that set the true label; left out in an epoch without change);
α statistics over the epoch's samples: ``alpha_mean``, ``alpha_std``, ``alpha_gap``
(mean over steps of mean α_high - mean α_low) and, with true labels known,
``alpha_clean`` / ``alpha_noisy`` (mean α of samples whose label is right / wrong); where the
data knows how ambiguous each image is (``ambiguous_digits``: the blend weight λ),
``uncertainty_lambda_corr`` (Spearman correlation of α with λ: positive when α falls with ambiguity).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from sweeplab.method import Method, choice, full_precision, number
from sweeplab.metrics import spearman

NEVER = "never"
RELABEL_SCOPES = ("all", "low")


# ---------------------------------------------------------------------------
# Losses and relabelling
# ---------------------------------------------------------------------------
def high_group_size(batch_size: int, beta: float) -> int:
    """M = floor(β · B), the number of samples in the high-importance group."""
    return int(math.floor(beta * batch_size + 1e-9))


def rank_groups(alpha: torch.Tensor, beta: float) -> torch.Tensor:
    """Boolean mask of the high-importance group: the top-M α of the batch (M = floor(β · B))."""
    alpha = alpha.reshape(-1)
    high = torch.zeros_like(alpha, dtype=torch.bool)
    m = high_group_size(alpha.numel(), beta)
    if m > 0:
        high[torch.topk(alpha.detach(), m).indices] = True
    return high


@full_precision  # a gap of means of sigmoids near 1: float32 (bf16 keeps 3 digits)
def rank_regularization(alpha: torch.Tensor, beta: float, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_RR, high-group mask): L_RR = max(0, δ1 - (mean α_high - mean α_low)); 0 when a group is empty."""
    alpha = alpha.reshape(-1)
    high = rank_groups(alpha, beta)
    if high.all() or not high.any():
        return alpha.sum() * 0.0, high  # no ranking to regularise (keeps the graph for backward)
    gap = alpha[high].mean() - alpha[~high].mean()
    return F.relu(margin - gap), high


def weighted_cross_entropy(scaled_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L_WCE = mean_i -log softmax(α_i z_i)_{y_i} (cross-entropy on the α-scaled logits)."""
    return F.cross_entropy(scaled_logits, targets)


def relabel_candidates(scaled_logits: torch.Tensor, targets: torch.Tensor, margin: float):
    """(mask, new labels): with p = softmax(α z), the samples whose p_max - p_y > δ2, and argmax p."""
    p = torch.softmax(scaled_logits.detach().float(), dim=1)
    p_max, predicted = p.max(dim=1)
    p_given = p.gather(1, targets.view(-1, 1)).squeeze(1)
    return p_max - p_given > margin, predicted


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------
class SelfCureNet(nn.Module):
    """Backbone features -> dropout -> (α = σ(Linear(x, 1)), α · fc(x))."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_dim, num_classes)
        self.importance = nn.Linear(feature_dim, 1)

    def forward(self, x):
        features = self.dropout(self.backbone(x))
        # α in float32 under autocast: the ranking into groups compares α's that differ in the 3rd digit
        alpha = torch.sigmoid(self.importance(features).float())  # (B, 1)
        return alpha, alpha * self.fc(features)


# ---------------------------------------------------------------------------
# Method
# ---------------------------------------------------------------------------
class SCN(Method):
    loss_parts = ("wce", "rr")
    epoch_metrics = ("relabel_count", "label_noise", "relabel_precision", "alpha_mean", "alpha_std", "alpha_gap",
                     "alpha_clean", "alpha_noisy", "uncertainty_lambda_corr")
    hyperparameters = {
        "beta": number(0.7, "β, share of each batch in the high-importance group (paper and code: 0.7)",
                       low=0, high=1),
        "margin_1": number(0.15, "δ1, margin between the groups' mean α in L_RR (train.py 0.15; README 0.07 at "
                                 "batch 64)"),
        "margin_2": number(0.2, "δ2, relabel when p_max - p_label exceeds it (0.2); >= 0: a relabel must change "
                                "the label", low=0),
        "relabel_epoch": number(10, "first epoch (counted from 1) that relabels (10); \"never\" disables it",
                                low=1, whole=True, also=(NEVER,)),
        "rr_weight": number(1.0, "weight of L_RR in the total (code: 1; the paper's γ = 0.5 up to a factor 2)", low=0),
        "relabel_scope": choice("all", RELABEL_SCOPES, "all: every sample of the batch (code) | low: the "
                                "low-importance group (paper)"),
        "dropout": number(0.0, "dropout on the pooled feature before both heads (official drop_rate default 0)",
                          low=0, high=1, high_open=True),
    }

    def __init__(self, hp, data):
        super().__init__(hp, data)
        self.relabel_epoch = None if self.hp["relabel_epoch"] == NEVER else int(self.hp["relabel_epoch"])
        self.beta = float(self.hp["beta"])
        self.margin_1, self.margin_2 = float(self.hp["margin_1"]), float(self.hp["margin_2"])
        self.rr_weight = float(self.hp["rr_weight"])
        self.dataset = None
        self.clean_targets: torch.Tensor | None = None
        self.epoch = 0  # the running epoch, counted from 0 (the engine's on_epoch_start)
        self._reset_epoch_stats()

    def _reset_epoch_stats(self):
        self.changed = 0
        self.changed_to_clean = 0
        self.alpha_sum = self.alpha_sq_sum = self.gap_sum = 0.0
        self.alpha_count = self.gap_steps = 0
        self.alpha_by_correctness = {True: [0.0, 0], False: [0.0, 0]}  # label right? -> [sum, count]
        self.alphas, self.lams = [], []  # where the dataset knows each sample's λ (built-in ambiguous digits)

    # -- data --------------------------------------------------------------------------
    def attach_train_data(self, dataset, clean_targets):
        targets = getattr(dataset, "targets", None)
        if not isinstance(targets, torch.Tensor) or targets.dim() != 1 or targets.is_floating_point():
            raise TypeError("SCN relabels samples: the training set needs a 1-D integer `targets` tensor "
                            f"(single-label classification), got {type(targets).__name__}")
        self.dataset = dataset
        self.clean_targets = None if clean_targets is None else torch.as_tensor(clean_targets).long().cpu()

    def on_epoch_start(self, epoch):
        self.epoch = epoch

    def relabelling(self) -> bool:
        """Whether the running epoch relabels (``relabel_epoch`` counts from 1)."""
        return self.relabel_epoch is not None and self.epoch + 1 >= self.relabel_epoch

    # -- model and step -----------------------------------------------------------------
    def build_model(self, backbone, feature_dim):
        return SelfCureNet(backbone, feature_dim, self.data.num_classes, float(self.hp["dropout"]))

    def training_step(self, model, batch):
        inputs, targets, _ = batch
        alpha, scaled_logits = model(inputs)
        wce = weighted_cross_entropy(scaled_logits, targets)  # L_WCE
        rr, high = rank_regularization(alpha, self.beta, self.margin_1)  # L_RR
        loss = wce + self.rr_weight * rr  # L = L_WCE + w · L_RR
        return {
            "loss": loss,
            "logits": scaled_logits.detach(),
            "alpha": alpha.detach().reshape(-1),
            "high": high,
            "loss/wce": wce.detach(),
            "loss/rr": rr.detach(),  # before the rr_weight
        }

    def after_optimizer_step(self, model, batch, outputs):
        _, targets, indices = batch
        alpha, high = outputs["alpha"].float(), outputs["high"]
        self._record_alpha(alpha, high, targets, indices)
        if not self.relabelling():
            return
        if self.dataset is None:
            raise RuntimeError("SCN relabels the training set: call attach_train_data(dataset, clean_targets) first")
        # p = softmax(α z) of this step's forward pass; relabel where p_max - p_y > δ2
        mask, predicted = relabel_candidates(outputs["logits"], targets, self.margin_2)
        if self.hp["relabel_scope"] == "low":
            mask = mask & ~high
        if not mask.any():
            return
        where = indices.detach().cpu().long()[mask.cpu()]
        new = predicted.cpu()[mask.cpu()]
        self.dataset.targets[where] = new
        self.changed += int(where.numel())
        if self.clean_targets is not None:
            self.changed_to_clean += int((self.clean_targets[where] == new).sum())

    def _record_alpha(self, alpha, high, targets, indices):
        self.alpha_sum += float(alpha.sum())
        self.alpha_sq_sum += float((alpha * alpha).sum())
        self.alpha_count += alpha.numel()
        if high.any() and not high.all():
            self.gap_sum += float(alpha[high].mean() - alpha[~high].mean())
            self.gap_steps += 1
        lam = getattr(self.dataset, "lam", None)
        if lam is not None:
            self.alphas.append(alpha.detach().cpu())
            self.lams.append(lam[indices.detach().cpu().long()].float())
        if self.clean_targets is not None:
            right = (targets.cpu() == self.clean_targets[indices.detach().cpu().long()]).to(alpha.device)
            for flag, part in ((True, alpha[right]), (False, alpha[~right])):
                self.alpha_by_correctness[flag][0] += float(part.sum())
                self.alpha_by_correctness[flag][1] += part.numel()

    def on_epoch_end(self, epoch):
        out = {"relabel_count": float(self.changed)}
        if self.clean_targets is not None and self.dataset is not None:
            out["label_noise"] = float((self.dataset.targets != self.clean_targets).float().mean())
            if self.changed:
                out["relabel_precision"] = self.changed_to_clean / self.changed
            for flag, name in ((True, "alpha_clean"), (False, "alpha_noisy")):
                total, count = self.alpha_by_correctness[flag]
                if count:
                    out[name] = total / count
        if self.alpha_count:
            mean = self.alpha_sum / self.alpha_count
            out["alpha_mean"] = mean
            out["alpha_std"] = math.sqrt(max(self.alpha_sq_sum / self.alpha_count - mean * mean, 0.0))
        if self.gap_steps:
            out["alpha_gap"] = self.gap_sum / self.gap_steps
        if self.alphas:  # does the importance weight fall as the image gets more ambiguous (λ falls)?
            corr = spearman(torch.cat(self.alphas), torch.cat(self.lams))
            if corr == corr:
                out["uncertainty_lambda_corr"] = corr
        self._reset_epoch_stats()
        return out

    @torch.no_grad()
    def predict(self, model, inputs):
        """α · z, as the official test loop (same arg-max as z)."""
        return model(inputs)[1]

    # -- the relabelled training set survives a checkpoint ------------------------------------
    def state_dict(self):
        return {} if self.dataset is None else {"targets": self.dataset.targets.clone()}

    def load_state_dict(self, state):
        targets = state.get("targets")
        if targets is None:
            return
        if self.dataset is None:
            raise RuntimeError("SCN state holds relabelled targets: call attach_train_data before load_state_dict")
        if targets.shape != self.dataset.targets.shape:
            raise ValueError(f"checkpointed targets have shape {tuple(targets.shape)} but the training set has "
                             f"{tuple(self.dataset.targets.shape)}: a different dataset than the checkpoint's")
        self.dataset.targets.copy_(targets)  # in place: the shared-memory tensor the loaders read
