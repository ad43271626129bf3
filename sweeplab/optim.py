"""The optimizer and learning-rate schedule of a trial: the method's parameter groups
(``Method.param_groups``) checked, each at its scale of the ``lr`` hyperparameter, the
per-epoch schedule, and the rates logged as ``train/lr``."""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from sweeplab.method import Method, ParamGroup
from sweeplab.tracking import metric_name_problem

LR_METRIC = "train/lr"  # the learning rate of each epoch (not the hyperparameter ``lr``: its initial value)


def optimizer_groups(method: Method, model: torch.nn.Module) -> list[ParamGroup]:
    """The method's parameter groups, checked: every trainable parameter of ``model`` in exactly
    one group (a parameter left out would silently never train), names unique, scales > 0."""
    groups = method.param_groups(model)
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"{type(method).__name__}.param_groups: group names repeat: {names}")
    for name in names:  # logged as train/lr/<name>
        problem = metric_name_problem(f"{LR_METRIC}/{name}") if isinstance(name, str) and name else "is not a name"
        if problem:
            raise ValueError(f"{type(method).__name__}.param_groups: group {name!r} {problem}")
    where: dict[int, str] = {}
    for group in groups:
        if not (isinstance(group.lr_scale, (int, float)) and math.isfinite(group.lr_scale) and group.lr_scale > 0):
            raise ValueError(f"param group {group.name!r}: lr_scale must be a number > 0, got {group.lr_scale!r}")
        for param in group.params:
            if id(param) in where:
                raise ValueError(f"a parameter is in param groups {where[id(param)]!r} and {group.name!r}")
            where[id(param)] = group.name
    trainable = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    missing = [n for i, n in trainable.items() if i not in where]
    foreign = [g for i, g in where.items() if i not in trainable]
    if missing or foreign:
        raise ValueError(f"{type(method).__name__}.param_groups must hold every trainable parameter of the model "
                         f"once: left out {missing[:8]}; not trainable parameters of the model: {len(foreign)}")
    return groups


def make_optimizer(hp: Mapping[str, Any], groups: list[ParamGroup]) -> torch.optim.Optimizer:
    """The optimizer over ``groups``: each at ``lr_scale`` times ``hp["lr"]``."""
    name, lr, wd = hp["optimizer"], float(hp["lr"]), float(hp["weight_decay"])
    params = [{"params": g.params, "lr": lr * g.lr_scale, "name": g.name, "lr_scale": g.lr_scale} for g in groups]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(hp["momentum"]), weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, eps=float(hp["adam_eps"]))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, eps=float(hp["adam_eps"]))
    raise ValueError(f"optimizer {name!r} is not one of sgd, adam, adamw")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any], groups: list[ParamGroup]) -> None:
    """Resume the optimizer from a checkpoint whose groups must be the method's groups now."""
    saved = [g.get("name") for g in state["param_groups"]]
    if len(saved) != len(groups) or any(s not in (None, g.name) for s, g in zip(saved, groups)):
        raise ValueError(f"the checkpoint's optimizer has parameter groups {saved} but the method now has "
                         f"{[g.name for g in groups]}: it was saved by another version of the method")
    optimizer.load_state_dict(state)
    for torch_group, group in zip(optimizer.param_groups, groups):  # a checkpoint from before groups had names
        torch_group.update(name=group.name, lr_scale=group.lr_scale)


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """``train/lr``: the engine's rate now (scale 1); with several groups also ``train/lr/<group>``."""
    groups = optimizer.param_groups
    rates = {LR_METRIC: groups[0]["lr"] / groups[0].get("lr_scale", 1.0)}
    if len(groups) > 1:
        rates.update({f"{LR_METRIC}/{g['name']}": g["lr"] for g in groups})
    return rates


def make_schedule(hp: Mapping[str, Any], optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-epoch learning-rate schedule (stepped after each epoch)."""
    name = hp["lr_schedule"]
    if name == "constant":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(hp["epochs"])))
    if name == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=float(hp["lr_gamma"]))
    if name == "step":  # x lr_step_gamma every lr_step_epochs (the fine-grained and FER recipes' StepLR)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(hp["lr_step_epochs"]),
                                               gamma=float(hp["lr_step_gamma"]))
    raise ValueError(f"lr_schedule {name!r} is not one of constant, cosine, exponential, step")
