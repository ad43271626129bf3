"""The report's views (dashboards.figures*, dashboards.page) on records built by hand and small
in-memory Optuna studies: no Ray, no MLflow."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import optuna
import pandas as pd
import plotly.io as pio
import plotly.offline
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from dashboards import figures as F
from dashboards import figures_asha as A
from dashboards import figures_tasks as T
from dashboards import page
from dashboards.records import CONFIRM, SEARCH, LeaderboardRow, StudyRecords, SweepRecords, TrialRecord

optuna.logging.set_verbosity(optuna.logging.ERROR)

DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "optimizer": CategoricalDistribution(["sgd", "adam"]),
    "weight_decay": FloatDistribution(0.0, 0.01),
}
MILESTONES = (2, 4, 8)


# -- fixture ------------------------------------------------------------------------------------
def _trial(method, i, outcome, epochs, objective, *, role=SEARCH, seed=None, **kw) -> TrialRecord:
    return TrialRecord(
        method=method, trial_id=f"{method}_{i:05d}", run_name=f"{method}-{i}", role=role,
        number=i if role == SEARCH else None, run_id=f"{method}run{i:02d}" + "0" * 20, outcome=outcome,
        params={"lr": 10 ** -(2 + i % 3), "optimizer": ("sgd", "adam")[i % 2], "weight_decay": 0.001 * i},
        objective=objective, best_epoch=(epochs - 1 if epochs > 1 else epochs) if objective is not None else None,
        epochs=epochs, test=None if objective is None else objective - 0.02, seed=seed,
        candidate=1 if role == CONFIRM else None, **kw)


def _history(trials: list[TrialRecord], extra: dict[str, callable] | None = None) -> pd.DataFrame:
    rows = []
    for t in trials:
        top = t.objective if t.objective is not None else 0.3
        for epoch in range(1, t.epochs + 1):
            row = {"trial_id": t.trial_id, "epoch": epoch, "train/loss": 2.0 / epoch, "train/acc": top * epoch / t.epochs,
                   "val/loss": 2.2 / epoch, "val/acc": top * epoch / t.epochs, "lr": 0.01}
            for name, f in (extra or {}).items():
                row[name] = f(epoch)
            rows.append(row)
    df = pd.DataFrame(rows)
    if len(df) > 3:
        df.loc[2, "val/loss"] = float("nan")  # a missing value somewhere
    return df


def _optuna_study(values: list[float | None], pruned: int = 1, failed: int = 0) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for i, value in enumerate(values):
        params = {"lr": 10 ** -(2 + i % 3), "optimizer": ("sgd", "adam")[i % 2], "weight_decay": 0.001 * i}
        study.add_trial(create_trial(params=params, distributions=DISTRIBUTIONS, value=value,
                                     intermediate_values={1: value / 2, 2: value}))
    for j in range(pruned):
        study.add_trial(create_trial(params={"lr": 1e-3, "optimizer": "sgd", "weight_decay": 0.002},
                                     distributions=DISTRIBUTIONS, state=TrialState.PRUNED,
                                     intermediate_values={1: 0.2, 2: 0.3}))
    for j in range(failed):
        study.add_trial(create_trial(params={"lr": 1e-3, "optimizer": "sgd", "weight_decay": 0.0},
                                     distributions=DISTRIBUTIONS, state=TrialState.FAIL))
    return study


def ce_study() -> StudyRecords:
    trials = [
        _trial("ce", 0, "finished", 8, 0.80),
        _trial("ce", 1, "pruned", 2, 0.50),
        _trial("ce", 2, "pruned", 4, 0.70),
        _trial("ce", 3, "failed", 1, None, error="RuntimeError: CUDA out of memory. " + "x" * 300),
        _trial("ce", 4, "finished", 8, 0.85),
        _trial("ce", 5, "pruned", 5, 0.72),
        _trial("ce", 10, "finished", 8, 0.84, role=CONFIRM, seed=1),
        _trial("ce", 11, "finished", 8, 0.83, role=CONFIRM, seed=2),
    ]
    per_class = {
        trials[4].run_id: {
            "final/val": {"classes": [{"class": "cat", "n": 10, "acc": 0.5}]},
            "final/test": {"classes": [{"class": "cat", "n": 10, "acc": 0.6}]},
            "best/test": {"classes": [{"class": "cat", "n": 10, "acc": 0.9}, {"class": "dog", "n": 12, "acc": 0.75},
                                      {"class": "owl", "n": 0, "acc": None}]},
        },
        trials[6].run_id: {"best/test": {"classes": [{"class": "cat", "n": 10, "acc": 0.8},
                                                     {"class": "dog", "n": 12, "acc": 0.7}]}},
    }
    return StudyRecords(method="ce", task="classification", metric="val/acc", mode="max", num_samples=6,
                        parent_run_id="parent-ce", trials=trials, history=_history(trials),
                        optuna_study=_optuna_study([0.80, 0.85, 0.70, 0.72], pruned=1, failed=1),
                        milestones=MILESTONES, per_class=per_class, baseline=True)


def scn_study() -> StudyRecords:
    trials = [
        _trial("scn", 0, "finished", 8, 0.86),
        _trial("scn", 1, "pruned", 2, 0.40),
        _trial("scn", 2, "diverged", 3, None, error="loss is NaN"),
        _trial("scn", 3, "finished", 8, 0.88),
        _trial("scn", 4, None, 3, 0.60),
    ]
    history = _history(trials, {"train/relabel_count": lambda e: 10 * e, "train/relabel_precision": lambda e: 0.5 + e / 20})
    return StudyRecords(method="scn", task="classification", metric="val/acc", mode="max", num_samples=5,
                        parent_run_id="parent-scn", trials=trials, history=history,
                        optuna_study=_optuna_study([0.86, 0.88, 0.60], pruned=1), milestones=MILESTONES)


def leaderboard() -> list[LeaderboardRow]:
    return [
        LeaderboardRow(method="ce", config={"lr": 0.001, "optimizer": "sgd"}, seeds=[1, 2, 3],
                       test=[0.8123456789012345, 0.8, 0.79], val=[0.83, 0.82, 0.81], test_mean=0.8007818929670782,
                       test_std=0.011172727272727, test_ci=(0.7901234567, 0.8123456789012345),
                       val_mean=0.82, val_std=0.01, baseline=True),
        LeaderboardRow(method="scn", config={"lr": 0.01, "optimizer": "adam", "weight_decay": 0.003}, seeds=[1, 2, 3],
                       test=[0.85, 0.86, 0.84], val=[0.87, 0.88, 0.86], test_mean=0.8500000000000001,
                       test_std=0.010000000000000009, test_ci=(0.8400000000000001, 0.86), val_mean=0.87,
                       val_std=0.01, diff=0.049218107032921866, diff_ci=(0.03012345678901, 0.0612345678901),
                       p_value=0.012345678901234, paired_seeds=3, significant=True, winner=True),
    ]


def make_records(**kw) -> SweepRecords:
    base = dict(
        sweep="noisy_fer", description="CE against SCN on noisy FER labels", location="/runs/noisy_fer-2026",
        dataset={"name": "noisy_digits", "noise_rate": 0.2}, tracking_uri="sqlite:///mlflow.db", experiment_id="7",
        commit="0123456789abcdef0123456789abcdef01234567", created="2026-05-01T12:00:00", wall_seconds=3725.0,
        scheduler={"name": "asha", "grace_period": 2, "reduction_factor": 2.0},
        search={"sampler": "tpe", "max_concurrent": 2},
        studies=[ce_study(), scn_study()], leaderboard=leaderboard(), alpha=0.05)
    base.update(kw)
    return SweepRecords(**base)


def partial_study() -> StudyRecords:
    """Failed-only, no history columns, NaN objective, a multilabel task reporting nothing, a
    broken per_class entry, an Optuna study without complete trials."""
    trials = [
        TrialRecord(method="broken", trial_id="b1", run_name="broken-1", number=0, outcome="failed", error="boom"),
        TrialRecord(method="broken", trial_id="b2", run_name="broken-2", number=1, outcome="failed",
                    objective=float("nan")),
    ]
    study = optuna.create_study(direction="minimize")
    study.add_trial(create_trial(params={"lr": 1e-3}, distributions={"lr": DISTRIBUTIONS["lr"]}, state=TrialState.FAIL))
    return StudyRecords(method="broken", task="multilabel", metric="val/mAP", mode="min", num_samples=4,
                        parent_run_id=None, trials=trials, history=pd.DataFrame(), optuna_study=study,
                        milestones=(1, 3), per_class={"nope": {"best/test": {"classes": []}}, "bad": "not a dict"})


# -- reading the page back ----------------------------------------------------------------------
class _Cells(HTMLParser):
    """Per ``data-method`` row of the table ``table_id``: ``{field: data-value}`` and the row's class."""

    def __init__(self, table_id: str):
        super().__init__()
        self.table_id, self.inside, self.depth = table_id, False, 0
        self.rows: dict[str, dict[str, str]] = {}
        self.row_class: dict[str, str] = {}
        self.current: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            if a.get("id") == self.table_id:
                self.inside = True
            if self.inside:
                self.depth += 1
        if not self.inside:
            return
        if tag == "tr" and "data-method" in a:
            self.current = a["data-method"]
            self.rows[self.current] = {}
            self.row_class[self.current] = a.get("class") or ""
        if self.current and "data-value" in a:
            self.rows[self.current][a["data-field"]] = a["data-value"]

    def handle_endtag(self, tag):
        if tag == "table" and self.inside:
            self.depth -= 1
            self.inside = self.depth > 0


