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

``--set KEY=VALUE`` is passed on to the command; ``--verbose`` prints every line with its time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def run_once(folder: Path, sweep: Path, profile: str | None, sets: list[str], verbose: bool,
             stop_at_first_result: bool) -> dict[str, float]:
    """One run of the command; seconds from its start to each phase (missing phases left out)."""
    folder.mkdir(parents=True)
    cmd = [sys.executable, "-m", "sweeplab.cli", "run", str(sweep), "--no-report",
           "--set", f"storage.path={folder / 'results'}", "--set", f"tracking.uri=sqlite:///{folder / 'mlflow.db'}"]
    if profile:
        cmd += ["--profile", profile]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    seen: dict[str, float] = {}
    log = (folder / "output.log").open("w")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
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
    seen["end"] = time.monotonic() - t0
    if code not in (0, 1) or "first result" not in seen:  # 1: interrupted (incomplete sweep)
        tail = "\n".join((folder / "output.log").read_text().splitlines()[-30:])
        raise SystemExit(f"the sweep command failed (exit status {code}); its last lines:\n{tail}")
    return seen


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
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (output logs, runs)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    tmp = Path(tempfile.mkdtemp(prefix="sweeplab-startup-"))
    print(f"{args.sweep.name} --profile {args.profile or '-'}, {args.repeats} run(s), {os.cpu_count()} CPUs; "
          f"temporary folder {tmp}", flush=True)
    runs = []
    try:
        for r in range(args.repeats):
            seen = run_once(tmp / f"run-{r + 1}", args.sweep.resolve(), args.profile, args.sets, args.verbose,
                            args.first_result)
            runs.append(seen)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
