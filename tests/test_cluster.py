"""The cluster path: ``sweeplab submit`` / ``jobs`` / ``logs`` / ``stop`` against a real
two-node Ray cluster on this machine (token authentication on, an MLflow tracking server,
a local folder as the shared storage), and the checks that need no cluster.

The cluster tests (marked ``cluster`` and ``integration``) share one cluster per module
(``tests/cluster.py``); skip them with ``-m "not cluster"``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cluster import assert_loopback_only, local_cluster
from conftest import REPO, runs_of, write_sweep
from sweeplab import submit
from sweeplab.spec import load_sweep

SWEEPLAB = [sys.executable, "-m", "sweeplab.cli"]


def run_cli(*args, env=None, cwd, timeout=180):
    return subprocess.run(SWEEPLAB + [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


# -- no cluster needed ------------------------------------------------------------------------------


def test_submit_refuses_a_bad_file_before_contacting_any_cluster(tmp_path):
    path = write_sweep(tmp_path, "bad", num_samples=0, epochs=3, search={"sampler": "annealing"})
    done = run_cli("submit", path, "--address", "http://127.0.0.1:9", cwd=tmp_path)
    assert done.returncode == 2
    assert f"{path}: methods.ce.num_samples:" in done.stderr and f"{path}: search.sampler:" in done.stderr
    assert "cannot reach" not in done.stderr  # refused before any connection
    assert not (REPO / submit.STAGE_DIR).exists() or not any((REPO / submit.STAGE_DIR).iterdir())


def test_jobs_commands_say_which_address_is_missing_or_unreachable(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")}
    done = run_cli("jobs", cwd=tmp_path, env=env)
    assert done.returncode == 2 and "--address http://HEAD:8265" in done.stderr
    done = run_cli("logs", "x", "--address", "http://127.0.0.1:9", cwd=tmp_path, env=env)
    assert done.returncode == 2 and "cannot reach the Ray Jobs API at http://127.0.0.1:9" in done.stderr


def a_run(folder: Path, complete: bool) -> Path:
    """A sweep run's driver files, as runner writes them (one ce study)."""
    run = folder / "sweeplab_results" / "held" / "20261126-000000"
    run.mkdir(parents=True)
    (run / "sweep.yaml").write_text(yaml.safe_dump({"name": "held", "methods": {"ce": {"num_samples": 2}}}))
    (run / "state.json").write_text(json.dumps({
        "sweep": "held", "tracking_uri": "sqlite:///x.db", "experiment_id": "1", "commit": None, "created": "",
        "studies": {"ce": {"parent_run_id": "p", "complete": complete}}}))
    return run


def test_submit_resume_refuses_what_cannot_be_resumed_before_contacting_any_cluster(tmp_path):
    nowhere = ["--address", "http://127.0.0.1:9"]
    done = run_cli("submit", "--resume", a_run(tmp_path, complete=True), *nowhere, cwd=tmp_path)
    assert done.returncode == 2 and "every study of sweep held is complete; nothing to resume" in done.stderr
    done = run_cli("submit", "--resume", "no/such/run", *nowhere, cwd=tmp_path)
    assert done.returncode == 2 and "no sweep run found at 'no/such/run'" in done.stderr
    assert "give its absolute path there" in done.stderr
    for args in (["sweeps/x.yaml", "--resume", "r"], [], ["--resume", "r", "--set", "seed=1"], ["x.yaml", "--retry-errored"]):
        done = run_cli("submit", *args, *nowhere, cwd=tmp_path)
        assert done.returncode == 2 and "sweeplab submit" in done.stderr, args
    assert not any("cannot reach" in line for line in done.stderr.splitlines())


def test_a_resume_job_runs_sweeplab_resume_on_the_run_it_was_given(tmp_path):
    run = a_run(tmp_path, complete=False)
    location, name = submit.describe_run(str(run))
    assert (location, name) == (str(run.resolve()), "held")
    uri = "s3://bucket/sweeps/held/20261126-000000?endpoint_override=10.0.0.5:9000&scheme=http"
    request = submit.resume_request(uri, "held", "held-resume-1", REPO, "abc", retry_errored=True)
    assert request["entrypoint"] == f"python -m sweeplab.cli resume '{uri}' --address auto --retry-errored"
    assert request["entrypoint_resources"] == {"sweep_slot": 1}
    assert request["metadata"]["resume"] == uri and request["metadata"]["sweep"] == "held"
    # a folder only the cluster sees is taken as given
    assert submit.describe_run("/cluster/shared/held/20261126-000000") == ("/cluster/shared/held/20261126-000000", "held")


