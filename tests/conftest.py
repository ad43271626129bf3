"""Shared fixtures. Integration tests run real sweeps on a local Ray with a real MLflow store."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import yaml

from sweeplab.loopback import keep_local_ray_on_loopback

keep_local_ray_on_loopback()  # the tests' local Ray stays on 127.0.0.1 (before any test imports ray)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A clean working directory: the default mlflow.db and sweeplab_results land here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def write_sweep(folder: Path, name: str, num_samples: int, epochs: int, **sections) -> Path:
    """A sweep of the CE baseline on the built-in noisy digits."""
    doc = {
        "name": name,
        "seed": 0,
        "dataset": {"name": "noisy_digits", "noise_rate": 0.2},
        "model": {"backbone": "small_cnn"},
        "methods": {"ce": {"num_samples": num_samples, "overrides": {"epochs": epochs}}},
        "search": {"sampler": "tpe", "max_concurrent": 2, "n_startup_trials": 2},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus": 1},
    }
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def session_pids(sid: int) -> list[int]:
    """Processes of a session (a test's subprocess started with start_new_session=True)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after "(comm)": state, ppid, pgrp, session
            pids.append(int(entry))
    return pids


def kill_session(sid: int) -> None:
    """SIGKILL every process of a session this test started (never anything else)."""
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
