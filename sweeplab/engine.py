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

from sweeplab import catalog
from sweeplab.checkpoints import final_checkpoint
from sweeplab.context import TrialContext, hyperparameters_of
from sweeplab.data import build_dataset
from sweeplab.loaders import LoaderPlan, TrainLoaders, evaluation_loader, loader_plan
from sweeplab.method import (DataFacts, DataInfo, Method, all_hyperparameters, applicable, data_problems,
                             hyperparameter_problems)
from sweeplab.models import build_backbone, feature_map_size
from sweeplab.objective import objective_metric
from sweeplab.optim import learning_rates, load_optimizer_state, make_optimizer, make_schedule, optimizer_groups
from sweeplab.precision import FP32, TrainingPrecision, resolve_precision, use_channels_last
from sweeplab.tasks import extra_test_split, task_family



# ---------------------------------------------------------------------------
# What the loop talks to
# ---------------------------------------------------------------------------
class Reporter(Protocol):
    def load_checkpoint(self) -> dict | None:
        """The state saved by the last ``report`` of this trial, if it is resuming."""

    def report(self, metrics: dict[str, float], checkpoint: dict) -> None:
        """Publish one epoch's metrics with the state to resume from."""

    # Optional: ``settle(wait=False)``, for a reporter that publishes in the background: raises
    # what publishing raised (SystemExit: the trial was stopped); ``wait``: once it is done. The
    # loop settles between steps and waits before it logs an epoch (``sweeplab.trial``).


def _settler(reporter: Reporter):
    """The reporter's ``settle``, or nothing to do for one that publishes as it is called."""
    return getattr(reporter, "settle", None) or (lambda wait=False: None)


def _settling(batches, settle):
    """``batches``, settling the reporter before each: a stopped trial ends within a step."""
    for batch in batches:
        settle()
        yield batch


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
def _to_device(batch, device, precision: TrainingPrecision = FP32):
    """A batch on the device; its inputs (first item) in the model's memory format."""
    moved = [t.to(device, non_blocking=True) if torch.is_tensor(t) else t for t in batch]
    if moved:
        moved[0] = precision.prepare_inputs(moved[0])
    return tuple(moved)


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
                    parallel: Parallel | None = None, precision: TrainingPrecision = FP32) -> dict[str, float]:
    """Mean of each loss part over the epoch and, for single-label data, the accuracy on the
    (possibly noisy) training labels; ``train/samples``: the samples trained on. With
    ``second_loader`` (a method's paired sampler) each step gets ``(batch, second_batch)``.
    Raises ``Diverged`` at the first non-finite loss, before the optimizer steps on it.
    With several workers (``parallel``) the metrics cover every worker's batches. The
    method's step (forward and losses) runs in ``precision``'s autocast region."""
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
            batch = _to_device(batch, device, precision)
            first = batch
        else:
            batch = tuple(_to_device(b, device, precision) for b in batch)
            first = batch[0]
        with precision.autocast():
            outputs = method.training_step(model, batch)
        loss = outputs["loss"].float()
        if not parallel.all_finite(loss):
            if parallel.world_size == 1:
                raise Diverged(f"training loss became {loss.item()}")
            raise Diverged(f"training loss became non-finite on at least one of the {parallel.world_size} "
                           f"workers (rank {parallel.rank}: {loss.item()})")
        optimizer.zero_grad(set_to_none=True)
        precision.backward_and_step(loss, optimizer)
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
def predict_split(method: Method, model, loader, device,
                  precision: TrainingPrecision = FP32) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, targets) of a whole split; the forward passes in ``precision``, the scores float32."""
    model.eval()
    scores, targets = [], []
    for batch in loader:
        inputs, target = precision.prepare_inputs(batch[0].to(device, non_blocking=True)), batch[1]
        with precision.autocast():
            scores.append(method.predict(model, inputs).float().cpu())
        targets.append(target)
    return torch.cat(scores), torch.cat(targets)


def evaluate(method: Method, model, loader, device, info: DataInfo,
             precision: TrainingPrecision = FP32) -> dict[str, float]:
    return task_family(info.task).split_metrics(*predict_split(method, model, loader, device, precision), info)


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
    precision = trial_precision(ctx, device)
    model = precision.prepare_model(method.build_model(backbone, feature_dim).to(device))
    groups = optimizer_groups(method, model)
    optimizer = make_optimizer(hp, groups)
    schedule = make_schedule(hp, optimizer)

    batch_size = int(hp["batch_size"])
    plan = loader_plan(data.num_workers, ctx.threads, device)
    eval_batch = max(batch_size, 256)
    val_loader = evaluation_loader(data.val, eval_batch, plan, every_epoch=True)
    test_loader = evaluation_loader(data.test, eval_batch, plan, every_epoch=False)
    test_loaders = {"test": test_loader, **{extra_test_split(name): evaluation_loader(dataset, eval_batch, plan, False)
                                           for name, dataset in data.extra_tests.items()}}
    loaders = TrainLoaders(data.train, local_batch_size(batch_size, parallel.world_size),
                           len(data.train) > batch_size, plan, parallel.shard)

    start_epoch, best = 0, {"value": None, "epoch": 0, "val": {}, "state": None}
    state = reporter.load_checkpoint()
    if state is not None:
        model.load_state_dict(state["model"])
        method.load_state_dict(state.get("method", {}))
        best = state["best"]
        start_epoch = int(state["epoch"])
        if "optimizer" in state:  # not in a finished trial's last checkpoint (``sweeplab.checkpoints``)
            load_optimizer_state(optimizer, state["optimizer"], groups)
            if schedule is not None and state.get("schedule"):
                schedule.load_state_dict(state["schedule"])
            precision.load_state_dict(state.get("precision", {}))
            set_rng_state(state["rng"])

    # what does not apply (momentum under adam) is not logged; the precision as this device resolved it
    tracker.start({**applicable(method_cls, hp), "precision": precision.name})
    # what the training steps call; ``model`` is what is saved and evaluated
    trained = parallel.wrap_model(model, find_unused_parameters=method.find_unused_parameters)
    settle = _settler(reporter)
    metrics: dict[str, float] = {}
    try:
        if state is not None and start_epoch >= epochs and "metrics" in state:
            # restored from its last epoch's checkpoint: the trial had finished, and Tune's snapshot may
            # predate its last report; its MLflow run has every epoch already
            metrics = dict(state["metrics"])
            tracker.finish("finished")
            reporter.report(metrics, checkpoint=None)
            return metrics
        for epoch in range(start_epoch, epochs):
            method.on_epoch_start(epoch)  # before its samplers are drawn: they may depend on the epoch
            generator = epoch_generator(ctx.seed, epoch)
            train_loader, second_loader = loaders.for_epoch(method.train_sampler(data.train, generator),
                                                            method.paired_sampler(data.train, generator), generator)
            train_loader = _settling(train_loader, settle)
            metrics = {"epoch": epoch + 1, **learning_rates(optimizer)}
            try:
                with parallel.shared_targets(data.train):
                    metrics.update(train_one_epoch(method, trained, train_loader, optimizer, device, second_loader,
                                                   parallel, precision))
            except Diverged as exc:
                settle(wait=True)
                return _end_diverged(ctx, epoch, str(exc), reporter, tracker)
            metrics.update({f"train/{k}": v for k, v in method.on_epoch_end(epoch).items()})
            if schedule is not None:
                schedule.step()

            last = epoch + 1 == epochs
            if chief:  # the other ranks go on to the next epoch and wait for rank 0 at its first step
                metrics.update(_prefixed("val", evaluate(method, model, val_loader, device, data.info, precision)))
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
                    metrics.update(_final_metrics(method, model, best, test_loaders, device, data, precision))

            weights = model.state_dict()
            checkpoint = {
                "epoch": epoch + 1,
                "model": weights,
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict() if schedule is not None else {},
                "method": method.state_dict(),
                "precision": precision.state_dict(),
                # an epoch that improved saves its weights once: torch.save stores a tensor once
                "best": {**best, "state": weights} if best["epoch"] == epoch + 1 else best,
                "rng": rng_state(),
            }
            if last:  # nothing resumes a finished trial: its weights (final and best) are what it keeps
                checkpoint = final_checkpoint(checkpoint, metrics)
            settle(wait=True)  # the last epoch's report is through: the trial goes on
            tracker.log_metrics(metrics, step=epoch + 1)
            if last and chief:  # recorded before the last report: a scheduler may stop the trial inside it
                tracker.log_dict({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, "summary.json")
                tracker.log_dict(_per_class_tables(method, model, best, val_loader, test_loader, device, data.info,
                                                   precision), "per_class.json")
                tracker.finish("finished")
            reporter.report(metrics, checkpoint)
    except BaseException as exc:  # recorded, then handed to Tune (which retries or marks the trial errored)
        if not isinstance(exc, (KeyboardInterrupt, SystemExit)):  # SystemExit: Tune stopping the trial
            tracker.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    return metrics


def trial_precision(ctx: TrialContext, device: torch.device) -> TrainingPrecision:
    """The trial's precision and memory format on ``device`` (``sweeplab.precision``); on CUDA
    also cuDNN's autotuner, which picks the fastest convolution for the fixed input size."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return TrainingPrecision(resolve_precision(ctx.precision, device), device,
                             channels_last=use_channels_last(ctx.model.get("channels_last"), device))


