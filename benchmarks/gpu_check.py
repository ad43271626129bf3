"""The GPU path, checked on a GPU: a short trial of every method on CUDA in fp32 and in bf16
(channels-last, cuDNN autotuning, pinned memory: what a trial on one GPU gets), and a
data-parallel trial on NCCL.

Each row is ``sweeplab.engine.train`` of one trial, as a sweep runs it, with the method's
defaults on its built-in dataset (``--epochs`` epochs, batch ``--batch``). Reported: training
images per second (the median epoch after the first, training and the validation pass it
does), the peak GPU memory, and the fp32 -> bf16 speed-up; whether every reported number is
finite. Two ResNet-18 rows run at 112 px (the digits resized in memory), where the GPU has
work enough for bf16 to show.

The data-parallel row initialises ``torch.distributed`` with NCCL in this process (one rank
on GPU 0) and trains through ``sweeplab.distributed.TorchDistributed``, the ``Parallel`` that
Ray Train workers use: DDP's NCCL all-reduce, the rank-0 evaluation and the loss check run as
in a multi-worker trial. With two GPUs or more a real two-worker sweep trial on Ray Train
follows (``resources.workers: 2``), through ``sweeplab run``.

    .venv/bin/python benchmarks/gpu_check.py                 # on a machine with a CUDA GPU
    .venv/bin/python benchmarks/gpu_check.py --methods ce scn --epochs 3
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sweeplab.context import CONTEXT_KEY
from sweeplab.engine import MemoryReporter, train
from trainables.registry import METHODS

REPO = Path(__file__).resolve().parent.parent
BUILT_IN = {
    "classification": {"name": "noisy_digits", "noise_rate": 0.2},
    "multilabel": {"name": "lt_digits"},
    "retrieval": {"name": "retrieval_digits"},
}
RESNET_ROWS = [("ce", 112), ("scn", 112)]  # (method, side): ResNet-18 on the digits resized to side


class TimedReporter(MemoryReporter):
    def __init__(self):
        super().__init__()
        self.times = [time.perf_counter()]

    def report(self, metrics, checkpoint):
        torch.cuda.synchronize()
        super().report(metrics, checkpoint)
        self.times.append(time.perf_counter())


def config_of(method: str, backbone: str, side: int | None, precision: str, epochs: int, batch: int) -> dict:
    entry = METHODS[method]
    data = dict(BUILT_IN[entry.task])
    if side is not None:
        data["image_size"] = side
    return {"epochs": epochs, "batch_size": batch,
            CONTEXT_KEY: {"method": method, "dataset": data, "model": {"backbone": backbone, "weights": None},
                          "seed": 0, "metric": entry.metric, "mode": entry.mode, "threads": 4, "gpus": 1,
                          "precision": precision}}


def one_trial(config: dict, parallel=None) -> dict:
    """images/s, peak memory (GiB) and finiteness of one trial."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    reporter = TimedReporter()
    train(config, reporter, parallel=parallel)
    epochs = [b - a for a, b in zip(reporter.times, reporter.times[1:])]
    samples = reporter.results[-1].get("train/samples", 0)
    steady = statistics.median(epochs[1:] or epochs)
    finite = all(math.isfinite(v) for r in reporter.results for v in r.values() if isinstance(v, (int, float)))
    return {"rate": samples / steady, "peak": torch.cuda.max_memory_allocated() / 2**30, "finite": finite,
            "objective": reporter.results[-1].get(config[CONTEXT_KEY]["metric"], float("nan"))}


def row(name: str, method: str, backbone: str, side: int | None, args) -> None:
    out = {}
    for precision in ("fp32", "bf16"):
        out[precision] = one_trial(config_of(method, backbone, side, precision, args.epochs, args.batch))
    a, b = out["fp32"], out["bf16"]
    print(f"| {name} | {a['rate']:,.0f} | {b['rate']:,.0f} | {b['rate'] / a['rate']:.2f}× | {a['peak']:.2f} | "
          f"{b['peak']:.2f} | {a['objective']:.3f} / {b['objective']:.3f} | {a['finite'] and b['finite']} |",
          flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nccl_row(args) -> None:
    import torch.distributed as dist

    from sweeplab.distributed import TorchDistributed

    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        result = one_trial(config_of("ce", "resnet18", 112, "bf16", args.epochs, args.batch),
                           TorchDistributed(torch.device("cuda", 0)))
    finally:
        dist.destroy_process_group()
    print(f"| ce, resnet18 @ 112 px, DDP on NCCL (1 rank) | - | {result['rate']:,.0f} | - | - | {result['peak']:.2f} "
          f"| - / {result['objective']:.3f} | {result['finite']} |", flush=True)


def ray_train_trial(args) -> None:
    """A two-worker trial of a real sweep (Ray Train, NCCL, one GPU per worker), through the CLI."""
    with tempfile.TemporaryDirectory(prefix="sweeplab-gpu-check-") as folder:
        started = time.perf_counter()
        command = [str(Path(sys.executable).parent / "sweeplab"), "run", str(REPO / "sweeps" / "noisy_digits.yaml"),
                   "--profile", "demo", "--no-report",
                   "--set", f"storage.path={folder}/results", "--set", f"tracking.uri=sqlite:///{folder}/mlflow.db",
                   "--set", "resources.workers=2", "--set", "resources.gpus_per_worker=1",
                   "--set", "resources.cpus_per_worker=2", "--set", "methods.ce.num_samples=1",
                   "--set", "precision=bf16"]
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, env={**os.environ})
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        print(f"\nRay Train two-worker trial (2 GPUs, NCCL, bf16): exit {done.returncode} in "
              f"{time.perf_counter() - started:.0f} s; " + " / ".join(tail))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=sorted(METHODS), choices=sorted(METHODS))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check needs a CUDA GPU (torch.cuda.is_available() is False here)")
    name = torch.cuda.get_device_name(0)
    print(f"{name}, {torch.cuda.device_count()} GPU(s), torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"bf16 supported: {torch.cuda.is_bf16_supported()}; {args.epochs} epochs, batch {args.batch}, "
          "median epoch after the first\n")
    print("| trial | fp32 img/s | bf16 img/s | bf16 / fp32 | fp32 peak GiB | bf16 peak GiB | objective fp32 / bf16 "
          "| all finite |")
    print("|---|---|---|---|---|---|---|---|")
    for method in args.methods:
        row(f"{method}, small_cnn, built-in", method, "small_cnn", None, args)
    for method, side in RESNET_ROWS:
        if method in args.methods:
            row(f"{method}, resnet18 @ {side} px", method, "resnet18", side, args)
    nccl_row(args)
    if torch.cuda.device_count() >= 2:
        ray_train_trial(args)


if __name__ == "__main__":
    main()
