"""dashboards.stats: bootstrap intervals, paired t-tests and the leaderboard, on hand-built records."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest
from scipy import stats as sps

from dashboards.records import CONFIRM, SEARCH, StudyRecords, SweepRecords, TrialRecord
from dashboards.stats import (
    bootstrap_mean_ci,
    confirmation_values,
    describe_test,
    leaderboard,
    paired_t_test,
)


# ---- bootstrap ----

def test_bootstrap_of_three_values_stays_in_their_range():
    lo, hi = bootstrap_mean_ci([1, 2, 3])
    assert 1 <= lo <= 2 <= hi <= 3


def test_bootstrap_degenerate_inputs():
    assert bootstrap_mean_ci([5]) == (5.0, 5.0)
    assert bootstrap_mean_ci([2, 2, 2]) == (2.0, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_mean_ci([0.1, 0.1, 0.1]) == (0.1, 0.1)
    with pytest.raises(ValueError):
        bootstrap_mean_ci([])


def test_bootstrap_is_deterministic_with_a_seed():
    values = [0.71, 0.74, 0.69, 0.80, 0.77]
    assert bootstrap_mean_ci(values, seed=3) == bootstrap_mean_ci(values, seed=3)


def test_bootstrap_higher_level_is_wider():
    values = [float(v) for v in range(1, 21)]
    lo95, hi95 = bootstrap_mean_ci(values, level=0.95)
    lo99, hi99 = bootstrap_mean_ci(values, level=0.99)
    assert lo99 < lo95 < 10.5 < hi95 < hi99


# ---- paired t-test ----

def test_paired_t_test_matches_the_formula():
    a, b = [0.80, 0.82, 0.84], [0.70, 0.73, 0.74]
    d = [0.10, 0.09, 0.10]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    assert mean == pytest.approx(0.096667, abs=1e-6)
    assert sd == pytest.approx(0.005774, abs=1e-6)
    t = mean / (sd / math.sqrt(3))
    assert t == pytest.approx(29.0)
    expected = 2 * sps.t.sf(29.0, df=2)  # = 2 * (1 - t_cdf(29, 2))
    assert expected == pytest.approx(0.0011869, rel=1e-4)
    assert paired_t_test(a, b) == pytest.approx(expected, rel=1e-9)


def test_paired_t_test_zero_variance_and_few_pairs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert paired_t_test([0.8, 0.82, 0.84], [0.7, 0.72, 0.74]) == 0.0  # equal differences (up to rounding)
        assert paired_t_test([3, 4, 5], [1, 2, 3]) == 0.0
        assert paired_t_test([0.5, 0.6, 0.7], [0.5, 0.6, 0.7]) == 1.0
    assert paired_t_test([0.8], [0.7]) is None
    assert paired_t_test([], []) is None


# ---- records by hand ----

def confirm(method: str, seed: int, test: float, objective: float | None = None, *, outcome: str = "finished",
            candidate: int = 1, params: dict | None = None) -> TrialRecord:
    return TrialRecord(
        method=method, trial_id=f"{method}-{seed}-{outcome}", run_name=f"{method}_confirm_{seed}", role=CONFIRM,
        outcome=outcome, params=params or {"lr": 0.1}, objective=test if objective is None else objective,
        test=test, seed=seed, candidate=candidate,
    )


def study(method: str, tests: dict[int, float], *, mode: str = "max", baseline: bool = False,
          extra: list[TrialRecord] | None = None) -> StudyRecords:
    trials = [confirm(method, s, v, v + 0.01) for s, v in tests.items()] + (extra or [])
    return StudyRecords(method=method, task="classification", metric="val/acc", mode=mode, num_samples=8,
                        parent_run_id=None, trials=trials, history=pd.DataFrame(), baseline=baseline)


def by_method(rows):
    return {r.method: r for r in rows}


def test_confirmation_values_filters_and_keeps_the_retry():
    s = study("ce", {1: 0.70, 2: 0.72}, extra=[
        confirm("ce", 3, 0.99, outcome="failed"),
        confirm("ce", 4, 0.50, candidate=2),
        TrialRecord(method="ce", trial_id="s1", run_name="s1", role=SEARCH, outcome="finished",
                    objective=0.9, test=0.9, seed=5),
        TrialRecord(method="ce", trial_id="c6", run_name="c6", role=CONFIRM, outcome="finished",
                    objective=0.6, test=None, seed=6, candidate=1),
        confirm("ce", 2, 0.75, 0.76),  # seed 2 retried: the later one counts
    ])
    assert confirmation_values(s) == {1: (0.70, pytest.approx(0.71)), 2: (0.75, 0.76)}
    assert confirmation_values(s, candidate=2) == {4: (0.50, 0.50)}


def test_consistently_better_method_wins():
    ce = study("ce", {1: 0.70, 2: 0.73, 3: 0.74}, baseline=True)
    scn = study("scn", {3: 0.84, 1: 0.80, 2: 0.82})
    rows = leaderboard([ce, scn])
    assert [r.method for r in rows] == ["scn", "ce"]
    r, b = rows
    assert r.seeds == [1, 2, 3] and r.test == [0.80, 0.82, 0.84]
    assert r.val == pytest.approx([0.81, 0.83, 0.85])
    assert r.test_mean == pytest.approx(0.82) and r.test_std == pytest.approx(0.02)
    assert 0.80 <= r.test_ci[0] <= 0.82 <= r.test_ci[1] <= 0.84
    assert r.config == {"lr": 0.1}
    assert r.paired_seeds == 3
    assert r.diff == pytest.approx(0.29 / 3)
    assert 0.09 - 1e-12 <= r.diff_ci[0] <= r.diff_ci[1] <= 0.10 + 1e-12
    assert r.p_value == pytest.approx(2 * sps.t.sf(29.0, df=2), rel=1e-6)
    assert r.significant and r.winner
    assert b.baseline and not b.winner and b.diff is None and b.p_value is None and b.paired_seeds == 0


def test_inconsistent_difference_is_not_significant():
    ce = study("ce", {1: 0.70, 2: 0.73, 3: 0.74}, baseline=True)
    noisy = study("noisy", {1: 0.85, 2: 0.68, 3: 0.78})  # +0.15, -0.05, +0.04
    rows = by_method(leaderboard([ce, noisy]))
    assert rows["noisy"].diff == pytest.approx(0.14 / 3)
    assert rows["noisy"].p_value > 0.05
    assert not rows["noisy"].significant
    assert not any(r.winner for r in rows.values())


def test_partial_overlap_pairs_on_the_intersection():
    ce = study("ce", {1: 0.70, 2: 0.73, 3: 0.74}, baseline=True)
    part = study("part", {2: 0.80, 3: 0.83, 4: 0.90})
    one = study("one", {3: 0.80, 9: 0.90})
    none = study("none", {7: 0.80})
    rows = by_method(leaderboard([ce, part, one, none]))
    assert rows["part"].paired_seeds == 2 and rows["part"].seeds == [2, 3, 4]
    assert rows["part"].diff == pytest.approx((0.07 + 0.09) / 2)
    assert rows["part"].p_value == pytest.approx(paired_t_test([0.80, 0.83], [0.73, 0.74]))
    assert rows["one"].paired_seeds == 1 and rows["one"].diff == pytest.approx(0.06)
    assert rows["one"].p_value is None and not rows["one"].significant
    assert rows["none"].paired_seeds == 0 and rows["none"].diff is None


def test_min_mode_smaller_is_better():
    ce = study("ce", {1: 0.50, 2: 0.52, 3: 0.55}, mode="min", baseline=True)
    good = study("good", {1: 0.40, 2: 0.43, 3: 0.44}, mode="min")  # always ~0.1 lower
    bad = study("bad", {1: 0.60, 2: 0.63, 3: 0.64}, mode="min")  # always ~0.1 higher
    rows = leaderboard([bad, ce, good])
    assert [r.method for r in rows] == ["good", "ce", "bad"]
    m = by_method(rows)
    assert m["good"].diff < 0 and m["good"].significant and m["good"].winner
    assert m["bad"].diff > 0 and m["bad"].p_value < 0.05 and not m["bad"].significant and not m["bad"].winner


def test_best_significant_method_is_the_only_winner():
    ce = study("ce", {1: 0.70, 2: 0.73, 3: 0.74}, baseline=True)
    a = study("a", {1: 0.80, 2: 0.82, 3: 0.84})
    b = study("b", {1: 0.90, 2: 0.92, 3: 0.95})
    rows = by_method(leaderboard([ce, a, b]))
    assert rows["a"].significant and rows["b"].significant
    assert rows["b"].winner and not rows["a"].winner


def test_studies_without_confirmations_and_failed_runs():
    ce = study("ce", {1: 0.70, 2: 0.73, 3: 0.74}, baseline=True,
               extra=[confirm("ce", 4, 0.10, outcome="failed"), confirm("ce", 5, 0.2, outcome="diverged")])
    empty = study("empty", {}, extra=[confirm("empty", 1, 0.9, outcome="failed")])
    rows = leaderboard([ce, empty])
    assert [r.method for r in rows] == ["ce"]
    assert rows[0].seeds == [1, 2, 3]


def test_no_baseline_no_diffs():
    ce = study("ce", {1: 0.70, 2: 0.73, 3: 0.74})
    scn = study("scn", {1: 0.80, 2: 0.82, 3: 0.84})
    rows = leaderboard([ce, scn])
    assert [r.method for r in rows] == ["scn", "ce"]
    assert all(r.diff is None and r.p_value is None and not r.significant and not r.winner for r in rows)


def test_one_seed_row_and_mixed_modes_keep_order():
    a = study("a", {1: 0.3})
    b = study("b", {1: 0.9}, mode="min")
    rows = leaderboard([a, b])
    assert [r.method for r in rows] == ["a", "b"]
    assert rows[0].test_std == 0.0 and rows[0].test_ci == (0.3, 0.3)


def test_sweep_records_alpha_is_used():
    ce = study("ce", {1: 0.70, 2: 0.73, 3: 0.74}, baseline=True)
    scn = study("scn", {1: 0.80, 2: 0.82, 3: 0.84})  # p ~ 0.0012
    sweep = SweepRecords(sweep="s", description="", location="/tmp/x", dataset={}, tracking_uri="file:x",
                         experiment_id=None, commit=None, created=None, wall_seconds=None, scheduler={},
                         search={}, studies=[ce, scn], alpha=0.001)
    assert not by_method(leaderboard(sweep))["scn"].significant
    assert by_method(leaderboard(sweep, alpha=0.05))["scn"].winner


def test_describe_test():
    text = describe_test()
    assert "paired t-test" in text and "p < 0.05" in text and "bootstrap" in text
    assert text.count(". ") == 1 and text.endswith(".")