def _cells(html_text: str, table_id: str = "leaderboard") -> _Cells:
    parser = _Cells(table_id)
    parser.feed(html_text)
    return parser


def _section(html_text: str, method: str) -> str:
    start = html_text.index(f'<section class="study" id="study-{method}"')
    return html_text[start:html_text.index("</section>", start)]


def _without_plotly(html_text: str) -> str:
    return html_text.replace(plotly.offline.get_plotlyjs(), "")


@pytest.fixture(scope="module")
def rendered() -> str:
    return page.render(make_records())


# -- the page -----------------------------------------------------------------------------------
def test_plotly_js_inlined_exactly_once(rendered):
    bundle = plotly.offline.get_plotlyjs()
    assert rendered.count(bundle[:200]) == 1
    assert rendered.count("plotly.js v") == bundle.count("plotly.js v")
    assert rendered.count('class="figure"') >= 10


def test_no_external_resources(rendered):
    assert "<script src" not in rendered.lower()
    assert "<link" not in rendered.lower()
    rest = _without_plotly(rendered)
    assert "http://" not in rest and "https://" not in rest
    assert not re.search(r"\bsrc\s*=", rest)
    assert "mathjax" not in rest.lower().replace("mathjaxconfig", "")
    # with an MLflow server, the run links are the only ones out
    server = page.render(make_records(tracking_uri="http://mlflow.example:5000"))
    rest = _without_plotly(server)
    links = re.findall(r'(?:href|src)="(https?://[^"]+)"', rest)
    assert links and all(link.startswith("http://mlflow.example:5000/#/experiments/7/runs/") for link in links)
    assert len(re.findall(r"https?://", rest)) == len(links) + 1  # + the footer's server address (text)


