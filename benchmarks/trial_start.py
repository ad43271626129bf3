"""How long Tune takes to start one trial on a fresh local Ray, with and without Tune's default
runtime env for trial actors (``PL_DISABLE_FORK=1``), side by side.

sweeplab's ``ray_session`` drops that default (``trial_actors_on_prestarted_workers``): an
actor without a runtime env can start on one of the Python workers Ray prestarts, one per
CPU, instead of a new worker process that first imports ray. Each run is a new process with
its own local Ray (2 CPUs, on loopback), which waits until Ray's prestarted workers are up,
then times ``Tuner.fit`` of one trial that reports at once (resources: 1 CPU, so a CPU stays
free for Ray's own processes). The arms alternate.

    .venv/bin/python benchmarks/trial_start.py              # 3 runs per arm
    .venv/bin/python benchmarks/trial_start.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from overhead import fmt_s, table  # benchmarks/overhead.py, beside this script

ARMS = {
    "prestarted": "sweeplab's ray_session (no runtime env on trial actors)",
    "tune-default": "Tune's default (PL_DISABLE_FORK=1 on trial actors)",
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def seconds_since_boot_of(pid: int | str = "self") -> float:
    """When process ``pid`` started, in seconds since the machine booted (/proc/<pid>/stat)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[19]) / CLOCK_TICKS  # field 22 of stat: starttime, in clock ticks


def uptime() -> float:
    return float(open("/proc/uptime").read().split()[0])


def one_run(arm: str, storage: str) -> dict:
    """In this process: a local Ray, one trial; seconds of ``Tuner.fit`` and where it ran."""
    from sweeplab.loopback import keep_local_ray_on_loopback

    keep_local_ray_on_loopback()
    from ray import tune
    from ray.tune.execution import class_cache

    from sweeplab import ray_session

    if arm == "tune-default":
        ray_session.trial_actors_on_prestarted_workers = lambda: None  # keep Tune's default env

    def report_start(config):
        tune.report({"started": seconds_since_boot_of(), "pid": os.getpid()})

    with ray_session.ray_session(None, num_cpus=2):
        env = dict(class_cache.DEFAULT_ENV_VARS)
        time.sleep(3.0)  # Ray's prestarted workers get ready (they import ray: ~1-2 s here; the last
        # column says whether they were)
        began = uptime()
        t0 = time.perf_counter()
        [result] = tune.Tuner(tune.with_resources(report_start, {"cpu": 1}),
                              run_config=tune.RunConfig(storage_path=storage, verbose=0)).fit()
        fit_s = time.perf_counter() - t0
    return {"fit_s": fit_s, "prestarted": result.metrics["started"] < began, "env": env}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arm", choices=sorted(ARMS), help=argparse.SUPPRESS)  # one run, in a child
    args = parser.parse_args(argv)
    if args.arm:
        with tempfile.TemporaryDirectory(prefix="sweeplab-trial-start-") as storage:
            print(json.dumps(one_run(args.arm, storage)))
        return 0
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for i in range(args.repeats):
        order = list(ARMS) if i % 2 == 0 else list(ARMS)[::-1]
        for arm in order:
            done = subprocess.run([sys.executable, __file__, "--arm", arm], capture_output=True, text=True,
                                  timeout=300)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            run = json.loads(done.stdout.strip().splitlines()[-1])
            runs[arm].append(run)
            print(f"[{arm} {i + 1}] Tuner.fit {run['fit_s']:.2f} s, trial on a prestarted worker: "
                  f"{run['prestarted']}, trial actor env {run['env']}", flush=True)
    rows = [("arm", "Tuner.fit, one trial", "on a prestarted worker")]
    for arm, what in ARMS.items():
        rows.append((what, fmt_s([r["fit_s"] for r in runs[arm]]),
                     f"{sum(r['prestarted'] for r in runs[arm])}/{len(runs[arm])}"))
    print()
    print(table(rows))
    fast, slow = (statistics.median(r["fit_s"] for r in runs[arm]) for arm in ARMS)
    print(f"\nprestarted / tune-default: {fast / slow:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
