"""Run a sweep file on the head node of a cluster started with Ray's cluster launcher.

    ray submit clusters/local.yaml clusters/submit_sweep.py sweeps/fer_noisy.yaml --profile demo \
        --set storage.path=/mnt/shared/sweeplab_results --set tracking.uri=http://HEAD:5000
    ray submit clusters/local.yaml clusters/submit_sweep.py --resume /mnt/shared/sweeplab_results/fer_noisy/<run>

``ray submit`` uploads only this file (to ``~`` on the head) and runs ``python ~/submit_sweep.py
ARGS`` there over SSH. The project is on the head already: ``file_mounts`` copies the checkout
to ``~/sweeplab`` (sweep files, search spaces, your methods) and ``setup_commands`` install it
in ``~/sweeplab-venv`` (see ``clusters/local.yaml``). This script runs under that environment
(it re-executes itself with ``--python`` when ``python`` on the head's PATH is another), reads
relative paths from the project folder, and runs ``sweeplab run SWEEP --address auto`` (or
``sweeplab resume RUN --address auto``): the sweep is checked there first, and a bad file fails
with the usual ``file: key: message`` lines and exit status 2 before anything starts.

It uses only the standard library until the environment is the project's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REEXEC = "SWEEPLAB_SUBMIT_REEXEC"  # set once this script runs under --python


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="submit_sweep.py", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", nargs="?", help="the sweep file, relative to the project folder on the head (or absolute)")
    p.add_argument("--profile", default=None, help="overlay the named profile of the sweep file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, e.g. --set storage.path=/mnt/shared/sweeplab_results (repeatable)")
    p.add_argument("--resume", metavar="RUN", default=None,
                   help="instead of a sweep file: continue this interrupted run (a folder on the shared storage, "
                        "or an object-store URI)")
    p.add_argument("--retry-errored", action="store_true", help="with --resume: also rerun failed trials")
    p.add_argument("--project", default=os.environ.get("SWEEPLAB_PROJECT", "~/sweeplab"),
                   help="the checkout on the head, where file_mounts put it (default: %(default)s)")
    p.add_argument("--python", default=os.environ.get("SWEEPLAB_PYTHON", "~/sweeplab-venv/bin/python"),
                   help="the environment's interpreter on the head, as setup_commands made it (default: %(default)s)")
    p.add_argument("--address", default="auto", help="the Ray cluster (default: the one this node belongs to)")
    args = p.parse_args(argv)
    if (args.sweep is None) == (args.resume is None):
        p.error("give a sweep file, or --resume RUN (not both)")
    if args.resume is not None and (args.profile or args.sets):
        p.error("--resume: a run continues as it was started (--profile and --set do not apply)")
    if args.retry_errored and args.resume is None:
        p.error("--retry-errored goes with --resume RUN")
    return args


def sweeplab_command(args: argparse.Namespace) -> list[str]:
    """The ``sweeplab`` command line this submission runs on the head."""
    if args.resume is not None:
        return ["resume", args.resume, "--address", args.address] + (["--retry-errored"] if args.retry_errored else [])
    command = ["run", args.sweep, "--address", args.address]
    if args.profile:
        command += ["--profile", args.profile]
    for item in args.sets:
        command += ["--set", item]
    return command


def in_environment(python: Path) -> bool:
    """Whether this interpreter is the one of the environment ``python`` belongs to (a venv's
    interpreter is a link to the base one: compare the environments, not the binaries)."""
    return Path(sys.prefix).resolve() == python.parent.parent.resolve()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    python, project = Path(args.python).expanduser(), Path(args.project).expanduser()
    if not in_environment(python) and not os.environ.get(REEXEC):
        if not python.is_file():
            print(f"submit_sweep.py: {python} does not exist on this node: the cluster file's setup_commands "
                  "create it (or give --python)", file=sys.stderr)
            return 2
        os.environ[REEXEC] = "1"
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *argv])
    if not project.is_dir():
        print(f"submit_sweep.py: no project at {project} on this node: the cluster file's file_mounts put it "
              "there (or give --project)", file=sys.stderr)
        return 2
    # this file lies in ~ beside the checkout's folder ~/sweeplab, which would import as a namespace
    # package in place of the installed sweeplab
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != here]
    os.chdir(project)  # relative sweep files, search spaces and data paths read as in the checkout
    # the cluster files start every node with token authentication; its client side is this variable
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from sweeplab.cli import main as sweeplab

    command = sweeplab_command(args)
    print(f"submit_sweep.py: sweeplab {' '.join(command)}  (in {project})", flush=True)
    return sweeplab(command)


if __name__ == "__main__":
    sys.exit(main())
