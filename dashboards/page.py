"""One self-contained HTML page of a sweep run: ``render(records)`` -> the page,
``write(records, path)`` -> the file.

plotly.js is inlined once in the head and every figure is a ``<div class="figure"
data-figure="<name>">`` drawn by it: the page makes no network request when opened from disk
(the only links out are the optional MLflow run links). Every piece that cannot be drawn
becomes a short note (``<div class="note" data-note="<name>">``) instead of an error.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any, Callable

import plotly.graph_objects as go
import plotly.offline

from dashboards import figures as F
from dashboards import figures_asha as A
from dashboards import figures_tasks as T
from dashboards.stats import describe_test
from dashboards.records import CONFIRM, SEARCH, LeaderboardRow, StudyRecords, SweepRecords, TrialRecord

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
ERROR_CHARS = 120  # a failed trial's error shown in the trial table (the whole text in its title)
NO_CONFIRM = ("No confirmation runs: run `sweeplab confirm <run folder>` (or add `confirm: {seeds: 3}` to the "
              "sweep file) to compare methods over seeds.")

CSS = """
* { box-sizing: border-box; }
body { margin: 0; font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       font-size: 14px; color: #1d2733; background: #f6f7f9; }
main { max-width: 1440px; margin: 0 auto; padding: 20px 28px 40px; }
h1 { margin: 0 0 4px; font-size: 26px; } h2 { margin: 0 0 6px; font-size: 21px; }
h3 { margin: 22px 0 8px; font-size: 16px; color: #34495e; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 16px 20px; margin: 18px 0; }
code, .mono { font-family: "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; font-size: 12.5px; }
.description { margin: 0 0 12px; color: #4a5866; }
dl.facts { display: grid; grid-template-columns: 130px 1fr; gap: 4px 16px; margin: 0; }
dl.facts dt { font-weight: 600; color: #4a5866; } dl.facts dd { margin: 0; }
.grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px; }
.grid > .figure, .grid > .note, .one > .figure { min-width: 0; }
.figure { border: 1px solid #eceef1; border-radius: 4px; padding: 4px; background: #fff; }
.note { border: 1px dashed #c3c9d1; border-radius: 4px; padding: 10px 14px; color: #4a5866; background: #fafbfc;
        margin: 6px 0; }
.warning { border-left: 4px solid #e69f00; background: #fff8e6; padding: 6px 12px; margin: 6px 0; }
.note.error { border-left: 4px solid #c0392b; background: #fdecea; padding: 6px 12px; margin: 6px 0; }
.chip { display: inline-block; padding: 1px 9px; margin: 0 6px 2px 0; border-radius: 10px; background: #eef1f4; }
.chip b { font-variant-numeric: tabular-nums; }
.chip.finished { background: #dcebf7; } .chip.pruned { background: #ececec; } .chip.diverged { background: #f9dada; }
.chip.failed { background: #f2c9c4; } .chip.lost { background: #fde3c8; } .chip.unfinished { background: #f3f3d2; }
.tag { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px; margin-left: 6px;
       background: #e3e7eb; color: #34495e; vertical-align: 1px; }
.tag.winner { background: #ffe08a; color: #5a4500; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
caption { caption-side: top; text-align: left; padding: 4px 0 8px; color: #4a5866; }
th, td { padding: 5px 9px; border-bottom: 1px solid #e6e9ed; text-align: left; vertical-align: top; }
th { background: #eef1f4; font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) { background: #f8f9fb; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.winner { background: #fff6d6 !important; font-weight: 600; }
td.params { max-width: 420px; overflow-wrap: anywhere; }
td.err { max-width: 320px; color: #8c1c13; overflow-wrap: anywhere; }
.verdict { font-size: 16px; font-weight: 600; margin: 4px 0 10px; }
.explain { color: #4a5866; font-size: 13px; margin: 6px 0 0; }
.missing { color: #9aa3ad; }
footer { color: #4a5866; font-size: 13px; padding: 6px 4px; }
footer code { background: #eef1f4; padding: 1px 5px; border-radius: 3px; }
"""


# -- text helpers -------------------------------------------------------------------------------
def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + compact(value) + "}"
    return str(value)


def compact(values: dict[str, Any] | None) -> str:
    """``{"lr": 0.001, "opt": "sgd"}`` -> ``lr=0.001, opt=sgd`` (sorted by name)."""
    return ", ".join(f"{k}={_value_text(v)}" for k, v in sorted((values or {}).items(), key=lambda kv: str(kv[0])))


def fmt(value: Any, digits: int = 4, signed: bool = False) -> str:
    x = F.number(value)
    if x is None:
        if isinstance(value, float):
            return "NaN" if math.isnan(value) else str(value)
        return "—" if value is None else str(value)
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def fmt_p(value: Any) -> str:
    x = F.number(value)
    if x is None:
        return "—"
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def duration(seconds: float | None) -> str:
    s = F.number(seconds)
    if s is None:
        return "—"
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def _data_value(value: Any) -> str:
    """The full-precision float of a number for a ``data-value`` attribute."""
    try:
        return esc(repr(float(value)))
    except (TypeError, ValueError):
        return ""


def num_span(value: Any, field: str, digits: int = 4, signed: bool = False, text: str | None = None) -> str:
    """A number inside a cell: its text, with ``data-field`` and ``data-value`` (none when missing)."""
    if value is None:
        return f'<span class="missing" data-field="{esc(field)}">—</span>'
    shown = text if text is not None else fmt(value, digits, signed)
    return f'<span data-field="{esc(field)}" data-value="{_data_value(value)}">{esc(shown)}</span>'


def num_cell(value: Any, field: str, digits: int = 4, signed: bool = False, text: str | None = None,
             title: str | None = None) -> str:
    """A cell holding one number: ``data-field`` and ``data-value`` on the cell."""
    tip = f' title="{esc(title)}"' if title else ""
    if value is None:
        return f'<td class="num missing" data-field="{esc(field)}"{tip}>—</td>'
    shown = text if text is not None else fmt(value, digits, signed)
    return f'<td class="num" data-field="{esc(field)}" data-value="{_data_value(value)}"{tip}>{esc(shown)}</td>'


def note(name: str, text: str, kind: str = "note") -> str:
    return f'<div class="{kind}" data-note="{esc(name)}">{esc(text)}</div>'


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


# -- figures ------------------------------------------------------------------------------------
def figure_html(name: str, fig: go.Figure, div_id: str, method: str | None = None) -> str:
    """A figure as a ``<div class="figure" data-figure=name>`` drawn by the inlined plotly.js."""
    height = fig.layout.height or F.HEIGHT
    body = fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False, config=PLOTLY_CONFIG,
                       div_id=div_id, default_height=f"{int(height)}px", default_width="100%")
    data_method = f' data-method="{esc(method)}"' if method is not None else ""
    return f'<div class="figure" data-figure="{esc(name)}"{data_method}>{body}</div>'


class _Figures:
    """Draws figures for one page: unique div ids, and a note for any that cannot be drawn."""

    def __init__(self) -> None:
        self.count = 0

    def panel(self, name: str, build: Callable[[], go.Figure | None], missing: str, method: str | None = None) -> str:
        try:
            fig = build()
        except Exception as exc:  # noqa: BLE001 - a figure that fails is a note, never a broken page
            return note(name, f"{name}: could not be drawn ({type(exc).__name__}: {str(exc)[:200]}).", "note error")
        if fig is None:
            return note(name, missing)
        self.count += 1
        return figure_html(name, fig, f"fig-{self.count}-{_slug(method or '')}-{_slug(name)}", method)


# -- header -------------------------------------------------------------------------------------
def _dataset(dataset: dict[str, Any]) -> str:
    dataset = dataset or {}
    name = dataset.get("name")
    options = dataset.get("options") if isinstance(dataset.get("options"), dict) else {
        k: v for k, v in dataset.items() if k != "name"}
    return f"<b>{esc(name or '—')}</b>" + (f' <span class="mono">{esc(compact(options))}</span>' if options else "")


def _named(section: dict[str, Any], key: str) -> str:
    section = dict(section or {})
    name = section.pop(key, None)
    rest = compact({k: v for k, v in section.items() if v is not None})
    return f"<b>{esc(name or '—')}</b>" + (f' <span class="mono">{esc(rest)}</span>' if rest else "")


def outcome_chips(outcomes: dict[str, int]) -> str:
    return "".join(f'<span class="chip {esc(k)}" data-outcome="{esc(k)}">{esc(k)} <b>{v}</b></span>'
                   for k, v in outcomes.items())


def _header(r: SweepRecords) -> str:
    objectives = "<br>".join(
        f'<b>{esc(s.method)}</b>: <code>{esc(s.metric)}</code> ({esc(s.mode)}) — the best epoch\'s validation value'
        for s in r.studies) or "—"
    budget = " · ".join(f"{esc(s.method)} {s.num_samples} trials" for s in r.studies) or "—"
    commit = f'<code title="{esc(r.commit)}">{esc(r.commit[:8])}</code>' if r.commit else "—"
    created = esc(r.created.replace("T", " ") if r.created else "—")
    return f"""<section id="header">
<h1>{esc(r.sweep)}</h1>
<p class="description">{esc(r.description)}</p>
<dl class="facts">
<dt>dataset</dt><dd>{_dataset(r.dataset)}</dd>
<dt>objective</dt><dd>{objectives}</dd>
<dt>budget</dt><dd>{budget}</dd>
<dt>search</dt><dd>{_named(r.search, "sampler")}</dd>
<dt>scheduler</dt><dd>{_named(r.scheduler, "name")}</dd>
<dt>commit</dt><dd>{commit}</dd>
<dt>created</dt><dd>{created} · wall time {esc(duration(r.wall_seconds))}</dd>
<dt>location</dt><dd><code>{esc(r.location)}</code></dd>
<dt>trials</dt><dd>{outcome_chips(r.outcomes())} <span class="missing">(searched trials, all studies)</span></dd>
</dl>
</section>"""


# -- leaderboard --------------------------------------------------------------------------------
def _metric_of(r: SweepRecords, method: str) -> str | None:
    return next((s.metric for s in r.studies if s.method == method), None)


def _leaderboard_row(r: SweepRecords, row: LeaderboardRow) -> str:
    classes = ["winner"] if row.winner else []
    if row.baseline:
        classes.append("baseline")
    method = ("★ " if row.winner else "") + esc(row.method)
    if row.baseline:
        method += ' <span class="tag">baseline</span>'
    if row.winner:
        method += ' <span class="tag winner">winner</span>'
    per_seed = " · ".join(f"seed {s}: {fmt(v)}" for s, v in zip(row.seeds, row.test))
    test_ci = row.test_ci or (None, None)
    if row.baseline:
        diff = diff_ci = p = '<td class="num missing">baseline</td>'
    else:
        low, high = row.diff_ci or (None, None)
        diff = num_cell(row.diff, "diff", signed=True, title=f"paired seeds: {row.paired_seeds}")
        diff_ci = (f'<td class="num">[{num_span(low, "diff_ci_low", signed=True)}, '
                   f'{num_span(high, "diff_ci_high", signed=True)}]</td>')
        p_text = fmt_p(row.p_value) + (" *" if row.significant else "")
        p = num_cell(row.p_value, "p_value", text=p_text)
    return (
        f'<tr data-method="{esc(row.method)}" class="{" ".join(classes)}">'
        f"<td>{method}</td>"
        f'<td class="params mono">{esc(compact(row.config))}</td>'
        f'{num_cell(len(row.seeds), "seeds_n", text=str(len(row.seeds)), title="seeds: " + ", ".join(map(str, row.seeds)))}'
        f'<td class="num" title="{esc(per_seed)}">{num_span(row.test_mean, "test_mean")} ± '
        f'{num_span(row.test_std, "test_std")}</td>'
        f'<td class="num">[{num_span(test_ci[0], "test_ci_low")}, {num_span(test_ci[1], "test_ci_high")}]</td>'
        f'<td class="num">{num_span(row.val_mean, "val_mean")} ± {num_span(row.val_std, "val_std")}</td>'
        f"{diff}{diff_ci}{p}</tr>"
    )


def _best_trials_table(r: SweepRecords) -> str:
    rows = []
    for s in r.studies:
        t = F.best_trial(s)
        if t is None:
            rows.append(f'<tr data-method="{esc(s.method)}"><td>{esc(s.method)}</td>'
                        f'<td colspan="6" class="missing">no searched trial with a value</td></tr>')
            continue
        rows.append(
            f'<tr data-method="{esc(s.method)}"><td>{esc(s.method)}</td>'
            f'<td class="mono">#{esc(t.number)} · {esc(t.run_name)}</td>'
            f'<td class="params mono">{esc(compact(t.params))}</td>'
            f'{num_cell(t.objective, "objective")}{num_cell(t.best_epoch, "best_epoch", text=str(t.best_epoch))}'
            f'{num_cell(t.test, "test")}<td><span class="tag">single trial, not confirmed</span></td></tr>')
    return ('<table id="best-trials" class="fallback"><caption>Best searched trial of each study '
            "(single trial, not confirmed: its value is one seed's, selected as the best of many)</caption>"
            "<thead><tr><th>method</th><th>trial</th><th>configuration</th><th class=\"num\">objective</th>"
            '<th class="num">best epoch</th><th class="num">test</th><th></th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def verdict(r: SweepRecords) -> str:
    """The leaderboard's answer in one sentence: who wins, or why nobody is called the winner."""
    base = next((row for row in r.leaderboard if row.baseline), None)
    others = [row for row in r.leaderboard if not row.baseline and row.diff is not None]
    if base is None:
        return "No baseline was confirmed: the methods are ranked, not tested against one."
    if not others:
        return f"Only the baseline {base.method} was confirmed: there is nothing to compare it with yet."
    n = len(base.seeds)
    winner = next((row for row in others if row.winner), None)
    if winner is not None:
        return (f"★ {winner.method} beats the baseline {base.method}: Δ test {fmt(winner.diff, signed=True)} "
                f"over {winner.paired_seeds} paired seeds (paired t-test p = {fmt_p(winner.p_value)}).")
    mode = next((s.mode for s in r.studies if s.method == base.method), "max")
    best = max(others, key=lambda row: row.diff if mode == "max" else -row.diff)
    p = f", p = {fmt_p(best.p_value)}" if best.p_value is not None else ""
    return (f"No method beats the baseline {base.method} significantly over {n} seeds (p < {r.alpha:g}): closest is "
            f"{best.method} with Δ test {fmt(best.diff, signed=True)}{p}. More seeds would tell.")


def _leaderboard(r: SweepRecords) -> str:
    if not r.leaderboard:
        return (f'<section id="results"><h2>Leaderboard</h2>{note("leaderboard", NO_CONFIRM)}'
                f"{_best_trials_table(r)}</section>")
    metrics = sorted({m for m in (_metric_of(r, row.method) for row in r.leaderboard) if m})
    metric = ", ".join(F.short_metric(m) for m in metrics) or "the objective's metric"
    caption = (f"Each method's selected configuration re-run on several seeds. test: {esc(metric)} on the test set "
               f"at each run's best-validation epoch; val: the objective ({esc(', '.join(metrics))}). "
               "p: paired t-test across seeds against the baseline (two-sided); * significant.")
    rows = "".join(_leaderboard_row(r, row) for row in r.leaderboard)
    explain = esc(describe_test(alpha=r.alpha)) + (" The Δ interval is the same bootstrap over the per-seed "
                                                   "differences; the winner is marked ★.")
    return f"""<section id="results"><h2>Leaderboard</h2>
<p class="verdict" id="verdict">{esc(verdict(r))}</p>
<table id="leaderboard"><caption>{caption}</caption>
<thead><tr><th>method</th><th>configuration</th><th class="num">seeds</th><th class="num">test mean ± std</th>
<th class="num">test 95% CI</th><th class="num">val mean ± std</th><th class="num">Δ test vs baseline</th>
<th class="num">Δ 95% CI</th><th class="num">p (paired t)</th></tr></thead>
<tbody>{rows}</tbody></table>
<p class="explain">{explain}</p></section>"""


# -- a study ------------------------------------------------------------------------------------
def _sort_key(mode: str):
    def key(t: TrialRecord):
        value = F.number(t.objective)
        return (value is None, 0.0 if value is None else (-value if mode == "max" else value))
    return key


def trial_table(r: SweepRecords, s: StudyRecords) -> str:
    """Every trial of a study (search and confirmation), best objective first."""
    if not s.trials:
        return note("trials", "No trials.")
    rows = []
    for t in sorted(s.trials, key=_sort_key(s.mode)):
        url = r.mlflow_run_url(t.run_id)
        if url:
            run = f'<a href="{esc(url)}" title="{esc(t.run_id)}">{esc(t.run_id[:12])}</a>'
        else:
            run = f'<span title="{esc(t.run_id)}">{esc(t.run_id[:12]) if t.run_id else "—"}</span>'
        outcome = t.outcome or "unfinished"
        error = ""
        if t.error:
            short = t.error if len(t.error) <= ERROR_CHARS else t.error[:ERROR_CHARS - 1] + "…"
            error = f'<span title="{esc(t.error)}">{esc(short)}</span>'
        role = esc(t.role) + (f" (seed {esc(t.seed)})" if t.role == CONFIRM and t.seed is not None else "")
        rows.append(
            f'<tr data-trial-id="{esc(t.trial_id)}" data-run-id="{esc(t.run_id or "")}" class="outcome-{esc(outcome)}">'
            f'{num_cell(t.number, "number", text=str(t.number) if t.number is not None else None)}'
            f'<td class="mono">{esc(t.trial_id)}</td><td class="mono">{run}</td><td>{role}</td>'
            f'<td><span class="chip {esc(outcome)}">{esc(outcome)}</span></td>'
            f'<td class="params mono">{esc(compact(t.params))}</td>'
            f'{num_cell(t.objective, "objective")}'
            f'{num_cell(t.best_epoch, "best_epoch", text=str(t.best_epoch) if t.best_epoch is not None else None)}'
            f'{num_cell(t.epochs, "epochs", text=str(t.epochs))}{num_cell(t.test, "test")}'
            f'<td class="err">{error}</td></tr>')
    return (f'<table class="trials" data-method="{esc(s.method)}"><thead><tr><th class="num">Optuna #</th>'
            "<th>Ray trial</th><th>MLflow run</th><th>role</th><th>outcome</th><th>params</th>"
            f'<th class="num">objective ({esc(s.metric)})</th><th class="num">best epoch</th><th class="num">epochs</th>'
            f'<th class="num">test</th><th>error</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _study_meta(s: StudyRecords) -> str:
    outcomes: dict[str, int] = {}
    for t in s.by_role(SEARCH):
        outcomes[t.outcome or "unfinished"] = outcomes.get(t.outcome or "unfinished", 0) + 1
    n_complete = len(F.optuna_complete(s))
    optuna_text = f"{n_complete} complete in Optuna" if s.optuna_study is not None else "no Optuna study"
    return (f'<p class="meta">{esc(s.task)} · objective <code>{esc(s.metric)}</code> ({esc(s.mode)}) · budget '
            f"{s.num_samples} · {len(s.by_role(SEARCH))} searched, {len(s.by_role(CONFIRM))} confirmation runs · "
            f"{esc(optuna_text)}<br>{outcome_chips(outcomes)}</p>")


def _importance(figs: _Figures, s: StudyRecords) -> str:
    n = len(F.optuna_complete(s))
    if s.optuna_study is None:
        return note("importance", "Parameter importance: no Optuna study (nothing searched by Optuna).")
    if n < 2:
        return note("importance", f"Parameter importance needs at least 2 complete trials (this study has {n}).")
    if not F.varying_params(s):
        return note("importance", "Parameter importance: no searched parameter takes two values or more.")
    warning = ""
    if n < F.FEW_TRIALS:
        warning = note("importance-warning", f"Parameter importance from {n} complete trials only: too few for "
                       "importance to mean much.", "warning")
    body = figs.panel("importance", lambda: F.param_importance(s), "Parameter importance could not be computed.",
                      s.method)
    return f"<div>{body}{warning}</div>"


def _grid(*cells: str) -> str:
    cells = tuple(c for c in cells if c)
    return f'<div class="{"grid" if len(cells) > 1 else "one"}">{"".join(cells)}</div>' if cells else ""


def study_section(r: SweepRecords, s: StudyRecords, figs: _Figures) -> str:
    m = s.method
    tag = ' <span class="tag">baseline</span>' if s.baseline else ""
    out = [f'<section class="study" id="study-{esc(m)}" data-method="{esc(m)}"><h2>{esc(m)}{tag}</h2>', _study_meta(s)]
    out.append("<h3>Search</h3>")
    out.append(_grid(
        figs.panel("history", lambda: F.optimization_history(s), "Best so far: no searched trial has a value yet.", m),
        figs.panel("edf", lambda: F.edf(s), "EDF: no searched trial has a value yet.", m)))
    best = F.best_trial(s)
    out.append(_grid(
        figs.panel("best-trial-curves", lambda: F.best_trial_curves(s, best),
                   "Best trial's curves: no searched trial with a value and per-epoch metrics." if best is None else
                   f"Best trial's curves: no per-epoch metrics of trial {best.trial_id}.", m),
        _importance(figs, s)))
    if s.optuna_study is None or not F.optuna_complete(s):
        out.append(note("parallel", "Parallel coordinates, slice and contour need an Optuna study with complete "
                                    "trials."))
    else:
        out.append(_grid(figs.panel("parallel", lambda: F.parallel_coordinate(s),
                                    "Parallel coordinates: nothing to draw.", m)))
        params = F.top_params(s)
        if not params:
            out.append(note("slice", "Slice and contour: no searched parameter takes two values or more."))
        else:
            out.append(_grid(
                figs.panel("slice", lambda: F.slice_plot(s, params), "Slice: nothing to draw.", m),
                figs.panel("contour", lambda: F.contour_plot(s, params),
                           "Contour needs two searched parameters that vary "
                           f"(this study has {len(params)}).", m)))
    out.append("<h3>Scheduler</h3>")
    intermediate = figs.panel("intermediate-values", lambda: A.intermediate_values(s),
                              f"Intermediate values: no per-epoch {s.metric} in the trials' history.", m)
    if s.milestones:
        out.append(_grid(figs.panel("rung-survival", lambda: A.rung_survival_figure(s),
                                    "Rung survival: no searched trial reached the first milestone "
                                    f"(epoch {min(s.milestones)}).", m), intermediate))
    else:
        out.append(note("rung-survival", "No rung-based scheduler (no milestones): no rung survival.") + _grid(intermediate))
    panels = T.applicable_panels(s)
    if panels:
        out.append("<h3>Task panels</h3>")
        out.append(_grid(*(figs.panel(name, lambda name=name: T.PANELS[name](s),
                                      f"{name}: the trials report nothing to draw.", m) for name in panels)))
    out.append("<h3>Trials</h3>")
    out.append(trial_table(r, s))
    out.append("</section>")
    return "".join(out)


# -- footer and page ----------------------------------------------------------------------------
def _footer(r: SweepRecords) -> str:
    uri = r.tracking_uri or ""
    if uri.startswith(("http://", "https://")):
        mlflow = f"MLflow server: <code>{esc(uri)}</code>"
        if r.experiment_id:
            mlflow += f" (experiment {esc(r.experiment_id)})"
    else:
        mlflow = f"Runs in MLflow: <code>mlflow ui --backend-store-uri {esc(uri)}</code>"
    journal = f"{r.location.rstrip('/')}/optuna.journal"
    return (f'<footer><p>Objective: for each trial, the value of its study\'s metric at its best epoch (the epoch whose '
            f"validation value is best in the study's mode); test is the same metric on the test set at that epoch, "
            f"and the leaderboard compares those test values over seeds.</p>"
            f"<p>{mlflow} · Studies: <code>optuna-dashboard {esc(journal)}</code></p></footer>")


def render(records: SweepRecords) -> str:
    """The whole page, self-contained (plotly.js inlined once)."""
    figs = _Figures()
    body = [_header(records), _leaderboard(records)]
    for s in records.studies:
        try:
            body.append(study_section(records, s, figs))
        except Exception as exc:  # noqa: BLE001 - one study's broken records leave the others' sections
            body.append(f'<section class="study" id="study-{esc(s.method)}" data-method="{esc(s.method)}">'
                        f"<h2>{esc(s.method)}</h2>"
                        + note("study", f"This section could not be drawn ({type(exc).__name__}: {exc}).", "note error")
                        + "</section>")
    if not records.studies:
        body.append(note("studies", "No studies in this run."))
    body.append(_footer(records))
    plotly_js = plotly.offline.get_plotlyjs().replace("</script", "<\\/script")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(records.sweep)} · sweeplab report</title><style>{CSS}</style>"
            '<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: "local"};</script>'
            f'<script type="text/javascript">{plotly_js}</script></head>'
            f'<body><main>{"".join(body)}</main></body></html>\n')


def write(records: SweepRecords, path: str | Path) -> Path:
    """Write the page to ``path`` (a folder: ``<folder>/report.html``); returns the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(records), encoding="utf-8")
    return path

