"""DMUE, SCN and cross-entropy on the built-in ambiguous digits, over seeds.

Each row trains one method (the engine's loop, no Ray) with its default hyperparameters and one
common recipe: small_cnn, Adam lr 1e-3 weight decay 1e-4, cosine schedule, batch 72, 20
epochs, on ``ambiguous_digits`` (40 % of the training images blended with a look-alike digit and
labelled as an annotator would). DMUE's ramp ``a`` is scaled to the shorter run (the official
RAF-DB value 9 of 36 epochs -> 5 of 20). It prints, as mean ± std over the seeds: test accuracy of
the final weights on the clean test images and on the blended test set (``test_blended/acc``: each test
image blended with a look-alike, labelled with its dominant digit); for DMUE the share of blended training
images whose mined latent distribution puts the most mass on the true partner (last epoch); and
the Spearman correlation of the method's uncertainty score (DMUE's s, SCN's α) with the blend
weight λ over the last epoch's samples (positive: the score falls as the image gets more ambiguous).

    .venv/bin/python benchmarks/ambiguous_labels.py                       # 3 seeds, ~6 min on 2 cores
    .venv/bin/python benchmarks/ambiguous_labels.py --seeds 5 --epochs 30 --row "dmue gamma=0"
"""

from __future__ import annotations

import argparse

import torch
import yaml

from sweeplab.context import CONTEXT_KEY
from tables import cell  # benchmarks/tables.py, beside this script
from sweeplab.engine import MemoryReporter, train

PAPER_A, PAPER_EPOCHS = 9, 36  # DMUE's ramp on RAF-DB, of its 36 epochs
DATASET = {"name": "ambiguous_digits", "blend_fraction": 0.4}


def default_rows(epochs: int) -> list[tuple[str, dict]]:
    a = max(1, round(epochs * PAPER_A / PAPER_EPOCHS))
    return [("ce", {}), ("scn", {"relabel_epoch": max(1, round(epochs * 10 / 70))}), ("dmue", {"ramp_a": a})]


def parse_row(text: str) -> tuple[str, dict]:
    """``"dmue gamma=0 ramp_a=3"`` -> ("dmue", {"gamma": 0, "ramp_a": 3}) (values read as YAML)."""
    method, *pairs = text.split()
    return method, {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in pairs)}


def run(method: str, options: dict, seed: int, args) -> dict:
    config = {"epochs": args.epochs, "batch_size": 72, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4,
              "lr_schedule": "cosine", **options,
              CONTEXT_KEY: {"method": method, "dataset": DATASET, "model": {"backbone": "small_cnn"},
                            "seed": seed, "threads": args.threads}}
    reporter = MemoryReporter()
    final = train(config, reporter)
    return {"clean": final["test/acc"], "blended": final["test_blended/acc"],
            "agreement": final.get("train/latent_agreement"), "corr": final.get("train/uncertainty_lambda_corr")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--row", action="append", default=[], help="'method key=value ...' (repeatable); "
                        "default: ce, scn and dmue at their defaults")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [parse_row(r) for r in args.row] or default_rows(args.epochs)
    print(f"ambiguous_digits (40% blended), small_cnn, Adam 1e-3, cosine, batch 72, {args.epochs} epochs, "
          f"{args.seeds} seeds; test accuracy % of the final weights, mean ± std")
    print(f"{'row':36} {'clean test':>13} {'blended test':>13} {'latent agr.':>13} {'score~λ (ρ)':>13}")
    for method, options in rows:
        results = [run(method, options, seed, args) for seed in range(args.seeds)]
        name = " ".join([method, *(f"{k}={v}" for k, v in options.items())])
        print(f"{name:36} {cell([r['clean'] for r in results]):>13} {cell([r['blended'] for r in results]):>13} "
              f"{cell([r['agreement'] for r in results]):>13} "
              f"{cell([r['corr'] for r in results], scale=1.0, digits=2):>13}", flush=True)


if __name__ == "__main__":
    main()
