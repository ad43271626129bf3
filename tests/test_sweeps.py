"""Real sweeps on a local Ray cluster with a real SQLite MLflow store."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from conftest import end_session, finished_trial_ids, runs_of, write_sweep
from sweeplab import runner, storage, tracking
from sweeplab.checkpoints import STATE_FILE, best_weights, snapshot_trials
from sweeplab.ray_session import ResourcesUnavailable
from sweeplab.results import format_summary
from sweeplab.spaces import Param
from sweeplab.spec import load_sweep
from sweeplab.storage import JOURNAL_FILE

pytestmark = pytest.mark.integration
SWEEPLAB = [sys.executable, "-m", "sweeplab.cli"]


def optuna_trials(run_dir: Path, study_name: str):
    storage = JournalStorage(JournalFileBackend(str(run_dir / JOURNAL_FILE)))
    return optuna.load_study(study_name=study_name, storage=storage).trials


def test_sweep_records_a_parent_and_one_child_per_trial(workdir, capsys):
    sweep = load_sweep(write_sweep(workdir, "four", num_samples=4, epochs=3))
    folder, (result,) = runner.run_sweep(sweep, num_cpus=2)
    run_dir = folder.local

    assert result.complete and result.trials == 4 and result.failed == 0
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    c, parents, children = runs_of(uri, "four")
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert len({r.data.tags["sweeplab.trial_id"] for r in children}) == 4

    statuses = {}
    for run in children:
        tags, params = run.data.tags, run.data.params
        assert tags["sweeplab.method"] == "ce" and tags["sweeplab.sweep"] == "four"
        assert tags["sweeplab.dataset"] == "noisy_digits" and "sweeplab.version" in tags
        assert {"lr", "weight_decay", "batch_size", "epochs", "dataset/noise_rate"} <= set(params)
        assert params["precision"] == "fp32"  # auto, as resolved on this CPU
        steps = [m.step for m in c.get_metric_history(run.info.run_id, "val/acc")]
        assert steps == list(range(1, len(steps) + 1)) and steps, steps
        status = tags["sweeplab.status"]
        statuses[tags["sweeplab.trial_id"]] = status
        if status == "finished":
            assert steps[-1] == 3 and run.info.status == "FINISHED"
            assert "best/test/acc" in run.data.metrics
            assert "summary.json" in [a.path for a in c.list_artifacts(run.info.run_id)]
        else:
            assert status == "pruned" and steps[-1] < 3 and run.info.status == "FINISHED"  # not drawn as a failure
    assert "finished" in statuses.values()

    # each trial keeps its latest checkpoint, which holds the best epoch's weights too
    for trial_dir in (run_dir / "ce").glob("ce_t*"):
        results = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        (kept,) = trial_dir.glob("checkpoint_*")
        assert int(kept.name.split("_")[1]) + 1 == results[-1]["epoch"]
        state = torch.load(kept / STATE_FILE, weights_only=True)
        assert state["best"]["epoch"] == results[-1]["best/epoch"]
        # nothing resumes a finished trial or one the scheduler stopped: they keep only weights
        assert not set(state) & {"optimizer", "rng", "schedule", "precision"}, results[-1]["epoch"]
        assert best_weights(kept).keys() == state["model"].keys()

    # the parent: resolved sweep file, best trial summary, closed
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"sweep.yaml", "best_trial.json"} <= artifacts
    best_run = parent.data.tags["sweeplab.best_run_id"]
    assert best_run in {r.info.run_id for r in children} and best_run == result.best["run_id"]

    # the Optuna study is in the run folder; what ASHA stopped is PRUNED there, not COMPLETE
    trials = optuna_trials(run_dir, "four.ce")
    assert len(trials) == 4
    expected = sorted(TrialState.COMPLETE if s == "finished" else TrialState.PRUNED for s in statuses.values())
    assert sorted(t.state for t in trials) == expected

    # a trial's run lost from MLflow (e.g. the server was away) is rebuilt from Tune's results;
    # a second sync changes nothing
    from sweeplab.sync import sync_run

    gone = children[0]
    gone_steps = [(m.step, m.value) for m in c.get_metric_history(gone.info.run_id, "val/acc")]
    c.delete_run(gone.info.run_id)
    report = sync_run(run_dir)
    assert (report.trials, report.runs_created, report.epochs_logged) == (4, 1, len(gone_steps))
    _, _, rebuilt = runs_of(uri, "four")
    back = [r for r in rebuilt if r.data.tags["sweeplab.trial_id"] == gone.data.tags["sweeplab.trial_id"]]
    assert len(back) == 1 and back[0].info.run_id != gone.info.run_id
    assert [(m.step, m.value) for m in c.get_metric_history(back[0].info.run_id, "val/acc")] == gone_steps
    assert back[0].data.tags["sweeplab.status"] == gone.data.tags["sweeplab.status"]
    assert back[0].data.params["lr"] == gone.data.params["lr"]
    again = sync_run(run_dir)
    assert (again.runs_created, again.epochs_logged, again.statuses_set) == (0, 0, 0)

    table = format_summary([result], tracking.ui_command(uri))
    assert result.best["run_id"] in table and f"mlflow ui --backend-store-uri {uri}" in table
    assert "trial" in capsys.readouterr().out  # progress lines while it ran


def trials_in_snapshot(study_folder: Path) -> list:
    """The trials in Tune's last snapshot of a study (none while it is first being written)."""
    try:
        return snapshot_trials(str(study_folder))
    except Exception:  # noqa: BLE001 - not written yet, or being replaced
        return []


