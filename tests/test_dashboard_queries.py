"""The pieces of ``dashboards.queries`` and ``sweeplab.confirm`` that need no store: ASHA's rungs
as Tune builds them, and which configurations a confirmation re-runs (the whole path runs on a
real sweep in tests/test_report.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from ray.tune.schedulers import ASHAScheduler

from dashboards.queries import asha_milestones, history_frame
from sweeplab.confirm import ConfirmNamer, confirmation_seeds, select_candidates
from sweeplab.context import CONTEXT_KEY
from sweeplab.spaces import Param


def _study(method="ce", space=None, metric="val/acc", mode="max"):
    return SimpleNamespace(method=method, space=space or {}, metric=metric, mode=mode)


@pytest.mark.parametrize("grace, factor, max_t", [(1, 2, 8), (2, 2, 8), (2, 3, 30), (5, 2, 12), (3, 4, 3)])
def test_the_reports_rungs_are_the_ones_tunes_asha_builds(grace, factor, max_t):
    sweep = SimpleNamespace(scheduler=SimpleNamespace(name="asha", grace_period=grace, reduction_factor=factor))
    study = _study(space={"epochs": Param("fixed", value=max_t)})
    tune_rungs = ASHAScheduler(time_attr="epoch", metric="m", mode="max", max_t=max_t, grace_period=grace,
                               reduction_factor=factor)._brackets[0]._rungs
    assert asha_milestones(sweep, study) == tuple(sorted(int(m) for m, _ in tune_rungs))


def test_no_rungs_without_asha():
    sweep = SimpleNamespace(scheduler=SimpleNamespace(name="fifo", grace_period=1, reduction_factor=2))
    assert asha_milestones(sweep, _study()) == ()


def _trial(trial_id, epochs, best, planned=4, tag="1", metric="val/acc"):
    config = {"lr": 0.1, "epochs": planned, CONTEXT_KEY: {"method": "ce", "dataset": {}, "seed": 0}}
    return SimpleNamespace(trial_id=trial_id, experiment_tag=tag, status="TERMINATED", config=config,
                           last_result={"epoch": epochs, f"best/{metric}": best})


def test_confirmation_takes_the_best_finished_trials_and_pruned_ones_only_when_none_finished():
    analysis = SimpleNamespace(trials=[_trial("a", 4, 0.80, tag="1"), _trial("b", 2, 0.95, tag="2"),
                                       _trial("c", 4, 0.85, tag="3"), _trial("d", 4, 0.70, tag="4")],
                               trial_dataframes={})
    chosen = select_candidates(analysis, _study(), top=2)
    assert [(c.rank, c.trial_id, c.objective) for c in chosen] == [(1, "c", 0.85), (2, "a", 0.80)]
    assert chosen[0].run_name == "ce_t02_c" and CONTEXT_KEY not in chosen[0].config
    only_pruned = SimpleNamespace(trials=[_trial("b", 2, 0.95), _trial("e", 1, 0.5)], trial_dataframes={})
    assert [c.trial_id for c in select_candidates(only_pruned, _study(), top=1)] == ["b"]
    low = SimpleNamespace(trials=[_trial("a", 4, 0.3, metric="val/loss"), _trial("c", 4, 0.2, metric="val/loss")],
                          trial_dataframes={})
    assert [c.trial_id for c in select_candidates(low, _study(metric="val/loss", mode="min"), top=1)] == ["c"]


def test_confirmation_seeds_are_new_and_shared_and_named_in_the_run():
    assert confirmation_seeds(SimpleNamespace(seed=7), 3) == [8, 9, 10]
    trial = SimpleNamespace(trial_id="ab12_00001", config={CONTEXT_KEY: {"method": "ce", "dataset": {}, "seed": 9}})
    assert ConfirmNamer("scn", 2)(trial) == "scn_c2_s9_ab12_00001"


def test_history_keeps_the_metrics_not_tunes_copy_of_the_config():
    frame = history_frame("t1", pd.DataFrame({"epoch": [1], "val/acc": [0.5], "config/lr": [0.1], "time": [3]}))
    assert list(frame.columns) == ["trial_id", "epoch", "val/acc"]
