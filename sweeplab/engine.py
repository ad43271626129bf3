"""The one training loop every method shares.

``train(config, reporter, tracker)`` runs one trial: it builds the data, the
backbone and the method's model, then for each epoch trains, evaluates on
validation, checkpoints, and reports ``train/*``, ``val/*`` metrics (on the last
epoch also ``test/*`` for the final state and ``best/*`` for the epoch with the
best validation objective). It knows nothing of Ray: a ``Reporter`` carries
results and checkpoints out (Tune in a sweep, memory under pytest), and a
``TrialTracker`` writes MLflow (or nothing), and a ``Parallel`` says whether the
loop runs alone (``SingleProcess``) or as one of several data-parallel workers
(``sweeplab.distributed`` gives the DDP one for Ray Train).

A trial config is the sampled hyperparameters (nested by ``/``) plus a
``sweeplab`` entry, the trial's context (``sweeplab.context.TrialContext``): method,
dataset, model, seed, objective. The method is asked through the seams of
``sweeplab.method.Method`` (its backbone output, optimizer groups, epoch hooks).
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from typing import Any, ContextManager, Mapping, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from sweeplab import catalog
from sweeplab.context import TrialContext, hyperparameters_of
from sweeplab.data import build_dataset
from sweeplab.method import (DataFacts, DataInfo, Method, ParamGroup, all_hyperparameters, applicable, data_problems,
                             hyperparameter_problems)
from sweeplab.models import build_backbone, feature_map_size
from sweeplab.objective import objective_metric
from sweeplab.tasks import extra_test_split, task_family
from sweeplab.tracking import metric_name_problem

LR_METRIC = "train/lr"  # the learning rate of each epoch (not the hyperparameter ``lr``: its initial value)


# ---------------------------------------------------------------------------
# What the loop talks to
# ---------------------------------------------------------------------------
class Reporter(Protocol):
    def load_checkpoint(self) -> dict | None:
        """The state saved by the last ``report`` of this trial, if it is resuming."""

    def report(self, metrics: dict[str, float], checkpoint: dict) -> None:
        """Publish one epoch's metrics with the state to resume from."""


