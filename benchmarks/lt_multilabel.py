"""LTML against its baselines on the built-in long-tailed multi-label digits, over seeds.

Each row trains one method (the engine's loop, no Ray) with its default
hyperparameters and one common recipe, for several seeds (the seed changes the
data split, the mosaics, the initialisation and the batches), and prints the test
mAP of the final weights over all classes and over the head (>= 100 training
images), medium (20-99) and tail (< 20) classes as mean ± std.

    .venv/bin/python benchmarks/lt_multilabel.py                 # 3 seeds, about 3-5 minutes on 2 cores
    .venv/bin/python benchmarks/lt_multilabel.py --seeds 5 --epochs 20 --lr 0.01

Rows: ``bce`` (uniform sampling, the paper's "baseline uniform"), ``bce
class_aware`` (re-balanced sampling), ``ltml`` (its defaults: no logit compensation),
``ltml compensation=True`` (the learnable compensation as METHODS.md writes it; see
trainables/ltml.py on its degenerate minimum).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sweeplab.context import CONTEXT_KEY
from sweeplab.engine import MemoryReporter, train

ROWS = [
    ("bce", {}),
    ("bce", {"sampler": "class_aware"}),
    ("ltml", {}),
    ("ltml", {"compensation": True}),
]
GROUPS = ("mAP", "mAP_head", "mAP_medium", "mAP_tail")


def run(method: str, options: dict, seed: int, args) -> dict[str, float]:
    config = {
        "epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "sgd", "lr": args.lr,
        "momentum": 0.9, "weight_decay": 1e-4, "lr_schedule": "cosine", **options,
        CONTEXT_KEY: {"method": method, "dataset": {"name": "lt_digits"}, "model": {"backbone": "small_cnn"},
                      "seed": seed, "metric": "val/mAP", "mode": "max", "threads": args.threads},
    }
    return train(config, MemoryReporter())


def cell(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:5.1f} ± {100 * std:3.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=max(1, torch.get_num_threads()))
    args = parser.parse_args()

    print(f"lt_digits (train counts ~970..10 per class; head 0-4, medium 5-7, tail 8-9), small_cnn, "
          f"SGD lr {args.lr} momentum 0.9 wd 1e-4 cosine, batch {args.batch_size}, {args.epochs} epochs, "
          f"seeds 0..{args.seeds - 1}; test mAP (%) of the final weights, mean ± std")
    header = f"{'method':<28}" + "".join(f"{g:>14}" for g in GROUPS) + f"{'s/run':>8}"
    print(header)
    print("-" * len(header))
    for method, options in ROWS:
        results, started = [], time.perf_counter()
        for seed in range(args.seeds):
            results.append(run(method, options, seed, args))
        seconds = (time.perf_counter() - started) / args.seeds
        name = method + "".join(f" {k}={v}".replace("=class_aware", " class_aware").replace("sampler ", "")
                                for k, v in options.items())
        print(f"{name:<28}" + "".join(f"{cell([r[f'test/{g}'] for r in results]):>14}" for g in GROUPS)
              + f"{seconds:8.1f}", flush=True)


if __name__ == "__main__":
    main()
