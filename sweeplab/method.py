"""The interface between the shared engine and a training method.

A method owns only what is specific to it: the heads it puts on a backbone, its
losses, what one training step does with a batch, and what it predicts at
evaluation. The engine (``sweeplab.engine``) owns the loop, the device, the
optimizer and schedule, checkpoints, reporting and logging, and asks the method
through the seams below (each has a default that a plain method keeps):

- ``hyperparameters``: its own options, each a ``Hyperparameter`` (default, meaning,
  allowed values), checked by ``sweeplab validate`` and again when a trial starts;
- ``global_pool``: pooled features (default) or the backbone's last feature map;
- ``build_model`` / ``training_step`` / ``predict``: its heads, losses and scores;
- ``param_groups``: named optimizer groups with their own learning-rate scale;
- ``on_epoch_start`` / ``on_epoch_end``: epoch-dependent weights, per-epoch statistics;
- ``train_sampler`` / ``paired_sampler`` / ``after_optimizer_step``: its data and relabelling;
- ``find_unused_parameters``: a step may leave branches without gradient (DDP must know);
- ``state_dict`` / ``load_state_dict``: state outside the model (relabelled targets);
- ``full_precision``: marks a loss function (or a delicate part of one) that must run in
  float32 when the engine trains under bf16/fp16 autocast (``sweeplab.precision``).

Hyperparameters come in two sets. ``ENGINE_HYPERPARAMETERS`` are understood by
the engine for every method (optimisation and schedule); a method adds its own
in ``Method.hyperparameters``. A search space may name any key of either set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

from sweeplab.precision import full_precision  # noqa: F401  (the seam methods import)
from sweeplab.spaces import brief


# ---------------------------------------------------------------------------
# Hyperparameters: default, meaning and allowed values, declared once
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter: its default, its meaning, and the values it allows.

    ``choices``: the allowed values of a categorical option. Otherwise a number, within
    ``low``/``high`` when given (``low_open``/``high_open``: the bound itself excluded),
    a whole number when ``whole``; ``also``: values allowed beside the numbers (e.g.
    ``"never"``). Validation checks a search space's fixed values, choices and bounds
    against this; the method gets only values it allows.
    """

    default: Any
    meaning: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    whole: bool = False
    also: tuple = ()
    free: bool = False  # any value (checked by the code that uses it)
    # ((other hyperparameter, its values), ...): it applies only when each holds (momentum: with sgd).
    # It is still resolved and validated either way; it is left out of the trial's logged params.
    when: tuple = ()

    def applies(self, hp: Mapping[str, Any]) -> bool:
        """Whether it means anything in the configuration ``hp`` (``when``)."""
        return all(key not in hp or any(_same(hp[key], v) for v in values) for key, values in self.when)

    @property
    def categorical(self) -> bool:
        return bool(self.choices)

    def allowed(self) -> str:
        """What the option allows, in words."""
        if self.free:
            return "any value"
        if self.choices:
            return ", ".join(brief(c) for c in self.choices)
        parts = ["a whole number" if self.whole else "a number"]
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        text = " ".join(parts[:2]) + (f" and {parts[2]}" if len(parts) > 2 else "")
        return text + "".join(f", or {brief(v)}" for v in self.also)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed; ``None`` when it is."""
        if self.free or any(_same(value, v) for v in self.also):
            return None
        if self.choices:
            return None if any(_same(value, c) for c in self.choices) else f"{brief(value)} is not allowed"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{brief(value)} is not a (finite) number"
        if self.whole and not float(value).is_integer():
            return f"{brief(value)} is not a whole number"
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return None if low_ok and high_ok else f"{brief(value)} is out of range"


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same kind: True is not 1, and 1 is not "1"."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def choice(default: Any, choices: Sequence[Any], meaning: str, when: tuple = ()) -> Hyperparameter:
    return Hyperparameter(default, meaning, choices=tuple(choices), when=when)


def flag(default: bool, meaning: str) -> Hyperparameter:
    return Hyperparameter(default, meaning, choices=(False, True))


def number(default: Any, meaning: str, **limits: Any) -> Hyperparameter:
    """A numeric option; ``limits``: low, high, low_open, high_open, whole, also, when."""
    return Hyperparameter(default, meaning, **limits)


# name -> declaration; the engine reads these for every method.
ENGINE_HYPERPARAMETERS: dict[str, Hyperparameter] = {
    "epochs": number(10, "passes over the training set", low=1, whole=True),
    "batch_size": number(64, "images per optimisation step (the global batch)", low=1, whole=True),
    "optimizer": choice("adam", ("sgd", "adam", "adamw"), "the optimizer"),
    "lr": number(1e-3, "initial learning rate (of the groups' scale 1)", low=0, low_open=True),
    "weight_decay": number(1e-4, "L2 penalty (decoupled for adamw)", low=0),
    "momentum": number(0.9, "SGD momentum (ignored by adam/adamw)", low=0, when=(("optimizer", ("sgd",)),)),
    "adam_eps": number(1e-8, "Adam/AdamW's ε in the update's denominator (PyTorch's default; ProxyGML's and "
                       "SoftTriple's recipes: 0.01)", low=0, low_open=True, when=(("optimizer", ("adam", "adamw")),)),
    "lr_schedule": choice("cosine", ("constant", "cosine", "exponential", "step"), "per-epoch learning-rate schedule"),
    "lr_gamma": number(0.9, "per-epoch decay factor of the exponential schedule", low=0, high=1, low_open=True,
                       when=(("lr_schedule", ("exponential",)),)),
    "lr_step_epochs": number(30, "epochs between the step schedule's decays", low=1, whole=True,
                             when=(("lr_schedule", ("step",)),)),
    "lr_step_gamma": number(0.1, "decay factor of the step schedule", low=0, high=1, low_open=True,
                            when=(("lr_schedule", ("step",)),)),
}


def declarations(method_cls: type["Method"]) -> dict[str, Hyperparameter]:
    """Every hyperparameter a search space may name for ``method_cls``: the engine's and its own.
    A plain default (a method written before declarations) allows any value."""
    own = {name: decl if isinstance(decl, Hyperparameter) else Hyperparameter(decl, "", free=True)
           for name, decl in method_cls.hyperparameters.items()}
    return {**ENGINE_HYPERPARAMETERS, **own}


def applicable(method_cls: type["Method"], hp: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters of ``hp`` that apply in it (``Hyperparameter.when``): what a trial's
    MLflow run records (no ``momentum`` under Adam); keys nobody declares are kept."""
    decls = declarations(method_cls)
    return {k: v for k, v in hp.items() if k not in decls or decls[k].applies(hp)}


