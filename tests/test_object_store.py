"""Sweeps kept in an object store (``storage.path: s3://…``), through pyarrow, against an
S3-compatible server on 127.0.0.1 (moto's server: the S3 REST API, in memory). Ray Tune,
MLflow and the trials are the real ones; only the object store is local."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from conftest import end_session, finished_trial_ids, runs_of, write_sweep
from s3 import CREDENTIALS, local_s3_server, new_bucket
from sweeplab import runner, storage
from sweeplab.spec import load_sweep

pytestmark = pytest.mark.integration
SWEEPLAB = [sys.executable, "-m", "sweeplab.cli"]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    with local_s3_server(tmp_path_factory.mktemp("s3") / "server.log") as endpoint:
        yield endpoint


@pytest.fixture
def bucket_uri(s3_endpoint, monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    return new_bucket(s3_endpoint)


def stored_files(location: str) -> set[str]:
    import pyarrow.fs

    fs, base = storage.filesystem(location)
    return {info.path[len(base) + 1:] for info in fs.get_file_info(pyarrow.fs.FileSelector(base, recursive=True))
            if info.type == pyarrow.fs.FileType.File}


def journal_trials(folder, study_name: str):
    journal = JournalStorage(JournalFileBackend(str(folder.local / storage.JOURNAL_FILE)))
    return optuna.load_study(study_name=study_name, storage=journal).trials


def test_a_sweep_in_an_object_store_keeps_everything_there(workdir, bucket_uri, monkeypatch):
    monkeypatch.setenv("SWEEPLAB_CACHE", str(workdir / "machine_a"))
    path = write_sweep(workdir, "stored", num_samples=3, epochs=2,
                       storage={"path": bucket_uri, "sync_period": 1}, scheduler={"name": "fifo"})
    folder, (result,) = runner.run_sweep(load_sweep(path), num_cpus=2)

    assert result.complete and result.finished == 3
    assert folder.remote and folder.location.startswith(bucket_uri.split("?")[0] + "/stored/")
    assert not (workdir / "sweeplab_results").exists()  # nothing in a local results folder
    files = stored_files(folder.location)
    assert {"sweep.yaml", "state.json", "optuna.journal", "search_spaces/ce.yaml", "ce/tuner.pkl"} <= files
    trial_dirs = {f.split("/")[1] for f in files if f.startswith("ce/ce_")}
    assert len(trial_dirs) == 3
    for trial in trial_dirs:  # results and the final checkpoint of every trial are in the store
        assert f"ce/{trial}/result.json" in files and f"ce/{trial}/checkpoint_000001/state.pt" in files

    _, parents, children = runs_of(f"sqlite:///{workdir / 'mlflow.db'}", "stored")
    assert parents[0].data.tags["sweeplab.run_dir"] == folder.location and len(children) == 3

    # another machine: no local copy at all. The run is found by its URI, its driver files
    # downloaded; the study in the downloaded journal is the whole study; sync-mlflow reads
    # Tune's results from the store and finds MLflow complete.
    monkeypatch.setenv("SWEEPLAB_CACHE", str(workdir / "machine_b"))
    elsewhere = storage.find_run(folder.location).pull()
    assert elsewhere.local != folder.local and elsewhere.local.is_relative_to(workdir / "machine_b")
    assert [t.state for t in journal_trials(elsewhere, "stored.ce")] == [TrialState.COMPLETE] * 3
    assert storage.find_run(bucket_uri.replace("/results?", "/results/stored?")).location == folder.location
    synced = subprocess.run(SWEEPLAB + ["sync-mlflow", folder.location], cwd=workdir, capture_output=True,
                            text=True, timeout=120)
    assert synced.returncode == 0, synced.stderr
    assert "3 trials; 0 runs created, 0 epochs logged, 0 statuses set" in synced.stdout


def test_a_killed_sweep_resumes_from_the_object_store_on_another_machine(workdir, bucket_uri):
    """The driver is killed (no warning, no final upload); its local files are deleted; the sweep
    is resumed by its URI with another local cache, as from another node of the cluster."""
    path = write_sweep(workdir, "moved", num_samples=6, epochs=4, scheduler={"name": "fifo"},
                       storage={"path": bucket_uri, "sync_period": 1})
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SWEEPLAB_CACHE": str(workdir / "machine_a")}
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    log_path = workdir / "first.log"
    with open(log_path, "w") as log:
        first = subprocess.Popen(SWEEPLAB + ["run", str(path), "--num-cpus", "2"], cwd=workdir, env=env,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline, finished = time.monotonic() + 240, set()
            while time.monotonic() < deadline and first.poll() is None and len(finished) < 2:
                time.sleep(1)
                if "run folder s3://" in log_path.read_text():
                    finished = finished_trial_ids(uri, "moved")
            assert first.poll() is None and len(finished) >= 2, log_path.read_text()
            time.sleep(2.5)  # Tune and the driver upload their state every second (sync_period: 1)
        finally:
            end_session(first)
    location = next(line.split("run folder ", 1)[1].strip() for line in log_path.read_text().splitlines()
                    if "run folder s3://" in line)
    import shutil

    shutil.rmtree(workdir / "machine_a")  # the first machine is gone

    env["SWEEPLAB_CACHE"] = str(workdir / "machine_b")
    resumed = subprocess.run(SWEEPLAB + ["resume", location, "--num-cpus", "2"], cwd=workdir, env=env,
                             capture_output=True, text=True, timeout=300)
    (workdir / "resumed.log").write_text(resumed.stdout + resumed.stderr)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"restoring from {storage.join(location, 'ce')}" in resumed.stdout

    c, parents, children = runs_of(uri, "moved")
    lost = [r for r in children if r.data.tags["sweeplab.status"] == "lost"]
    assert len(lost) <= 2  # started after the last upload: closed as lost, replaced
    kept = [r for r in children if r not in lost]
    assert len(kept) == 6 and len({r.data.tags["sweeplab.trial_id"] for r in kept}) == 6, (
        [(r.data.tags["sweeplab.trial_id"], r.data.tags["sweeplab.status"], r.data.tags.get("sweeplab.error"))
         for r in children], resumed.stdout[-3000:])
    for r in kept:
        assert r.data.tags["sweeplab.status"] == "finished", (
            r.data.tags["sweeplab.trial_id"], r.data.tags.get("sweeplab.error"), resumed.stdout[-4000:])
        steps = [m.step for m in c.get_metric_history(r.info.run_id, "val/acc")]
        assert steps == [1, 2, 3, 4], steps  # no epoch logged twice, none missing
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"

    # the study, as uploaded at the end of the resumed sweep, holds the six trials complete
    after = storage.find_run(location).pull()
    trials = journal_trials(after, "moved.ce")
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    assert not (workdir / "machine_a").exists()  # the resume wrote nothing for the old machine
