"""Sweeps as Ray jobs on a cluster: ``sweeplab submit``, ``jobs``, ``logs``, ``stop``.

``submit`` checks and resolves the sweep file here, before anything is sent (a bad file
fails with the usual ``file: key: message`` lines). The resolved sweep (profile and
``--set`` applied, every default filled in) and copies of its search spaces are staged in
``.sweeplab/submit/<id>/`` of the source checkout; the checkout is uploaded as the job's
working directory, and the staged folder is removed again once the upload is done (the
run folder on the cluster keeps the resolved file as ``sweep.yaml``, and MLflow's parent
runs keep it as an artifact). On the cluster the job's driver, on the head node, runs
``python -m sweeplab.cli run .sweeplab/submit/<id>/sweep.yaml --address auto``.
``submit --resume RUN`` queues ``sweeplab resume RUN --address auto`` the same way (the run
must be where the cluster sees it: a shared filesystem or an object store).

Ray honours the checkout's ``.gitignore`` when it uploads a working directory; ``EXCLUDES``
adds what must never travel even where it is not ignored (environments, stores, results,
data). Paths inside the sweep file (``storage.path``, ``dataset.root``, ``model.weights``)
are absolute after resolution: they must name the same place on the cluster (a shared
filesystem), and the tracking URI should be a tracking server.

Queue: each job asks for one ``sweep_slot``, a custom resource the head node advertises
(``ray start --head --resources '{"sweep_slot": N}'``). N sweeps run at once; later ones
wait PENDING until a slot frees. Ray fails a job that waits longer than
``RAY_JOB_START_TIMEOUT_SECONDS`` (default 15 minutes) to start, so set that variable
high in the head node's environment.

Stop: the job's environment sets ``RAY_JOB_STOP_SIGNAL=SIGINT``, so ``sweeplab stop``
(or ``ray job stop``) interrupts the sweep the way Ctrl-C does: Tune saves its state, the
MLflow runs are closed, and the run can be continued with ``sweeplab resume``.

Every call goes through ``ray.job_submission.JobSubmissionClient``, so Ray's token
authentication works as Ray documents it: ``RAY_AUTH_MODE=token`` and the cluster's token
in ``~/.ray/auth_token``, in the file ``RAY_AUTH_TOKEN_PATH`` names, or in ``RAY_AUTH_TOKEN``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

import sweeplab
from sweeplab.spec import Sweep

SLOT = "sweep_slot"
STAGE_DIR = Path(".sweeplab") / "submit"
SUBMITTED_BY = f"sweeplab {sweeplab.__version__}"
# Patterns as in .gitignore, relative to the checkout; anchored ("/data") where a bare name
# would also match a folder of the package (sweeplab/data).
EXCLUDES = [
    "/.git", "/.venv", "/venv", "__pycache__", "*.egg-info", "/build", "/dist", "/.pytest_cache",
    "/mlflow.db", "/mlartifacts", "/mlruns", "/sweeplab_results", "/data",
]
JOB_ENV = {
    "PYTHONUNBUFFERED": "1",  # progress lines reach `sweeplab logs` as they are printed
    "RAY_JOB_STOP_SIGNAL": "SIGINT",  # stop = Ctrl-C: Tune saves its state, MLflow runs are closed
    "RAY_JOB_STOP_WAIT_TIME_S": "60",  # then SIGKILL
}
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class SubmitError(RuntimeError):
    """Something the user can fix: no address, no token, no slot, no such job."""


# -- what a job is made of ---------------------------------------------------------------------


def source_root() -> Path:
    """The checkout this sweeplab runs from: it becomes the job's working directory, so the
    cluster runs the same code (methods included) as this machine."""
    root = Path(sweeplab.__file__).resolve().parent.parent
    if not ((root / "pyproject.toml").is_file() and (root / "trainables").is_dir()):
        raise SubmitError(f"sweeplab submit uploads the sweeplab source checkout as the job's working directory, "
                          f"but sweeplab runs from {root}, which is not one; install it from a checkout "
                          "(pip install -e .) and submit from there")
    return root


def submission_id(sweep_name: str, now: datetime | None = None) -> str:
    return f"{sweep_name}-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def stage(sweep: Sweep, root: Path, sid: str) -> Path:
    """Write the resolved sweep and its search spaces to ``<root>/.sweeplab/submit/<sid>/``;
    returns the sweep file's path relative to ``root`` (the job's working directory)."""
    folder = root / STAGE_DIR / sid
    (folder / "search_spaces").mkdir(parents=True)
    doc = copy.deepcopy(sweep.document)
    for study in sweep.studies:
        shutil.copyfile(study.space_file, folder / "search_spaces" / f"{study.method}.yaml")
        doc["methods"][study.method]["search_space"] = f"search_spaces/{study.method}.yaml"  # next to sweep.yaml
    (folder / "sweep.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return (folder / "sweep.yaml").relative_to(root)


def job_request(sweep: Sweep, sid: str, sweep_file: Path, root: Path, commit: str | None,
                queue: bool = True) -> dict[str, Any]:
    """The arguments of ``JobSubmissionClient.submit_job`` for a staged sweep."""
    request = {
        "submission_id": sid,
        "entrypoint": f"python -m sweeplab.cli run {sweep_file.as_posix()} --address auto",
        "runtime_env": {"working_dir": str(root), "excludes": list(EXCLUDES), "env_vars": {
            **JOB_ENV,
            # .git does not travel: the commit does, for the runs' git tags (see tracking.git_commit)
            **({"SWEEPLAB_GIT_COMMIT": commit} if commit else {}),
        }},
        "metadata": {
            "sweep": sweep.name,
            "profile": sweep.profile or "",
            "commit": commit or "",
            "file": str(sweep.file),
            "submitted_by": SUBMITTED_BY,
            SLOT: "1" if queue else "0",
        },
    }
    if queue:
        request["entrypoint_resources"] = {SLOT: 1}
    return request


def is_sweep_job(job) -> bool:
    return (job.metadata or {}).get("submitted_by", "").startswith("sweeplab")


# -- the client ------------------------------------------------------------------------------------


def resolve_address(address: str | None) -> str:
    """``--address``, else ``$RAY_API_SERVER_ADDRESS`` (what ``ray job`` reads), else an
    ``http(s)://`` ``$RAY_ADDRESS``."""
    if address:
        return address
    for value in (os.environ.get("RAY_API_SERVER_ADDRESS"), os.environ.get("RAY_ADDRESS")):
        if value and value.startswith(("http://", "https://")):
            return value
    raise SubmitError("which cluster? give --address http://HEAD:8265 (the head node's dashboard) or set "
                      "RAY_API_SERVER_ADDRESS")


