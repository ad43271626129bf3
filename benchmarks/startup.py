"""How long ``sweeplab run`` takes to get going: the demo sweep's command, timed phase by phase.

Runs ``python -m sweeplab.cli run sweeps/noisy_digits.yaml --profile demo --no-report`` in a
temporary folder (its own results folder and a new SQLite MLflow store each time, so every
run is a first sweep), stamps each line of its output as it arrives, and reads the phases off
the lines the command prints:

    MLflow store    "Creating initial MLflow database tables" (its creation starts: imports done)
    run folder      "sweep <name>: run folder ..."   (spec checked, MLflow store + experiment ready)
    study set up    "[<method>] <n> trials, ..."     (Ray started, the study's parent run open)
    trial started   the first "trial ... started"    (the first trial actor is up)
    first result    the first "epoch 1: <metric>="  (the first trial's data, model and epoch 1)
    trials done     the "[n/n done]" line
    end             the command exits (summary, Ray shut down)

    .venv/bin/python benchmarks/startup.py                  # the demo sweep, once
    .venv/bin/python benchmarks/startup.py --repeats 3      # median [min-max] of 3
    .venv/bin/python benchmarks/startup.py --first-result   # stop each run at its first result

At the first result it also adds up the CPU time the command's processes have used so far
(the driver, Ray's own services, its worker processes, the trials among them): on a machine
whose cores are all busy the first result cannot come sooner than that total over the cores.

``--where`` also samples Ray's worker processes with py-spy (which comes with Ray; it needs the
right to trace other processes: root, or ``kernel.yama.ptrace_scope=0``) up to the first result
and prints where their CPU time went: which package they were importing, or sweeplab's code.

``--set KEY=VALUE`` is passed on to the command; ``--verbose`` prints every line with its time.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil  # a dev dependency (pyproject.toml)

from overhead import fmt_s, table  # benchmarks/overhead.py, beside this script

REPO = Path(__file__).resolve().parents[1]
SWEEP_FILE = REPO / "sweeps" / "noisy_digits.yaml"

# phase -> the first output line that marks it (None: the end of the command)
PHASES = {
    "MLflow store": re.compile(r"Creating initial MLflow database tables"),  # its creation starts
    "run folder": re.compile(r"^sweep \S+: run folder "),
    "study set up": re.compile(r"^\[\S+\] \d+ trials, "),
    "trial started": re.compile(r"^\[\S+ +[\d.]+s\] trial \S+ started"),
    "first result": re.compile(r"^\[\S+ +[\d.]+s\] trial \S+ epoch 1: "),
    "trials done": re.compile(r"\[(\d+)/\1 done\]"),
    "end": None,
}


RAY_SERVICES = ("gcs_server", "raylet", "dashboard", "monitor.py", "log_monitor", "DashboardAgent",
                "RuntimeEnvAgent")  # what ray.init starts besides its workers
CPU_ROLES = ("driver", "Ray services", "Ray workers")


def cpu_by_role(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the command (``pid``) and the processes under
    it, by role: the command itself, Ray's services, Ray's worker processes (trials included)."""
    used = dict.fromkeys(CPU_ROLES, 0.0)
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            times, cmdline = proc.cpu_times(), " ".join(proc.cmdline())
        except psutil.Error:  # ended meanwhile
            continue
        role = ("driver" if proc.pid == pid else
                "Ray services" if any(name in cmdline for name in RAY_SERVICES) else "Ray workers")
        used[role] += times.user + times.system
    return used