def test_header(rendered):
    header = rendered[rendered.index('<section id="header">'):rendered.index('<section id="results">')]
    for text in ("noisy_fer", "CE against SCN", "noisy_digits", "noise_rate=0.2", "val/acc", "best epoch",
                 "ce 6 trials", "scn 5 trials", "tpe", "asha", "grace_period=2", "reduction_factor=2",
                 "01234567", "2026-05-01 12:00:00", "1 h 02 min"):
        assert text in header, text
    outcomes = make_records().outcomes()
    assert outcomes == {"finished": 4, "pruned": 4, "diverged": 1, "failed": 1, "lost": 0, "unfinished": 1}
    for name, n in outcomes.items():
        assert f'data-outcome="{name}">{name} <b>{n}</b>' in header


def test_leaderboard_numbers_and_winner(rendered):
    assert 'id="leaderboard"' in rendered
    cells = _cells(rendered)
    rows = {r.method: r for r in leaderboard()}
    assert set(cells.rows) == set(rows)
    for method, row in rows.items():
        got = cells.rows[method]
        expected = {"test_mean": row.test_mean, "test_std": row.test_std, "test_ci_low": row.test_ci[0],
                    "test_ci_high": row.test_ci[1], "val_mean": row.val_mean, "val_std": row.val_std,
                    "seeds_n": len(row.seeds)}
        if not row.baseline:
            expected.update(diff=row.diff, diff_ci_low=row.diff_ci[0], diff_ci_high=row.diff_ci[1], p_value=row.p_value)
        for field, value in expected.items():
            assert float(got[field]) == float(value), (method, field)
            assert got[field] == repr(float(value))
    assert "winner" in cells.row_class["scn"].split()
    assert "winner" not in cells.row_class["ce"].split()
    assert "baseline" in cells.row_class["ce"].split()
    scn_row = re.search(r'<tr data-method="scn"[^>]*>(.*?)</tr>', rendered, re.S).group(1)
    assert "★" in scn_row
    ce_row = re.search(r'<tr data-method="ce"[^>]*>(.*?)</tr>', rendered, re.S).group(1)
    assert "★" not in ce_row and "baseline" in ce_row
    assert "paired t-test" in rendered and "10,000 resamples" in rendered
    assert page.NO_CONFIRM not in rendered