def all_hyperparameters(method_cls: type["Method"]) -> dict[str, Any]:
    """The defaults of every hyperparameter of ``method_cls`` (the engine's and its own)."""
    return {name: decl.default for name, decl in declarations(method_cls).items()}


def hyperparameter_problems(method_cls: type["Method"], values: Mapping[str, Any]) -> list[str]:
    """``"name: why"`` for each value its declaration does not allow."""
    decls = declarations(method_cls)
    out = []
    for name, value in values.items():
        problem = decls[name].problem(value) if name in decls else "not a hyperparameter of this method"
        if problem:
            out.append(f"{name}: {problem}; allowed: {decls[name].allowed() if name in decls else sorted(decls)}")
    return out


@dataclass(frozen=True)
class DataFacts:
    """What is known of the data before a trial trains, for the options that depend on it: the
    number of training classes, and the (h, w) of the backbone's last feature map (methods with
    ``global_pool = False``); ``None`` where it is not known yet."""

    num_classes: int | None = None
    feature_map: tuple[int, int] | None = None

    def describe(self) -> str:
        parts = [f"{self.num_classes} training classes"] if self.num_classes else []
        if self.feature_map:
            parts.append(f"a {self.feature_map[0]}x{self.feature_map[1]} last feature map")
        return " and ".join(parts) or "this data"


def data_problems(method_cls: type["Method"], values: Mapping[str, Any], facts: DataFacts) -> list[str]:
    """``"name: why"`` for each value that does not fit the data (``Method.data_problem``)."""
    out = []
    for name, value in values.items():
        problem = method_cls.data_problem(name, value, facts)
        if problem:
            out.append(f"{name}: {brief(value)} does not fit {facts.describe()}: {problem}")
    return out


# ---------------------------------------------------------------------------
# What a method may know, and its optimizer groups
# ---------------------------------------------------------------------------
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


@dataclass
class ParamGroup:
    """Parameters that train at ``lr_scale`` times the engine's learning rate (the schedule
    scales every group alike); the engine logs each group's rate as ``lr/<name>``."""

    name: str
    params: list[nn.Parameter]
    lr_scale: float = 1.0


