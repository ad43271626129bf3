"""Precision and memory format (``sweeplab.precision``): resolution, the float32 seam, and every
method's step under bf16 autocast on the CPU against the same step in float32."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sweeplab import engine
from sweeplab.catalog import method_class
from sweeplab.context import CONTEXT_KEY, TrialContext
from sweeplab.data import build_dataset
from sweeplab.method import all_hyperparameters
from sweeplab.models import build_backbone
from sweeplab.precision import TrainingPrecision, full_precision, resolve_precision, use_channels_last
from trainables.registry import METHODS

BUILT_IN = {
    "classification": {"name": "noisy_digits", "noise_rate": 0.2},
    "multilabel": {"name": "lt_digits", "train_size": 300, "val_size": 100, "test_size": 100},
    "retrieval": {"name": "retrieval_digits", "per_class": 6},
}
CPU = torch.device("cpu")

# bf16 keeps 8 bits of mantissa (about 2-3 decimal digits): a loss through a small CNN under bf16
# autocast stays within a few percent of float32, and the gradient points the same way
LOSS_RTOL, LOSS_ATOL = 0.05, 0.02
GRAD_COSINE = 0.98
# SCN ranks the batch by α into two groups: at initialisation every α is 0.5 ± 0.02, and bf16's
# backbone moves them by up to ~1e-3, so samples next to the group boundary change group (its
# gradient then differs: cosine 0.968 measured). Checked instead: only such near-ties flip.
GRAD_COSINE_OF = {"scn": 0.95}
BF16_RESOLUTION = 2.0 ** -8  # relative spacing of bf16 numbers


def test_auto_is_fp32_on_the_cpu_and_explicit_choices_stand():
    assert resolve_precision("auto", CPU) == "fp32"
    for name in ("fp32", "bf16", "fp16"):
        assert resolve_precision(name, CPU) == name
    with pytest.raises(ValueError, match="fp64.*auto, fp32, bf16, fp16"):
        resolve_precision("fp64", CPU)
    assert use_channels_last(None, CPU) is False and use_channels_last(True, CPU) is True
    assert use_channels_last(None, torch.device("cuda")) is True and use_channels_last(False, torch.device("cuda")) \
        is False


def test_full_precision_leaves_autocast_and_is_the_function_itself_outside():
    @full_precision
    def gram(a, pair):
        return a @ pair[0].t(), torch.softmax(a, dim=1)

    a = torch.randn(4, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = torch.nn.Linear(3, 3)(a)  # bf16 under autocast
        assert low.dtype == torch.bfloat16
        product, probs = gram(low, (low,))
        assert product.dtype == probs.dtype == torch.float32
        plain = low @ low.t()
        assert plain.dtype == torch.bfloat16  # what the seam keeps the loss from
    outside = gram(a, (a,))
    assert torch.equal(outside[0], a @ a.t()) and torch.equal(outside[1], torch.softmax(a, dim=1))


def test_bf16_arithmetic_loses_what_full_precision_keeps():
    """Why the seam exists: ProxyGML ranks a sample's own proxies first by adding 1000 to their
    similarities; in bf16 (8 bits of mantissa) 1000.1 and 1000.3 are the same number."""
    similarities = torch.tensor([[0.1, 0.3]]).bfloat16()  # what a bf16 matmul hands the loss
    in_bf16 = similarities + 1000
    kept = full_precision(lambda s: s + 1000)(similarities)
    assert in_bf16[0, 0] == in_bf16[0, 1]  # the tie bf16 makes
    assert kept.dtype == torch.float32 and kept[0, 1] - kept[0, 0] == pytest.approx(0.2, abs=2e-3)


def _step_in(precision: str, name: str):
    """(loss, flat gradient) of one training step of method ``name`` on its built-in data."""
    entry = METHODS[name]
    cls = method_class(name)
    data = build_dataset(BUILT_IN[entry.task], seed=0)
    hp = {**all_hyperparameters(cls), "batch_size": 32}
    if "relabel_epoch" in hp:
        hp["relabel_epoch"] = 1
    method = cls(hp, data.info)
    method.attach_train_data(data.train, data.train_clean_targets)
    torch.manual_seed(0)  # the same weights in both precisions
    backbone, dim = build_backbone("small_cnn", data.info.input_shape[0], global_pool=cls.global_pool)
    model = method.build_model(backbone, dim)
    method.on_epoch_start(0)
    loader, second = engine.train_loaders(method, data, 32, engine.epoch_generator(0, 0))
    batch = next(iter(loader)) if second is None else next(iter(zip(loader, second)))
    policy = TrainingPrecision(precision, CPU)
    model.train()
    torch.manual_seed(1)  # the same dropout and diversification draws
    with policy.autocast():
        outputs = method.training_step(model, batch)
    loss = outputs["loss"].float()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                      for g, p in zip(grads, params)])
    return outputs, loss.item(), flat


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_step_under_bf16_autocast_matches_fp32(name):
    exact, loss32, grad32 = _step_in("fp32", name)
    low, loss16, grad16 = _step_in("bf16", name)
    assert math.isfinite(loss16)
    assert abs(loss16 - loss32) <= LOSS_ATOL + LOSS_RTOL * abs(loss32), (loss16, loss32)
    assert torch.isfinite(grad16).all()
    cosine = F.cosine_similarity(grad16, grad32, dim=0).item()
    assert cosine >= GRAD_COSINE_OF.get(name, GRAD_COSINE), cosine
    if "high" in exact:  # SCN's groups: a sample changes group only where its α ties the boundary in bf16
        alpha, flipped = exact["alpha"], exact["high"] != low["high"]
        boundary = alpha[exact["high"]].min()
        assert ((alpha[flipped] - boundary).abs() <= 2 * BF16_RESOLUTION * boundary).all()
    for key, value in exact.items():  # every loss part too
        if key.startswith("loss/"):
            ours = float(low[key])
            assert math.isfinite(ours) and abs(ours - float(value)) <= LOSS_ATOL + LOSS_RTOL * abs(float(value)), key


def _config(method: str, precision: str, **model) -> dict:
    entry = METHODS[method]
    return {"epochs": 2, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
            "lr_schedule": "constant",
            CONTEXT_KEY: {"method": method, "dataset": BUILT_IN[entry.task], "seed": 0, "metric": entry.metric,
                          "mode": entry.mode, "gpus": 0, "precision": precision,
                          "model": {"backbone": "small_cnn", "weights": None, **model}}}


class Params(engine.NullTracker):
    """Tracks the params a trial logs, nothing else."""

    params = None

    def start(self, params):
        self.params = dict(params)


class KeepEvery(engine.MemoryReporter):
    def __init__(self):
        super().__init__()
        self.checkpoints = []

    def report(self, metrics, checkpoint):
        super().report(metrics, checkpoint)
        self.checkpoints.append(checkpoint)


@pytest.mark.parametrize("precision, channels_last", [("bf16", True), ("fp16", False)])
def test_a_trial_trains_in_low_precision_logs_it_and_resumes(precision, channels_last):
    """The engine's path on CPU: bf16 autocast with channels-last inputs, and fp16 with its grad
    scaler (whose state the checkpoint carries); the resolved precision is a logged param."""
    config = _config("ce", precision, channels_last=channels_last)
    params = Params()
    reporter = KeepEvery()
    engine.train(config, reporter, params)
    assert params.params["precision"] == precision
    last = reporter.results[-1]
    assert all(math.isfinite(v) for v in last.values())
    assert last["val/acc"] > 0.5  # it learned in two epochs, as in float32
    first = reporter.checkpoints[0]  # epoch 1 of 2: what a resume reads
    saved = {k: float(v) if torch.is_tensor(v) else v for k, v in first["precision"].items()}
    assert (saved["scale"] > 0) if precision == "fp16" else saved == {}
    resumed = engine.MemoryReporter(checkpoint=first)
    engine.train(config, resumed, Params())
    assert len(resumed.results) == 1 and math.isfinite(resumed.results[0]["train/loss"])


def test_a_context_stored_before_precision_existed_trains_in_fp32():
    raw = TrialContext(method="ce", dataset=BUILT_IN["classification"]).to_dict()
    del raw["precision"]
    assert TrialContext.from_dict(raw).precision == "fp32"
    assert TrialContext(method="ce", dataset={}).precision == "auto"


def test_the_fp16_scaler_skips_a_step_whose_gradients_overflow():
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    policy = TrainingPrecision("fp16", CPU)
    before = model.weight.detach().clone()
    with policy.autocast():
        loss = model(torch.tensor([[1.0, 1.0]])).sum() * float("inf")
    policy.backward_and_step(loss.float(), optimizer)
    assert torch.equal(model.weight, before)  # skipped
    assert policy.scaler.get_scale() < 2.0 ** 16  # and the scale lowered
    optimizer.zero_grad()
    with policy.autocast():
        loss = model(torch.tensor([[1.0, 1.0]])).sum()
    policy.backward_and_step(loss.float(), optimizer)
    assert not torch.equal(model.weight, before)

