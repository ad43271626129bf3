"""Images per second of the real-image loader (a RAF-DB-style JPEG tree, 224 crop) against the
images per second the training step consumes, side by side in one run on the same machine.

The data: a RAF-DB "basic" tree written to a temporary folder (removed at the end unless
``--keep``) in the published layout that ``sweeplab.data.fer`` reads:
``EmoLabel/list_patition_label.txt`` and ``Image/aligned/<stem>_aligned.jpg``. Each face is a
scikit-learn digit (bundled, no download) upscaled to ``--image-px`` (default 288) with a
colour foreground and background, a shaded ramp, low-frequency blotches and grain, saved as
JPEG quality 90 (~20 KB at 288 px, so decoding costs what a real photo of that size does; the
real aligned RAF-DB faces are 100 x 100, cheaper to decode: try ``--image-px 100``).
``--root`` points the loader at an existing tree instead (e.g. a real RAF-DB ``basic`` folder).
Files just written sit in the page cache: this measures decode and augmentation, not the disk.

Arm "loader": ``sweeplab.data.build_dataset({"name": "raf_db", "image_size": 224, ...})``, the
training split as trials get it (JPEG decode, RandomResizedCrop(224), horizontal flip,
ToTensor, ImageNet Normalize), through a ``DataLoader`` (batch ``--loader-batch`` 64,
shuffled, seeded) with ``--workers`` 0, 1, 2; ``persistent_workers`` when workers > 0,
``pin_memory`` when CUDA is available. The main process runs 1 torch thread (DataLoader
workers do too). The first ``--warmup`` batches (worker start-up, first decodes) are timed
apart ("first batches"); the next ``--batches`` are the rate (0: the rest of the epoch). The
loop body does nothing with a batch: this is the most the loader can deliver.

Arm "step": forward + cross-entropy + backward + SGD (momentum 0.9) step of
``Classifier(build_backbone("resnet18", 3, None))`` (7 classes) at 224 px, batch
``--step-batch`` 32, on synthetic tensors already in memory (on the GPU when there is one),
with torch threads ``--threads`` 1, 2 on CPU; ``--step-warmup`` steps excluded, ``--steps``
timed.

"Loader / step" > 1: the loader delivers faster than the step consumes, so the step is the
bottleneck. The arms run one after the other, not at once: in a trial the loader's workers
and the step's threads share the cores. ``--stages`` images are also timed stage by stage
(decode, then each transform of the training Compose) in the main process.

    .venv/bin/python benchmarks/input_pipeline.py                 # ~1-2 min on 2 cores
    .venv/bin/python benchmarks/input_pipeline.py --workers 0 2 4 --threads 1 2 4 --batches 40
    .venv/bin/python benchmarks/input_pipeline.py --root /data/RAF-DB/basic --workers 4 8
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

from sweeplab.data import build_dataset
from sweeplab.data.fer import RAF_DB_CLASSES, RAF_DB_LABEL_FILE, raf_image_path
from sweeplab.models import build_backbone
from sweeplab.models.heads import Classifier

IMAGE_SIZE = 224


# -- the data ---------------------------------------------------------------------------


def write_raf_tree(root: Path, train: int, test: int, px: int, seed: int) -> Path:
    """A RAF-DB ``basic`` folder under ``root`` with ``train`` + ``test`` aligned JPEG faces of
    ``px`` x ``px``, labels 1..7 (the digit mod 7, plus 1); returns the ``basic`` folder."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    basic = root / "RAF-DB" / "basic"
    image_dir = basic / "Image" / "aligned"
    image_dir.mkdir(parents=True)
    ramp = np.linspace(0.6, 1.0, px, dtype=np.float32)
    shade = ramp[:, None, None] * ramp[None, ::-1, None]
    lines = []
    names = [f"train_{i + 1:05d}.jpg" for i in range(train)] + [f"test_{i + 1:04d}.jpg" for i in range(test)]
    for k, name in enumerate(names):
        i = int(rng.integers(len(digits.images)))
        glyph = Image.fromarray((digits.images[i] * (255 / 16)).astype(np.uint8)).resize((px, px), Image.BICUBIC)
        ink = np.asarray(glyph, dtype=np.float32)[..., None] / 255
        fg, bg = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        blotches = rng.integers(0, 256, (max(2, px // 16),) * 2 + (3,), dtype=np.uint8)
        low = np.asarray(Image.fromarray(blotches).resize((px, px), Image.BICUBIC), dtype=np.float32) - 128
        pixels = bg * shade * (1 - ink) + fg * ink + 0.25 * low + 6 * rng.standard_normal((px, px, 3), dtype=np.float32)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            raf_image_path(image_dir, name, "aligned"), "JPEG", quality=90)
        lines.append(f"{name} {int(digits.target[i]) % len(RAF_DB_CLASSES) + 1}")
    label_file = basic / RAF_DB_LABEL_FILE
    label_file.parent.mkdir(parents=True)
    label_file.write_text("\n".join(lines) + "\n")
    return basic


def raf_bundle(root: Path, workers: int, seed: int = 0):
    return build_dataset({"name": "raf_db", "root": str(root), "image_size": IMAGE_SIZE, "workers": workers}, seed)


# -- arm "loader" -----------------------------------------------------------------------


def loader_arm(dataset, workers: int, batch: int, warmup: int, batches: int, pin: bool, seed: int,
               context: str | None) -> tuple[float, float, int]:
    """``(seconds to the first `warmup` batches, images/s after them, images timed)``."""
    torch.set_num_threads(1)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed),
                        num_workers=workers, pin_memory=pin, persistent_workers=workers > 0, drop_last=True,
                        multiprocessing_context=context if workers > 0 else None)
    if len(loader) <= warmup:
        raise SystemExit(f"{len(dataset)} training images make {len(loader)} batches of {batch}: "
                         f"need more than --warmup {warmup}; raise --train-images")
    start = time.perf_counter()
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    first = time.perf_counter() - start
    timed = min(batches, len(loader) - warmup) if batches > 0 else len(loader) - warmup
    start = time.perf_counter()
    images = 0
    for _ in range(timed):
        inputs, *_ = next(iterator)
        images += inputs.shape[0]
    rate = images / (time.perf_counter() - start)
    del iterator, loader  # stops persistent workers
    gc.collect()
    return first, rate, images