def groups_by_prefix(model: nn.Module, scales: Mapping[str, float], rest: str = "model") -> list[ParamGroup]:
    """A group per entry of ``scales`` (name -> lr scale) holding the trainable parameters under
    the submodule of that name (``{"proxies": 100.0}``: ``proxies`` and ``proxies.*``), and group
    ``rest`` (scale 1) for the others."""
    groups = {name: ParamGroup(name, [], float(scale)) for name, scale in scales.items()}
    groups.setdefault(rest, ParamGroup(rest, [], 1.0))
    for param_name, param in model.named_parameters():
        if param.requires_grad:
            owner = next((g for g in scales if param_name == g or param_name.startswith(g + ".")), rest)
            groups[owner].params.append(param)
    return [g for g in groups.values() if g.params]


# ---------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------
class Method:
    """Base class of every method in ``trainables/``.

    A batch is a tuple ``(inputs, targets, indices)``: ``indices`` are the
    samples' positions in the training set (methods that relabel need them).
    """

    # The method's own hyperparameters: name -> Hyperparameter (paper's default, meaning, allowed values).
    hyperparameters: ClassVar[dict[str, Hyperparameter]] = {}
    # The named parts of its loss that ``training_step`` returns as ``loss/<part>`` (logged as
    # ``train/loss/<part>``; a sweep may use them as its objective).
    loss_parts: ClassVar[tuple[str, ...]] = ()
    # The statistics ``on_epoch_end`` may return (logged as ``train/<name>``), declared so that
    # validation can check every metric name before a sweep starts.
    epoch_metrics: ClassVar[tuple[str, ...]] = ()
    # True: ``build_model`` gets the backbone's last feature map (B, feature_dim, h, w) instead of
    # pooled features (B, feature_dim), as timm's ``global_pool=''`` (a head on the map).
    global_pool: ClassVar[bool] = True
    # True when a training step may leave some trainable parameters without a gradient (branches a
    # batch does not use): data-parallel trials then run DDP with ``find_unused_parameters``. DDP
    # then follows the outputs of ``model(...)``: every parameter a step trains must be reached
    # from them (not used beside the forward, as ``model.some_head(x)`` in the step).
    find_unused_parameters: ClassVar[bool] = False

    def __init__(self, hp: Mapping[str, Any], data: DataInfo):
        problems = hyperparameter_problems(type(self), hp)
        smallest, why = self.smallest_batch(data.num_classes)
        if "batch_size" in hp and hp["batch_size"] < smallest:
            problems.append(f"batch_size: {hp['batch_size']} is below {smallest}: {why}")
        if problems:
            raise ValueError(f"{type(self).__name__}: " + "; ".join(problems))
        self.hp = dict(hp)
        self.data = data

    @classmethod
    def smallest_batch(cls, num_classes: int) -> tuple[int, str]:
        """The smallest batch the method works with on ``num_classes`` classes, and why (checked by
        validation where the dataset fixes its classes, and when a trial starts). Default: 1."""
        return 1, ""

    @classmethod
    def data_problem(cls, name: str, value: Any, data: DataFacts) -> str | None:
        """Why ``value`` of hyperparameter ``name`` does not fit the data (``data``: the number of
        training classes, the backbone's last feature map; each ``None`` where not known), e.g. a
        patch larger than the map, a neighbourhood size beyond the classes. Checked by validation
        for every value a search space can give, where the dataset fixes the facts, and when a
        trial starts. Default: every value fits."""
        return None

    # -- model ---------------------------------------------------------------
    def build_model(self, backbone: nn.Module, feature_dim: int) -> nn.Module:
        """Put the method's heads on a backbone that maps images to ``feature_dim`` features
        (or feature maps of ``feature_dim`` channels when ``global_pool`` is False)."""
        raise NotImplementedError

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        """The optimizer's groups. Every trainable parameter of ``model`` must be in exactly one
        (the engine checks). Default: one group, ``model``, at the engine's rate."""
        return [ParamGroup("model", [p for p in model.parameters() if p.requires_grad])]

    # -- training ------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch trains (``epoch`` counts from 0), also before the first
        epoch of a resumed trial: the place for epoch-dependent weights (ramps)."""

    def training_step(self, model: nn.Module, batch) -> dict[str, Any]:
        """One step's losses: ``{"loss": total tensor, "logits": tensor for train accuracy,
        "loss/<part>": detached 0-d tensor (or a number), ...}``. The engine backpropagates
        ``loss`` and sums the parts on the device (a ``.item()`` here would wait for the GPU every
        step). It runs inside the engine's autocast region (``sweeplab.precision``)."""
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
        """Extra ``train/*`` metrics for the epoch just finished (names from ``epoch_metrics``)."""
        return {}

    # -- evaluation ----------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Scores for evaluation (class logits for classification)."""
        return model(inputs)

    # -- state that is not in the model (relabelled targets) -----------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass
