"""DB + GCE, its two parts alone, and cross-entropy on the built-in fine-grained digits, over seeds.

Each row trains one method (the engine's loop, no Ray) with one common recipe: small_cnn, SGD
lr 0.03 momentum 0.9 weight decay 1e-4, cosine schedule, batch 64, 20 epochs, on ``fine_digits``
(20 classes: 5 digits x 4 mark variants, each variant told by a bright and a faint 3x3 mark).
Rows: ``ce`` (the baseline: GAP + linear); ``db_gce`` at the paper's defaults (α 0.1, p_peak =
p_patch = 0.5, G 3, k 15 of the 19 negatives) and with k 3 (a digit's confusable group); the sum
CE + GCE with the block (k 15 and 3); DB alone (``loss=ce``); GCE alone (``diversify=false``, k 15
and 3); and ``ce`` and DB alone at twice the learning rate (the block passes α times the gradient
of what it suppresses, and CE + GCE is nearly twice CE: the control for both). It prints, as mean ± std over the
seeds, test accuracy of the final weights on the clean test drawings and on the same drawings with
the salient mark erased (``test_cue_erased/acc``: what the model reads beyond the salient cue;
chance within a digit's group is 25 %), and the seconds per run.

    .venv/bin/python benchmarks/fine_grained.py                       # 3 seeds, ~35 min on 2 cores
    .venv/bin/python benchmarks/fine_grained.py --seeds 5 --row "db_gce alpha=0 top_k=3"
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml

from sweeplab.context import CONTEXT_KEY
from tables import cell  # benchmarks/tables.py, beside this script
from sweeplab.engine import MemoryReporter, train

DATASET = {"name": "fine_digits"}
RECIPE = {"batch_size": 64, "optimizer": "sgd", "lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4,
          "lr_schedule": "cosine"}
DEFAULT_ROWS = ["ce", "ce lr=0.06", "db_gce", "db_gce top_k=3", "db_gce loss=ce+gce", "db_gce loss=ce+gce top_k=3",
                "db_gce loss=ce", "db_gce loss=ce lr=0.06", "db_gce diversify=false", "db_gce diversify=false top_k=3"]


def parse_row(text: str) -> tuple[str, dict]:
    """``"db_gce alpha=0 top_k=3"`` -> ("db_gce", {"alpha": 0, "top_k": 3}) (values read as YAML)."""
    method, *pairs = text.split()
    return method, {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in pairs)}


def run(method: str, options: dict, seed: int, args) -> dict:
    config = {"epochs": args.epochs, **RECIPE, **options,
              CONTEXT_KEY: {"method": method, "dataset": DATASET, "model": {"backbone": "small_cnn"},
                            "seed": seed, "threads": args.threads}}
    final = train(config, MemoryReporter())
    return {"clean": final["test/acc"], "erased": final["test_cue_erased/acc"]}


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
    print(f"fine_digits (5 digits x 4 variants), small_cnn, SGD lr {RECIPE['lr']} momentum 0.9, cosine, batch 64, "
          f"{args.epochs} epochs, {args.seeds} seeds; test accuracy % of the final weights, mean ± std")
    print(f"{'row':36} {'clean test':>13} {'salient erased':>15} {'s/run':>6}")
    for method, options in rows:
        start = time.perf_counter()
        results = [run(method, options, seed, args) for seed in range(args.seeds)]
        per_run = (time.perf_counter() - start) / args.seeds
        name = " ".join([method, *(f"{k}={v}" for k, v in options.items())])
        print(f"{name:36} {cell([r['clean'] for r in results]):>13} {cell([r['erased'] for r in results]):>15} "
              f"{per_run:6.0f}", flush=True)


if __name__ == "__main__":
    main()