class TrialTracker(Protocol):
    def start(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_dict(self, obj: Mapping[str, Any], name: str) -> None: ...

    def finish(self, status: str, error: str | None = None) -> None: ...


class NullTracker:
    """Tracks nothing (tests, plain loops)."""

    def start(self, params):
        pass

    def log_metrics(self, metrics, step):
        pass

    def log_dict(self, obj, name):
        pass

    def finish(self, status, error=None):
        pass


class MemoryReporter:
    """Keeps every result and the last checkpoint in memory; resumes from ``checkpoint``."""

    def __init__(self, checkpoint: dict | None = None):
        self.checkpoint = checkpoint
        self.results: list[dict[str, float]] = []

    def load_checkpoint(self):
        return self.checkpoint

    def report(self, metrics, checkpoint):
        self.results.append(dict(metrics))
        self.checkpoint = checkpoint


class Parallel(Protocol):
    """How the loop runs beside copies of itself. Every copy (rank) runs ``train`` with the same
    config; only what goes through these calls differs between them."""

    rank: int  # 0 is the chief: it evaluates, and only its results and checkpoints are kept
    world_size: int

    def device(self, gpus: float | None) -> torch.device:
        """This rank's device."""

    def wrap_model(self, model: torch.nn.Module, find_unused_parameters: bool = False) -> torch.nn.Module:
        """The module the training steps call (e.g. DistributedDataParallel around ``model``;
        ``find_unused_parameters``: a step may leave some parameters without a gradient)."""

    def shard(self, sampler, dataset, generator: torch.Generator, drop_last: bool):
        """This rank's part of an epoch's sampler (``None``: a shuffle seeded by ``generator``)."""

    def all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every rank (all ranks must stop together)."""

    def sum(self, values: Mapping[str, float]) -> dict[str, float]:
        """Each value summed over the ranks (the same keys on every rank)."""

    def shared_targets(self, dataset) -> ContextManager:
        """Around an epoch's training: changes a method makes to ``dataset.targets`` on one rank
        (SCN relabels) reach every rank when the block ends."""


class SingleProcess:
    """The loop alone: the trial's one process trains on every batch."""

    rank = 0
    world_size = 1

    def device(self, gpus):
        return pick_device(gpus)

    def wrap_model(self, model, find_unused_parameters=False):
        return model

    def shard(self, sampler, dataset, generator, drop_last):
        return sampler

    def all_finite(self, loss):
        return bool(torch.isfinite(loss))

    def sum(self, values):
        return dict(values)

    def shared_targets(self, dataset):
        return contextlib.nullcontext()


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Each worker's batch: ``batch_size`` is the global batch of one optimisation step, split
    between the workers (rounded down), so a hyperparameter means the same with any number of them."""
    if world_size == 1:
        return batch_size
    if batch_size < world_size:
        raise ValueError(f"batch_size {batch_size} is smaller than the {world_size} workers that share each batch")
    return batch_size // world_size


class Diverged(Exception):
    """The training loss became NaN or infinite."""


# ---------------------------------------------------------------------------
# Hyperparameters
# ---------------------------------------------------------------------------
def resolve_hyperparameters(method_cls: type[Method], given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults of the engine and the method, overlaid with the trial's values (each checked
    against its declaration, as ``sweeplab validate`` checks them)."""
    allowed = all_hyperparameters(method_cls)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise KeyError(f"hyperparameters {unknown} are not known to {method_cls.__name__}; known: {sorted(allowed)}")
    problems = hyperparameter_problems(method_cls, given)
    if problems:
        raise ValueError(f"{method_cls.__name__}: " + "; ".join(problems))
    return {**allowed, **given}


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(gpus: float | None = None) -> torch.device:
    """CUDA when present, unless the trial was given no GPU: Ray does not hide the GPUs from a
    zero-GPU trial, and such trials must not crowd onto GPU 0 beside the ones it scheduled there."""
    if gpus is not None and gpus <= 0:
        return torch.device("cpu")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling order of an epoch depends only on (seed, epoch), so a resumed trial
    sees the same batches as one that never stopped."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": _to_lists(random.getstate()),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_to_tuples(state["python"]))


def _to_lists(obj):
    return [_to_lists(x) for x in obj] if isinstance(obj, (tuple, list)) else obj


def _to_tuples(obj):
    return tuple(_to_tuples(x) for x in obj) if isinstance(obj, (tuple, list)) else obj


