"""ProxyGML and the field's proxy losses on the built-in retrieval digits, over seeds.

Each row trains one method (the engine's loop, no Ray) with one common recipe: small_cnn, a 64-d
embedding, Adam lr 1e-3 weight decay 1e-4, cosine schedule, batch 64, 20 epochs, each method's
proxies at its own learning-rate scale, on ``retrieval_digits`` (two-digit numbers 00-49 to train
on, 45 of them after the validation hold-out, each drawn in two styles; 50-99 to retrieve among).
Rows: every metric-learning method at its defaults; ProxyGML with N = 1 and 4 proxies per class
(default 12) beside SoftTriple's 10 centres per class; and ProxyGML with r = 0.11 (r C = 5 as the
paper's r = 0.05 on CUB's 100 classes: the same number of negative proxies per sample, N (r C - 1))
and r = 0.5. It prints, as mean ± std over the seeds, the
test Recall@1/2/4/8 (%) and NMI (%) of the final weights on the 50 unseen numbers, and seconds per run.

    .venv/bin/python benchmarks/metric_learning.py                       # 3 seeds
    .venv/bin/python benchmarks/metric_learning.py --seeds 5 --row "proxygml r=0.2"
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml

from sweeplab.context import CONTEXT_KEY
from tables import cell  # benchmarks/tables.py, beside this script
from sweeplab.engine import MemoryReporter, train

DATASET = {"name": "retrieval_digits"}
RECIPE = {"batch_size": 64, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4, "lr_schedule": "cosine",
          "dim": 64}
DEFAULT_ROWS = ["proxygml", "proxygml r=0.11", "proxygml r=0.5", "proxygml N=4", "proxygml N=1", "soft_triple",
                "proxy_anchor", "proxy_nca", "normalized_softmax"]
COLUMNS = ("recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8", "nmi")


def parse_row(text: str) -> tuple[str, dict]:
    """``"proxygml N=4 r=0.1"`` -> ("proxygml", {"N": 4, "r": 0.1}) (values read as YAML)."""
    method, *pairs = text.split()
    return method, {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in pairs)}


def run(method: str, options: dict, seed: int, args) -> dict:
    config = {"epochs": args.epochs, **RECIPE, **options,
              CONTEXT_KEY: {"method": method, "dataset": DATASET, "model": {"backbone": "small_cnn"},
                            "seed": seed, "threads": args.threads, "metric": "val/recall_at_1", "mode": "max"}}
    final = train(config, MemoryReporter())
    return {c: final[f"test/{c}"] for c in COLUMNS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--row", action="append", default=[], help="'method key=value ...' (repeatable); "
                        f"default: {', '.join(repr(r) for r in DEFAULT_ROWS)}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [parse_row(r) for r in args.row or DEFAULT_ROWS]
    print(f"retrieval_digits (45 training numbers, 50 unseen test numbers), small_cnn, 64-d, Adam lr 1e-3, cosine, "
          f"batch 64, {args.epochs} epochs, {args.seeds} seeds; test % of the final weights, mean ± std")
    print(f"{'row':28} " + " ".join(f"{c.replace('recall_at_', 'R@'):>12}" for c in COLUMNS) + f" {'s/run':>6}")
    for method, options in rows:
        start = time.perf_counter()
        results = [run(method, options, seed, args) for seed in range(args.seeds)]
        per_run = (time.perf_counter() - start) / args.seeds
        name = " ".join([method, *(f"{k}={v}" for k, v in options.items())])
        print(f"{name:28} " + " ".join(f"{cell([r[c] for r in results]):>12}" for c in COLUMNS) + f" {per_run:6.0f}",
              flush=True)


if __name__ == "__main__":
    main()