def test_no_winner_without_the_flag():
    rows = leaderboard()
    rows[1].winner = False
    html_text = page.render(make_records(leaderboard=rows))
    table = html_text[html_text.index('<table id="leaderboard"'):]
    assert "★" not in table[:table.index("</table>")]
    assert not any("winner" in c.split() for c in _cells(html_text).row_class.values())


def test_empty_leaderboard_shows_note_and_best_trials():
    html_text = page.render(make_records(leaderboard=[]))
    assert "No confirmation runs: run `sweeplab confirm &lt;run folder&gt;`" in html_text
    assert "confirm: {seeds: 3}" in html_text
    assert 'id="leaderboard"' not in html_text
    cells = _cells(html_text, "best-trials")
    assert float(cells.rows["ce"]["objective"]) == 0.85  # the best finished search trial, not a confirmation run
    assert float(cells.rows["scn"]["objective"]) == 0.88
    assert "single trial, not confirmed" in html_text


EXPECTED_FIGURES = {"history", "edf", "best-trial-curves", "importance", "parallel", "slice", "contour",
                    "rung-survival", "intermediate-values"}


def test_study_sections_and_figures(rendered):
    for method, extra in (("ce", {"per-class"}), ("scn", {"relabel"})):
        section = _section(rendered, method)
        names = set(re.findall(r'data-figure="([^"]+)"', section))
        assert names == EXPECTED_FIGURES | extra, method
        assert 'class="trials"' in section
        assert 'class="note error"' not in section
    # the importance warning (fewer than 10 complete trials) is shown as text
    assert 'data-note="importance-warning"' in _section(rendered, "ce")
    assert "too few for importance to mean much" in _section(rendered, "ce")
    assert "Parameter importance (4 complete trials" in _section(rendered, "ce")
    assert 'data-note="importance"' not in rendered


def test_trial_table_order_links_and_errors(rendered):
    section = _section(rendered, "ce")
    table = section[section.index('<table class="trials"'):]
    order = re.findall(r'<tr data-trial-id="([^"]+)"', table)
    assert order[:4] == ["ce_00004", "ce_00010", "ce_00011", "ce_00000"]
    assert order[-1] == "ce_00003"  # failed, no objective: last
    assert 'title="RuntimeError: CUDA out of memory. ' + "x" * 300 + '"' in table
    assert "x" * 200 not in table.replace("x" * 300, "")
    assert "<a href" not in table  # sqlite tracking: run ids as text
    server = page.render(make_records(tracking_uri="https://mlflow.example/"))
    assert '<a href="https://mlflow.example/#/experiments/7/runs/cerun04' in server


