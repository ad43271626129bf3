"""A reduced demo, end to end: the search, its confirmation on new seeds, the report opened in a
real browser with the network blocked, and the records MLflow, Optuna and Tune hold agreeing."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray import tune

from browser import require_browser, visit
from conftest import runs_of, write_sweep
from sweeplab.objective import objective_metric
from sweeplab.storage import JOURNAL_FILE
from sweeplab.trainable import run_trial

pytestmark = pytest.mark.integration
SWEEPLAB = [sys.executable, "-m", "sweeplab.cli"]
LEADERBOARD = """[...document.querySelectorAll('#leaderboard tr[data-method]')].map(tr => ({
    method: tr.dataset.method, winner: tr.classList.contains('winner'),
    test_mean: Number(tr.querySelector('[data-field=test_mean]').dataset.value),
    seeds: Number(tr.querySelector('[data-field=seeds_n]').dataset.value)}))"""


def test_a_confirmed_sweep_reports_offline_and_every_tool_agrees_on_each_trial(workdir, tmp_path):
    require_browser()
    path = write_sweep(
        workdir, "report", num_samples=4, epochs=3,
        methods={"scn": {"num_samples": 4, "overrides": {"epochs": 3, "relabel_epoch": 2}}},
        confirm={"seeds": 2},
    )
    done = subprocess.run(SWEEPLAB + ["run", str(path), "--num-cpus", "2"], cwd=workdir, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = re.search(r"^Report: (.+report\.html)$", done.stdout, re.M)
    assert report, done.stdout[-2000:]
    run_dir = next((workdir / "sweeplab_results" / "report").iterdir())

    # MLflow: objective on the parent runs, every trial a child, confirmation runs tagged as such
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    c, parents, children = runs_of(uri, "report")
    assert {p.data.tags["sweeplab.method"] for p in parents} == {"ce", "scn"}
    for parent in parents:
        tags = parent.data.tags
        assert (tags["sweeplab.objective"], tags["sweeplab.mode"], tags["sweeplab.selection"]) == \
            ("val/acc", "max", "best epoch")
        assert "Objective" in tags["mlflow.note.content"] and tags["sweeplab.confirm.seeds"] == "1,2"
        assert "report.html" in {a.path for a in c.list_artifacts(parent.info.run_id)}
        assert c.get_run(tags["sweeplab.best_run_id"]).data.tags["sweeplab.best"] == "true"
    search = [r for r in children if r.data.tags.get("sweeplab.role") != "confirm"]
    confirm = [r for r in children if r.data.tags.get("sweeplab.role") == "confirm"]
    assert len(search) == 8 and len(confirm) == 4
    for run in search:
        tags, params = run.data.tags, run.data.params
        method = tags["sweeplab.method"]
        assert re.fullmatch(rf"{method}_t0[0-3]_[0-9a-f]{{8}}", run.info.run_name), run.info.run_name
        status = tags["sweeplab.status"]
        assert status in ("finished", "pruned") and run.info.status == "FINISHED"  # pruned is not a failure
        assert "train/lr" in run.data.metrics and "lr" not in run.data.metrics
        assert ("momentum" in params) == (params["optimizer"] == "sgd")  # only what applies is logged
        assert ("adam_eps" in params) == (params["optimizer"] != "sgd")
        assert not any(k.startswith("lr_step") for k in params)  # cosine schedule
    for run in confirm:
        tags = run.data.tags
        assert re.fullmatch(rf"{tags['sweeplab.method']}_c1_s[12]_\w+", run.info.run_name), run.info.run_name
        assert tags["sweeplab.seed"] == run.data.params["seed"] and tags["sweeplab.status"] == "finished"

    # Optuna and Tune hold the same objective as MLflow for each trial: its best epoch's val/acc
    by_trial = {r.data.tags["sweeplab.trial_id"]: r for r in search}
    journal = JournalStorage(JournalFileBackend(str(run_dir / JOURNAL_FILE)))
    for method in ("ce", "scn"):
        study = optuna.load_study(study_name=f"report.{method}", storage=journal)
        assert study.metric_names == [objective_metric("val/acc")]
        for trial in study.trials:
            run = by_trial[trial.user_attrs["ray_trial_id"]]
            assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
            assert run.data.tags["sweeplab.optuna_trial"] == str(trial.number)
            assert f"_t{trial.number:02d}_" in run.info.run_name
            mlflow_value = run.data.metrics["best/val/acc"]
            optuna_value = trial.value if trial.value is not None else max(trial.intermediate_values.values())
            assert optuna_value == pytest.approx(mlflow_value)
            history = [m.value for m in c.get_metric_history(run.info.run_id, "val/acc")]
            assert mlflow_value == pytest.approx(max(history))  # the best epoch, not the last
        grid = tune.Tuner.restore(str(run_dir / method), trainable=run_trial).get_results()
        best = grid.get_best_result()  # the experiment's default metric and mode: the objective
        assert best.metrics["best/val/acc"] == pytest.approx(
            max(r.data.metrics["best/val/acc"] for r in search if r.data.tags["sweeplab.method"] == method))

    # the page: offline, every figure drawn, the leaderboard's numbers MLflow's
    shot = tmp_path / "report.png"
    page = visit(run_dir / "report.html", screenshot=shot, width=1400, evaluate=LEADERBOARD)
    assert page.console_errors == [] and page.page_errors == []
    assert page.outside_requests == []
    assert page.plot_divs >= 10 and page.svg_count == page.plot_divs and page.plots_settled
    assert shot.stat().st_size > 50_000
    rows = {row["method"]: row for row in page.evaluated}
    assert set(rows) == {"ce", "scn"}
    for method, row in rows.items():
        tests = [r.data.metrics["best/test/acc"] for r in confirm if r.data.tags["sweeplab.method"] == method]
        assert row["seeds"] == 2 and row["test_mean"] == pytest.approx(statistics.mean(tests), abs=1e-12)
    assert not rows["ce"]["winner"]  # the baseline never wins against itself
    marks = {p.data.tags["sweeplab.method"]: c.get_run(p.info.run_id).data.tags for p in parents}
    assert marks["ce"]["sweeplab.leaderboard"] == "baseline"
    assert marks["scn"]["sweeplab.leaderboard"] == ("winner" if rows["scn"]["winner"] else "not significant")
    assert float(marks["scn"]["sweeplab.confirmed.test_mean"]) == pytest.approx(rows["scn"]["test_mean"], rel=1e-5)

    # the summary again, at any time
    status = subprocess.run(SWEEPLAB + ["status", "report"], cwd=workdir, capture_output=True, text=True,
                            timeout=120)
    assert status.returncode == 0, status.stderr
    assert "val/acc (max)" in status.stdout and "confirmation on seeds [1, 2]" in status.stdout