def connect(address: str | None):
    """A ``JobSubmissionClient`` for the cluster, with errors that say what to do."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    url = resolve_address(address)
    try:
        return JobSubmissionClient(url)
    except AuthenticationError as exc:
        mode = os.environ.get("RAY_AUTH_MODE")
        hint = ("set RAY_AUTH_MODE=token (Ray clients send the token only then), and " if mode != "token"
                else "")
        raise SubmitError(
            f"the Ray cluster at {url} refused the request: {str(exc).splitlines()[0]}\n"
            f"It uses token authentication: {hint}put the cluster's token (`ray get-auth-token` on the head "
            "node prints it) in ~/.ray/auth_token or in a file named by RAY_AUTH_TOKEN_PATH") from None
    except (ConnectionError, OSError) as exc:
        raise SubmitError(f"cannot reach the Ray Jobs API at {url}: {exc}\n(the head node's dashboard address, "
                          "e.g. http://HEAD:8265; is the cluster up, and was it started with ray[default]?)") from None


def _request(what: str, fn, *args):
    try:
        return fn(*args)
    except RuntimeError as exc:  # the SDK's "Request failed with status code 404: ..." and friends
        text = str(exc)
        if "404" in text or "does not exist" in text:
            raise SubmitError(f"{what}: no such job on this cluster ({text.splitlines()[0]})") from None
        raise


def check_slots(url: str) -> float:
    """How many ``sweep_slot``s the cluster's alive nodes advertise (0: a queued job would wait forever)."""
    from ray.util.state import list_nodes

    nodes = list_nodes(address=url, filters=[("state", "=", "ALIVE")], detail=True, raise_on_missing_output=False)
    return sum(float((n.resources_total or {}).get(SLOT, 0)) for n in nodes)