def test_footer(rendered):
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in rendered
    assert "optuna-dashboard /runs/noisy_fer-2026/optuna.journal" in rendered


def test_partial_data_renders():
    records = make_records(studies=[ce_study(), partial_study()], leaderboard=[])
    html_text = page.render(records)
    section = _section(html_text, "broken")
    assert "data-figure" not in section
    for name in ("history", "edf", "best-trial-curves", "importance", "parallel", "intermediate-values",
                 "group-map", "per-class"):
        assert f'data-note="{name}"' in section, name
    assert 'class="note error"' not in section
    assert 'class="trials"' in section and "boom" in section
    # the same study without an Optuna study, without milestones, and a study with no trials at all
    bare = partial_study()
    bare.optuna_study, bare.milestones, bare.task = None, (), "retrieval"
    empty = StudyRecords(method="empty", task="classification", metric="val/acc", mode="max", num_samples=0,
                         parent_run_id=None, trials=[], history=pd.DataFrame(columns=["trial_id", "epoch"]))
    html_text = page.render(make_records(studies=[bare, empty], leaderboard=[], wall_seconds=None, commit=None,
                                         created=None, dataset={}))
    assert 'id="study-broken"' in html_text and 'id="study-empty"' in html_text
    assert 'class="note error"' not in html_text
    assert html_text.count('data-note="rung-survival"') == 2
    page.render(make_records(studies=[]))


