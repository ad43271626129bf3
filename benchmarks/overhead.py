"""What a sweep costs over a plain loop: the same trials, run both ways, side by side.

Arm "plain": a Python loop in this process calling
``sweeplab.engine.train(config, MemoryReporter(), NullTracker())`` once per trial
config: no Ray, no MLflow, no checkpoints written.

Arm "sweep": ``sweeplab.runner.run_sweep(load_sweep(sweeps/noisy_digits.yaml, ...))``
at concurrency 1 on a local Ray, with real MLflow tracking (a new SQLite store in a
temporary folder, so each round is a first sweep), scheduler ``fifo`` (no trial stopped early), ``search.max_concurrent=1``.
``run_sweep`` starts and stops its local Ray itself, as ``sweeplab run`` does (MLflow's new
store is created while Ray starts); its Ray's start-up and shut-down are timed from inside.

Identical trials: the sweep runs a temporary search space in which every engine
hyperparameter is fixed (lr, batch_size, epochs, optimizer, weight_decay,
lr_schedule), and ``label_smoothing: {type: categorical, choices: [0.0]}`` is
"searched": Optuna samples it, but it can only ever be 0.0 (the method's default),
so every trial trains exactly the same while the sweep arm still pays for
OptunaSearch and its journal storage, as a real sweep does (a space with nothing
searched runs without a searcher). The plain loop runs the configs the sweep ran, read
back from Tune's ``params.json`` of each trial (hyperparameters and the trial
context: dataset, model, seed, threads), and the script checks that both arms end
with the same metrics.

Timed in each arm: wall time of the arm; for the sweep also ``load_sweep``, Ray
start, ``run_sweep`` and Ray shutdown, and the time inside each trial as Tune
counts it (``time_total_s``: from the trainable's start to its last report, so it
includes MLflow logging and checkpoint writing, not actor start). Driver imports
(torch, Ray, MLflow) happen once before both arms and are shown apart.

    .venv/bin/python benchmarks/overhead.py                # 6 trials x 5 epochs, ~1-2 min on 2 cores
    .venv/bin/python benchmarks/overhead.py --trials 4 --epochs 10 --repeats 3

With ``--repeats`` > 1 the arms alternate which goes first, and the table shows the
median (and the range) over repeats. Sweep output (progress lines, Ray's logs) goes
to a log file in the temporary folder; ``--verbose`` shows it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sweeplab.loopback import keep_local_ray_on_loopback

keep_local_ray_on_loopback()  # this script starts a local Ray: keep it on 127.0.0.1 (before ray is imported)

REPO = Path(__file__).resolve().parents[1]
SWEEP_FILE = REPO / "sweeps" / "noisy_digits.yaml"
METHOD = "ce"
COMPARED = ("val/acc", "test/acc", "train/loss")  # metrics both arms must end with


def space_yaml(epochs: int) -> str:
    return (
        "# written by benchmarks/overhead.py: every hyperparameter fixed but label_smoothing, which has one choice\n"
        "lr: 0.01\n"
        "batch_size: 64\n"
        f"epochs: {epochs}\n"
        "optimizer: adam\n"
        "weight_decay: 0.0\n"
        "lr_schedule: cosine\n"
        "label_smoothing: {type: categorical, choices: [0.0]}\n"
    )


# ---------------------------------------------------------------------------
# Output capture for the sweep arm
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def captured(log_path: Path, enabled: bool):
    """Send fd 1 and 2 (this process, Ray's log forwarding, child processes) to ``log_path``."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------
# The two arms
# ---------------------------------------------------------------------------
def run_sweep_arm(folder: Path, trials: int, space_file: Path, log_path: Path, verbose: bool,
                  extra_sets: tuple[str, ...] = ()) -> dict:
    from sweeplab import tracking
    from sweeplab.runner import run_sweep
    from sweeplab.spec import load_sweep

    sets = [
        f"methods.{METHOD}.num_samples={trials}",
        f"methods.{METHOD}.search_space={space_file}",
        "scheduler.name=fifo",
        "search.max_concurrent=1",
        f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
        f"storage.path={folder / 'sweeplab_results'}",
        *extra_sets,
    ]
    folder.mkdir(parents=True, exist_ok=True)
    ray_times: dict[str, float] = {}
    with captured(log_path, not verbose), timed_ray(ray_times):
        t0 = time.perf_counter()
        sweep = load_sweep(SWEEP_FILE, sets=sets)
        t1 = time.perf_counter()
        wall1 = time.time()
        folder, results = run_sweep(sweep)  # starts and stops Ray, as `sweeplab run` does
        run_dir = folder.local
        t4 = time.perf_counter()
    ray_start = ray_times["ready"] - ray_times["start"]
    ray_stop = ray_times["stopped"] - ray_times["stop"]

    (result,) = results
    # The trials in the order they ran, and when: their MLflow child runs (start: the run opened
    # after the trial built its data and model; end: closed just before the last report).
    runs = tracking.client(sweep.tracking.uri).search_runs(
        [tracking.ensure_experiment(sweep.tracking.uri, sweep.tracking.experiment or sweep.name)],
        filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'",
        max_results=10_000,
    )
    runs = sorted(runs, key=lambda run: run.info.start_time)
    configs, in_trial, last, pids = [], [], [], set()
    for run in runs:
        d = run_dir / METHOD / run.info.run_name  # a trial's folder is named as its run (``TrialNamer``)
        configs.append(json.loads((d / "params.json").read_text()))
        rows = [json.loads(line) for line in (d / "result.json").read_text().splitlines() if line.strip()]
        in_trial.append(float(rows[-1]["time_total_s"]))
        last.append(rows[-1])
        pids.add(rows[-1].get("pid"))
    starts = [run.info.start_time / 1000 for run in runs]
    ends = [(run.info.end_time or 0) / 1000 for run in runs]
    return {
        "wall": t4 - t0,
        "load_sweep": t1 - t0,
        "ray_start": ray_start,
        "run_sweep": t4 - t1,
        "ray_stop": ray_stop,
        "before_first": starts[0] - wall1 if runs else float("nan"),
        "trials_span": ends[-1] - starts[0] if runs else float("nan"),
        "after_last": ray_times["stop_wall"] - ends[-1] if runs else float("nan"),
        "cycles": [b - a for a, b in zip(starts, starts[1:])],  # start to start of consecutive trials
        "in_trial": in_trial,
        "configs": configs,
        "last": last,
        "actors": len(pids),
        "finished": result.finished,
        "trials": result.trials,
        "run_dir": run_dir,
    }


@contextlib.contextmanager
def timed_ray(times: dict[str, float]):
    """Note when ``run_sweep``'s Ray starts, is ready, stops and is gone (its first ``ray_session``;
    the later ones find that Ray running)."""
    from sweeplab import runner

    session = runner.ray_session

    @contextlib.contextmanager
    def timed(*args, **kwargs):
        first = "start" not in times
        if first:
            times["start"] = time.perf_counter()
        with session(*args, **kwargs):
            if first:
                times["ready"] = time.perf_counter()
            try:
                yield
            finally:
                if first:
                    times["stop"], times["stop_wall"] = time.perf_counter(), time.time()
        if first:
            times["stopped"] = time.perf_counter()

    runner.ray_session = timed
    try:
        yield
    finally:
        runner.ray_session = session


def run_plain_arm(configs: list[dict]) -> dict:
    from sweeplab.engine import MemoryReporter, NullTracker, train

    times, last = [], []
    t0 = time.perf_counter()
    for config in configs:
        start = time.perf_counter()
        last.append(train(config, MemoryReporter(), NullTracker()))
        times.append(time.perf_counter() - start)
    return {"wall": time.perf_counter() - t0, "in_trial": times, "last": last}


def hyperparameters(config: dict) -> dict:
    from sweeplab.context import hyperparameters_of

    return hyperparameters_of(config)


def same_metrics(plain_last: list[dict], sweep_last: list[dict]) -> list[str]:
    problems = []
    for i, (p, s) in enumerate(zip(plain_last, sweep_last)):
        for key in COMPARED:
            if p.get(key) != s.get(key):
                problems.append(f"trial {i + 1} {key}: plain {p.get(key)!r} vs sweep {s.get(key)!r}")
    return problems


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
def fmt_s(values: list[float]) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f} s"
    return f"{med:.2f} s [{min(values):.2f}-{max(values):.2f}]"


