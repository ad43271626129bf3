"""The leaderboard's statistics: bootstrap intervals, paired t-tests and the rows themselves.

Pure functions over ``dashboards.records``; nothing here reads a store.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from dashboards.records import CONFIRM, LeaderboardRow, StudyRecords, SweepRecords

_RESAMPLES = 10_000


def _spread_is_zero(x: np.ndarray, scale: float) -> bool:
    """All of ``x`` equal up to rounding (relative to ``scale``, the inputs' magnitude)."""
    return float(np.ptp(x)) <= 1e-10 * max(scale, 1.0)


def bootstrap_mean_ci(
    values: Sequence[float], level: float = 0.95, resamples: int = _RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values``.

    Resamples with ``scipy.stats.bootstrap`` (vectorised, ``numpy`` Generator seeded with
    ``seed``, so the same call gives the same interval). One value, or values all equal,
    give ``(v, v)``. The interval is clipped to the values' range, which a resampled mean
    can never leave (only rounding could push it out).

    Be aware how little this says with few values: a percentile bootstrap can only take
    values within the data's range, and with 3 values the 95% interval is in practice the
    range itself (each extreme is resampled three times over with chance 1/27 > 2.5%). It is
    a summary of the spread of the seeds, not a trustworthy inference about the true mean.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_mean_ci needs a non-empty 1-D sequence of finite numbers")
    lo, hi = float(x.min()), float(x.max())
    if x.size == 1 or _spread_is_zero(x, float(np.abs(x).max())):
        v = float(np.clip(x.mean(), lo, hi))
        return (v, v)
    res = stats.bootstrap(
        (x,), np.mean, n_resamples=resamples, confidence_level=level, method="percentile",
        vectorized=True, rng=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    return (float(np.clip(ci.low, lo, hi)), float(np.clip(ci.high, lo, hi)))


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of a paired t-test (``scipy.stats.ttest_rel``) of ``a`` against ``b``.

    None with fewer than 2 pairs. When every difference is the same (zero variance, where
    scipy gives NaN or a rounding-driven value) the test is decided by hand: 0.0 if that
    common difference is non-zero (perfectly consistent), 1.0 if it is zero (no difference).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("paired_t_test needs two 1-D sequences of the same length")
    if x.size < 2:
        return None
    d = x - y
    scale = float(max(np.abs(x).max(), np.abs(y).max()))
    if _spread_is_zero(d, scale):
        return 1.0 if abs(float(d.mean())) <= 1e-10 * max(scale, 1.0) else 0.0
    return float(stats.ttest_rel(x, y).pvalue)


def confirmation_values(study: StudyRecords, candidate: int = 1) -> dict[int, tuple[float, float]]:
    """seed -> (test, objective) of the study's finished confirmation runs of ``candidate``.

    Runs without a seed, test or objective value are left out; a seed run twice (a retry)
    keeps the later trial in ``study.trials``.
    """
    out: dict[int, tuple[float, float]] = {}
    for t in study.by_role(CONFIRM):
        if t.candidate != candidate or t.outcome != "finished":
            continue
        if t.seed is None or t.test is None or t.objective is None:
            continue
        out[t.seed] = (float(t.test), float(t.objective))
    return out


def _std(x: Sequence[float]) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def _row(study: StudyRecords) -> LeaderboardRow | None:
    values = confirmation_values(study)
    if not values:
        return None
    seeds = sorted(values)
    test = [values[s][0] for s in seeds]
    val = [values[s][1] for s in seeds]
    config = next(
        t.params for t in reversed(study.by_role(CONFIRM))
        if t.candidate == 1 and t.outcome == "finished" and t.seed in values
    )
    return LeaderboardRow(
        method=study.method, config=dict(config), seeds=seeds, test=test, val=val,
        test_mean=float(np.mean(test)), test_std=_std(test), test_ci=bootstrap_mean_ci(test),
        val_mean=float(np.mean(val)), val_std=_std(val), baseline=study.baseline,
    )


def leaderboard(records: SweepRecords | list[StudyRecords], alpha: float | None = None) -> list[LeaderboardRow]:
    """One row per study with confirmation runs (candidate 1), best test mean first.

    Each non-baseline row is paired with the baseline (the study marked ``baseline``) on the
    seeds both ran. ``significant``: paired p < ``alpha`` and the difference in the mode's
    good direction; ``winner``: the significant row with the best difference. ``alpha``
    defaults to ``records.alpha`` for a ``SweepRecords``, else 0.05. Studies of mixed modes
    keep their order.
    """
    if isinstance(records, SweepRecords):
        studies, alpha = records.studies, records.alpha if alpha is None else alpha
    else:
        studies, alpha = list(records), 0.05 if alpha is None else alpha
    for s in studies:
        if s.mode not in ("max", "min"):
            raise ValueError(f"study {s.method!r}: mode must be 'max' or 'min', not {s.mode!r}")
    rows = [(s, r) for s in studies if (r := _row(s)) is not None]
    base = next((r for s, r in rows if s.baseline), None)
    best: tuple[LeaderboardRow, float] | None = None
    for study, row in rows:
        if base is None or row is base:
            continue
        mine, theirs = dict(zip(row.seeds, row.test)), dict(zip(base.seeds, base.test))
        paired = sorted(set(mine) & set(theirs))
        row.paired_seeds = len(paired)
        if not paired:
            continue
        d = [mine[s] - theirs[s] for s in paired]
        row.diff = float(np.mean(d))
        row.diff_ci = bootstrap_mean_ci(d)
        row.p_value = paired_t_test([mine[s] for s in paired], [theirs[s] for s in paired])
        sign = 1.0 if study.mode == "max" else -1.0
        row.significant = row.p_value is not None and row.p_value < alpha and sign * row.diff > 0
        if row.significant and (best is None or sign * row.diff > best[1]):
            best = (row, sign * row.diff)
    if best is not None:
        best[0].winner = True
    out = [r for _, r in rows]
    modes = {s.mode for s, _ in rows}
    if len(modes) == 1:
        out.sort(key=lambda r: -r.test_mean if modes == {"max"} else r.test_mean)
    return out


def describe_test(alpha: float = 0.05, level: float = 0.95, resamples: int = _RESAMPLES) -> str:
    """The test, in two plain sentences, for the page and the README."""
    return (
        "Each method's selected configuration is re-run on several seeds, and the table shows its "
        "test metric as the mean ± sample standard deviation over those seeds, with a "
        f"percentile-bootstrap {level:.0%} interval of the mean ({resamples:,} resamples; with "
        "three seeds this is little more than the range of the values). A method is marked as "
        "beating the baseline only when a two-sided paired t-test on the per-seed differences, "
        f"over the seeds both ran, gives p < {alpha:g} and the difference is in its favour; with "
        "so few seeds only a large and consistent difference passes."
    )