def test_write(tmp_path):
    path = page.write(make_records(), tmp_path / "out" / "report.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert page.write(make_records(), tmp_path).name == "report.html"


# -- the figures --------------------------------------------------------------------------------
def test_rung_survival_counts():
    study = ce_study()
    df = A.rung_survival(study.trials, study.history, MILESTONES)
    # reached: #0 8, #1 2 (pruned), #2 4 (pruned), #3 1 (failed), #4 8, #5 5 (pruned); confirmation runs left out
    assert df.to_dict("records") == [
        {"milestone": 2, "entered": 5, "promoted": 4, "stopped": 1},
        {"milestone": 4, "entered": 4, "promoted": 3, "stopped": 2},
        {"milestone": 8, "entered": 2, "promoted": 0, "stopped": 0},
    ]


def test_rung_survival_reads_epochs_from_history():
    trials = [TrialRecord("m", "a", "a", outcome="pruned", epochs=0),
              TrialRecord("m", "b", "b", outcome="finished", epochs=0),
              TrialRecord("m", "c", "c", role=CONFIRM, outcome="finished", epochs=9)]
    history = pd.DataFrame({"trial_id": ["a", "a", "b", "b", "b", "b"], "epoch": [1, 2, 1, 2, 3, 4]})
    df = A.rung_survival(trials, history, [4, 2])
    assert df["milestone"].tolist() == [2, 4]
    assert df[["entered", "promoted", "stopped"]].values.tolist() == [[2, 1, 1], [1, 0, 0]]
    assert A.rung_survival(trials, None, []).empty


def test_rung_survival_figure():
    fig = A.rung_survival_figure(ce_study())
    assert [t.name for t in fig.data] == ["entered", "promoted", "stopped"]
    assert list(fig.data[0].y) == [5, 4, 2]
    study = ce_study()
    study.milestones = ()
    assert A.rung_survival_figure(study) is None


def test_intermediate_values_colours_by_outcome():
    fig = A.intermediate_values(ce_study())
    lines = {t.hovertemplate.split(" ")[0]: t for t in fig.data}
    assert set(lines) == {"#0", "#1", "#2", "#3", "#4", "#5"}  # search trials only
    assert lines["#1"].line.color == "#b0b0b0" and lines["#1"].line.width == 1
    assert lines["#0"].line.color != "#b0b0b0" and lines["#0"].line.width == 2
    assert sum(t.showlegend for t in fig.data) == 3  # finished, pruned, other


def test_best_so_far():
    values = [0.5, None, 0.4, 0.7, float("nan"), 0.6]
    trials = [TrialRecord("m", str(i), str(i), number=i, objective=v) for i, v in enumerate(values)]
    df = F.best_so_far(trials, "max")
    assert df["objective"].tolist() == [0.5, 0.4, 0.7, 0.6]
    assert df["best"].tolist() == [0.5, 0.5, 0.7, 0.7]
    assert F.best_so_far(trials, "min")["best"].tolist() == [0.5, 0.4, 0.4, 0.4]


def test_history_without_optuna_study_is_drawn_from_records():
    study = scn_study()
    study.optuna_study = None
    fig = F.optimization_history(study)
    best = next(t for t in fig.data if t.name == "best so far")
    assert list(best.y) == [0.86, 0.86, 0.88, 0.88]  # trials #0, #1, #3, #4 (the diverged #2 has no value)
    assert list(best.x) == [0, 1, 3, 4]
    assert F.edf(study) is not None
    with_optuna = F.optimization_history(scn_study())
    assert "Optuna" in with_optuna.layout.title.text
    assert with_optuna.layout.template.layout.paper_bgcolor == pio.templates["plotly_white"].layout.paper_bgcolor


def test_best_trial_curves_mark_best_epoch():
    study = ce_study()
    assert F.best_trial(study).trial_id == "ce_00004"
    fig = F.best_trial_curves(study)
    names = {t.name: t for t in fig.data}
    assert {"val/acc", "train/loss", "val/loss", "train/acc", "lr", "best epoch"} <= set(names)
    assert names["lr"].visible == "legendonly" and names["val/acc"].visible is True
    assert list(names["best epoch"].x) == [7] and list(names["best epoch"].y) == [0.85]
    assert any(shape.x0 == 7 for shape in fig.layout.shapes)
    assert fig.layout.xaxis.dtick == 1


def test_importance_and_slice_contour():
    study = ce_study()
    fig = F.param_importance(study)
    assert "4 complete trials" in fig.layout.title.text
    params = F.top_params(study)
    assert len(params) == 2 and set(params) <= set(DISTRIBUTIONS)
    assert F.contour_plot(study, params) is not None
    assert F.slice_plot(study, params) is not None
    assert F.parallel_coordinate(study) is not None
    # fewer than 2 complete trials, or parameters with one value: no importance, no crash
    one = ce_study()
    one.optuna_study = _optuna_study([0.8], pruned=2)
    assert F.param_importance(one) is None and F.top_params(one) == []
    same = ce_study()
    same.optuna_study = optuna.create_study(direction="maximize")
    for v in (0.1, 0.2, 0.3):
        same.optuna_study.add_trial(create_trial(params={"lr": 1e-3, "layers": 2}, value=v, distributions={
            "lr": DISTRIBUTIONS["lr"], "layers": IntDistribution(1, 4)}))
    assert F.param_importance(same) is None and F.contour_plot(same) is None
    html_text = page.render(make_records(studies=[one, same]))
    assert "needs at least 2 complete trials (this study has 1)" in html_text
    assert "no searched parameter takes two values or more" in html_text
    assert 'class="note error"' not in html_text


def test_per_class_heatmap():
    fig = T.per_class_heatmap(ce_study())
    heat = fig.data[0]
    assert list(heat.x) == ["cat", "dog", "owl"]
    assert list(heat.y) == ["seed 1 · ce-10", "#4 · ce-4"]  # confirmation runs first
    assert [list(r) for r in heat.z] == [[0.8, 0.7, None], [0.9, 0.75, None]]  # best/test, not final/test
    assert "acc" in fig.layout.title.text
    assert T.per_class_heatmap(partial_study()) is None


def test_multilabel_group_map_confirm_mean_and_fallback():
    study = partial_study()
    study.trials = [
        TrialRecord("ml", "s0", "ml-0", number=0, outcome="finished", objective=0.5,
                    metrics={"best/test/mAP_head": 0.7, "best/test/mAP_medium": 0.5, "best/test/mAP_tail": 0.2}),
        TrialRecord("ml", "c1", "ml-c1", role=CONFIRM, seed=1, candidate=1, outcome="finished",
                    metrics={"best/test/mAP_head": 0.6, "best/test/mAP_medium": 0.4, "best/test/mAP_tail": 0.1}),
        TrialRecord("ml", "c2", "ml-c2", role=CONFIRM, seed=2, candidate=1, outcome="finished",
                    metrics={"best/test/mAP_head": 0.8, "best/test/mAP_medium": 0.6, "best/test/mAP_tail": 0.3}),
    ]
    study.mode = "max"
    assert "group-map" in T.applicable_panels(study)
    bar = T.group_map_bars(study).data[0]
    assert list(bar.x) == ["head", "medium", "tail"]
    assert [round(v, 9) for v in bar.y] == [0.7, 0.5, 0.2]
    assert [round(v, 9) for v in bar.error_y.array] == [round(math.sqrt(0.02), 9)] * 3
    study.trials = study.trials[:1]
    bar = T.group_map_bars(study).data[0]
    assert list(bar.y) == [0.7, 0.5, 0.2] and not bar.error_y.visible


def test_retrieval_recall_at_k():
    metrics = {f"best/test/recall_at_{k}": 0.5 + k / 20 for k in (1, 2, 4, 8)}
    study = StudyRecords(method="proxy", task="retrieval", metric="val/recall_at_1", mode="max", num_samples=2,
                         parent_run_id=None, history=pd.DataFrame(), trials=[
                             TrialRecord("proxy", "t0", "proxy-0", number=0, outcome="finished", objective=0.5,
                                         metrics=metrics)])
    assert T.applicable_panels(study) == ["recall-at-k"]
    trace = T.recall_at_k_curve(study).data[0]
    assert list(trace.x) == ["1", "2", "4", "8"] and list(trace.y) == list(metrics.values())


def test_ambiguity_panel_chosen_by_columns():
    study = scn_study()
    assert T.applicable_panels(study) == ["relabel"]
    study.history["train/latent_agreement"] = 0.9
    assert "ambiguity" in T.applicable_panels(study)
    fig = T.ambiguity_curves(study)
    assert [t.name for t in fig.data] == ["train/latent_agreement"]
    relabel = T.relabel_curves(study)
    assert [t.name for t in relabel.data] == ["train/relabel_count", "train/relabel_precision"]


def test_text_is_escaped():
    study = partial_study()
    study.method = '<b>"x"&'
    study.trials[0].error = "<script>alert(1)</script>"
    html_text = page.render(make_records(studies=[study], leaderboard=[], description="<i>d</i>"))
    rest = _without_plotly(html_text)
    assert "<b>\"x\"&" not in rest and "<script>alert" not in rest and "<i>d</i>" not in rest
    assert 'id="study-&lt;b&gt;&quot;x&quot;&amp;"' in rest
    assert "NaN" in _section(html_text, "&lt;b&gt;&quot;x&quot;&amp;")


def test_the_verdict_names_the_winner_or_says_why_there_is_none():
    from dashboards.page import verdict
    from dashboards.records import LeaderboardRow

    def row(method, baseline=False, diff=None, p=None, winner=False):
        return LeaderboardRow(method=method, config={}, seeds=[1, 2, 3], test=[0.9] * 3, val=[0.9] * 3,
                              test_mean=0.9, test_std=0.0, test_ci=(0.9, 0.9), val_mean=0.9, val_std=0.0,
                              baseline=baseline, diff=diff, p_value=p, paired_seeds=3, significant=winner,
                              winner=winner)

    records = make_records()
    records.leaderboard = [row("scn", diff=0.0157, p=0.06), row("ce", baseline=True)]
    assert verdict(records).startswith("No method beats the baseline ce significantly over 3 seeds")
    assert "scn with Δ test +0.0157, p = 0.060" in verdict(records)
    records.leaderboard = [row("scn", diff=0.03, p=0.004, winner=True), row("ce", baseline=True)]
    assert verdict(records).startswith("★ scn beats the baseline ce: Δ test +0.0300 over 3 paired seeds")