# -- arm "step" -------------------------------------------------------------------------


def step_arm(threads: int, batch: int, warmup: int, steps: int, device: torch.device, seed: int) -> float:
    """Images/s of forward + backward + optimizer step of ResNet-18 at 224 px, inputs in memory."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    backbone, dim = build_backbone("resnet18", 3, None)
    model = Classifier(backbone, dim, len(RAF_DB_CLASSES)).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    inputs = torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, device=device)
    targets = torch.randint(len(RAF_DB_CLASSES), (batch,), device=device)

    def step():
        loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * batch / (time.perf_counter() - start)


# -- stage by stage ---------------------------------------------------------------------


def stage_times(dataset, count: int, seed: int) -> list[tuple[str, float]]:
    """Mean ms per image of the decode (``dataset.load``) and of each transform in the training
    Compose, over ``count`` images drawn at random, one torch thread, in this process."""
    torch.set_num_threads(1)
    stages = list(getattr(dataset.transform, "transforms", [dataset.transform]))
    totals = [0.0] * (len(stages) + 1)
    order = np.random.default_rng(seed).permutation(len(dataset))[:count]
    for index in order:
        start = time.perf_counter()
        image = dataset.load(int(index))
        totals[0] += time.perf_counter() - start
        for k, stage in enumerate(stages, start=1):
            start = time.perf_counter()
            image = stage(image)
            totals[k] += time.perf_counter() - start
    names = ["decode (open + convert RGB)"] + [type(s).__name__ for s in stages]
    return [(name, 1e3 * total / len(order)) for name, total in zip(names, totals)]


# -- the run ----------------------------------------------------------------------------


def loader_per_worker(rows) -> float:
    """Images/s one worker delivers: the 1-worker rate if measured, else the most workers' rate over
    their count (low where the workers outnumber the free cores), else the worker-less rate."""
    by_workers = {workers: rate for workers, _, rate, _ in rows}
    if 1 in by_workers:
        return by_workers[1]
    most = max(by_workers)
    return by_workers[most] / most if most > 0 else by_workers[0]



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader num_workers to measure")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads of the CPU step")
    p.add_argument("--train-images", type=int, default=1600, help="train_* images written (10%% go to val)")
    p.add_argument("--test-images", type=int, default=70)
    p.add_argument("--image-px", type=int, default=288, help="side of the JPEGs written")
    p.add_argument("--root", type=Path, default=None, help="an existing RAF-DB basic folder instead of writing one")
    p.add_argument("--keep", action="store_true", help="keep the written tree (its path is printed)")
    p.add_argument("--loader-batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=2, help="loader batches excluded from the rate")
    p.add_argument("--batches", type=int, default=20, help="loader batches timed (0: the rest of the epoch)")
    p.add_argument("--start-method", choices=["fork", "spawn", "forkserver"], default=None,
                   help="DataLoader workers' multiprocessing start method (default: the platform's)")
    p.add_argument("--step-batch", type=int, default=32)
    p.add_argument("--step-warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--stages", type=int, default=256, help="images timed stage by stage (0: skip)")
    p.add_argument("--rounds", type=int, default=1, help="repeat each measurement; the median is shown")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    temp = None if args.root is not None else Path(tempfile.mkdtemp(prefix="sweeplab-input-pipeline-"))
    try:
        start = time.perf_counter()
        root = args.root or write_raf_tree(temp, args.train_images, args.test_images, args.image_px, args.seed)
        written = time.perf_counter() - start
        data = raf_bundle(root, workers=max(args.workers))
        train = data.train
        sizes = [os.path.getsize(path) for path in train.paths[:200]]
        with Image.open(train.paths[0]) as first_image:
            side = "x".join(map(str, first_image.size))
        where = f"written in {written:.1f} s to {root}" if temp is not None else f"read from {root}"
        print(f"RAF-DB-style tree {where}: {len(train)} training images ({side} px, "
              f"{statistics.fmean(sizes) / 1024:.1f} KB JPEG on average), {IMAGE_SIZE} crop; "
              f"{os.cpu_count()} CPU core(s), torch {torch.__version__}, step on {device}"
              f"{' (' + torch.cuda.get_device_name(device) + ')' if cuda else ''}\n")

        loader_rows = []
        for workers in args.workers:
            runs = [loader_arm(train, workers, args.loader_batch, args.warmup, args.batches, cuda,
                               args.seed + r, args.start_method) for r in range(args.rounds)]
            loader_rows.append((workers, statistics.median(r[0] for r in runs),
                                statistics.median(r[1] for r in runs), runs[0][2]))
        step_settings = args.threads if not cuda else [None]
        step_rows = []
        for threads in step_settings:
            rates = [step_arm(threads or 1, args.step_batch, args.step_warmup, args.steps, device, args.seed + r)
                     for r in range(args.rounds)]
            step_rows.append((threads, statistics.median(rates)))

        step_name = lambda t: "GPU" if t is None else f"{t} thread{'s' if t > 1 else ''}"  # noqa: E731
        print(f"Loader: batch {args.loader_batch}, shuffled, pin_memory {cuda}, first {args.warmup} batches apart, "
              f"then {loader_rows[0][3]} images timed. Step: ResNet-18 fwd+bwd+SGD, batch {args.step_batch}, "
              f"{args.steps} steps after {args.step_warmup} warm-up. Median of {args.rounds} round(s).\n")
        print("| loader workers | first batches (s) | loader img/s | ms/img | "
              + " | ".join(f"loader / step ({step_name(t)})" for t, _ in step_rows) + " |")
        print("|---|---|---|---|" + "---|" * len(step_rows))
        for workers, first, rate, _ in loader_rows:
            ratios = " | ".join(f"{rate / step:.1f}×" for _, step in step_rows)
            print(f"| {workers} | {first:.2f} | {rate:,.0f} | {1e3 / rate:.2f} | {ratios} |")
        print("\n| step (ResNet-18, 224 px) | step img/s | ms/img |")
        print("|---|---|---|")
        for threads, rate in step_rows:
            print(f"| {step_name(threads)} | {rate:,.1f} | {1e3 / rate:.1f} |")

        fastest = max(rate for _, rate in step_rows)
        per_worker = loader_per_worker(loader_rows)
        if cuda:
            print(f"\nOn this GPU the step takes {fastest:,.0f} img/s; the loader gives ~{per_worker:,.0f} img/s per "
                  f"worker, so it needs ~{math.ceil(fastest / per_worker)} worker(s) (and as many free CPU cores) "
                  "to keep the GPU fed.")
        else:
            lo, hi = 50 * fastest, 100 * fastest
            need = sorted({math.ceil(lo / per_worker), math.ceil(hi / per_worker)})
            print(f"\nOn a GPU the step runs ~50-100× the fastest CPU step here ({lo:,.0f}-{hi:,.0f} img/s) while the "
                  f"loader stays on the CPU: at ~{per_worker:,.0f} img/s per worker it needs "
                  f"~{'-'.join(map(str, need))} workers (and as many free cores) to keep up. Here, on CPU, a ratio "
                  "above 1× means the step, not the loader, is the bottleneck.")

        if args.stages > 0:
            stages = stage_times(train, min(args.stages, len(train)), args.seed)
            total = sum(ms for _, ms in stages)
            print(f"\n| stage (main process, 1 thread, {min(args.stages, len(train))} images) | ms/img | share |")
            print("|---|---|---|")
            for name, ms in stages:
                print(f"| {name} | {ms:.2f} | {100 * ms / total:.0f}% |")
            print(f"| total | {total:.2f} | 100% |")
    finally:
        if temp is not None:
            if args.keep:
                print(f"\nkept {temp}")
            else:
                shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