def train_loaders(method: Method, data, batch_size: int, generator: torch.Generator, plan: LoaderPlan | None = None,
                  parallel: Parallel | None = None):
    """One epoch's (training loader, paired loader or None), as ``train`` builds them (for a
    single epoch outside it): the method's sampler, else a seeded shuffle; with several workers
    this rank's shard of it and its share of ``batch_size``."""
    parallel = parallel or SingleProcess()
    loaders = TrainLoaders(data.train, local_batch_size(batch_size, parallel.world_size),
                           len(data.train) > batch_size, plan or LoaderPlan(workers=0, pin_memory=False),
                           parallel.shard)
    return loaders.for_epoch(method.train_sampler(data.train, generator), method.paired_sampler(data.train, generator),
                             generator)


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


def _final_metrics(method, model, best, test_loaders, device, data, precision=FP32) -> dict[str, float]:
    """Metrics on each test set (split name -> loader) of the final state, and of the state
    with the best validation objective."""
    def on_tests(prefix: str = "") -> dict[str, float]:
        out = {}
        for split, loader in test_loaders.items():
            out.update(_prefixed(prefix + split, evaluate(method, model, loader, device, data.info, precision)))
        return out

    out = on_tests()
    out["best/epoch"] = best["epoch"]
    out.update({f"best/{k}": v for k, v in best["val"].items()})
    if best["state"] is not None:
        with _best_state(model, best):
            out.update(on_tests("best/"))
    return out


def _per_class_tables(method, model, best, val_loader, test_loader, device, info: DataInfo, precision=FP32) -> dict:
    """Per-class results (accuracy, or AP for multi-label) of the final and best states."""
    details = task_family(info.task).split_details
    tables = {
        f"final/{split}": details(*predict_split(method, model, loader, device, precision), info)
        for split, loader in (("val", val_loader), ("test", test_loader))
    }
    if best["state"] is not None:
        with _best_state(model, best):
            tables["best/test"] = details(*predict_split(method, model, test_loader, device, precision), info)
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