# -- commands --------------------------------------------------------------------------------------


@dataclass
class Submitted:
    submission_id: str
    address: str
    status: str


def _quiet_upload_logs() -> None:
    """Ray logs each .gitignore it honours and warns that .git/.venv are no longer uploaded
    (which is what we want): one line of our own says what is uploaded instead."""
    for name, level in (("ray._private.runtime_env.working_dir", logging.ERROR),
                        ("ray._private.runtime_env.packaging", logging.WARNING),
                        ("ray.dashboard.modules.dashboard_sdk", logging.WARNING)):
        logging.getLogger(name).setLevel(level)


def _open_queue(address: str | None, queue: bool):
    """The cluster's client, its address, and its sweep slots (refused when a queued job would wait forever)."""
    client = connect(address)
    url = client.get_address()
    slots = check_slots(url) if queue else 0.0
    if queue and slots <= 0:
        raise SubmitError(f"the cluster at {url} advertises no '{SLOT}' resource, so the sweep would wait forever: "
                          f"start the head node with --resources '{{\"{SLOT}\": 1}}' (one sweep at a time; N for "
                          "N at once), or submit with --no-queue")
    return client, url, slots


def _free_id(client, base: str) -> str:
    sid = submission_id(base)
    for attempt in range(2, 100):
        if not _exists(client, sid):
            break
        sid = f"{submission_id(base)}-{attempt}"
    return sid


def _send(client, url: str, request: dict, root: Path, out) -> None:
    _quiet_upload_logs()
    print(f"uploading {root} as the job's working directory (less what .gitignore names, environments, "
          "stores, results and /data)", file=out)
    try:
        client.submit_job(**request)
    except RuntimeError as exc:  # the SDK's "Request failed with status code 500: ..."
        text = str(exc).strip().splitlines()[0]
        hint = ("\n(the head node's dashboard agent is not up: is its port, 52365 unless "
                "--dashboard-agent-listen-port says otherwise, taken by another process?)"
                if "No available agent" in text else "")
        raise SubmitError(f"the cluster at {url} did not take the job: {text}{hint}") from None


def _report(client, url: str, sid: str, what: str, address: str | None, queue: bool, slots: float, out) -> Submitted:
    status = str(client.get_job_status(sid).value)
    where = "" if address is None else f" --address {url}"
    queued = ""
    if queue and status == "PENDING":
        ahead = len(sweeps_ahead(client, sid))
        if ahead >= slots:
            queued = f", waiting for a free sweep_slot: {ahead} sweep(s) ahead, {slots:g} slot(s)"
    print(f"submitted {what} as {sid} to {url} ({status}{queued})", file=out)
    print(f"  follow:  sweeplab logs {sid} --follow{where}", file=out)
    print(f"  status:  sweeplab jobs{where}", file=out)
    print(f"  stop:    sweeplab stop {sid}{where}   (the sweep can be resumed)", file=out)
    return Submitted(sid, url, status)


