"""The interface between the shared engine and a training method.

A method owns only what is specific to it: the heads it puts on a backbone, its
losses, what one training step does with a batch, and what it predicts at
evaluation. The engine (``sweeplab.engine``) owns the loop, the device, the
optimizer and schedule, checkpoints, reporting and logging.

Hyperparameters come in two sets. ``ENGINE_HYPERPARAMETERS`` are understood by
the engine for every method (optimisation and schedule); a method adds its own
in ``Method.hyperparameters``. A search space may name any key of either set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

# name -> default; the engine reads these for every method.
ENGINE_HYPERPARAMETERS: dict[str, Any] = {
    "epochs": 10,  # passes over the training set
    "batch_size": 64,  # images per optimisation step
    "optimizer": "adam",  # sgd | adam | adamw
    "lr": 1e-3,  # initial learning rate
    "weight_decay": 1e-4,  # L2 penalty (decoupled for adamw)
    "momentum": 0.9,  # SGD momentum (ignored by adam/adamw)
    "lr_schedule": "cosine",  # constant | cosine | exponential (per epoch)
    "lr_gamma": 0.9,  # per-epoch decay factor of the exponential schedule
}

# Allowed values of the engine's categorical hyperparameters (checked by spec validation).
ENGINE_CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("sgd", "adam", "adamw"),
    "lr_schedule": ("constant", "cosine", "exponential"),
}


# Allowed ranges of the engine's numeric hyperparameters: (lowest, highest, lowest is excluded).
# Checked by spec validation on fixed values, choices and search bounds. Momentum is left to
# torch.optim, which refuses a bad value when the trial starts (recorded as a failed trial).
ENGINE_INTEGERS = ("epochs", "batch_size")  # must be whole numbers
ENGINE_BOUNDS: dict[str, tuple[float, float | None, bool]] = {
    "epochs": (1, None, False),
    "batch_size": (1, None, False),
    "lr": (0.0, None, True),
    "weight_decay": (0.0, None, False),
    "lr_gamma": (0.0, 1.0, True),
}


@dataclass(frozen=True)
class DataInfo:
    """What a method may know about its data when it builds its model."""

    task: str
    num_classes: int
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]  # C, H, W
    train_size: int
    train_class_counts: tuple[int, ...] = field(default=())
    # class index groups by training frequency (multi-label: "head", "medium", "tail")
    class_groups: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


class Method:
    """Base class of every method in ``trainables/``.

    A batch is a tuple ``(inputs, targets, indices)``: ``indices`` are the
    samples' positions in the training set (methods that relabel need them).
    """

    # The method's own hyperparameters: name -> default (paper's value, meaning in a comment).
    hyperparameters: ClassVar[dict[str, Any]] = {}
    # The named parts of its loss that ``training_step`` returns as ``loss/<part>`` (logged as
    # ``train/loss/<part>``; a sweep may use them as its objective).
    loss_parts: ClassVar[tuple[str, ...]] = ()

    def __init__(self, hp: Mapping[str, Any], data: DataInfo):
        self.hp = dict(hp)
        self.data = data

    # -- model ---------------------------------------------------------------
    def build_model(self, backbone: nn.Module, feature_dim: int) -> nn.Module:
        """Put the method's heads on a backbone that maps images to ``feature_dim`` features."""
        raise NotImplementedError

    # -- training ------------------------------------------------------------
    def training_step(self, model: nn.Module, batch) -> dict[str, Any]:
        """One step's losses: ``{"loss": total tensor, "logits": tensor for train accuracy,
        "loss/<part>": float, ...}``. The engine backpropagates ``loss``."""
        raise NotImplementedError

    def attach_train_data(self, dataset, clean_targets: torch.Tensor | None) -> None:
        """Called once before training (and before ``load_state_dict`` on resume) with the
        training set, whose ``targets`` tensor a method may rewrite (SCN relabels samples), and
        the true labels where the dataset knows them (built-in data), else ``None``."""

    def train_sampler(self, dataset, generator: torch.Generator):
        """The sampler of the epoch's training batches (``None``: a shuffle seeded by ``generator``)."""
        return None

    def paired_sampler(self, dataset, generator: torch.Generator):
        """A second sampler whose batch comes with each training batch (LTML's re-balanced batch):
        ``training_step`` then gets ``(batch, second_batch)``. ``None``: single batches."""
        return None

    def after_optimizer_step(self, model: nn.Module, batch, outputs: dict[str, Any]) -> None:
        """Called after each optimizer step (e.g. SCN relabels here)."""

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Extra ``train/*`` metrics for the epoch just finished (e.g. relabel counts)."""
        return {}

    # -- evaluation ----------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Scores for evaluation (class logits for classification)."""
        return model(inputs)

    # -- state that is not in the model (relabelled targets, counters) ------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


def all_hyperparameters(method_cls: type[Method]) -> dict[str, Any]:
    """Engine hyperparameters overlaid with the method's own: the keys a search space may name."""
    return {**ENGINE_HYPERPARAMETERS, **method_cls.hyperparameters}
