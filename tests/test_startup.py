"""A sweep's fixed costs: MLflow's store is made ready while Ray starts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest


def _sweep(tmp_path, *sets):
    from sweeplab.spec import load_sweep

    repo = Path(__file__).resolve().parents[1]
    return load_sweep(repo / "sweeps" / "noisy_digits.yaml", profile="demo",
                      sets=[f"storage.path={tmp_path / 'res'}", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", *sets])


def test_a_tracking_store_that_fails_leaves_no_run_folder_and_no_ray(tmp_path, monkeypatch):
    import ray

    from sweeplab import runner, tracking

    sweep = _sweep(tmp_path)
    started = []

    def fake_session(*args, **kwargs):
        import contextlib

        @contextlib.contextmanager
        def session():
            started.append(kwargs)
            try:
                yield
            finally:
                started.append("stopped")

        return session()

    def unreachable(uri, name):
        raise ConnectionError("store away")

    monkeypatch.setattr(runner, "ray_session", fake_session)
    monkeypatch.setattr(tracking, "ensure_experiment", unreachable)
    with pytest.raises(ConnectionError):
        runner.run_sweep(sweep, num_cpus=2)
    assert started == [{"dashboard": False}, "stopped"]
    assert not (tmp_path / "res").exists()
    assert not ray.is_initialized()


def test_mlflow_store_is_created_while_ray_starts(tmp_path, monkeypatch):
    """The experiment is asked for beside Ray's start; the run folder comes after both."""
    import contextlib

    from sweeplab import runner, tracking

    sweep = _sweep(tmp_path)
    events = []

    @contextlib.contextmanager
    def slow_session(*args, **kwargs):
        events.append(("ray starts", threading.current_thread().name))
        time.sleep(0.3)
        events.append(("ray ready", None))
        yield

    def experiment(uri, name):
        events.append(("experiment", threading.current_thread().name))
        return "7"

    def studies(sweep, folder, state, *args, **kwargs):
        events.append(("studies", state.experiment_id, folder.local.is_dir()))
        return []

    monkeypatch.setattr(runner, "ray_session", slow_session)
    monkeypatch.setattr(tracking, "ensure_experiment", experiment)
    monkeypatch.setattr(runner, "_run_studies", studies)
    folder, results = runner.run_sweep(sweep, num_cpus=2)
    assert results == [] and (folder.local / "state.json").is_file()
    names = [e[0] for e in events]
    assert names.index("experiment") < names.index("ray ready") < names.index("studies")
    assert dict((e[0], e[1]) for e in events)["experiment"] != threading.current_thread().name
    assert events[-1] == ("studies", "7", True)