def resumable(trials) -> list:
    return [t for t in trials if t.status != "TERMINATED" and t.checkpoint is not None]


def delete_as_tune_does_before_a_snapshot(trial) -> str:
    """What Tune leaves when a sweep is killed between registering a trial's new checkpoint (and so
    deleting the older one) and its next snapshot: the snapshot names a checkpoint that is gone (an
    empty folder), the newer one is there. Returns the newer one's name."""
    named = Path(trial.checkpoint.path)
    if not named.exists():  # the kill came at that very moment: Tune left this already
        return max(named.parent.glob("checkpoint_*")).name
    for other in named.parent.glob("checkpoint_*"):
        if other != named:
            shutil.rmtree(other)
    newer = named.parent / f"checkpoint_{int(named.name.split('_')[1]) + 1:06d}"
    named.rename(newer)
    named.mkdir()  # as an object store can leave it: an empty folder (marker) where the checkpoint was
    return newer.name


def test_a_killed_sweep_resumes_without_rerunning_or_duplicating_trials(workdir):
    path = write_sweep(workdir, "killed", num_samples=8, epochs=4, scheduler={"name": "fifo"})
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(workdir / "first.log", "w")
    first = subprocess.Popen(SWEEPLAB + ["run", str(path), "--num-cpus", "2"], cwd=workdir, env=env,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    finished_before, snapshot = set(), []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.5)
            # the store exists once the run folder's state.json does (reading it earlier would race
            # the sweep's own creation of the database schema)
            if not list(workdir.glob("sweeplab_results/killed/*/state.json")):
                continue
            finished_before = finished_trial_ids(uri, "killed")
            snapshot = trials_in_snapshot(next(workdir.glob("sweeplab_results/killed/*/ce"), workdir))
            terminated = {t.trial_id for t in snapshot if t.status == "TERMINATED"}
            # two trials done (in MLflow and in Tune's snapshot) and one half-way with a checkpoint
            if len(finished_before) >= 2 and finished_before <= terminated and resumable(snapshot):
                break
        assert first.poll() is None, (workdir / "first.log").read_text()
        assert len(finished_before) >= 2 and resumable(snapshot), "no two trials finished in time"
    finally:
        end_session(first)  # the driver and its Ray
        log.close()
    study_folder = next(workdir.glob("sweeplab_results/killed/*/ce"))
    broken = resumable(trials_in_snapshot(study_folder))[0]
    delete_as_tune_does_before_a_snapshot(broken)

    _, _, children = runs_of(uri, "killed")
    assert sum(r.data.tags["sweeplab.status"] == "finished" for r in children) < 8  # it was interrupted
    histories_before = {}
    c = MlflowClient(uri)
    for r in children:
        if r.data.tags["sweeplab.trial_id"] in finished_before:
            histories_before[r.data.tags["sweeplab.trial_id"]] = [
                (m.step, m.value) for m in c.get_metric_history(r.info.run_id, "val/acc")]

    resumed = subprocess.run(SWEEPLAB + ["resume", "killed", "--num-cpus", "2"], cwd=workdir, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "restoring from" in resumed.stdout
    assert f"trial {broken.trial_id}: its checkpoint in Tune's last snapshot was deleted" in resumed.stdout

    c, parents, children = runs_of(uri, "killed")
    # a trial started in the last moment before the kill may be missing from Tune's last snapshot:
    # its run is closed as lost, and the resumed sweep runs another trial in its place
    lost = [r for r in children if r.data.tags["sweeplab.status"] == "lost"]
    assert all(r.info.status == "KILLED" and "interrupted" in r.data.tags["sweeplab.error"] for r in lost)
    assert len(lost) <= 2  # at most the two trials that were running
    children = [r for r in children if r not in lost]
    trial_ids = [r.data.tags["sweeplab.trial_id"] for r in children]
    assert len(trial_ids) == 8 and len(set(trial_ids)) == 8  # every trial once
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    for r in children:
        assert r.data.tags["sweeplab.status"] == "finished" and r.info.status == "FINISHED", (
            r.data.tags["sweeplab.trial_id"], r.data.tags.get("sweeplab.error"), resumed.stdout[-4000:])
        steps = [m.step for m in c.get_metric_history(r.info.run_id, "val/acc")]
        assert steps == [1, 2, 3, 4], (r.data.tags["sweeplab.trial_id"], steps)  # no epoch logged twice
        tid = r.data.tags["sweeplab.trial_id"]
        if tid in histories_before:  # finished before the kill: not rerun
            after = [(m.step, m.value) for m in c.get_metric_history(r.info.run_id, "val/acc")]
            assert after == histories_before[tid]

    run_dir = storage.find_run("killed").local
    for tid in histories_before:  # Tune did not run any epoch of these again
        (trial_dir,) = (run_dir / "ce").glob(f"ce_t*_{tid}")  # ce_t<number>_<trial id>
        rows = (trial_dir / "result.json").read_text().splitlines()
        assert len(rows) == 4, (tid, len(rows))
    trials = optuna_trials(run_dir, "killed.ce")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 8
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)  # FAIL: asked, never run
    assert "killed" in resumed.stdout and "(incomplete)" not in resumed.stdout


