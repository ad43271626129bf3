"""Panels of a task family or a kind of method, chosen by ``StudyRecords.task`` and by which
metric columns the trials report: head / medium / tail mAP (multilabel), Recall@K
(retrieval), relabelling (noisy labels), latent agreement (ambiguous labels), and the
per-class heatmap of ``per_class.json``."""

from __future__ import annotations

import statistics
from typing import Callable

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboards.figures import best_trial, epoch_axis, has_column, number, style, trial_history
from dashboards.records import CONFIRM, StudyRecords, TrialRecord

GROUPS = ("head", "medium", "tail")
RECALL_KS = (1, 2, 4, 8)
RELABEL = ("train/relabel_count", "train/relabel_precision")
AMBIGUITY = ("train/latent_agreement", "train/uncertainty_lambda_corr")
PER_CLASS_VALUES = ("acc", "ap", "recall_at_1")  # the value column of each task's per-class table
PER_CLASS_TABLES = ("best/test", "final/test")  # the first one present is drawn


# -- confirmation mean ± std, else the best trial -----------------------------------------------
def confirm_trials(study: StudyRecords) -> list[TrialRecord]:
    """The confirmation runs of the best configuration (the lowest ``candidate`` present)."""
    confirm = study.by_role(CONFIRM)
    ranks = [t.candidate for t in confirm if t.candidate is not None]
    if ranks:
        confirm = [t for t in confirm if t.candidate == min(ranks)]
    return confirm


def metric_summary(study: StudyRecords, keys: tuple[str, ...]) -> tuple[dict[str, tuple[float, float | None]], str] | None:
    """``({key: (mean, std or None)}, where from)`` of ``keys`` in the trials' ``metrics``: over
    the confirmation seeds when any reports them (std with two seeds or more), else the best
    search trial's values (no std). None when no trial reports any."""
    confirm = [t for t in confirm_trials(study) if any(number(t.metrics.get(k)) is not None for k in keys)]
    out: dict[str, tuple[float, float | None]] = {}
    if confirm:
        for k in keys:
            values = [v for v in (number(t.metrics.get(k)) for t in confirm) if v is not None]
            if values:
                out[k] = (statistics.fmean(values), statistics.stdev(values) if len(values) >= 2 else None)
        return out, f"mean ± std over {len(confirm)} confirmation seed{'s' * (len(confirm) != 1)}"
    best = best_trial(study)
    if best is None:
        return None
    for k in keys:
        value = number(best.metrics.get(k))
        if value is not None:
            out[k] = (value, None)
    if not out:
        return None
    label = f"#{best.number}" if best.number is not None else best.run_name
    return out, f"best search trial {label}, single trial"


def _reports(study: StudyRecords, key: str) -> bool:
    return any(number(t.metrics.get(key)) is not None for t in study.trials)


def _summary_bars(study: StudyRecords, keys: tuple[str, ...], labels: tuple[str, ...], title: str,
                  x: str, y: str, line: bool = False) -> go.Figure | None:
    summary = metric_summary(study, keys)
    if summary is None:
        return None
    values, source = summary
    present = [(label, values[k]) for k, label in zip(keys, labels) if k in values]
    if not present:
        return None
    xs = [p[0] for p in present]
    means = [p[1][0] for p in present]
    stds = [p[1][1] for p in present]
    error = {"type": "data", "array": [s or 0.0 for s in stds], "visible": any(s is not None for s in stds)}
    if line:
        trace = go.Scatter(x=xs, y=means, error_y=error, mode="lines+markers", name=study.method)
    else:
        trace = go.Bar(x=xs, y=means, error_y=error, name=study.method, text=[f"{m:.3f}" for m in means],
                       textposition="outside")
    fig = style(go.Figure(trace), f"{title} ({source})", x=x, y=y)
    return fig


# -- the panels ---------------------------------------------------------------------------------
def group_map_bars(study: StudyRecords) -> go.Figure | None:
    """Test mAP (best epoch) over all classes and the head / medium / tail groups."""
    keys = ("best/test/mAP", *(f"best/test/mAP_{g}" for g in GROUPS))
    return _summary_bars(study, keys, ("all", *GROUPS), "Test mAP by class frequency", "classes", "mAP")


def recall_at_k_curve(study: StudyRecords) -> go.Figure | None:
    """Test Recall@K (best epoch) for K = 1, 2, 4, 8."""
    keys = tuple(f"best/test/recall_at_{k}" for k in RECALL_KS)
    fig = _summary_bars(study, keys, tuple(str(k) for k in RECALL_KS), "Test Recall@K", "K", "Recall@K", line=True)
    if fig is not None:
        fig.update_xaxes(type="category")
    return fig


