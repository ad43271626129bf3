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