def submit(sweep: Sweep, address: str | None, queue: bool = True, out=sys.stdout) -> Submitted:
    from sweeplab.tracking import git_commit

    root = source_root()
    client, url, slots = _open_queue(address, queue)
    uri = sweep.document["tracking"]["uri"]
    if uri.startswith("sqlite:"):
        print(f"warning: tracking.uri is {uri}: the job writes there on the head node and each trial on its "
              "own node unless that path is on a shared filesystem; use a tracking server "
              "(tracking.uri: http://HOST:5000)", file=sys.stderr)
    where = ("an object store: every node reaches it (give the nodes its credentials)" if "://" in sweep.storage.path
             else "must be the same place on every node: a shared filesystem")
    print(f"storage: {sweep.storage.path} ({where})", file=out)
    commit = git_commit(root)
    sid = _free_id(client, sweep.name)
    sweep_file = stage(sweep, root, sid)
    try:
        _send(client, url, job_request(sweep, sid, sweep_file, root, commit, queue=queue), root, out)
    finally:
        shutil.rmtree(root / STAGE_DIR / sid, ignore_errors=True)  # uploaded (or failed): not needed here
        for empty in (root / STAGE_DIR, root / STAGE_DIR.parent):
            try:
                empty.rmdir()
            except OSError:  # not empty (another submission under way) or gone
                break
    return _report(client, url, sid, f"sweep {sweep.name}", address, queue, slots, out)


def describe_run(target: str, out=sys.stdout) -> tuple[str, str]:
    """(location, sweep name) of the sweep run a resume job continues. The run is read here when
    this machine sees it (a shared filesystem mounted here too, or the object store with its
    credentials), so a wrong path or a finished run is refused before anything is sent; a run
    this machine cannot see is taken as given, and the job says if it is not there."""
    import tempfile

    from sweeplab import storage
    from sweeplab.state import SweepState

    def as_given(why: str) -> tuple[str, str]:
        location = storage.canonical(target)
        parts = [p for p in location.split("?", 1)[0].rstrip("/").split("/") if p]
        name = parts[-2] if len(parts) >= 2 and storage.RUN_NAME.match(parts[-1]) else parts[-1]
        print(f"note: {why}; the job looks for the run on the cluster", file=out)
        return location, name

    try:
        folder = storage.find_run(target)
        with tempfile.TemporaryDirectory() as scratch:
            copy = folder.pull(into=Path(scratch) / "run")
            state = SweepState.load(copy.local)
            methods = sweep_methods(copy)
    except storage.StorageUnreachable as exc:
        return as_given(f"cannot read {target} from this machine ({str(exc).splitlines()[0][:200]})")
    except FileNotFoundError as exc:
        if storage.is_uri(target):
            raise SubmitError(str(exc)) from None
        if not Path(target).is_absolute():
            raise SubmitError(f"{exc}\n(for a run only the cluster sees, give its absolute path there)") from None
        return as_given(f"{target} is not visible from this machine")
    if all(state.studies.get(method, {}).get("complete") for method in methods):
        raise SubmitError(f"{folder.location}: every study of sweep {state.sweep} is complete; nothing to resume")
    return folder.location, state.sweep


def sweep_methods(folder) -> list[str]:
    """The method studies of a run, from its resolved sweep file."""
    from sweeplab.storage import RESOLVED_FILE
    from sweeplab.yaml_files import read_yaml

    doc, issues = read_yaml(folder.local / RESOLVED_FILE)
    if issues:
        raise SubmitError("\n".join(map(str, issues)))
    return list(doc.get("methods", {})) if isinstance(doc, dict) else []


def resume_request(location: str, name: str, sid: str, root: Path, commit: str | None, queue: bool = True,
                   retry_errored: bool = False) -> dict[str, Any]:
    """The arguments of ``JobSubmissionClient.submit_job`` for resuming the run at ``location``."""
    import shlex

    flags = " --retry-errored" if retry_errored else ""
    request = {
        "submission_id": sid,
        "entrypoint": f"python -m sweeplab.cli resume {shlex.quote(location)} --address auto{flags}",
        "runtime_env": {"working_dir": str(root), "excludes": list(EXCLUDES), "env_vars": {
            **JOB_ENV, **({"SWEEPLAB_GIT_COMMIT": commit} if commit else {})}},
        "metadata": {
            "sweep": name,
            "profile": "",
            "commit": commit or "",
            "resume": location,
            "submitted_by": SUBMITTED_BY,
            SLOT: "1" if queue else "0",
        },
    }
    if queue:
        request["entrypoint_resources"] = {SLOT: 1}
    return request