def is_better(value: float, best: float | None, mode: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best


def worst_value(mode: str) -> float:
    return float("-inf") if mode == "max" else float("inf")


# ---------------------------------------------------------------------------
# Epochs
# ---------------------------------------------------------------------------
def _to_device(batch, device):
    return tuple(t.to(device, non_blocking=True) if torch.is_tensor(t) else t for t in batch)


def _paired(loader, second_loader):
    """Each batch of ``loader`` with the next batch of ``second_loader`` (restarted when it ends)."""
    second = iter(second_loader)
    for batch in loader:
        try:
            other = next(second)
        except StopIteration:
            second = iter(second_loader)
            other = next(second)
        yield batch, other


def train_one_epoch(method: Method, model, loader, optimizer, device, second_loader=None,
                    parallel: Parallel | None = None) -> dict[str, float]:
    """Mean of each loss part over the epoch and, for single-label data, the accuracy on the
    (possibly noisy) training labels; ``train/samples``: the samples trained on. With
    ``second_loader`` (a method's paired sampler) each step gets ``(batch, second_batch)``.
    Raises ``Diverged`` at the first non-finite loss, before the optimizer steps on it.
    With several workers (``parallel``) the metrics cover every worker's batches."""
    parallel = parallel or SingleProcess()
    model.train()
    # running sums stay on the device (float64): one host sync per step (the finiteness check the
    # optimizer step waits for), not one per logged number; read once when the epoch ends
    sums: dict[str, torch.Tensor] = {}
    seen = 0
    correct = torch.zeros((), dtype=torch.int64, device=device)
    single_label = False
    steps = loader if second_loader is None else _paired(loader, second_loader)
    for batch in steps:
        if second_loader is None:
            batch = _to_device(batch, device)
            first = batch
        else:
            batch = tuple(_to_device(b, device) for b in batch)
            first = batch[0]
        outputs = method.training_step(model, batch)
        loss = outputs["loss"]
        if not parallel.all_finite(loss):
            if parallel.world_size == 1:
                raise Diverged(f"training loss became {loss.item()}")
            raise Diverged(f"training loss became non-finite on at least one of the {parallel.world_size} "
                           f"workers (rank {parallel.rank}: {loss.item()})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.after_optimizer_step(model, batch, outputs)

        n = first[1].shape[0]
        seen += n
        _accumulate(sums, "loss", loss, n, device)
        for key, value in outputs.items():
            if key.startswith("loss/"):
                _accumulate(sums, key, value, n, device)
        logits = outputs.get("logits")
        single_label = logits is not None and logits.dim() == 2 and first[1].dim() == 1
        if single_label:
            correct += (logits.detach().argmax(1) == first[1]).sum()
    sums = {k: float(v) for k, v in sums.items()}
    correct = int(correct)
    if parallel.world_size > 1:
        totals = parallel.sum({**sums, "#seen": seen, "#correct": correct, "#single_label": float(single_label)})
        seen, correct, single_label = int(totals.pop("#seen")), totals.pop("#correct"), totals.pop("#single_label") > 0
        sums = totals
    metrics = {f"train/{k}": v / max(seen, 1) for k, v in sums.items()}
    if seen and single_label:
        metrics["train/acc"] = correct / seen
    metrics["train/samples"] = seen
    return metrics


def _accumulate(sums: dict[str, torch.Tensor], key: str, value, n: int, device) -> None:
    """``sums[key] += value * n`` without a host sync (a loss part may also be a plain number)."""
    part = value.detach().to(torch.float64) if torch.is_tensor(value) else torch.tensor(float(value),
                                                                                        dtype=torch.float64)
    total = sums.get(key)
    sums[key] = part.to(device) * n if total is None else total + part.to(total.device) * n


@torch.no_grad()
def predict_split(method: Method, model, loader, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, targets) of a whole split."""
    model.eval()
    scores, targets = [], []
    for batch in loader:
        inputs, target = batch[0].to(device), batch[1]
        scores.append(method.predict(model, inputs).float().cpu())
        targets.append(target)
    return torch.cat(scores), torch.cat(targets)


def evaluate(method: Method, model, loader, device, info: DataInfo) -> dict[str, float]:
    return task_family(info.task).split_metrics(*predict_split(method, model, loader, device), info)


def _prefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in metrics.items()}


# ---------------------------------------------------------------------------
# A trial
# ---------------------------------------------------------------------------
def train(
    config: Mapping[str, Any], reporter: Reporter, tracker: TrialTracker | None = None,
    parallel: Parallel | None = None, method_cls: type[Method] | None = None,
) -> dict[str, float]:
    """Run one trial to the end (or to divergence); returns the last reported metrics.

    With several workers (``parallel``) every rank calls this: each trains on its shard of
    every batch (one optimisation step is the same global batch as alone), rank 0 alone
    evaluates and its metrics and checkpoint are the trial's; every rank reports each epoch.
    Give the other ranks a ``NullTracker`` so the trial is logged once. ``method_cls``: the
    method to run (default: the registered method the context names)."""
    tracker = tracker or NullTracker()
    parallel = parallel or SingleProcess()
    chief = parallel.rank == 0
    ctx = TrialContext.from_config(config)
    method_cls = method_cls or catalog.method_class(ctx.method)
    hp = resolve_hyperparameters(method_cls, hyperparameters_of(config))
    epochs = int(hp["epochs"])

    torch.set_num_threads(max(1, int(ctx.threads)))
    # the same seed on every rank: they consume their RNGs alike, so rank 0's saved RNG state
    # resumes every rank exactly (DDP also starts every rank from rank 0's weights)
    seed_everything(ctx.seed)
    device = parallel.device(ctx.gpus)

    data = build_dataset(ctx.dataset, ctx.seed)
    method = method_cls(hp, data.info)
    method.attach_train_data(data.train, data.train_clean_targets)
    backbone_name = ctx.model.get("backbone", "small_cnn")
    facts = DataFacts(data.info.num_classes, None if method.global_pool else
                      feature_map_size(backbone_name, data.info.input_shape))
    problems = data_problems(method_cls, hp, facts)  # validation checks the same before the sweep
    if problems:
        raise ValueError(f"{method_cls.__name__} on {backbone_name}: " + "; ".join(problems))
    backbone, feature_dim = build_backbone(backbone_name, data.info.input_shape[0], ctx.model.get("weights"),
                                           global_pool=method.global_pool)
    model = method.build_model(backbone, feature_dim).to(device)
    groups = optimizer_groups(method, model)
    optimizer = make_optimizer(hp, groups)
    schedule = make_schedule(hp, optimizer)

    batch_size = int(hp["batch_size"])
    pin = device.type == "cuda"
    eval_loader = lambda ds: DataLoader(  # noqa: E731
        ds, batch_size=max(batch_size, 256), shuffle=False, num_workers=data.num_workers, pin_memory=pin
    )
    val_loader, test_loader = eval_loader(data.val), eval_loader(data.test)
    test_loaders = {"test": test_loader, **{extra_test_split(name): eval_loader(dataset)
                                           for name, dataset in data.extra_tests.items()}}

    start_epoch, best = 0, {"value": None, "epoch": 0, "val": {}, "state": None}
    state = reporter.load_checkpoint()
    if state is not None:
        model.load_state_dict(state["model"])
        load_optimizer_state(optimizer, state["optimizer"], groups)
        if schedule is not None and state.get("schedule"):
            schedule.load_state_dict(state["schedule"])
        method.load_state_dict(state.get("method", {}))
        best = state["best"]
        start_epoch = int(state["epoch"])
        set_rng_state(state["rng"])

    tracker.start(applicable(method_cls, hp))  # what does not apply (momentum under adam) is not logged
    # what the training steps call; ``model`` is what is saved and evaluated
    trained = parallel.wrap_model(model, find_unused_parameters=method.find_unused_parameters)
    metrics: dict[str, float] = {}
    try:
        for epoch in range(start_epoch, epochs):
            method.on_epoch_start(epoch)  # before its samplers are drawn: they may depend on the epoch
            train_loader, second_loader = train_loaders(
                method, data, batch_size, epoch_generator(ctx.seed, epoch), pin, parallel)
            metrics = {"epoch": epoch + 1, **learning_rates(optimizer)}
            try:
                with parallel.shared_targets(data.train):
                    metrics.update(train_one_epoch(method, trained, train_loader, optimizer, device, second_loader,
                                                   parallel))
            except Diverged as exc:
                return _end_diverged(ctx, epoch, str(exc), reporter, tracker)
            metrics.update({f"train/{k}": v for k, v in method.on_epoch_end(epoch).items()})
            if schedule is not None:
                schedule.step()

            last = epoch + 1 == epochs
            if chief:  # the other ranks go on to the next epoch and wait for rank 0 at its first step
                metrics.update(_prefixed("val", evaluate(method, model, val_loader, device, data.info)))
                if is_better(metrics.get(ctx.metric), best["value"], ctx.mode):
                    best = {
                        "value": metrics[ctx.metric],
                        "epoch": epoch + 1,
                        "val": {k: v for k, v in metrics.items() if k.startswith("val/")},
                        "objectives": {m: metrics[m] for m, _ in ctx.all_objectives() if m in metrics},
                        "state": copy.deepcopy(model.state_dict()),
                    }
                metrics.update(running_best(best, ctx))
                if last:
                    metrics.update(_final_metrics(method, model, best, test_loaders, device, data))

            checkpoint = {
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict() if schedule is not None else {},
                "method": method.state_dict(),
                "best": best,
                "rng": rng_state(),
            }
            tracker.log_metrics(metrics, step=epoch + 1)
            if last and chief:  # recorded before the last report: a scheduler may stop the trial inside it
                tracker.log_dict({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, "summary.json")
                tracker.log_dict(_per_class_tables(method, model, best, val_loader, test_loader, device, data.info),
                                 "per_class.json")
                tracker.finish("finished")
            reporter.report(metrics, checkpoint)
    except BaseException as exc:  # recorded, then handed to Tune (which retries or marks the trial errored)
        if not isinstance(exc, (KeyboardInterrupt, SystemExit)):  # SystemExit: Tune stopping the trial
            tracker.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    return metrics


def train_loaders(method: Method, data, batch_size: int, generator: torch.Generator, pin: bool,
                  parallel: Parallel | None = None):
    """The epoch's training loader (the method's sampler, else a seeded shuffle) and, for a
    method that draws a second batch each step, the loader of its paired sampler. With several
    workers each loader holds this rank's shard of the sampler and its share of ``batch_size``."""
    parallel = parallel or SingleProcess()
    drop_last = len(data.train) > batch_size
    local_batch = local_batch_size(batch_size, parallel.world_size)

    def loader(sampler):
        own = parallel.shard(sampler, data.train, generator, drop_last)
        return DataLoader(  # the generator as alone (it seeds the loader's workers, then the shuffle)
            data.train, batch_size=local_batch, sampler=own, shuffle=own is None,
            generator=generator if sampler is None else None, num_workers=data.num_workers,
            pin_memory=pin, drop_last=drop_last,
        )

    paired = method.paired_sampler(data.train, generator)
    return loader(method.train_sampler(data.train, generator)), (None if paired is None else loader(paired))


@contextlib.contextmanager
def _best_state(model, best):
    """The model with the best-validation weights inside the block, its final weights after."""
    final_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best["state"])
    try:
        yield model
    finally:
        model.load_state_dict(final_state)