def _best_trial_lines(study: StudyRecords, columns: tuple[str, ...], title: str,
                      secondary: tuple[str, ...] = ()) -> go.Figure | None:
    trial = best_trial(study)
    if trial is None:
        return None
    h = trial_history(study, trial.trial_id)
    present = [c for c in columns if c in h.columns and pd.to_numeric(h[c], errors="coerce").notna().any()]
    if not present:
        return None
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for c in present:
        fig.add_trace(go.Scatter(x=h["epoch"], y=pd.to_numeric(h[c], errors="coerce"), mode="lines+markers", name=c),
                      secondary_y=c in secondary)
    if number(trial.best_epoch) is not None:
        fig.add_vline(x=trial.best_epoch, line={"dash": "dash", "color": "#2ca02c"})
    label = f"#{trial.number}" if trial.number is not None else trial.run_name
    fig = style(fig, f"{title} — best search trial {label}")
    fig.update_xaxes(**epoch_axis(h["epoch"].max()))
    left = [c for c in present if c not in secondary]
    right = [c for c in present if c in secondary]
    fig.update_yaxes(title_text=", ".join(left) or "value", secondary_y=False)
    fig.update_yaxes(title_text=", ".join(right), secondary_y=True, showgrid=False, visible=bool(right))
    if right:
        fig.update_layout(legend={"x": 1.1, "xanchor": "left"})
    return fig


def relabel_curves(study: StudyRecords) -> go.Figure | None:
    """Noisy labels: labels changed per epoch and the share of changes that were right."""
    return _best_trial_lines(study, RELABEL, "Relabelling per epoch", secondary=("train/relabel_precision",))


def ambiguity_curves(study: StudyRecords) -> go.Figure | None:
    """Ambiguous labels: latent-label agreement and the uncertainty / lambda correlation."""
    return _best_trial_lines(study, AMBIGUITY, "Latent agreement per epoch")


def _per_class_value(row: dict) -> float | None:
    for key in PER_CLASS_VALUES:
        if key in row:
            return number(row[key])
    for key, value in row.items():
        if key not in ("class", "n", "group", "train_images") and number(value) is not None:
            return number(value)
    return None


def per_class_heatmap(study: StudyRecords) -> go.Figure | None:
    """Rows: runs (confirmation seeds first), columns: classes, value: the per-class metric of
    ``best/test`` (``final/test`` when a run has no best state)."""
    by_run = {t.run_id: t for t in study.trials if t.run_id}
    tables = []
    for run_id, doc in (study.per_class or {}).items():
        if not isinstance(doc, dict):
            continue
        split = next((s for s in PER_CLASS_TABLES if isinstance(doc.get(s), dict) and doc[s].get("classes")), None)
        if split is not None:
            tables.append((run_id, split, doc[split]["classes"]))
    if not tables:
        return None

    def order(item):
        t = by_run.get(item[0])
        if t is None:
            return (2, 0, item[0])
        if t.role == CONFIRM:
            return (0, t.seed if t.seed is not None else 0, item[0])
        return (1, t.number or 0, item[0])

    tables.sort(key=order)
    classes: list[str] = []
    for _, _, rows in tables:
        for row in rows:
            name = str(row.get("class"))
            if name not in classes:
                classes.append(name)
    column = {c: i for i, c in enumerate(classes)}
    z, labels, splits = [], [], set()
    for run_id, split, rows in tables:
        line: list[float | None] = [None] * len(classes)
        for row in rows:
            line[column[str(row.get("class"))]] = _per_class_value(row)
        z.append(line)
        splits.add(split)
        t = by_run.get(run_id)
        if t is None:
            labels.append(run_id[:12])
        elif t.role == CONFIRM:
            labels.append(f"seed {t.seed} · {t.run_name}")
        else:
            labels.append(f"#{t.number} · {t.run_name}" if t.number is not None else t.run_name)
    value_name = next((k for k in PER_CLASS_VALUES if any(k in row for row in tables[0][2])), "value")
    fig = go.Figure(go.Heatmap(z=z, x=classes, y=labels, colorscale="Viridis", zmin=0, zmax=1,
                               colorbar={"title": {"text": value_name}},
                               hovertemplate="%{y}<br>class %{x}: %{z:.3f}<extra></extra>"))
    height = max(300, min(720, 140 + 28 * len(labels)))
    fig = style(fig, f"Per-class {value_name} ({' / '.join(sorted(splits))})", height=height, x="class", y="run")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return fig


PANELS: dict[str, Callable[[StudyRecords], go.Figure | None]] = {
    "group-map": group_map_bars,
    "recall-at-k": recall_at_k_curve,
    "relabel": relabel_curves,
    "ambiguity": ambiguity_curves,
    "per-class": per_class_heatmap,
}


def applicable_panels(study: StudyRecords) -> list[str]:
    """The names (keys of ``PANELS``) of the panels that apply to a study, by its task and by
    the columns its trials report."""
    out = []
    if study.task == "multilabel" or any(_reports(study, f"best/test/mAP_{g}") for g in GROUPS):
        out.append("group-map")
    if study.task == "retrieval" or _reports(study, "best/test/recall_at_1"):
        out.append("recall-at-k")
    if any(has_column(study, c) for c in RELABEL):
        out.append("relabel")
    if any(has_column(study, c) for c in AMBIGUITY):
        out.append("ambiguity")
    if study.per_class:
        out.append("per-class")
    return out
