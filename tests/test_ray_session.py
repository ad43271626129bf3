"""A local Ray started by sweeplab stays on loopback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sweeplab.loopback import LOOPBACK_ONLY


@pytest.mark.integration
def test_local_ray_nodes_are_on_loopback():
    import ray

    from sweeplab import ray_session

    with ray_session.ray_session(None, num_cpus=1):
        assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]


def test_a_local_ray_that_would_leave_loopback_is_refused():
    env = {k: v for k, v in os.environ.items() if k != LOOPBACK_ONLY}
    code = "from sweeplab.ray_session import ray_session\nwith ray_session(None, num_cpus=1): pass\n"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "network address" in done.stderr and LOOPBACK_ONLY in done.stderr


def _idle_workers_of(raylet_pid: int) -> set[int]:
    """Ray's Python workers waiting for work: children of the raylet titled ``ray::IDLE``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            title = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == raylet_pid and title.startswith(b"ray::IDLE"):
            found.add(int(entry))
    return found


@pytest.mark.integration
def test_a_trial_actor_starts_on_a_worker_ray_prestarted(tmp_path):
    import time

    import ray
    from ray import tune

    from sweeplab import ray_session

    def report_pid(config):  # defined here: Ray ships it by value (workers cannot import the tests)
        tune.report({"pid": os.getpid(), "pl_disable_fork": os.environ.get("PL_DISABLE_FORK", "")})

    with ray_session.ray_session(None, num_cpus=2):
        raylet = ray._private.worker.global_worker.node.all_processes["raylet"][0].process.pid
        deadline = time.monotonic() + 60
        while len(_idle_workers_of(raylet)) < 2 and time.monotonic() < deadline:  # one per CPU
            time.sleep(0.1)
        prestarted = _idle_workers_of(raylet)
        assert len(prestarted) == 2
        tuner = tune.Tuner(tune.with_resources(report_pid, {"cpu": 1}),
                           run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
        [result] = tuner.fit()
    # Tune's default runtime env (PL_DISABLE_FORK) would have made Ray start a process for it
    assert result.metrics["pl_disable_fork"] == ""
    assert result.metrics["pid"] in prestarted
