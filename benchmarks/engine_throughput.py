"""Images per second of one epoch through the engine against a plain PyTorch loop doing the same
work on the same model, data and batch, side by side in one run.

Arm "engine": ``sweeplab.engine.train(config, reporter, NullTracker())`` for the CE baseline:
each epoch trains, evaluates on validation, builds the checkpoint (and copies the weights when
validation improves) and reports. The reporter notes the time of each report.

Arm "plain": the loop a researcher would write: a shuffled ``DataLoader`` over the same
training set, ``F.cross_entropy`` on the same ``Classifier(backbone)``, ``zero_grad``,
``backward``, ``step``; then a ``no_grad`` pass over the validation set (accuracy). Same
optimizer, learning rate, batch size, threads and seed.

Steady state: the median of epochs 2 .. E-1 in each arm (the first warms up; the engine's
last also tests twice and builds the per-class tables, work a plain loop would do once at
the end). Images/s counts training images; both arms also run the same validation pass.
Arms alternate, ``--rounds`` times, so drift hits both alike.

A model is ``backbone@side``: the built-in digits resized (in memory) to ``side`` pixels, so
``resnet18@112`` is ResNet-18 on 112x112 inputs with nothing to decode. ``--precision bf16``
runs both arms under bf16 autocast (the plain loop with ``torch.autocast``), ``--device cuda``
both on the GPU (the engine's trial then has one GPU: channels-last, cuDNN autotuning).

    .venv/bin/python benchmarks/engine_throughput.py                  # small_cnn on the 8x8 digits
    .venv/bin/python benchmarks/engine_throughput.py --models resnet18@112 --epochs 3 --rounds 2
    .venv/bin/python benchmarks/engine_throughput.py --models small_cnn@8 resnet18@112 --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from sweeplab.context import CONTEXT_KEY
from sweeplab.data import build_dataset
from sweeplab.engine import MemoryReporter, NullTracker, train
from sweeplab.models import build_backbone
from sweeplab.models.heads import Classifier

DATASET = {"name": "noisy_digits", "noise_rate": 0.2}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def dataset(side: int) -> dict:
    return {**DATASET, "image_size": side}


def parse_model(text: str) -> tuple[str, int]:
    """``backbone@side`` (``@side`` left out: the digits' own 8 pixels)."""
    backbone, _, side = text.partition("@")
    return backbone, int(side or 8)


class TimedReporter(MemoryReporter):
    def __init__(self):
        super().__init__()
        self.times: list[float] = [time.perf_counter()]

    def report(self, metrics, checkpoint):
        super().report(metrics, checkpoint)
        self.times.append(time.perf_counter())


def engine_arm(backbone: str, side: int, epochs: int, batch: int, threads: int, seed: int, device: str,
               precision: str) -> list[float]:
    config = {"epochs": epochs, "batch_size": batch, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
              "lr_schedule": "constant",
              CONTEXT_KEY: {"method": "ce", "dataset": dataset(side), "model": {"backbone": backbone, "weights": None},
                            "seed": seed, "metric": "val/acc", "mode": "max", "threads": threads,
                            "gpus": 1 if device == "cuda" else 0, "precision": precision}}
    reporter = TimedReporter()
    train(config, reporter, NullTracker())
    return [b - a for a, b in zip(reporter.times, reporter.times[1:])]


def plain_arm(backbone_name: str, side: int, epochs: int, batch: int, threads: int, seed: int, device: str,
              precision: str) -> list[float]:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    data = build_dataset(dataset(side), seed)
    backbone, dim = build_backbone(backbone_name, data.info.input_shape[0])
    model = Classifier(backbone, dim, data.info.num_classes).to(device)
    autocast = (lambda: torch.autocast(device, dtype=DTYPES[precision])) if precision in DTYPES \
        else contextlib.nullcontext
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(data.train, batch_size=batch, shuffle=True, generator=generator,
                              drop_last=len(data.train) > batch)
    val_loader = DataLoader(data.val, batch_size=max(batch, 256))
    times, last = [], time.perf_counter()
    for _ in range(epochs):
        model.train()
        for inputs, targets, *_ in train_loader:
            inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            with autocast():
                loss = F.cross_entropy(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for inputs, targets, *_ in val_loader:
                with autocast():
                    correct += int((model(inputs.to(device)).argmax(1).cpu() == targets).sum())
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


def steady(times: list[float]) -> float:
    """Median epoch time of epochs 2 .. E-1."""
    middle = times[1:-1] or times
    return statistics.median(middle)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["small_cnn@8"], help="backbone@side, e.g. resnet18@112")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="fp16: the plain arm has no grad scaler (a short run rarely needs one)")
    args = p.parse_args()
    train_images = len(build_dataset(DATASET, 0).train)
    per_epoch = (train_images // args.batch) * args.batch if train_images > args.batch else train_images
    print(f"CE on {DATASET['name']} ({train_images} training images, {per_epoch} per epoch), batch {args.batch}, "
          f"{args.threads} thread(s), {args.device}, {args.precision}, {args.epochs} epochs, median of epochs "
          f"2..{args.epochs - 1}, {args.rounds} rounds alternating\n")
    print("| model | plain loop (img/s) | engine (img/s) | engine / plain |")
    print("|---|---|---|---|")
    for model in args.models:
        backbone, side = parse_model(model)
        plain, engine = [], []
        for r in range(args.rounds):  # which arm goes first alternates too
            arms = [(plain, plain_arm), (engine, engine_arm)]
            for times, arm in (arms if r % 2 == 0 else arms[::-1]):
                times.append(steady(arm(backbone, side, args.epochs, args.batch, args.threads, r, args.device,
                                        args.precision)))
        p_rate, e_rate = per_epoch / statistics.median(plain), per_epoch / statistics.median(engine)
        print(f"| {backbone} @ {side} px | {p_rate:,.0f} | {e_rate:,.0f} | {e_rate / p_rate:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
