"""``sweeplab``: run, resume and validate sweeps; list methods."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_run_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None,
                   help="Ray cluster to use (e.g. 127.0.0.2:6379 or 'auto'); default: a local Ray on loopback")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the local Ray (default: all); ignored with --address")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweeplab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a sweep file")
    run.add_argument("sweep", type=Path, help="sweeps/<name>.yaml")
    run.add_argument("--profile", default=None, help="overlay the named profile of the sweep file")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override one key, e.g. --set methods.ce.num_samples=4 (repeatable)")
    _add_run_target(run)

    resume = sub.add_parser("resume", help="continue an interrupted sweep run")
    resume.add_argument("target", help="a run folder, a sweep folder (its newest run) or a sweep name")
    resume.add_argument("--storage", default="sweeplab_results", help="where to look up a sweep name")
    resume.add_argument("--retry-errored", action="store_true", help="also rerun trials that failed for good")
    _add_run_target(resume)

    validate = sub.add_parser("validate", help="check sweep files without running anything")
    validate.add_argument("sweeps", type=Path, nargs="+")
    validate.add_argument("--profile", default=None)
    validate.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")

    sub.add_parser("methods", help="list the registered methods")
    return parser


def cmd_run(args) -> int:
    from sweeplab.spec import SpecError, load_sweep

    try:
        sweep = load_sweep(args.sweep, profile=args.profile, sets=args.sets)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    from sweeplab import runner, tracking

    try:
        run_dir, results = runner.run_sweep(sweep, address=args.address, num_cpus=args.num_cpus)
    except runner.ResourcesUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2
    return _finish(results, tracking.resolve_tracking_uri(sweep.tracking.uri), run_dir)


def cmd_resume(args) -> int:
    from sweeplab import runner

    try:
        run_dir = runner.find_run_dir(args.target, args.storage)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    from sweeplab.spec import SpecError

    try:
        sweep, results = runner.resume_sweep(run_dir, address=args.address, num_cpus=args.num_cpus,
                                             retry_errored=args.retry_errored)
    except (runner.RunInUse, SpecError) as exc:
        print(exc, file=sys.stderr)
        return 2
    state = runner.SweepState.load(run_dir)
    return _finish(results, state.tracking_uri, run_dir)


def _finish(results, uri: str, run_dir: Path) -> int:
    from sweeplab import runner

    print()
    print(runner.format_summary(results, uri))
    if not all(r.complete for r in results):
        print(f"The sweep is incomplete. Continue it with:  sweeplab resume {run_dir}")
        return 1
    return 0


def cmd_validate(args) -> int:
    from sweeplab.spec import validate_files

    bad = 0
    for path in args.sweeps:
        issues = validate_files([path], profile=args.profile, sets=args.sets)
        if issues:
            bad += 1
            for issue in issues:
                print(f"{issue.file}: {issue.key}: {issue.message}", file=sys.stderr)
        else:
            print(f"{path}: ok")
    return 1 if bad else 0


def cmd_methods(args) -> int:
    from trainables.registry import METHODS

    rows = [("method", "task", "objective", "search space", "what")]
    for e in METHODS.values():
        rows.append((e.name, e.task, f"{e.metric} ({e.mode})", str(e.search_space.relative_to(e.search_space.parents[1])),
                     f"{e.summary} [{e.paper}]"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("run", "resume") and args.address is None:
        from sweeplab.loopback import keep_local_ray_on_loopback

        keep_local_ray_on_loopback()  # before anything imports ray
    handler = {"run": cmd_run, "resume": cmd_resume, "validate": cmd_validate, "methods": cmd_methods}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