def test_failed_and_diverged_trials_are_recorded_and_the_sweep_goes_on(workdir):
    """momentum -1 makes the trial refuse to start (a failed trial); lr 1e12 makes the loss blow up
    (a diverged trial); the others finish. Random sampling with this seed draws all three.
    (``sweeplab validate`` refuses momentum -1 in a sweep file; a sweep whose space is built in
    code skips that, and the trial's own check of its hyperparameters fails it.)"""
    space = workdir / "space.yaml"
    space.write_text(
        "lr: {type: categorical, choices: [1.0e+12, 3.0e-3]}\n"
        "momentum: {type: categorical, choices: [0.5, 0.9]}\n"
        "optimizer: sgd\nepochs: 2\n"
    )
    path = write_sweep(workdir, "outcomes", num_samples=4, epochs=2, seed=5,
                       search={"sampler": "random", "n_startup_trials": None},
                       scheduler={"name": "fifo"}, failure={"max_failures": 0})
    sweep = load_sweep(path, sets=[f"methods.ce.search_space={space}", "methods.ce.overrides={}"])
    study = sweep.studies[0]
    sweep.studies[0] = dataclasses.replace(study, space={
        **study.space, "momentum": Param("categorical", choices=(-1.0, 0.9))})
    folder, (result,) = runner.run_sweep(sweep, num_cpus=2)
    run_dir = folder.local

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    _, parents, children = runs_of(uri, "outcomes")
    assert len(children) == 4
    seen = []
    for run in children:
        params, tags = run.data.params, run.data.tags
        if float(params["momentum"]) < 0:
            expected, mlflow_status = "failed", "FAILED"
            assert "momentum" in tags["sweeplab.error"]  # the error text, from the trial's error file
        elif float(params["lr"]) > 1:
            expected, mlflow_status = "diverged", "FAILED"
            assert "loss became" in tags["sweeplab.error"]
        else:
            expected, mlflow_status = "finished", "FINISHED"
        assert (tags["sweeplab.status"], run.info.status) == (expected, mlflow_status)
        seen.append(expected)
    assert sorted(set(seen)) == ["diverged", "failed", "finished"]
    assert result.complete and (result.failed, result.diverged) == (seen.count("failed"), seen.count("diverged"))
    assert result.best is not None and result.best["config"]["lr"] == 3e-3
    states = sorted(t.state.name for t in optuna_trials(run_dir, "outcomes.ce"))
    assert states == sorted({"failed": "FAIL", "diverged": "PRUNED", "finished": "COMPLETE"}[s] for s in seen)