class WorkerSampler:
    """py-spy on every Ray worker process under the command (``pid``) from when it appears until
    ``stop``: where the workers' CPU time goes (``where``)."""

    RATE = 100  # samples per second of a busy thread

    def __init__(self, pid: int, folder: Path):
        self.pid, self.folder = pid, folder
        self.spies: dict[int, subprocess.Popen] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        spy = Path(sys.executable).parent / "py-spy"
        while not self.done.is_set():
            try:
                children = psutil.Process(self.pid).children(recursive=True)
            except psutil.Error:
                return
            for child in children:
                try:
                    cmdline = " ".join(child.cmdline())
                except psutil.Error:
                    continue
                if (child.pid not in self.spies and cmdline.startswith("ray::")
                        and not any(name in cmdline for name in RAY_SERVICES)):
                    self.spies[child.pid] = subprocess.Popen(
                        [str(spy), "record", "--pid", str(child.pid), "--rate", str(self.RATE), "--format", "raw",
                         "--nonblocking", "--output", str(self.folder / f"py-spy-{child.pid}.txt")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.done.wait(0.1)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        for spy in self.spies.values():
            spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled and ends
        for spy in self.spies.values():
            spy.wait()

    def where(self) -> dict[str, float]:
        """Seconds py-spy saw the workers' threads busy (waiting for a core included), by what
        they were doing."""
        seconds: collections.Counter = collections.Counter()
        for path in self.folder.glob("py-spy-*.txt"):
            for line in path.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                seconds[what_a_sample_does(stack.split(";"))] += int(count) / self.RATE
        return dict(seconds)


def what_a_sample_does(frames: list[str]) -> str:
    """A py-spy stack (outermost frame first) as what it spends its time on: the first package
    other than sweeplab a module import is in (torch._dynamo apart from torch), else sweeplab's
    or Ray's own code."""
    ours = ("sweeplab/", "trainables/")
    for frame in frames:
        if frame.startswith("<module> (") and "default_worker.py" not in frame:
            path = frame[len("<module> ("):].rsplit(":", 1)[0]
            if not path.startswith(ours):
                top = "torch._dynamo" if path.startswith("torch/_dynamo/") else path.split("/")[0].removesuffix(".py")
                return f"importing {top}"
    if any(f" ({prefix}" in frame for frame in frames for prefix in ours):
        return "sweeplab's code (data, model, epochs, reports)"
    return "Ray's worker (before and around the trial)"


def run_once(folder: Path, sweep: Path, profile: str | None, sets: list[str], verbose: bool,
             stop_at_first_result: bool, sample_workers: bool = False
             ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """One run of the command: seconds from its start to each phase (missing phases left out),
    CPU seconds used by the first result by role, and (``sample_workers``) the workers' CPU
    seconds by what they did."""
    folder.mkdir(parents=True)
    cmd = [sys.executable, "-m", "sweeplab.cli", "run", str(sweep), "--no-report",
           "--set", f"storage.path={folder / 'results'}", "--set", f"tracking.uri=sqlite:///{folder / 'mlflow.db'}"]
    if profile:
        cmd += ["--profile", profile]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    seen: dict[str, float] = {}
    cpu: dict[str, float] = {}
    log = (folder / "output.log").open("w")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    sampler = WorkerSampler(proc.pid, folder) if sample_workers else None
    try:
        for line in proc.stdout:
            now = time.monotonic() - t0
            line = line.rstrip("\n")
            log.write(f"{now:7.2f} {line}\n")
            if verbose:
                print(f"{now:7.2f} {line}", flush=True)
            for phase, pattern in PHASES.items():
                if pattern is not None and phase not in seen and pattern.search(line):
                    seen[phase] = now
                    if phase == "first result":
                        cpu.update(cpu_by_role(proc.pid))
                        if sampler is not None:
                            sampler.stop()
            if stop_at_first_result and "first result" in seen:
                proc.send_signal(signal.SIGINT)  # as Ctrl-C: the sweep stops cleanly (and Ray with it)
                stop_at_first_result = False
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        log.close()
        if sampler is not None:
            sampler.stop()
    seen["end"] = time.monotonic() - t0
    if code not in (0, 1) or "first result" not in seen:  # 1: interrupted (incomplete sweep)
        tail = "\n".join((folder / "output.log").read_text().splitlines()[-30:])
        raise SystemExit(f"the sweep command failed (exit status {code}); its last lines:\n{tail}")
    return seen, cpu, sampler.where() if sampler is not None else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", type=Path, default=SWEEP_FILE, help="the sweep file (default: %(default)s)")
    parser.add_argument("--profile", default="demo", help="its profile (default: %(default)s; '' for none)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="passed on to sweeplab run (repeatable)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of the command (default 1)")
    parser.add_argument("--first-result", action="store_true",
                        help="interrupt each run at its first result (the end is then the interrupted exit)")
    parser.add_argument("--verbose", action="store_true", help="print the command's lines with their times")
    parser.add_argument("--where", action="store_true",
                        help="sample Ray's workers with py-spy up to the first result: where their CPU time goes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (output logs, runs)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    tmp = Path(tempfile.mkdtemp(prefix="sweeplab-startup-"))
    print(f"{args.sweep.name} --profile {args.profile or '-'}, {args.repeats} run(s), {os.cpu_count()} CPUs; "
          f"temporary folder {tmp}", flush=True)
    runs, cpus, wheres = [], [], []
    try:
        for r in range(args.repeats):
            seen, cpu, where = run_once(tmp / f"run-{r + 1}", args.sweep.resolve(), args.profile, args.sets,
                                        args.verbose, args.first_result, args.where)
            runs.append(seen)
            cpus.append(cpu)
            wheres.append(where)
            print(f"[run {r + 1}] " + ", ".join(f"{k} {v:.1f} s" for k, v in seen.items()), flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    rows = [("phase", "since start", "since previous")]
    previous = [0.0] * len(runs)
    for phase in PHASES:
        if not all(phase in seen for seen in runs):
            continue
        at = [seen[phase] for seen in runs]
        rows.append((phase, fmt_s(at), fmt_s([a - p for a, p in zip(at, previous)])))
        previous = at
    print()
    print(f"sweeplab run {args.sweep.name}{' --profile ' + args.profile if args.profile else ''}, "
          f"{args.repeats} run(s){', median [min-max]' if args.repeats > 1 else ''}:")
    print(table(rows))

    cores = psutil.cpu_count()
    rows = [("CPU used by the first result", "CPU seconds")]
    rows += [(role, fmt_s([cpu[role] for cpu in cpus])) for role in CPU_ROLES]
    totals = [sum(cpu.values()) for cpu in cpus]
    rows += [("all", fmt_s(totals)), (f"all / {cores} cores", fmt_s([t / cores for t in totals]))]
    print()
    print(table(rows))

    if args.where:
        # py-spy counts a thread busy while it waits for a core too: its shares, times the CPU
        # the workers used, estimate the CPU seconds of each
        shares = []
        for where in wheres:
            share = collections.Counter()
            for label, n in where.items():  # what takes under 1 % goes under "other"
                share[label if n >= 0.01 * sum(where.values()) else "other"] += n / sum(where.values())
            shares.append(share)
        labels = sorted({label for share in shares for label in share},
                        key=lambda label: -statistics.median(share.get(label, 0.0) for share in shares))
        rows = [("Ray's workers, up to the first result", "share of samples", "CPU seconds (share x workers' CPU)")]
        rows += [(label, f"{100 * statistics.median(share.get(label, 0.0) for share in shares):.0f} %",
                  fmt_s([share.get(label, 0.0) * cpu["Ray workers"] for share, cpu in zip(shares, cpus)]))
                 for label in labels]
        print()
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