def ratio(a: list[float], b: list[float]) -> str:
    return f"{statistics.median(a) / statistics.median(b):.2f}x"


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        out.append("  ".join(cells))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per arm (default 6)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trial (default 5)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of both arms (default 1)")
    parser.add_argument("--verbose", action="store_true", help="show the sweep's own output")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (MLflow db, run folders)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a sweep-file setting for the sweep arm, e.g. checkpoint.keep=all (repeatable)")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.epochs < 1 or args.repeats < 1:
        parser.error("--trials, --epochs and --repeats must be >= 1")

    t = time.perf_counter()
    import torch  # noqa: F401

    import sweeplab.engine  # noqa: F401
    import sweeplab.spec  # noqa: F401
    t_torch = time.perf_counter() - t
    t = time.perf_counter()
    import mlflow  # noqa: F401
    import ray  # noqa: F401
    from ray import tune  # noqa: F401

    import sweeplab.runner  # noqa: F401
    t_ray = time.perf_counter() - t

    tmp = Path(tempfile.mkdtemp(prefix="sweeplab-overhead-"))
    space_file = tmp / "space.yaml"
    space_file.write_text(space_yaml(args.epochs))
    log_path = tmp / "sweep.log"
    print(f"{args.trials} trials x {args.epochs} epochs, {args.repeats} repeat(s), {os.cpu_count()} CPUs; "
          f"temporary folder {tmp}", flush=True)

    plain_runs, sweep_runs, configs = [], [], None
    try:
        for r in range(args.repeats):
            order = ("sweep", "plain") if r % 2 == 0 else ("plain", "sweep")
            for arm in order:
                if arm == "sweep":
                    try:
                        # a fresh MLflow store and results folder per round: every round is a first sweep
                        s = run_sweep_arm(tmp / f"round-{r + 1}", args.trials, space_file, log_path, args.verbose,
                                          tuple(args.sets))
                    except BaseException:
                        if not args.verbose:
                            print(f"sweep arm failed; last lines of {log_path}:\n{tail(log_path)}", file=sys.stderr)
                        raise
                    if s["finished"] != args.trials or len(s["configs"]) != args.trials:
                        raise SystemExit(f"sweep ran {len(s['configs'])} trials, {s['finished']} finished; "
                                         f"expected {args.trials} finished (see {s['run_dir']})")
                    if configs is None:
                        configs = s["configs"]
                    hp = [hyperparameters(c) for c in s["configs"]]
                    if any(h != hp[0] for h in hp) or hp[0] != hyperparameters(configs[0]):
                        raise SystemExit(f"the sweep's trials do not share one config: {hp}")
                    sweep_runs.append(s)
                    print(f"[round {r + 1}] sweep: {s['wall']:.1f} s", flush=True)
                else:
                    p = run_plain_arm(configs)
                    plain_runs.append(p)
                    print(f"[round {r + 1}] plain: {p['wall']:.1f} s", flush=True)
            problems = same_metrics(plain_runs[-1]["last"], sweep_runs[-1]["last"])
            if problems:
                print("WARNING: the arms did not train identically:\n  " + "\n  ".join(problems), flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    n = args.trials
    S = lambda key: [run[key] for run in sweep_runs]  # noqa: E731
    plain_wall, sweep_wall = [p["wall"] for p in plain_runs], S("wall")
    sweep_no_ray = [s["load_sweep"] + s["run_sweep"] - s["ray_start"] - s["ray_stop"] for s in sweep_runs]
    rows = [
        ("", "plain loop", "sweep (Ray+MLflow)", "sweep/plain"),
        ("wall, whole arm", fmt_s(plain_wall), fmt_s(sweep_wall), ratio(sweep_wall, plain_wall)),
        ("wall, without Ray start/stop", fmt_s(plain_wall), fmt_s(sweep_no_ray), ratio(sweep_no_ray, plain_wall)),
        ("per trial: whole arm / trials", fmt_s([w / n for w in plain_wall]), fmt_s([w / n for w in sweep_wall]),
         ratio(sweep_wall, plain_wall)),
    ]
    if n >= 3:  # trial 1 carries each arm's warm-up; steady state from trial 2 on
        plain_steady = [statistics.median(p["in_trial"][1:]) for p in plain_runs]
        sweep_steady = [statistics.median(s["cycles"][1:]) for s in sweep_runs]
        rows.append(("per trial: steady state (a)", fmt_s(plain_steady), fmt_s(sweep_steady),
                     ratio(sweep_steady, plain_steady)))
    for label, pick in (("inside the trial, mean (b)", statistics.mean), ("inside the trial, trial 1", lambda v: v[0])):
        plain_v = [pick(p["in_trial"]) for p in plain_runs]
        sweep_v = [pick(s["in_trial"]) for s in sweep_runs]
        rows.append((f"per trial: {label}", fmt_s(plain_v), fmt_s(sweep_v), ratio(sweep_v, plain_v)))

    print()
    print(f"{n} identical trials x {args.epochs} epochs (ce on noisy_digits, small_cnn, 1 torch thread), "
          f"{args.repeats} repeat(s){', median [min-max]' if args.repeats > 1 else ''}:")
    print(table(rows))
    print("(a) plain: median of trials 2..N; sweep: median time from one trial's MLflow run opening to the next's,")
    print("    trials 2..N (includes the Tune hand-over between trials)")
    print("(b) plain: the train() call; sweep: Tune's time_total_s (trainable start to last report; no actor start)")
    print()
    print("sweep arm: " + ", ".join([
        f"load_sweep {fmt_s(S('load_sweep'))}",
        f"Ray start {fmt_s(S('ray_start'))}",
        f"Ray shutdown {fmt_s(S('ray_stop'))} (both inside run_sweep)",
        f"run_sweep {fmt_s(S('run_sweep'))}",
    ]))
    print("  run_sweep = " + " + ".join([
        f"until trial 1's MLflow run opened {fmt_s(S('before_first'))} (Ray start beside the new SQLite store + "
        "experiment, parent run, Tune/Optuna set-up, actor start + imports, trial 1's data and model)",
        f"trial 1's run open to trial {n}'s run closed {fmt_s(S('trials_span'))}",
        f"then to Ray's shutdown {fmt_s(S('after_last'))} (last report + checkpoint, summary, parent run closed)",
        "Ray shutdown",
    ]))
    print(f"  trials ran in {', '.join(str(a) for a in S('actors'))} actor process(es) (reuse_actors)")
    print(f"driver imports, once, in neither arm: torch+sweeplab {t_torch:.2f} s, Ray+Tune+MLflow {t_ray:.2f} s")
    same = all(not same_metrics(p["last"], s["last"]) for p, s in zip(plain_runs, sweep_runs))
    print(f"same final {', '.join(COMPARED)} in both arms: {'yes' if same else 'NO (see warnings above)'}")
    print()
    print("Overhead = Ray start/stop (once per sweep) + set-up before the first trial (MLflow experiment and parent "
          "run, on a new SQLite store: its schema is created first; Tune + Optuna; one trial actor started: with reuse_actors torch and the trial code are imported once) "
          "+ per trial: the Tune hand-over (searcher, actor reset), an MLflow child run with params and one log_batch "
          "per epoch, and a checkpoint every epoch (torch.save + Tune persisting it).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