def submit_resume(target: str, address: str | None, queue: bool = True, retry_errored: bool = False,
                  out=sys.stdout) -> Submitted:
    """Continue an interrupted sweep run on the cluster (``sweeplab resume`` as a queued job). The
    run continues with the code of this checkout, as ``sweeplab resume`` would here."""
    from sweeplab.tracking import git_commit

    root = source_root()
    location, name = describe_run(target, out)
    client, url, slots = _open_queue(address, queue)
    commit = git_commit(root)
    sid = _free_id(client, f"{name}-resume")
    _send(client, url, resume_request(location, name, sid, root, commit, queue, retry_errored), root, out)
    return _report(client, url, sid, f"the resume of {location}", address, queue, slots, out)


def sweeps_ahead(client, sid: str) -> list:
    """Sweep jobs submitted before ``sid`` that hold or wait for a sweep_slot."""
    jobs = {j.submission_id: j for j in client.list_jobs() if j.submission_id}
    mine = jobs[sid].start_time or 0
    return [j for j in jobs.values() if j.submission_id != sid and is_sweep_job(j)
            and (j.metadata or {}).get(SLOT) == "1" and str(j.status.value) in ("PENDING", "RUNNING")
            and (j.start_time or 0) <= mine]


def _exists(client, sid: str) -> bool:
    try:
        client.get_job_info(sid)
        return True
    except RuntimeError:
        return False


def list_jobs(address: str | None, include_all: bool = False) -> list:
    client = connect(address)
    jobs = [j for j in client.list_jobs() if j.submission_id and (include_all or is_sweep_job(j))]
    return sorted(jobs, key=lambda j: j.start_time or 0)


def format_jobs(jobs: list) -> str:
    def when(ms):
        return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"

    def took(job):
        if not job.start_time:
            return "-"
        end = job.end_time or time.time() * 1000
        return f"{(end - job.start_time) / 1000:.0f}s"

    rows = [("ID", "STATUS", "SWEEP", "PROFILE", "SUBMITTED", "FOR", "COMMIT")]
    for j in jobs:
        meta = j.metadata or {}
        rows.append((j.submission_id, str(j.status.value), meta.get("sweep", "-"), meta.get("profile") or "-",
                     when(j.start_time), took(j), (meta.get("commit") or "-")[:10]))
    if len(rows) == 1:
        return "no sweep jobs on this cluster"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def logs(address: str | None, sid: str, follow: bool = False, out=sys.stdout) -> str:
    """Print the job's output (``follow``: until it ends); returns its status."""
    client = connect(address)
    if not follow:
        out.write(_request(sid, client.get_job_logs, sid))
        out.flush()
        return str(_request(sid, client.get_job_status, sid).value)
    _request(sid, client.get_job_status, sid)  # a clear error for an unknown id

    async def tail():
        async for chunk in client.tail_job_logs(sid):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())
    return wait(client, sid)


def wait(client, sid: str, timeout: float | None = None) -> str:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = str(_request(sid, client.get_job_status, sid).value)
        if status in TERMINAL or (deadline is not None and time.monotonic() > deadline):
            return status
        time.sleep(1)


def stop(address: str | None, sid: str, wait_for_end: bool = False, out=sys.stdout) -> str:
    client = connect(address)
    stopped = _request(sid, client.stop_job, sid)
    if not stopped:
        status = str(client.get_job_status(sid).value)
        print(f"{sid} is not running ({status})", file=out)
        return status
    print(f"stopping {sid}: the sweep is interrupted as with Ctrl-C (trials end, state is saved); continue it "
          "later with sweeplab resume on the cluster", file=out)
    if not wait_for_end:
        return "STOPPING"
    status = wait(client, sid)
    print(f"{sid}: {status}", file=out)
    return status
