"""Numeric precision and memory format of a trial's training and evaluation.

A sweep chooses ``precision`` (per method overridable), one of ``PRECISIONS``:

- ``fp32``: everything in float32.
- ``bf16``: the forward pass under ``torch.autocast`` with bfloat16 (matrix products and
  convolutions in bf16, weights and optimizer state stay float32). bf16 has float32's range,
  so no loss scaling.
- ``fp16``: autocast with float16, and a ``GradScaler`` that scales the loss so small gradients
  survive float16's range (a step whose gradients overflow is skipped and the scale lowered).
- ``auto`` (default): bf16 on a CUDA GPU that supports it (Ampere and later), else fp32. On a
  CPU the default is fp32: bf16 autocast runs there, but is only faster on CPUs with bf16
  instructions.

Parts of a loss that lose too much in 16 bits (a softmax over masked logits, a min-max
normalisation, a log-sigmoid) are computed in float32: a method marks those functions with
``full_precision`` (exported to methods by ``sweeplab.method``), which leaves autocast for their
body and casts their tensor arguments to float32. For float32 inputs outside autocast it
changes nothing, so the pure loss functions keep their unit-tested values.

Memory format: on CUDA convolutional backbones run channels-last (NHWC), what tensor cores
want under bf16/fp16; ``model.channels_last`` in a sweep file forces it on or off.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, TypeVar

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
LOW_PRECISION = tuple(DTYPES.values())

F = TypeVar("F", bound=Callable[..., Any])


def resolve_precision(requested: str, device: torch.device) -> str:
    """The precision a trial trains in on ``device``: ``requested``, with ``auto`` decided here."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    # native bf16 only (Ampere and later): older GPUs emulate it, slower than fp32
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16"
    return "fp32"


def use_channels_last(setting: bool | None, device: torch.device) -> bool:
    """Whether the (convolutional) model and its inputs run channels-last: ``setting``, else on CUDA."""
    return device.type == "cuda" if setting is None else bool(setting)


class TrainingPrecision:
    """What the loop does differently per precision: the autocast region of forward passes, and
    the backward pass and optimizer step (scaled for fp16)."""

    def __init__(self, precision: str, device: torch.device, channels_last: bool = False):
        if precision not in DTYPES and precision != "fp32":
            raise ValueError(f"precision {precision!r} is not a resolved one (fp32, bf16, fp16)")
        self.name = precision
        self.device_type = device.type
        self.dtype = DTYPES.get(precision)
        self.channels_last = channels_last
        # the scale only matters for fp16; disabled it passes losses and steps through unchanged
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=precision == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        """The region forward passes (and the losses in them) run in."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def prepare_inputs(self, inputs):
        """Images (4-D) in the model's memory format; anything else as it is."""
        if self.channels_last and torch.is_tensor(inputs) and inputs.dim() == 4:
            return inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)  # fp16: skipped when a gradient overflowed
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler.is_enabled() else {}

    def load_state_dict(self, state: dict) -> None:
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)


FP32 = TrainingPrecision("fp32", torch.device("cpu"))  # the plain loop's (tests, benchmarks)


def _as_float32(value):
    if torch.is_tensor(value) and value.dtype in LOW_PRECISION:
        return value.float()
    if isinstance(value, (list, tuple)):
        return type(value)(_as_float32(v) for v in value)
    return value


def _device_type(args, kwargs) -> str | None:
    for value in (*args, *kwargs.values()):
        if torch.is_tensor(value):
            return value.device.type
        if isinstance(value, (list, tuple)):
            found = _device_type(value, {})
            if found is not None:
                return found
    return None


def full_precision(fn: F) -> F:
    """Run ``fn`` in float32 even inside autocast: its tensor arguments (also inside lists and
    tuples) in bf16/fp16 are cast to float32 and autocast is off in its body. Outside autocast,
    with float32 arguments, it is ``fn`` itself."""

    @functools.wraps(fn)
    def in_float32(*args, **kwargs):
        device_type = _device_type(args, kwargs)
        if device_type is None or not torch.is_autocast_enabled(device_type):
            return fn(*_as_float32(args), **{k: _as_float32(v) for k, v in kwargs.items()})
        with torch.autocast(device_type, enabled=False):
            return fn(*_as_float32(args), **{k: _as_float32(v) for k, v in kwargs.items()})

    return in_float32  # type: ignore[return-value]
