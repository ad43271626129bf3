"""How the scheduler treated the search: survival at each ASHA rung, and the intermediate
values (the objective per epoch) of every searched trial."""

from __future__ import annotations

from typing import Iterable

import pandas as pd
import plotly.graph_objects as go

from dashboards.figures import OUTCOME_COLORS, epoch_axis, search_trials, style
from dashboards.records import SEARCH, StudyRecords, TrialRecord

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#d62728")


def reached_epochs(trials: Iterable[TrialRecord], history: pd.DataFrame | None) -> dict[str, int]:
    """``{trial_id: epochs it ran}``: the larger of ``TrialRecord.epochs`` and its last epoch in
    ``history``."""
    last: dict[str, int] = {}
    if history is not None and not history.empty and {"trial_id", "epoch"} <= set(history.columns):
        epochs = pd.to_numeric(history["epoch"], errors="coerce")
        for trial_id, value in epochs.groupby(history["trial_id"]).max().items():
            if pd.notna(value):
                last[str(trial_id)] = int(value)
    return {t.trial_id: max(int(t.epochs or 0), last.get(t.trial_id, 0)) for t in trials}


def rung_survival(trials: Iterable[TrialRecord], history: pd.DataFrame | None,
                  milestones: Iterable[int]) -> pd.DataFrame:
    """Per milestone (epochs, ascending), over the SEARCH trials among ``trials``:

    - ``entered``: trials that reached it (ran at least that many epochs);
    - ``promoted``: trials that went beyond it (ran more epochs);
    - ``stopped``: pruned trials stopped at it, i.e. that reached it but not the next milestone
      (the last milestone: that reached it).

    Columns ``milestone``, ``entered``, ``promoted``, ``stopped``; one row per milestone.
    """
    searched = [t for t in trials if t.role == SEARCH]
    reached = reached_epochs(searched, history)
    rungs = sorted({int(m) for m in milestones})
    rows = []
    for i, m in enumerate(rungs):
        upper = rungs[i + 1] if i + 1 < len(rungs) else None
        entered = [t for t in searched if reached[t.trial_id] >= m]
        rows.append({
            "milestone": m,
            "entered": len(entered),
            "promoted": sum(reached[t.trial_id] > m for t in entered),
            "stopped": sum(t.outcome == "pruned" and (upper is None or reached[t.trial_id] < upper) for t in entered),
        })
    return pd.DataFrame(rows, columns=["milestone", "entered", "promoted", "stopped"])


def rung_survival_figure(study: StudyRecords) -> go.Figure | None:
    """Bars per milestone: trials that entered, were promoted, were stopped there (None when no
    searched trial reached the first milestone)."""
    if not study.milestones or not study.by_role(SEARCH):
        return None
    df = rung_survival(study.trials, study.history, study.milestones)
    if not df["entered"].any():
        return None
    x = [f"epoch {m}" for m in df["milestone"]]
    fig = go.Figure()
    for column, color in (("entered", "#1f77b4"), ("promoted", "#2ca02c"), ("stopped", "#9a9a9a")):
        fig.add_trace(go.Bar(x=x, y=df[column], name=column, marker_color=color, text=df[column],
                             textposition="outside"))
    fig.update_layout(barmode="group")
    fig = style(fig, f"Rung survival (ASHA milestones {', '.join(map(str, df['milestone']))})",
                x="milestone", y="search trials")
    fig.update_yaxes(tickformat="d", rangemode="tozero")
    return fig


def intermediate_values(study: StudyRecords) -> go.Figure | None:
    """The objective's metric per epoch of every searched trial: finished ones coloured, pruned
    ones thin and grey, the others (diverged, failed, lost, unfinished) dotted; milestones as
    vertical lines."""
    h = study.history
    if h is None or h.empty or study.metric not in h.columns or not {"trial_id", "epoch"} <= set(h.columns):
        return None
    fig = go.Figure()
    shown_legend: set[str] = set()
    max_epoch, colour = 0, 0
    for t in search_trials(study):
        rows = h[h["trial_id"] == t.trial_id].sort_values("epoch")
        y = pd.to_numeric(rows[study.metric], errors="coerce")
        if y.notna().sum() == 0:
            continue
        x = pd.to_numeric(rows["epoch"], errors="coerce")
        max_epoch = max(max_epoch, int(x.max()) if x.notna().any() else 0)
        outcome = t.outcome or "unfinished"
        group = outcome if outcome in ("finished", "pruned") else "other"
        if group == "finished":
            line = {"width": 2, "color": PALETTE[colour % len(PALETTE)]}
            colour += 1
        elif group == "pruned":
            line = {"width": 1, "color": "#b0b0b0"}
        else:
            line = {"width": 1, "color": OUTCOME_COLORS.get(outcome, "#d62728"), "dash": "dot"}
        label = f"#{t.number}" if t.number is not None else t.run_name
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", marker={"size": 3 if group != "finished" else 5}, line=line,
            name=group, legendgroup=group, showlegend=group not in shown_legend,
            opacity=1.0 if group == "finished" else 0.8,
            hovertemplate=f"{label} ({outcome})<br>epoch %{{x}}: %{{y:.4g}}<extra></extra>"))
        shown_legend.add(group)
    if not fig.data:
        return None
    for m in study.milestones:
        fig.add_vline(x=m, line={"dash": "dot", "color": "#888", "width": 1})
    fig = style(fig, f"Intermediate values: {study.metric} per epoch (search trials)", y=study.metric)
    fig.update_xaxes(**epoch_axis(max_epoch))
    return fig

