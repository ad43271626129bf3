"""clusters/submit_sweep.py, the script `ray submit` runs on the head: what it runs and what it refuses
(the whole path runs in tests/test_launcher.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "clusters" / "submit_sweep.py"


def load():
    spec = importlib.util.spec_from_file_location("submit_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_runs_the_sweep_file_or_resumes_the_run_against_the_cluster_it_is_on():
    s = load()
    args = s.parse(["sweeps/fer_noisy.yaml", "--profile", "demo", "--set", "a=1", "--set", "b.c=2"])
    assert s.sweeplab_command(args) == ["run", "sweeps/fer_noisy.yaml", "--address", "auto", "--profile", "demo",
                                        "--set", "a=1", "--set", "b.c=2"]
    args = s.parse(["--resume", "/mnt/shared/r/fer_noisy/20261202-010203", "--retry-errored"])
    assert s.sweeplab_command(args) == ["resume", "/mnt/shared/r/fer_noisy/20261202-010203", "--address", "auto",
                                        "--retry-errored"]
    assert s.in_environment(__import__("pathlib").Path(sys.prefix) / "bin" / "python")


@pytest.mark.parametrize("argv, message", [
    ([], "give a sweep file, or --resume RUN"),
    (["sweeps/x.yaml", "--resume", "r"], "give a sweep file, or --resume RUN"),
    (["--resume", "r", "--set", "a=1"], "--profile and --set do not apply"),
    (["sweeps/x.yaml", "--retry-errored"], "--retry-errored goes with --resume"),
])
def test_what_it_refuses(argv, message):
    done = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_a_missing_environment_or_project_is_named(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "sweeps/x.yaml", "--python", str(tmp_path / "py")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"{tmp_path / 'py'} does not exist on this node" in done.stderr
    done = subprocess.run([sys.executable, str(SCRIPT), "sweeps/x.yaml", "--python", sys.executable,
                           "--project", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no project at" in done.stderr, done.stderr
