"""SCN against cross-entropy on the built-in noisy digits, over noise rates and seeds.

Each row trains one method (the engine's loop, no Ray) with its default hyperparameters
and one common recipe: small_cnn, Adam lr 1e-3 weight decay 1e-4, batch 64,
ExponentialLR(0.9) per epoch (the SCN paper's optimiser and schedule), 30 epochs, at
0 %, 20 % and 40 % symmetric noise in the training split (validation and test clean),
for several seeds (the seed changes the split, the noise, the initialisation and the
batches). It prints test accuracy as mean ± std, of the final weights and of the epoch
with the best validation accuracy, and for SCN the relabelling over the whole run:
the precision of all label changes (share that set the true label), the training-label
noise left at the end, and the mean importance α of samples with right / wrong labels
in the last epoch.

SCN's relabel_epoch is scaled to the shorter run: the paper relabels from epoch 10 of 70,
so here from epoch round(epochs * 10 / 70) (4 of 30). Row ``scn relabel_epoch=never`` is
SCN without relabelling (logit weighting and rank regularisation only).

    .venv/bin/python benchmarks/noisy_labels.py                 # 3 seeds, about 4-5 minutes on one core
    .venv/bin/python benchmarks/noisy_labels.py --seeds 5 --epochs 40 --noise 0.3
"""

from __future__ import annotations

import argparse
import time

from sweeplab.context import CONTEXT_KEY
from tables import cell  # benchmarks/tables.py, beside this script
from sweeplab.engine import MemoryReporter, train

PAPER_RELABEL_EPOCH, PAPER_EPOCHS = 10, 70


def rows(epochs: int) -> list[tuple[str, dict]]:
    relabel_epoch = max(1, round(epochs * PAPER_RELABEL_EPOCH / PAPER_EPOCHS))
    return [("ce", {}), ("scn", {"relabel_epoch": relabel_epoch}), ("scn", {"relabel_epoch": "never"})]


def run(method: str, options: dict, noise: float, seed: int, args) -> MemoryReporter:
    config = {
        "epochs": args.epochs, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4,
        "lr_schedule": "exponential", "lr_gamma": 0.9, **options,
        CONTEXT_KEY: {"method": method, "dataset": {"name": "noisy_digits", "noise_rate": noise},
                      "model": {"backbone": "small_cnn"}, "seed": seed, "threads": args.threads},
    }
    reporter = MemoryReporter()
    train(config, reporter)
    return reporter


def relabel_summary(results: list[dict]) -> dict[str, float | None]:
    """Precision of every label change of the run, the label noise left, α of right / wrong labels."""
    changes = sum(r.get("train/relabel_count", 0.0) for r in results)
    to_clean = sum(r["train/relabel_count"] * r["train/relabel_precision"] for r in results
                   if "train/relabel_precision" in r)
    last = results[-1]
    return {
        "changes": changes,
        "precision": to_clean / changes if changes else None,
        "noise_left": last.get("train/label_noise"),
        "alpha_clean": last.get("train/alpha_clean"),
        "alpha_noisy": last.get("train/alpha_noisy"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.2, 0.4])
    parser.add_argument("--threads", type=int, default=1)  # the digits are tiny: one thread is fastest
    args = parser.parse_args()

    print(f"noisy digits (symmetric noise in train only), small_cnn, Adam lr 1e-3 wd 1e-4, ExponentialLR 0.9, "
          f"batch 64, {args.epochs} epochs, seeds 0..{args.seeds - 1}; test accuracy (%) mean ± std")
    header = (f"{'method':<26}{'noise':>6}{'test (final)':>15}{'test (best val)':>17}{'relabels':>10}"
              f"{'precision %':>14}{'noise left %':>14}{'α right':>16}{'α wrong':>16}{'s/run':>7}")
    print(header)
    print("-" * len(header))
    for noise in args.noise:
        for method, options in rows(args.epochs):
            reporters, started = [], time.perf_counter()
            for seed in range(args.seeds):
                reporters.append(run(method, options, noise, seed, args))
            seconds = (time.perf_counter() - started) / args.seeds
            finals = [r.results[-1] for r in reporters]
            name = method + "".join(f" {k}={v}" for k, v in options.items())
            line = (f"{name:<26}{noise:>6.0%}{cell([f['test/acc'] for f in finals]):>15}"
                    f"{cell([f['best/test/acc'] for f in finals]):>17}")
            if method == "scn":
                s = [relabel_summary(r.results) for r in reporters]
                line += (f"{cell([x['changes'] for x in s], 1, 0):>10}{cell([x['precision'] for x in s]):>14}"
                         f"{cell([x['noise_left'] for x in s]):>14}{cell([x['alpha_clean'] for x in s], 1, 3):>16}"
                         f"{cell([x['alpha_noisy'] for x in s], 1, 3):>16}")
            else:
                line += f"{'':>10}{'':>14}{'':>14}{'':>16}{'':>16}"
            print(line + f"{seconds:7.1f}", flush=True)


if __name__ == "__main__":
    main()
