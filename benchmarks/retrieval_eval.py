"""What retrieval evaluation costs at Stanford Online Products' size: Recall@K and NMI on 60k embeddings.

Prints the seconds and the peak memory above the embeddings themselves of each part of
``sweeplab.metrics.retrieval_metrics`` on random L2-normalised embeddings (default: 60,502 x 512
float32, SOP's test set, labels drawn from 11,316 classes, its test classes): Recall@1/2/4/8
(``recall_at_k``: the neighbours a block of queries at a time, so memory stays bounded; a dense
60k x 60k similarity matrix would take 14.6 GB) and NMI (scikit-learn's k-means into as many
clusters as classes, then ``normalized_mutual_info_score``). Each part runs in its own process,
so its peak resident memory is its own (``ru_maxrss`` less what the process held before it).

    .venv/bin/python benchmarks/retrieval_eval.py                    # SOP-sized
    .venv/bin/python benchmarks/retrieval_eval.py --n 5924 --classes 100   # CUB's test set
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time

import torch


def _measure(part: str, n: int, dim: int, classes: int, threads: int, out) -> None:
    from sweeplab.metrics import nmi, recall_at_k

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(n, dim, generator=generator), dim=1)
    labels = torch.randint(0, classes, (n,), generator=generator)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    value = recall_at_k(embeddings, labels) if part == "recall" else nmi(embeddings, labels)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    out.put((seconds, peak / 1024, value))


def measure(part: str, args) -> tuple[float, float, object]:
    queue = multiprocessing.get_context("spawn").Queue()
    process = multiprocessing.get_context("spawn").Process(
        target=_measure, args=(part, args.n, args.dim, args.classes, args.threads, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60502)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=11316)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    size_mb = args.n * args.dim * 4 / 2**20
    print(f"{args.n} x {args.dim} random unit embeddings ({size_mb:.0f} MiB), {args.classes} classes, "
          f"{args.threads} threads; peak memory above the embeddings")
    print(f"{'part':12} {'seconds':>9} {'peak MiB':>9}  value")
    for part in ("recall", "nmi"):
        seconds, peak, value = measure(part, args)
        shown = {k: round(v, 4) for k, v in value.items()} if isinstance(value, dict) else round(value, 4)
        print(f"{part:12} {seconds:9.1f} {peak:9.0f}  {shown}", flush=True)


if __name__ == "__main__":
    main()