def test_lt_multilabel_demo_runs_both_studies_with_group_map(workdir):
    from conftest import REPO

    sets = ["dataset.train_size=300", "dataset.val_size=100", "dataset.test_size=100",
            "search.max_concurrent=2", "scheduler.grace_period=1"]
    for method in ("bce", "ltml"):
        sets += [f"methods.{method}.num_samples=2", f"methods.{method}.overrides.epochs=2"]
    sweep = load_sweep(REPO / "sweeps" / "lt_multilabel.yaml", profile="demo", sets=sets)
    _, results = runner.run_sweep(sweep, num_cpus=2)
    assert [r.method for r in results] == ["bce", "ltml"] and all(r.complete for r in results)

    c, parents, children = runs_of(f"sqlite:///{workdir / 'mlflow.db'}", "lt_multilabel")
    assert sorted(p.info.run_name for p in parents) == ["bce", "ltml"]
    for method in ("bce", "ltml"):
        runs = [r for r in children if r.data.tags["sweeplab.method"] == method]
        assert len(runs) == 2
        for run in runs:
            for key in ("val/mAP", "val/mAP_head", "val/mAP_medium", "val/mAP_tail"):
                assert c.get_metric_history(run.info.run_id, key), (method, key)
        done = [r for r in runs if r.data.tags["sweeplab.status"] == "finished"]
        assert done, method
        assert "per_class.json" in [a.path for a in c.list_artifacts(done[0].info.run_id)]
        assert "test/mAP_tail" in done[0].data.metrics


def test_fer_noisy_demo_runs_ce_and_scn_side_by_side(workdir):
    from conftest import REPO

    sets = ["search.max_concurrent=2", "scheduler.grace_period=1"]
    for method in ("ce", "scn"):
        sets += [f"methods.{method}.num_samples=2", f"methods.{method}.overrides.epochs=3"]
    sets += ["methods.scn.overrides.relabel_epoch=2", "methods.scn.precision=bf16"]  # bf16 autocast on the CPU
    sweep = load_sweep(REPO / "sweeps" / "fer_noisy.yaml", profile="demo", sets=sets)
    _, results = runner.run_sweep(sweep, num_cpus=2)
    assert [r.method for r in results] == ["ce", "scn"] and all(r.complete for r in results)

    c, parents, children = runs_of(f"sqlite:///{workdir / 'mlflow.db'}", "fer_noisy")
    assert sorted(p.info.run_name for p in parents) == ["ce", "scn"]
    scn_runs = [r for r in children if r.data.tags["sweeplab.method"] == "scn"]
    assert len(scn_runs) == 2 and all(r.data.params["relabel_epoch"] == "2" for r in scn_runs)
    assert {r.data.params["precision"] for r in children} == {"fp32", "bf16"}
    assert all(r.data.params["precision"] == "bf16" for r in scn_runs)
    finished = [r for r in scn_runs if r.data.tags["sweeplab.status"] == "finished"]
    assert finished
    counts = c.get_metric_history(finished[0].info.run_id, "train/relabel_count")
    assert [m.step for m in counts] == [1, 2, 3]


def test_fer_ambiguous_demo_runs_dmue_beside_its_baseline_with_what_it_recovers(workdir):
    from conftest import REPO

    sets = ["search.max_concurrent=2", "scheduler.name=fifo"]
    for method in ("ce", "scn", "dmue"):
        sets += [f"methods.{method}.num_samples=1", f"methods.{method}.overrides.epochs=2"]
    sweep = load_sweep(REPO / "sweeps" / "fer_ambiguous.yaml", profile="demo", sets=sets)
    _, results = runner.run_sweep(sweep, num_cpus=2)
    assert [r.method for r in results] == ["ce", "scn", "dmue"] and all(r.complete for r in results)

    c, parents, children = runs_of(f"sqlite:///{workdir / 'mlflow.db'}", "fer_ambiguous")
    assert sorted(p.info.run_name for p in parents) == ["ce", "dmue", "scn"]
    (scn,) = [r for r in children if r.data.tags["sweeplab.method"] == "scn"]
    assert [m.step for m in c.get_metric_history(scn.info.run_id, "train/uncertainty_lambda_corr")] == [1, 2]
    (dmue,) = [r for r in children if r.data.tags["sweeplab.method"] == "dmue"]
    assert dmue.data.tags["sweeplab.status"] == "finished"
    for key in ("train/loss/sp", "train/loss/aux", "train/latent_agreement", "train/uncertainty_lambda_corr",
                "train/lr/model", "train/lr/heads"):
        assert [m.step for m in c.get_metric_history(dmue.info.run_id, key)] == [1, 2], key
    assert 0.0 <= dmue.data.metrics["test/acc"] <= 1.0
    assert 0.0 <= dmue.data.metrics["test_blended/acc"] <= 1.0  # the dataset's further test set