def running_best(best: Mapping[str, Any], ctx: TrialContext) -> dict[str, float]:
    """The trial's objective so far (``sweeplab.objective``): each objective's value at the best
    epoch yet, as ``best/<metric>``, and that epoch as ``best/epoch``."""
    if best["value"] is None:
        return {}
    # a checkpoint from before the objectives were kept holds the primary's value alone
    at = best.get("objectives") or {ctx.metric: best["value"]}
    return {**{objective_metric(m): v for m, v in at.items()}, "best/epoch": best["epoch"]}


def _final_metrics(method, model, best, test_loaders, device, data) -> dict[str, float]:
    """Metrics on each test set (split name -> loader) of the final state, and of the state
    with the best validation objective."""
    def on_tests(prefix: str = "") -> dict[str, float]:
        out = {}
        for split, loader in test_loaders.items():
            out.update(_prefixed(prefix + split, evaluate(method, model, loader, device, data.info)))
        return out

    out = on_tests()
    out["best/epoch"] = best["epoch"]
    out.update({f"best/{k}": v for k, v in best["val"].items()})
    if best["state"] is not None:
        with _best_state(model, best):
            out.update(on_tests("best/"))
    return out


def _per_class_tables(method, model, best, val_loader, test_loader, device, info: DataInfo) -> dict:
    """Per-class results (accuracy, or AP for multi-label) of the final and best states."""
    details = task_family(info.task).split_details
    tables = {
        f"final/{split}": details(*predict_split(method, model, loader, device), info)
        for split, loader in (("val", val_loader), ("test", test_loader))
    }
    if best["state"] is not None:
        with _best_state(model, best):
            tables["best/test"] = details(*predict_split(method, model, test_loader, device), info)
    return tables


def _end_diverged(ctx: TrialContext, epoch: int, reason: str, reporter: Reporter, tracker: TrialTracker) -> dict:
    """A diverged trial ends cleanly: its objective is the worst value, so schedulers and the
    searcher rank it last, and MLflow records it as ``diverged`` with the reason."""
    worst = {m: worst_value(mode) for m, mode in ctx.all_objectives()}
    metrics = {"epoch": epoch + 1, "diverged": 1.0, **worst, **{objective_metric(m): v for m, v in worst.items()}}
    tracker.log_dict({"diverged_at_epoch": epoch + 1, "reason": reason}, "summary.json")
    tracker.finish("diverged", error=reason)
    reporter.report(metrics, checkpoint=None)
    return metrics
