"""The report's figures of one study's search: each function takes records and returns a
``plotly.graph_objects.Figure``, or None when there is nothing to draw.

Figures drawn by ``optuna.visualization`` use ``StudyRecords.optuna_study``; the others are
drawn from the ``TrialRecord`` list and the per-epoch ``history``. Rung survival and the
intermediate values are in ``dashboards.figures_asha``, the task-family panels in
``dashboards.figures_tasks``. Nothing here renders HTML (``dashboards.page`` does).
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from typing import Any, Iterable

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboards.records import SEARCH, StudyRecords, TrialRecord

TEMPLATE = "plotly_white"
HEIGHT = 380
OUTCOME_COLORS = {
    "finished": "#1f77b4",
    "pruned": "#9a9a9a",
    "diverged": "#d62728",
    "failed": "#8c1c13",
    "lost": "#ff7f0e",
    "unfinished": "#bcbd22",
}
FEW_TRIALS = 10  # fewer complete trials than this: parameter importance means little


# -- small helpers ------------------------------------------------------------------------------
def number(value: Any) -> float | None:
    """``value`` as a finite float, else None (None, NaN, inf, not a number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def better(a: float, b: float, mode: str) -> bool:
    return a > b if mode == "max" else a < b


def epoch_axis(max_epoch: float | None = None, title: str = "epoch") -> dict:
    """An integer x axis (at most ~12 ticks)."""
    top = int(max_epoch or 1)
    step = 1
    for candidate in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        step = candidate
        if top / candidate <= 12:
            break
    return {"title": {"text": title}, "tickmode": "linear", "tick0": 0, "dtick": step, "tickformat": "d"}


def style(fig: go.Figure, title: str | None = None, height: int = HEIGHT, x: str | None = None,
          y: str | None = None) -> go.Figure:
    """The report's look: plotly_white, a fixed height, compact margins, titled axes."""
    fig.update_layout(template=TEMPLATE, height=height, margin={"l": 60, "r": 24, "t": 56, "b": 52},
                      legend={"font": {"size": 11}}, font={"size": 12})
    if title is not None:
        fig.update_layout(title={"text": title, "font": {"size": 15}})
    if x is not None:
        fig.update_xaxes(title_text=x)
    if y is not None:
        fig.update_yaxes(title_text=y)
    return fig


@contextlib.contextmanager
def quiet():
    """Optuna's visualization logs warnings (no complete trials, one value per parameter, ...)
    that the report shows as notes instead."""
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def short_metric(name: str) -> str:
    """``val/acc`` -> ``acc``."""
    return name.split("/", 1)[1] if "/" in name else name


# -- trials -------------------------------------------------------------------------------------
def search_trials(study: StudyRecords) -> list[TrialRecord]:
    """The searched trials in the order they were asked for (Optuna's number, else list order)."""
    trials = list(enumerate(study.by_role(SEARCH)))
    trials.sort(key=lambda it: (it[1].number is None, it[1].number if it[1].number is not None else 0, it[0]))
    return [t for _, t in trials]


def best_trial(study: StudyRecords) -> TrialRecord | None:
    """The best searched trial by its objective: among finished trials, else among any with one."""
    for outcomes in (("finished",), None):
        best = None
        for t in search_trials(study):
            value = number(t.objective)
            if value is None or (outcomes and t.outcome not in outcomes):
                continue
            if best is None or better(value, best.objective, study.mode):
                best = t
        if best is not None:
            return best
    return None


def trial_history(study: StudyRecords, trial_id: str) -> pd.DataFrame:
    """One trial's rows of ``history``, by epoch (empty when it has none)."""
    h = study.history
    if h is None or h.empty or "trial_id" not in h.columns or "epoch" not in h.columns:
        return pd.DataFrame(columns=["trial_id", "epoch"])
    return h[h["trial_id"] == trial_id].sort_values("epoch")


def has_column(study: StudyRecords, column: str) -> bool:
    """Whether ``history`` has ``column`` with at least one value."""
    h = study.history
    return h is not None and column in h.columns and pd.to_numeric(h[column], errors="coerce").notna().any()


def optuna_complete(study: StudyRecords) -> list:
    """The optuna study's COMPLETE trials (empty without a study)."""
    if study.optuna_study is None:
        return []
    import optuna

    return study.optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def varying_params(study: StudyRecords) -> list[str]:
    """Parameters of the optuna study taking two values or more over its complete trials."""
    values: dict[str, set] = {}
    for t in optuna_complete(study):
        for k, v in t.params.items():
            values.setdefault(k, set()).add(repr(v))
    return [k for k, v in values.items() if len(v) >= 2]


def importance_ranking(study: StudyRecords) -> dict[str, float]:
    """``{param: importance}``, most important first, over the complete trials; empty when it
    cannot be computed (fewer than 2 complete trials, no parameter that varies)."""
    if len(optuna_complete(study)) < 2 or not varying_params(study):
        return {}
    import optuna

    try:
        with quiet():
            return dict(optuna.importance.get_param_importances(study.optuna_study, params=varying_params(study)))
    except Exception:  # noqa: BLE001 - an importance that fails is a note, not a crash
        return {}


def top_params(study: StudyRecords, k: int = 2) -> list[str]:
    """The ``k`` most important varying parameters (in study order when importance fails)."""
    ranked = list(importance_ranking(study)) or varying_params(study)
    return ranked[:k]


# -- best so far and EDF ------------------------------------------------------------------------
def best_so_far(trials: Iterable[TrialRecord], mode: str) -> pd.DataFrame:
    """Per trial with a finite objective, in the given order: its value and the best so far.
    Columns ``order`` (0-based among those trials), ``number``, ``trial_id``, ``run_name``,
    ``outcome``, ``objective``, ``best``."""
    rows, best = [], None
    for t in trials:
        value = number(t.objective)
        if value is None:
            continue
        best = value if best is None or better(value, best, mode) else best
        rows.append({"order": len(rows), "number": t.number, "trial_id": t.trial_id, "run_name": t.run_name,
                     "outcome": t.outcome or "unfinished", "objective": value, "best": best})
    return pd.DataFrame(rows, columns=["order", "number", "trial_id", "run_name", "outcome", "objective", "best"])


def optimization_history(study: StudyRecords) -> go.Figure | None:
    """Each trial's objective and the best so far: Optuna's plot when its study has complete
    trials, else drawn from the searched TrialRecords."""
    if optuna_complete(study):
        from optuna.visualization import plot_optimization_history

        with quiet():
            fig = plot_optimization_history(study.optuna_study, target_name=study.metric)
        n = len(optuna_complete(study))
        fig = style(fig, f"Best so far — {n} complete trial{'s' * (n != 1)} (Optuna)", x="trial", y=study.metric)
        fig.update_xaxes(tickformat="d")
        return fig
    df = best_so_far(search_trials(study), study.mode)
    if df.empty:
        return None
    x = [n if n is not None and not pd.isna(n) else o for n, o in zip(df["number"], df["order"])]
    fig = go.Figure()
    for outcome, group in df.groupby("outcome", sort=False):
        idx = group.index
        fig.add_trace(go.Scatter(
            x=[x[i] for i in idx], y=group["objective"], mode="markers", name=str(outcome),
            marker={"color": OUTCOME_COLORS.get(str(outcome), "#444"), "size": 8},
            text=group["run_name"], hovertemplate="%{text}<br>trial %{x}: %{y:.4g}<extra></extra>"))
    fig.add_trace(go.Scatter(x=x, y=df["best"], mode="lines", name="best so far", line={"color": "#2ca02c", "shape": "hv"}))
    fig = style(fig, f"Best so far — {len(df)} trial{'s' * (len(df) != 1)} with a value (no Optuna study)",
                x="trial", y=study.metric)
    fig.update_xaxes(tickformat="d")
    return fig


def edf(study: StudyRecords) -> go.Figure | None:
    """The empirical distribution of the objective: Optuna's plot over complete trials, else
    drawn from the searched TrialRecords' objectives."""
    if optuna_complete(study):
        from optuna.visualization import plot_edf

        with quiet():
            fig = plot_edf(study.optuna_study, target_name=study.metric)
        return style(fig, "Empirical distribution of the objective (Optuna, complete trials)",
                     x=study.metric, y="share of trials ≤ value")
    values = sorted(v for v in (number(t.objective) for t in search_trials(study)) if v is not None)
    if not values:
        return None
    share = [(i + 1) / len(values) for i in range(len(values))]
    fig = go.Figure(go.Scatter(x=values, y=share, mode="lines+markers", line={"shape": "hv"}, name=study.method))
    return style(fig, "Empirical distribution of the objective (searched trials)",
                 x=study.metric, y="share of trials ≤ value")


# -- the best trial's curves --------------------------------------------------------------------
_NOT_CURVES = ("trial_id", "epoch", "training_iteration", "timestamp", "time_", "done", "best/", "test", "iterations")


def curve_columns(history: pd.DataFrame) -> list[str]:
    """The per-epoch metric columns of a trial's history that have two values or more."""
    out = []
    for c in history.columns:
        name = str(c)
        if any(name == p or name.startswith(p) for p in _NOT_CURVES):
            continue
        if pd.to_numeric(history[c], errors="coerce").notna().sum() >= 2:
            out.append(name)
    return out


def best_trial_curves(study: StudyRecords, trial: TrialRecord | None = None) -> go.Figure | None:
    """The best searched trial's per-epoch curves (losses on the right axis, the other metrics on
    the left), with its best epoch marked. Curves beyond the objective and the losses start
    hidden (click the legend)."""
    trial = trial or best_trial(study)
    if trial is None:
        return None
    h = trial_history(study, trial.trial_id)
    columns = curve_columns(h)
    if h.empty or not columns:
        return None
    epochs = pd.to_numeric(h["epoch"], errors="coerce")
    objective_split = study.metric.split("/", 1)[0]
    train_twin = "train/" + short_metric(study.metric)
    shown = {study.metric, train_twin, "train/loss", f"{objective_split}/loss", "val/loss"}
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for c in columns:
        loss = "loss" in short_metric(c)
        fig.add_trace(go.Scatter(
            x=epochs, y=pd.to_numeric(h[c], errors="coerce"), mode="lines+markers", name=c,
            line={"width": 3 if c == study.metric else 1.6, "dash": "dot" if loss else "solid"},
            marker={"size": 4}, visible=True if c in shown else "legendonly"), secondary_y=loss)
    best_epoch = number(trial.best_epoch)
    if best_epoch is not None:
        fig.add_vline(x=best_epoch, line={"dash": "dash", "color": "#2ca02c"},
                      annotation_text=f"best epoch {int(best_epoch)}", annotation_position="bottom right")
        value = number(trial.objective)
        if value is not None:
            fig.add_trace(go.Scatter(x=[best_epoch], y=[value], mode="markers", name="best epoch",
                                     marker={"symbol": "star", "size": 14, "color": "#2ca02c"}),
                          secondary_y="loss" in short_metric(study.metric))
    label = f"#{trial.number}" if trial.number is not None else trial.run_name
    fig = style(fig, f"Best search trial {label} ({trial.run_name}): curves per epoch")
    fig.update_xaxes(**epoch_axis(epochs.max()))
    fig.update_yaxes(title_text="metric", secondary_y=False)
    fig.update_yaxes(title_text="loss", secondary_y=True, showgrid=False)
    fig.update_layout(legend={"x": 1.1, "xanchor": "left"})
    return fig


# -- optuna.visualization: importance, parallel coordinates, slice, contour --------------------
def param_importance(study: StudyRecords) -> go.Figure | None:
    """Optuna's parameter importance over the complete trials, their number in the title; None
    when it cannot be computed (see ``importance_ranking``)."""
    params = varying_params(study)
    n = len(optuna_complete(study))
    if n < 2 or not params:
        return None
    from optuna.visualization import plot_param_importances

    with quiet():
        fig = plot_param_importances(study.optuna_study, params=params, target_name=study.metric)
    if not fig.data:
        return None
    few = " — few trials" if n < FEW_TRIALS else ""
    return style(fig, f"Parameter importance ({n} complete trials{few})", x="importance", y="parameter")


def parallel_coordinate(study: StudyRecords) -> go.Figure | None:
    """Optuna's parallel coordinates over the complete trials (log axes for log
    distributions, categorical axes for categorical ones)."""
    if not optuna_complete(study):
        return None
    from optuna.visualization import plot_parallel_coordinate

    with quiet():
        fig = plot_parallel_coordinate(study.optuna_study, target_name=study.metric)
    if not fig.data:
        return None
    return style(fig, f"Parallel coordinates ({len(optuna_complete(study))} complete trials)", height=420)


def slice_plot(study: StudyRecords, params: list[str] | None = None) -> go.Figure | None:
    """Optuna's slice plot of ``params`` (default: the two most important)."""
    params = params if params is not None else top_params(study)
    if not params or not optuna_complete(study):
        return None
    from optuna.visualization import plot_slice

    with quiet():
        fig = plot_slice(study.optuna_study, params=list(params), target_name=study.metric)
    if not fig.data:
        return None
    fig = style(fig, "Slice: " + ", ".join(params))
    fig.update_yaxes(title_text=study.metric, col=1)
    return fig


def contour_plot(study: StudyRecords, params: list[str] | None = None) -> go.Figure | None:
    """Optuna's contour of the two most important parameters (None with fewer than two)."""
    params = params if params is not None else top_params(study)
    if params is None or len(params) < 2 or not optuna_complete(study):
        return None
    from optuna.visualization import plot_contour

    with quiet():
        fig = plot_contour(study.optuna_study, params=list(params[:2]), target_name=study.metric)
    if not fig.data:
        return None
    return style(fig, f"Contour: {params[0]} × {params[1]}")
