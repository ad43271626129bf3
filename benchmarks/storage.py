"""What keeping a sweep run in an object store costs: the same sweep with ``storage.path`` a
local folder and an ``s3://`` URI, side by side in one Ray session.

The store is an S3-compatible server on 127.0.0.1 (moto's, from the ``dev`` extra), started
by this script and stopped by its process id: it measures what sweeplab and Tune send
(requests, snapshot cadence), not a real network. Identical trials: every engine
hyperparameter fixed and ``label_smoothing`` "searched" over one choice, so the searcher
and its journal are in play as in a real sweep (see ``benchmarks/overhead.py``).

Arms (their order alternates between repeats):
  folder       storage.path a temporary folder (Tune snapshots every second)
  s3           storage.path s3://…, storage.sync_period 10 (the default)
  s3 sync 1    the same with storage.sync_period 1

Per arm: wall time of ``run_sweep``, mean time inside a trial (Tune's ``time_total_s``), and
the store's requests (PUT/POST, GET/HEAD, from the server's access log).

    .venv/bin/python benchmarks/storage.py                 # 6 trials x 6 epochs, ~2 min on 2 cores
    .venv/bin/python benchmarks/storage.py --trials 8 --epochs 10 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sweeplab.loopback import keep_local_ray_on_loopback

keep_local_ray_on_loopback()  # this script starts a local Ray: keep it on 127.0.0.1 (before ray is imported)

REPO = Path(__file__).resolve().parents[1]
SWEEP_FILE = REPO / "sweeps" / "noisy_digits.yaml"
sys.path.insert(0, str(REPO / "tests"))
from s3 import CREDENTIALS, local_s3_server, new_bucket  # noqa: E402  (the tests' local S3 server)


def space_yaml(epochs: int) -> str:
    return ("# written by benchmarks/storage.py: every hyperparameter fixed but label_smoothing, which has one choice\n"
            f"lr: 0.01\nbatch_size: 64\nepochs: {epochs}\noptimizer: adam\nweight_decay: 0.0\nlr_schedule: cosine\n"
            "label_smoothing: {type: categorical, choices: [0.0]}\n")


def requests(log_path: Path) -> tuple[int, int]:
    """(writes, reads) the S3 server has answered so far."""
    writes = reads = 0
    for line in log_path.read_text(errors="replace").splitlines():
        if '"PUT ' in line or '"POST ' in line or '"DELETE ' in line:
            writes += 1
        elif '"GET ' in line or '"HEAD ' in line:
            reads += 1
    return writes, reads


def run_arm(name: str, storage_path: str, sync_period: int, trials: int, space: Path, work: Path,
            server_log: Path | None) -> dict:
    from ray.tune import ExperimentAnalysis

    from sweeplab.runner import run_sweep
    from sweeplab.spec import load_sweep

    tag = uuid.uuid4().hex[:6]
    sweep = load_sweep(SWEEP_FILE, sets=[
        f"name=bench_{tag}", f"methods.ce.num_samples={trials}", f"methods.ce.search_space={space}",
        "scheduler.name=fifo", "search.max_concurrent=2", f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
        f"storage.path={storage_path}", f"storage.sync_period={sync_period}",
    ])
    before = requests(server_log) if server_log else (0, 0)
    t0 = time.perf_counter()
    folder, (result,) = run_sweep(sweep)
    wall = time.perf_counter() - t0
    after = requests(server_log) if server_log else (0, 0)
    if not (result.complete and result.finished == trials):
        raise RuntimeError(f"{name}: expected {trials} finished trials, got {result}")
    analysis = ExperimentAnalysis(folder.tune_path("ce"))
    trial_s = statistics.mean(t.last_result["time_total_s"] for t in analysis.trials)
    return {"wall": wall, "trial": trial_s, "writes": after[0] - before[0], "reads": after[1] - before[1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from sweeplab.ray_session import ray_session

    os.environ.update(CREDENTIALS)
    with tempfile.TemporaryDirectory(prefix="sweeplab-bench-storage-") as tmp:
        work = Path(tmp)
        space = work / "space.yaml"
        space.write_text(space_yaml(args.epochs))
        os.environ["SWEEPLAB_CACHE"] = str(work / "cache")
        server_log = work / "s3.log"
        rows: dict[str, list[dict]] = {}
        with local_s3_server(server_log) as endpoint:
            bucket_uri = new_bucket(endpoint, prefix="bench")
            arms = [("folder", str(work / "results"), 10), ("s3", bucket_uri, 10), ("s3 sync 1", bucket_uri, 1)]
            log_path = work / "sweeps.log"
            with ray_session():
                for repeat in range(args.repeats):
                    order = arms if repeat % 2 == 0 else arms[::-1]
                    for name, path, period in order:
                        print(f"repeat {repeat + 1}/{args.repeats}: {name} ...", file=sys.stderr, flush=True)
                        with open(log_path, "a") as log, contextlib.redirect_stdout(log):
                            measured = run_arm(name, path, period, args.trials, space, work,
                                               server_log if path.startswith("s3://") else None)
                        rows.setdefault(name, []).append(measured)

    base = statistics.median(r["wall"] for r in rows["folder"])
    print(f"\n{args.trials} identical trials x {args.epochs} epochs, 2 at a time, {args.repeats} repeat(s); "
          "medians\n")
    header = f"{'storage':<11} {'sweep s':>8} {'vs folder':>9} {'trial s':>8} {'store writes':>12} {'store reads':>11}"
    print(header)
    print("-" * len(header))
    for name, measured in rows.items():
        wall = statistics.median(r["wall"] for r in measured)
        print(f"{name:<11} {wall:8.1f} {wall / base:8.2f}x {statistics.median(r['trial'] for r in measured):8.2f} "
              f"{statistics.median(r['writes'] for r in measured):12.0f} "
              f"{statistics.median(r['reads'] for r in measured):11.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