def test_the_job_runs_the_resolved_sweep_with_its_search_spaces(tmp_path):
    space = tmp_path / "elsewhere" / "my_space.yaml"  # a search space outside the checkout travels too
    space.parent.mkdir()
    space.write_text("lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\nepochs: 2\n")
    path = write_sweep(tmp_path, "shipped", num_samples=3, epochs=2)
    sweep = load_sweep(path, sets=[f"methods.ce.search_space={space}", "methods.ce.overrides={}"])
    root = tmp_path / "checkout"
    staged = submit.stage(sweep, root, "shipped-1")
    assert staged == Path(".sweeplab/submit/shipped-1/sweep.yaml")
    doc = yaml.safe_load((root / staged).read_text())
    assert doc["methods"]["ce"]["search_space"] == "search_spaces/ce.yaml"  # relative: found next to sweep.yaml
    assert (root / staged).parent.joinpath("search_spaces/ce.yaml").read_text() == space.read_text()
    again = load_sweep(root / staged)  # what the job loads on the cluster
    assert again.studies[0].space == sweep.studies[0].space and again.document["storage"] == sweep.document["storage"]

    request = submit.job_request(sweep, "shipped-1", staged, root, "abc123")
    assert request["entrypoint"] == "python -m sweeplab.cli run .sweeplab/submit/shipped-1/sweep.yaml --address auto"
    assert request["entrypoint_resources"] == {"sweep_slot": 1}
    assert request["metadata"]["sweep"] == "shipped" and request["metadata"]["commit"] == "abc123"
    env = request["runtime_env"]
    assert env["working_dir"] == str(root) and env["env_vars"]["RAY_JOB_STOP_SIGNAL"] == "SIGINT"
    assert env["env_vars"]["SWEEPLAB_GIT_COMMIT"] == "abc123" and request["metadata"]["sweep_slot"] == "1"
    assert "/data" in env["excludes"] and "data" not in env["excludes"]  # sweeplab/data must travel
    assert "entrypoint_resources" not in submit.job_request(sweep, "x", staged, root, None, queue=False)


def test_submission_ids_name_the_sweep_and_the_time():
    from datetime import datetime

    assert submit.submission_id("noisy_digits", datetime(2026, 1, 2, 3, 4, 5)) == "noisy_digits-20260102-030405"


# -- a real cluster -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with local_cluster(tmp_path_factory.mktemp("cluster")) as c:  # raises if anything it started is left
        yield c


def job(cluster, sid: str) -> dict:
    return cluster.request(f"/api/jobs/{sid}")


def submitted_id(stdout: str) -> str:
    match = re.search(r"submitted .+ as (\S+) to http", stdout)
    assert match, stdout
    return match.group(1)


