"""One place decides a trial's outcome and names its run; the summary table reads it."""

from __future__ import annotations

import pytest

from sweeplab.context import CONTEXT_KEY
from sweeplab.results import (OUTCOMES, StudyResult, format_summary, planned_epochs, trial_outcome,
                              trial_run_name)


@pytest.mark.parametrize("status, last, planned, outcome", [
    ("TERMINATED", {"epoch": 4}, 4, "finished"),
    ("TERMINATED", {"epoch": 2}, 4, "pruned"),  # a scheduler stopped it
    ("TERMINATED", {"epoch": 4, "diverged": 1.0}, 4, "diverged"),  # at the last epoch too
    ("TERMINATED", {"epoch": 1, "diverged": 1.0}, 4, "diverged"),
    ("ERROR", {"epoch": 3}, 4, "failed"),
    ("ERROR", {}, 4, "failed"),
    ("RUNNING", {"epoch": 2}, 4, None),  # interrupted with the sweep: not ended
    ("PAUSED", {"epoch": 2}, 4, None),
    ("PENDING", None, 4, None),
    ("TERMINATED", {}, 4, None),  # never reported an epoch
])
def test_a_trials_outcome(status, last, planned, outcome):
    assert trial_outcome(last, planned, status) == outcome
    assert outcome is None or outcome in OUTCOMES


def test_planned_epochs_from_the_config_else_the_methods_default():
    assert planned_epochs({"epochs": 7, CONTEXT_KEY: {"method": "ce", "dataset": {}}}) == 7
    assert planned_epochs({CONTEXT_KEY: {"method": "ce", "dataset": {}}}) == 10  # the engine's default
    assert planned_epochs({}, "scn") == 10
    assert planned_epochs({"epochs": 3}, "scn") == 3


def test_run_names():
    assert trial_run_name("scn", "a1b2c3d4_00001") == "scn_a1b2c3d4_00001"


def test_summary_table_lists_the_best_trial_and_how_to_open_the_results():
    result = StudyResult("ce", "val/acc", "max", 4, trials=4, finished=2, pruned=1, failed=1, complete=True,
                         best={"trial_id": "t1", "run_id": "r1", "value": 0.91234, "config": {"lr": 0.00123},
                               "metrics": {"best/test/acc": 0.9}})
    table = format_summary([result, StudyResult("scn", "val/acc", "max", 4)], "mlflow ui --port 5000")
    lines = table.splitlines()
    assert lines[2].split()[:5] == ["ce", "4/4", "(2/1/0/1)", "val/acc", "(max)"]
    assert "0.9123" in lines[2] and "lr=0.00123" in lines[2] and "r1" in lines[2]
    assert lines[3].startswith("scn (incomplete)")
    assert lines[-1] == "Open the results:  mlflow ui --port 5000"


class _Trial:
    def __init__(self, trial_id, tag=""):
        self.trial_id, self.experiment_tag = trial_id, tag


def test_run_names_carry_the_trial_number_tune_gave_it():
    from sweeplab.results import run_name_of, trial_number

    assert trial_run_name("ce", "1736deee", 9) == "ce_t09_1736deee"
    assert trial_number(_Trial("1736deee", "10_lr=0.01")) == 9  # a searcher's trials: tags count from 1
    assert trial_number(_Trial("f360f_00003", "3_lr=0.01")) == 3  # Tune's own variants: 0-based ids
    assert trial_number(_Trial("1736deee", "")) is None
    assert run_name_of("scn", _Trial("1736deee", "1")) == "scn_t00_1736deee"


def test_a_trials_objective_is_its_best_epoch():
    import pandas as pd

    from sweeplab.results import trial_objective

    history = pd.DataFrame({"val/acc": [0.5, 0.8, 0.7]})
    assert trial_objective({"best/val/acc": 0.8, "val/acc": 0.7}, None, "val/acc", "max") == 0.8
    assert trial_objective({"val/acc": 0.7}, history, "val/acc", "max") == 0.8  # a run from before best/ was reported
    assert trial_objective({}, pd.DataFrame({"val/loss": [0.5, 0.3, 0.4]}), "val/loss", "min") == 0.3
    assert trial_objective({"best/val/acc": float("nan")}, None, "val/acc", "max") is None


def test_the_parent_runs_note_says_what_the_study_searched_and_found():
    from types import SimpleNamespace

    from sweeplab.results import study_note

    sweep = SimpleNamespace(name="noisy", dataset={"name": "noisy_digits"}, search=SimpleNamespace(sampler="tpe"),
                            scheduler=SimpleNamespace(name="asha"))
    result = StudyResult("ce", "val/acc", "max", 8, trials=8, finished=3, pruned=5, complete=True,
                         best={"trial_id": "a1", "run_name": "ce_t02_a1", "value": 0.9123, "config": {"lr": 0.01},
                               "metrics": {"best/test/acc": 0.9}})
    note = study_note(sweep, result)
    assert "`val/acc` (max), each trial's best epoch" in note and "3 finished, 5 pruned" in note
    assert "`ce_t02_a1`: val/acc = 0.9123, test/acc = 0.9 with lr=0.01" in note
