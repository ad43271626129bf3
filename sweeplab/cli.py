"""``sweeplab``: run, resume and validate sweeps; confirm their winners on new seeds and report them;
submit them to a Ray cluster; list methods."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def _add_run_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None,
                   help="Ray cluster to use (e.g. 127.0.0.2:6379 or 'auto'); default: a local Ray on loopback")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the local Ray (default: all); ignored with --address")


def _add_jobs_address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None,
                   help="the Ray Jobs API of the cluster, http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS)")


_RUN_TARGET = ("a run folder or object-store URI (s3://…), a sweep folder or URI (its newest run), "
               "or a sweep name (its newest run under --storage)")


def _add_found_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="RUN|SWEEP", help=_RUN_TARGET)
    p.add_argument("--storage", default="sweeplab_results", help="where to look up a sweep name (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    import sweeplab

    parser = argparse.ArgumentParser(prog="sweeplab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sweeplab {sweeplab.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a sweep file")
    run.add_argument("sweep", type=Path, help="sweeps/<name>.yaml")
    run.add_argument("--profile", default=None, help="overlay the named profile of the sweep file")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override one key, e.g. --set methods.ce.num_samples=4 (repeatable)")
    _add_run_target(run)

    run.add_argument("--no-report", action="store_true", help="do not write report.html when the sweep ends")

    resume = sub.add_parser("resume", help="continue an interrupted sweep run")
    _add_found_run(resume)
    resume.add_argument("--retry-errored", action="store_true", help="also rerun trials that failed for good")
    _add_run_target(resume)

    submit = sub.add_parser("submit", help="submit a sweep file to a Ray cluster as a Ray job (queued by sweep_slot)")
    submit.add_argument("sweep", type=Path, nargs="?", help="sweeps/<name>.yaml")
    submit.add_argument("--resume", metavar="RUN", default=None,
                        help="instead of a sweep file: continue this interrupted run on the cluster (its folder on "
                             "the shared filesystem, or its object-store URI)")
    submit.add_argument("--retry-errored", action="store_true", help="with --resume: also rerun failed trials")
    submit.add_argument("--profile", default=None, help="overlay the named profile of the sweep file")
    submit.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key, e.g. --set methods.ce.num_samples=4 (repeatable)")
    _add_jobs_address(submit)
    submit.add_argument("--no-queue", action="store_true",
                        help="do not ask for a sweep_slot (start at once, beside any other sweep)")
    submit.add_argument("--follow", action="store_true", help="then print the job's output until it ends")

    jobs = sub.add_parser("jobs", help="list the sweep jobs of a Ray cluster")
    _add_jobs_address(jobs)
    jobs.add_argument("--all", action="store_true", help="also jobs that sweeplab did not submit")

    logs = sub.add_parser("logs", help="print a sweep job's output")
    logs.add_argument("id", help="the submission id that sweeplab submit printed")
    _add_jobs_address(logs)
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")

    stop = sub.add_parser("stop", help="interrupt a sweep job (as Ctrl-C would; it can be resumed)")
    stop.add_argument("id", help="the submission id that sweeplab submit printed (see sweeplab jobs)")
    _add_jobs_address(stop)
    stop.add_argument("--wait", action="store_true", help="wait until the job has stopped")

    validate = sub.add_parser("validate", help="check sweep files (or search-space files) without running anything")
    validate.add_argument("sweeps", type=Path, nargs="+", metavar="FILE",
                          help="sweeps/<name>.yaml, or a search space such as search_spaces/<method>.yaml")
    validate.add_argument("--profile", default=None, help="check the sweep files with this profile overlaid")
    validate.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                          help="check them with this key overridden, as run would (repeatable)")

    status = sub.add_parser("status", help="print a sweep run's summary table again (and its confirmation runs)")
    _add_found_run(status)

    report = sub.add_parser("report", help="write a run's report.html: leaderboard, search and per-method figures")
    _add_found_run(report)
    report.add_argument("--out", type=Path, default=None, help="where to write it (default: report.html in the run)")
    report.add_argument("--no-mlflow", action="store_true", help="do not log it to the studies' MLflow parent runs")

    confirm = sub.add_parser("confirm", help="re-run each method's selected configurations on new seeds, then report")
    _add_found_run(confirm)
    confirm.add_argument("--seeds", type=int, default=None,
                         help="new seeds per configuration (default: the sweep file's confirm.seeds, else 3)")
    confirm.add_argument("--top", type=int, default=None,
                         help="configurations per method, best first (default: confirm.top, else 1)")
    _add_run_target(confirm)

    sync = sub.add_parser("sync-mlflow", help="backfill MLflow from Tune's results of a sweep run (idempotent)")
    _add_found_run(sync)

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
    from sweeplab.ray_session import ResourcesUnavailable
    from sweeplab.storage import StorageUnreachable

    try:
        folder, results = runner.run_sweep(sweep, address=args.address, num_cpus=args.num_cpus)
    except (ResourcesUnavailable, StorageUnreachable) as exc:
        print(exc, file=sys.stderr)
        return 2
    code = _finish(results, tracking.resolve_tracking_uri(sweep.tracking.uri), folder.location)
    if code == 0 and sweep.confirm is not None:
        code = _confirm(folder, sweep.confirm.seeds, sweep.confirm.top, args.address, args.num_cpus)
    if not args.no_report:
        _report(folder)
    return code


def _report(folder, out=None, log_to_mlflow=True) -> int:
    """Write the run's report and say where; a report that cannot be written is an error
    message, never the loss of the run."""
    from dashboards.report import write_report

    try:
        path = write_report(folder, out, log_to_mlflow=log_to_mlflow)
    except Exception as exc:  # noqa: BLE001 - the sweep's results are safe whatever the page does
        print(f"{folder.location}: could not write the report: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"Report: {path.resolve()}", flush=True)
    return 0


def _confirm(folder, seeds: int, top: int, address, num_cpus) -> int:
    from sweeplab.confirm import ConfirmationError, confirm_run
    from sweeplab.ray_session import ResourcesUnavailable
    from sweeplab.spec import SpecError
    from sweeplab.storage import RunInUse, StorageUnreachable

    try:
        confirm_run(folder, seeds=seeds, top=top, address=address, num_cpus=num_cpus)
    except (ConfirmationError, ResourcesUnavailable, RunInUse, SpecError, StorageUnreachable) as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


def cmd_confirm(args) -> int:
    from sweeplab.spec import SpecError, load_sweep
    from sweeplab.storage import RESOLVED_FILE

    folder = _find_run(args)
    if folder is None:
        return 2
    for name in ("seeds", "top"):
        if getattr(args, name) is not None and getattr(args, name) < (2 if name == "seeds" else 1):
            print(f"sweeplab confirm: --{name} must be at least {2 if name == 'seeds' else 1}", file=sys.stderr)
            return 2
    try:
        folder.pull()
        planned = load_sweep(folder.local / RESOLVED_FILE).confirm
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    seeds = args.seeds or (planned.seeds if planned else 3)
    top = args.top or (planned.top if planned else 1)
    code = _confirm(folder, seeds, top, args.address, args.num_cpus)
    return _report(folder) or code


def cmd_report(args) -> int:
    folder = _find_run(args)
    if folder is None:
        return 2
    return _report(folder, args.out, log_to_mlflow=not args.no_mlflow)


def cmd_status(args) -> int:
    from sweeplab import tracking
    from sweeplab.results import StudyResult, format_summary
    from sweeplab.state import SweepState

    folder = _find_run(args)
    if folder is None:
        return 2
    folder.pull()
    state = SweepState.load(folder.local)
    results = [StudyResult(**saved["result"]) for saved in state.studies.values() if saved.get("result")]
    print(f"sweep {state.sweep}: run {folder.location} (started {state.created})")
    if not results:
        print("no study has ended yet")
        return 1
    print(format_summary(results, tracking.ui_command(state.tracking_uri)))
    for method, saved in state.studies.items():
        confirm = saved.get("confirm")
        if confirm:
            done = "complete" if confirm.get("complete") else "incomplete: `sweeplab confirm` continues it"
            print(f"[{method}] confirmation on seeds {confirm['seeds']} of the top {len(confirm['candidates'])} "
                  f"configuration(s): {done}")
    incomplete = [r.method for r in results if not r.complete]
    if incomplete or len(results) < len(state.studies):
        print(f"The sweep is incomplete. Continue it with:  sweeplab resume {shlex.quote(folder.location)}")
        return 1
    return 0


def _find_run(args):
    """The run a command names (a folder, an object-store URI, a sweep name), or None after
    saying why not."""
    from sweeplab import storage

    try:
        return storage.find_run(args.target, args.storage)
    except (FileNotFoundError, storage.StorageUnreachable) as exc:
        print(exc, file=sys.stderr)
        return None


def cmd_resume(args) -> int:
    from sweeplab import runner

    folder = _find_run(args)
    if folder is None:
        return 2
    from sweeplab.spec import SpecError
    from sweeplab.state import SweepState
    from sweeplab.storage import RunInUse, StorageUnreachable

    try:
        sweep, results = runner.resume_sweep(folder, address=args.address, num_cpus=args.num_cpus,
                                             retry_errored=args.retry_errored)
    except (RunInUse, SpecError, StorageUnreachable) as exc:
        print(exc, file=sys.stderr)
        return 2
    state = SweepState.load(folder.local)
    return _finish(results, state.tracking_uri, folder.location)


def _finish(results, uri: str, location: str) -> int:
    from sweeplab import tracking
    from sweeplab.results import format_summary

    print()
    print(format_summary(results, tracking.ui_command(uri)))
    if not all(r.complete for r in results):
        print(f"The sweep is incomplete. Continue it with:  sweeplab resume {shlex.quote(location)}")
        return 1
    return 0


def _jobs_call(fn) -> int:
    """Run a jobs command; errors the user can act on are one message and exit status 2."""
    from sweeplab.submit import SubmitError

    try:
        return fn()
    except SubmitError as exc:
        print(exc, file=sys.stderr)
        return 2


def cmd_submit(args) -> int:
    from sweeplab.spec import SpecError, load_sweep

    if (args.sweep is None) == (args.resume is None):
        print("sweeplab submit: give a sweep file, or --resume RUN (not both)", file=sys.stderr)
        return 2
    if args.retry_errored and args.resume is None:
        print("sweeplab submit: --retry-errored goes with --resume RUN", file=sys.stderr)
        return 2
    if args.resume is not None:
        if args.profile or args.sets:
            print("sweeplab submit --resume: a run continues as it was started (--profile and --set "
                  "do not apply)", file=sys.stderr)
            return 2
        return _submit_and_follow(args, lambda submit: submit.submit_resume(
            args.resume, args.address, queue=not args.no_queue, retry_errored=args.retry_errored))
    try:
        sweep = load_sweep(args.sweep, profile=args.profile, sets=args.sets)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    return _submit_and_follow(args, lambda submit: submit.submit(sweep, args.address, queue=not args.no_queue))


def _submit_and_follow(args, send) -> int:
    from sweeplab import submit

    def go() -> int:
        done = send(submit)
        if not args.follow:
            return 0
        return 0 if submit.logs(done.address, done.submission_id, follow=True) == "SUCCEEDED" else 1

    return _jobs_call(go)


def cmd_jobs(args) -> int:
    from sweeplab import submit

    def go() -> int:
        print(submit.format_jobs(submit.list_jobs(args.address, args.all)))
        return 0

    return _jobs_call(go)


def cmd_logs(args) -> int:
    from sweeplab import submit

    def go() -> int:
        status = submit.logs(args.address, args.id, follow=args.follow)
        if args.follow:
            print(f"[{args.id}: {status}]", file=sys.stderr)
            return 0 if status == "SUCCEEDED" else 1
        return 0

    return _jobs_call(go)


def cmd_stop(args) -> int:
    from sweeplab import submit

    def go() -> int:
        submit.stop(args.address, args.id, wait_for_end=args.wait)
        return 0

    return _jobs_call(go)


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


def cmd_sync_mlflow(args) -> int:
    from sweeplab.sync import sync_run

    folder = _find_run(args)
    if folder is None:
        return 2
    try:
        report = sync_run(folder)
    except OSError as exc:
        print(f"{folder.location}: cannot read the run: {exc}", file=sys.stderr)
        return 2
    print(f"{folder.location}: {report.trials} trials; {report.runs_created} runs created, "
          f"{report.epochs_logged} epochs logged, {report.statuses_set} statuses set")
    return 0


def cmd_methods(args) -> int:
    from sweeplab import catalog

    rows = [("method", "task", "objective", "search space", "what")]
    for e in catalog.entries().values():
        rows.append((e.name, e.task, f"{e.metric} ({e.mode})", str(e.search_space.relative_to(e.search_space.parents[1])),
                     f"{e.summary} [{e.paper}]"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Only a command that starts its own Ray is pinned to loopback. With --address (also `run ... --address
    # auto`, the entrypoint of a submitted sweep on the cluster) Ray joins the cluster as it is.
    if args.command in ("run", "resume", "confirm") and args.address is None:
        from sweeplab.loopback import keep_local_ray_on_loopback

        keep_local_ray_on_loopback()  # before anything imports ray
    handler = {"run": cmd_run, "resume": cmd_resume, "submit": cmd_submit, "jobs": cmd_jobs, "logs": cmd_logs,
               "stop": cmd_stop, "validate": cmd_validate, "methods": cmd_methods, "status": cmd_status,
               "report": cmd_report, "confirm": cmd_confirm, "sync-mlflow": cmd_sync_mlflow}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
