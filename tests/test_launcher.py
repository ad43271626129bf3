"""Ray's cluster launcher, for real: ``ray up clusters/local.yaml`` over SSH on 127.0.0.1, ``ray
submit`` of a sweep file through ``clusters/submit_sweep.py``, every trial in the head's MLflow
server, then ``ray down`` (see tests/launcher.py for what is the test's and what is the file's)."""

from __future__ import annotations

import os
import time

import pytest
from mlflow.tracking import MlflowClient

from cluster import _http_ok, is_loopback, listening_sockets
from launcher import (foreign_ray_processes, launcher_cluster, missing_tools, remove_cluster_state, ssh_server,
                      stop_processes)

pytestmark = [pytest.mark.cluster, pytest.mark.integration]


def _require_machine() -> None:
    missing = missing_tools()
    if missing:
        message = f"the launcher test needs {', '.join(missing)} (.ci/run installs the packages)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(message)
        pytest.skip(message)
    deadline = time.monotonic() + 120  # helpers of a SIGKILLed driver linger 60-90 s (PLATFORM_NOTES)
    while (others := foreign_ray_processes()) and time.monotonic() < deadline:
        time.sleep(3)
    if others:
        pytest.skip("`ray down` runs `ray stop`, which would also end these Ray processes of this account: "
                    + "; ".join(others[:3]))


def test_ray_up_then_ray_submit_of_a_sweep_file_then_ray_down(tmp_path):
    _require_machine()
    with ssh_server(tmp_path / "ssh") as server:
        assert all(is_loopback(s) for s in server.listening()), server.listening()
        cluster = launcher_cluster(tmp_path, server)
        try:
            t0 = time.monotonic()
            up = cluster.ray("up", "-y", "--no-config-cache", str(cluster.file), timeout=420)
            assert up.returncode == 0, up.stdout[-6000:] + up.stderr[-3000:]
            t_up = time.monotonic() - t0
            deadline = time.monotonic() + 90  # the head's MLflow server, started in the background
            while not _http_ok(cluster.mlflow_uri + "/health"):
                log = server.home / "mlflow.log"
                assert time.monotonic() < deadline, "no MLflow server on the head: " + (
                    log.read_text()[-3000:] if log.is_file() else "it did not start (no ~/mlflow.log)")
                time.sleep(1)
            started = cluster.started()
            assert started, "ray up started nothing the test can find"
            sockets = listening_sockets({p.pid for p in started})
            assert sockets and all(is_loopback(s) for s in sockets), f"listening beyond loopback: {sockets}"
            assert (server.home / "sweeplab" / "sweeps" / "noisy_digits.yaml").is_file()  # file_mounts shipped it
            assert not (server.home / "sweeplab" / ".git").exists()  # less rsync_exclude

            # a bad sweep file fails on the head, before anything runs, with the usual lines
            bad = cluster.ray("submit", str(cluster.file), "clusters/submit_sweep.py", "sweeps/noisy_digits.yaml",
                              "--set", "methods.ce.num_samples=0", timeout=300)
            assert bad.returncode != 0
            assert "noisy_digits.yaml: methods.ce.num_samples:" in bad.stdout + bad.stderr

            shared = server.home / "sweeplab-shared" / "results"
            t1 = time.monotonic()
            done = cluster.ray(
                "submit", str(cluster.file), "clusters/submit_sweep.py", "sweeps/noisy_digits.yaml",
                "--profile", "demo", "--set", "methods.ce.num_samples=3", "--set", "methods.ce.overrides.epochs=2",
                "--set", f"tracking.uri={cluster.mlflow_uri}", "--set", f"storage.path={shared}", timeout=600)
            t_submit = time.monotonic() - t1
            out = done.stdout + done.stderr
            assert done.returncode == 0, out[-6000:]
            assert "sweeplab run sweeps/noisy_digits.yaml --address auto" in out and "3/3 done" in out
            assert "Report:" in out

            # every trial in the head's tracking server, and the run on its storage
            client = MlflowClient(cluster.mlflow_uri)
            experiment = client.get_experiment_by_name("noisy_digits")
            runs = client.search_runs([experiment.experiment_id])
            children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
            assert len(children) == 3
            assert all(r.data.tags["sweeplab.status"] in ("finished", "pruned") for r in children)
            assert all(r.info.status == "FINISHED" for r in children)
            assert list(shared.glob("noisy_digits/*/report.html"))
            print(f"\nray up {t_up:.1f}s, ray submit (3 trials x 2 epochs) {t_submit:.1f}s; "
                  f"{len(sockets)} listening sockets, all on loopback")

            down = cluster.ray("down", "-y", str(cluster.file), timeout=300)
            assert down.returncode == 0, down.stdout[-4000:] + down.stderr[-2000:]
            left = [p for p in cluster.started() if "mlflow" not in p.cmdline]
            assert not left, f"ray down left {[p.pid for p in left]}"
        finally:
            leftover = stop_processes(cluster.started())  # the MLflow server ray up started (ray down keeps it)
            remove_cluster_state(cluster.name)
            assert not leftover, f"still alive: {[p.pid for p in leftover]}"