def test_fine_grained_demo_runs_db_gce_beside_ce_with_the_cue_erased_test(workdir):
    from conftest import REPO

    sets = ["search.max_concurrent=2", "scheduler.name=fifo"]
    for method in ("ce", "db_gce"):
        sets += [f"methods.{method}.num_samples=1", f"methods.{method}.overrides.epochs=2"]
    sweep = load_sweep(REPO / "sweeps" / "fine_grained.yaml", profile="demo", sets=sets)
    _, results = runner.run_sweep(sweep, num_cpus=2)
    assert [r.method for r in results] == ["ce", "db_gce"] and all(r.complete for r in results)

    c, parents, children = runs_of(f"sqlite:///{workdir / 'mlflow.db'}", "fine_grained")
    assert sorted(p.info.run_name for p in parents) == ["ce", "db_gce"]
    (db_gce,) = [r for r in children if r.data.tags["sweeplab.method"] == "db_gce"]
    assert db_gce.data.tags["sweeplab.status"] == "finished"
    for key in ("train/loss/gce", "train/loss/ce", "val/acc"):
        assert [m.step for m in c.get_metric_history(db_gce.info.run_id, key)] == [1, 2], key
    for run in children:
        for key in ("test/acc", "test_cue_erased/acc", "best/test_cue_erased/acc"):
            assert 0.0 <= run.data.metrics[key] <= 1.0, (run.info.run_name, key)


def test_metric_learning_demo_runs_proxygml_beside_the_proxy_losses_with_recall_at_k(workdir):
    from conftest import REPO

    methods = ("proxygml", "proxy_nca", "proxy_anchor", "soft_triple", "normalized_softmax")
    sets = ["search.max_concurrent=2", "scheduler.name=fifo", "dataset.per_class=8"]
    for method in methods:
        sets += [f"methods.{method}.num_samples=1", f"methods.{method}.overrides.epochs=2"]
    sweep = load_sweep(REPO / "sweeps" / "metric_learning.yaml", profile="demo", sets=sets)
    _, results = runner.run_sweep(sweep, num_cpus=2)
    assert [r.method for r in results] == list(methods) and all(r.complete for r in results)

    c, parents, children = runs_of(f"sqlite:///{workdir / 'mlflow.db'}", "metric_learning")
    assert sorted(p.info.run_name for p in parents) == sorted(methods)
    (proxygml,) = [r for r in children if r.data.tags["sweeplab.method"] == "proxygml"]
    assert proxygml.data.tags["sweeplab.status"] == "finished"
    for key in ("train/loss/cls", "train/loss/proxy", "train/lr/proxies", "val/recall_at_1", "val/recall_at_8", "val/nmi"):
        assert [m.step for m in c.get_metric_history(proxygml.info.run_id, key)] == [1, 2], key
    for run in children:  # Recall@K at K = 1, 2, 4, 8 on the unseen test numbers: a curve per run
        curve = [run.data.metrics[f"test/recall_at_{k}"] for k in (1, 2, 4, 8)]
        assert curve == sorted(curve) and 0.0 <= curve[0] and curve[-1] <= 1.0, run.info.run_name


def test_a_trial_asking_for_more_than_the_machine_has_is_refused(workdir):
    path = write_sweep(workdir, "greedy", num_samples=1, epochs=1, resources={"cpus": 1, "gpus": 1})
    with pytest.raises(ResourcesUnavailable, match="resources.gpus"):
        runner.run_sweep(load_sweep(path), num_cpus=2)
    _, parents, children = runs_of(f"sqlite:///{workdir / 'mlflow.db'}", "greedy")
    assert parents == [] and children == []  # refused before any study started