def wait_for(cluster, sid: str, timeout: float = 240, on_poll=None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = job(cluster, sid)
        if on_poll:
            on_poll(info)
        if info["status"] in submit.TERMINAL:
            return info
        time.sleep(0.25)
    raise AssertionError(f"job {sid} not done after {timeout} s: {job(cluster, sid)}")


def trial_nodes(cluster, job_id: str) -> dict[int, str]:
    """pid -> node id of the job's trial actors (Tune's function-trainable actors, ``ImplicitFunc``).
    Tune's result.json has each trial's pid; its node_ip and hostname are the same for two nodes on
    one machine, so Ray's actor table says which node a pid ran on."""
    data = cluster.request("/api/v0/actors?detail=1&limit=10000")["data"]["result"]["result"]
    return {a["pid"]: a["node_id"] for a in data if a["class_name"] == "ImplicitFunc" and a["job_id"] == job_id}


def cluster_nodes(cluster) -> tuple[dict[str, dict], str]:
    """Every node the cluster has had (a node marked dead under load still counts), and the head's id."""
    nodes = {n["node_id"]: n for n in cluster.nodes()}
    heads = [k for k, n in nodes.items() if n["is_head_node"]]
    assert len(nodes) == 2 and len(heads) == 1, nodes
    return nodes, heads[0]


@pytest.mark.cluster
@pytest.mark.integration
def test_a_submitted_sweep_spans_both_nodes_and_records_every_trial(cluster, tmp_path):
    listening = assert_loopback_only(cluster)
    assert any(s.endswith(cluster.dashboard_url.rsplit(":", 1)[1]) for s in listening)
    env = cluster.client_env()
    storage = tmp_path / "shared"  # both nodes are on this machine: a local folder is a shared filesystem

    t0 = time.monotonic()
    done = run_cli("submit", REPO / "sweeps" / "noisy_digits.yaml", "--profile", "demo",
                   "--set", "methods.ce.num_samples=4", "--set", "methods.ce.overrides.epochs=2",
                   "--set", f"tracking.uri={cluster.mlflow_uri}", "--set", f"storage.path={storage}",
                   "--address", cluster.dashboard_url, env=env, cwd=tmp_path)
    submitted = time.monotonic()
    assert done.returncode == 0, done.stdout + done.stderr
    sid = submitted_id(done.stdout)
    assert sid.startswith("noisy_digits-") and f"sweeplab logs {sid} --follow" in done.stdout
    assert not (REPO / submit.STAGE_DIR / sid).exists()  # staged, uploaded, removed

    marks = {}

    def poll(info):
        if info["status"] == "RUNNING":
            marks.setdefault("running", time.monotonic())
        if "first_result" not in marks and any(p.stat().st_size for p in storage.glob("*/*/ce/*/result.json")):
            marks["first_result"] = time.monotonic()
            marks["listening"] = assert_loopback_only(cluster)  # with the job's driver and trial workers up

    info = wait_for(cluster, sid, on_poll=poll)
    finished = time.monotonic()
    logs = run_cli("logs", sid, "--address", cluster.dashboard_url, env=env, cwd=tmp_path)
    assert info["status"] == "SUCCEEDED", logs.stdout[-5000:] + logs.stderr
    print(f"\nsubmit command {submitted - t0:.1f}s; submit -> RUNNING {marks['running'] - t0:.1f}s, "
          f"-> first trial result {marks['first_result'] - t0:.1f}s, -> SUCCEEDED {finished - t0:.1f}s; "
          f"{len(marks['listening'])} listening sockets while it ran, all on loopback")
    assert len(marks["listening"]) > len(listening)  # the driver's and the trials' servers were counted
    assert "4/4 done" in logs.stdout and "--address auto" in logs.stdout
    assert info["metadata"]["sweep"] == "noisy_digits" and info["metadata"]["profile"] == "demo"

    # every trial in the tracking server, with per-epoch metrics and its summary artifact
    c, parents, children = runs_of(cluster.mlflow_uri, "noisy_digits")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and len(children) == 4
    assert "sweep.yaml" in [a.path for a in c.list_artifacts(parents[0].info.run_id)]
    for run in children:
        assert run.data.tags["sweeplab.status"] == "finished" and run.info.status == "FINISHED"
        assert [m.step for m in c.get_metric_history(run.info.run_id, "val/acc")] == [1, 2]
        assert "summary.json" in [a.path for a in c.list_artifacts(run.info.run_id)]
    nodes, head = cluster_nodes(cluster)
    assert {run.data.tags["sweeplab.node_id"] for run in children} <= set(nodes)  # each run names its node

    # the two concurrent trials got a trial actor on each node (one CPU each), and every trial ran in one
    # of them. Which actor runs how many trials is timing: Tune (reuse_actors) gives a trial whose actor
    # is still starting to an actor that has just finished one, so sub-second trials may all run on the
    # head; the stop test below, with longer trials, checks that trials run on both nodes.
    results = [json.loads(p.read_text().splitlines()[0]) for p in storage.glob("*/*/ce/*/result.json")]
    assert len(results) == 4
    node_of_pid = trial_nodes(cluster, info["job_id"])
    assert set(node_of_pid.values()) == set(nodes), (node_of_pid, nodes)
    assert {r["pid"] for r in results} <= set(node_of_pid)
    assert info["driver_node_id"] == head  # the sweep's driver ran on the head (it holds the slot)

    listed = run_cli("jobs", "--address", cluster.dashboard_url, env=env, cwd=tmp_path)
    row = [line for line in listed.stdout.splitlines() if line.startswith(sid)]
    assert row and "SUCCEEDED" in row[0] and "noisy_digits" in row[0] and "demo" in row[0]

    no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
    refused = run_cli("jobs", "--address", cluster.dashboard_url, env=no_token, cwd=tmp_path)
    assert refused.returncode == 2 and "RAY_AUTH_MODE=token" in refused.stderr


@pytest.mark.cluster
@pytest.mark.integration
def test_sweeps_queue_for_the_one_sweep_slot_in_submission_order(cluster, tmp_path):
    env = cluster.client_env()
    ids = []
    for name in ("first", "second"):
        path = write_sweep(tmp_path, name, num_samples=2, epochs=1, scheduler={"name": "fifo"},
                           tracking={"uri": cluster.mlflow_uri}, storage={"path": str(tmp_path / "shared")})
        done = run_cli("submit", path, "--address", cluster.dashboard_url, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        ids.append(submitted_id(done.stdout))
    first, second = ids
    assert "waiting for a free sweep_slot: 1 sweep(s) ahead, 1 slot(s)" in done.stdout  # the second found it taken

    seen = []  # (first's status, second's status) over time

    def poll(info):
        seen.append((job(cluster, first)["status"], info["status"]))

    assert wait_for(cluster, second, on_poll=poll)["status"] == "SUCCEEDED"
    assert job(cluster, first)["status"] == "SUCCEEDED"
    second_ran = [a for a, b in seen if b != "PENDING"]
    assert second_ran and all(a == "SUCCEEDED" for a in second_ran), seen  # only after the first had ended
    assert ("RUNNING", "PENDING") in seen, seen  # and it did wait while the first ran
    for name in ("first", "second"):
        _, parents, children = runs_of(cluster.mlflow_uri, name)
        assert len(parents) == 1 and len(children) == 2


@pytest.mark.cluster
@pytest.mark.integration
def test_trials_run_on_both_nodes_stop_interrupts_like_ctrl_c_and_a_resume_job_finishes_the_sweep(cluster, tmp_path):
    env = cluster.client_env()
    storage = tmp_path / "shared"
    path = write_sweep(tmp_path, "stopped", num_samples=4, epochs=30, scheduler={"name": "fifo"},
                       tracking={"uri": cluster.mlflow_uri}, storage={"path": str(storage)})
    done = run_cli("submit", path, "--address", cluster.dashboard_url, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    sid = submitted_id(done.stdout)
    deadline = time.monotonic() + 120
    while sum(1 for p in storage.glob("*/*/ce/*/result.json") if p.stat().st_size) < 2:  # both concurrent trials
        assert time.monotonic() < deadline and job(cluster, sid)["status"] in ("PENDING", "RUNNING")
        time.sleep(0.5)
    # trials run on both nodes (each trial takes ~15 s here, far longer than a trial actor's start)
    pids = {json.loads(p.read_text().splitlines()[0])["pid"] for p in storage.glob("*/*/ce/*/result.json")
            if p.stat().st_size}
    node_of_pid = trial_nodes(cluster, job(cluster, sid)["job_id"])
    nodes, _ = cluster_nodes(cluster)
    assert {node_of_pid[pid] for pid in pids} == set(nodes), (pids, node_of_pid, nodes)

    stopped = run_cli("stop", sid, "--wait", "--address", cluster.dashboard_url, env=env, cwd=tmp_path)
    assert stopped.returncode == 0 and f"{sid}: STOPPED" in stopped.stdout, stopped.stdout + stopped.stderr
    logs = run_cli("logs", sid, "--address", cluster.dashboard_url, env=env, cwd=tmp_path).stdout
    assert "The sweep is incomplete. Continue it with:  sweeplab resume" in logs, logs[-3000:]
    _, parents, _ = runs_of(cluster.mlflow_uri, "stopped")
    assert [p.info.status for p in parents] == ["KILLED"]  # closed as interrupted, to be resumed
    again = run_cli("stop", sid, "--address", cluster.dashboard_url, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "is not running (STOPPED)" in again.stdout

    # continue it on the cluster, as a queued job: the same run folder, every trial once, all epochs
    (run_folder,) = storage.glob("stopped/*")
    done = run_cli("submit", "--resume", run_folder, "--address", cluster.dashboard_url, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rid = submitted_id(done.stdout)
    assert rid.startswith("stopped-resume-") and f"the resume of {run_folder}" in done.stdout
    info = wait_for(cluster, rid)
    logs = run_cli("logs", rid, "--address", cluster.dashboard_url, env=env, cwd=tmp_path).stdout
    assert info["status"] == "SUCCEEDED", logs[-5000:]
    assert f"resuming sweep stopped from {run_folder}" in logs and "restoring from" in logs
    assert info["metadata"]["resume"] == str(run_folder)
    c, parents, children = runs_of(cluster.mlflow_uri, "stopped")
    assert [p.info.status for p in parents] == ["FINISHED"]
    kept = [r for r in children if r.data.tags["sweeplab.status"] != "lost"]
    assert len(kept) == 4 and len({r.data.tags["sweeplab.trial_id"] for r in kept}) == 4
    for run in kept:
        assert run.data.tags["sweeplab.status"] == "finished"
        assert [m.step for m in c.get_metric_history(run.info.run_id, "val/acc")] == list(range(1, 31))
    # the MLflow runs say where each trial (last) ran: both nodes
    assert {r.data.tags["sweeplab.node_id"] for r in kept} == set(nodes)
