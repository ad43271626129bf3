"""The Optuna searcher: early-stopped trials are pruned, not complete; the study is stored."""

import shutil

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from sweeplab.search import SAMPLERS, make_sampler
from sweeplab.searcher import PrunedAwareOptunaSearch
from sweeplab.storage import JOURNAL_FILE, RunFolder

SPACE = {"lr": FloatDistribution(1e-3, 1e-1, log=True)}


def storage(path):
    return JournalStorage(JournalFileBackend(str(path)))


def searcher(path, cls=PrunedAwareOptunaSearch, **kw):
    if cls is PrunedAwareOptunaSearch:
        kw.setdefault("fixed_epochs", 4)
        kw.setdefault("run_location", str(path.parent))
    return cls(space=SPACE, metric="val/acc", mode="max", sampler=optuna.samplers.RandomSampler(seed=0),
               study_name="s", storage=storage(path), **kw)


def run_trial(s, trial_id, accs):
    s.suggest(trial_id)
    for epoch, acc in enumerate(accs[:-1], start=1):
        s.on_trial_result(trial_id, {"val/acc": acc, "training_iteration": epoch, "epoch": epoch})
    s.on_trial_complete(trial_id, {"val/acc": accs[-1], "training_iteration": len(accs), "epoch": len(accs)})


def states(path):
    return [(t.state, t.value) for t in optuna.load_study(study_name="s", storage=storage(path)).trials]


def test_stock_optuna_search_tells_a_stopped_trial_complete(tmp_path):
    """The defect we work around: documents what stock Ray does (if Ray fixes it, this fails)."""
    s = searcher(tmp_path / JOURNAL_FILE, cls=OptunaSearch)
    run_trial(s, "a", [0.5, 0.6])  # stopped by the scheduler after 2 of 4 epochs
    assert states(tmp_path / JOURNAL_FILE) == [(TrialState.COMPLETE, 0.6)]


def test_early_stopped_trial_is_pruned_with_all_its_values(tmp_path):
    s = searcher(tmp_path / JOURNAL_FILE)
    run_trial(s, "stopped", [0.5, 0.6])
    run_trial(s, "full", [0.5, 0.6, 0.7, 0.8])
    study = optuna.load_study(study_name="s", storage=storage(tmp_path / JOURNAL_FILE))
    stopped, full = study.trials
    assert stopped.state == TrialState.PRUNED
    assert stopped.intermediate_values == {1: 0.5, 2: 0.6}  # the last one too
    assert full.state == TrialState.COMPLETE and full.value == 0.8
    assert study.best_trial.number == full.number


def test_diverged_trial_is_pruned(tmp_path):
    s = searcher(tmp_path / JOURNAL_FILE)
    s.suggest("d")
    s.on_trial_complete("d", {"val/acc": float("-inf"), "epoch": 4, "diverged": 1.0})
    assert states(tmp_path / JOURNAL_FILE)[0][0] == TrialState.PRUNED


def test_searched_epochs_decide_what_stopped_early_means(tmp_path):
    s = PrunedAwareOptunaSearch(
        space={"epochs": optuna.distributions.IntDistribution(2, 2)}, metric="val/acc", mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0), study_name="s", storage=storage(tmp_path / JOURNAL_FILE),
        fixed_epochs=10, run_location=str(tmp_path),
    )
    run_trial(s, "a", [0.5, 0.6])  # 2 of its 2 epochs: complete although the default is 10
    assert states(tmp_path / JOURNAL_FILE) == [(TrialState.COMPLETE, 0.6)]


def test_study_lives_in_storage_and_a_restored_searcher_matches_it(tmp_path):
    s = searcher(tmp_path / JOURNAL_FILE)
    run_trial(s, "done", [0.5, 0.6, 0.7, 0.8])
    s.suggest("in_flight")
    s.suggest("finishes_after_save")
    s.save(str(tmp_path / "searcher.pkl"))  # Tune's snapshot of the searcher
    s.on_trial_complete("finishes_after_save", {"val/acc": 0.4, "epoch": 4})
    s.suggest("asked_after_save")  # the driver is killed now: this trial is in storage only

    restored = searcher(tmp_path / JOURNAL_FILE)
    restored.restore(str(tmp_path / "searcher.pkl"))
    by_state = [t.state for t in optuna.load_study(study_name="s", storage=storage(tmp_path / JOURNAL_FILE)).trials]
    assert by_state == [TrialState.COMPLETE, TrialState.RUNNING, TrialState.COMPLETE, TrialState.FAIL]
    restored.on_trial_complete("in_flight", {"val/acc": 0.9, "epoch": 4})
    assert states(tmp_path / JOURNAL_FILE)[1] == (TrialState.COMPLETE, 0.9)
    # Tune reruns the tail of a trial the storage had finished: its results change nothing
    restored.on_trial_result("finishes_after_save", {"val/acc": 0.5, "training_iteration": 3, "epoch": 3})
    restored.on_trial_complete("finishes_after_save", {"val/acc": 0.5, "epoch": 4})
    assert states(tmp_path / JOURNAL_FILE)[2] == (TrialState.COMPLETE, 0.4)


def test_a_searcher_restored_elsewhere_opens_that_copy_of_the_journal(tmp_path, monkeypatch):
    """An object-store run is resumed from a local copy of its journal, maybe on another machine:
    the restored searcher writes to that machine's copy, not to the journal the pickle names."""
    run = "s3://bucket/sweeps/demo/20261126-000000"
    monkeypatch.setenv("SWEEPLAB_CACHE", str(tmp_path / "machine_a"))
    first = RunFolder.at(run).local / JOURNAL_FILE
    first.parent.mkdir(parents=True)
    s = searcher(first, run_location=run)
    s.suggest("running")
    s.save(str(tmp_path / "searcher.pkl"))

    monkeypatch.setenv("SWEEPLAB_CACHE", str(tmp_path / "machine_b"))
    second = RunFolder.at(run).local / JOURNAL_FILE
    assert second != first
    second.parent.mkdir(parents=True)
    shutil.copy(first, second)  # what `sweeplab resume` downloads
    restored = searcher(second, run_location=run)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("running", {"val/acc": 0.7, "epoch": 4})
    assert states(second) == [(TrialState.COMPLETE, 0.7)]
    assert states(first) == [(TrialState.RUNNING, None)]


def test_a_journal_older_than_the_searcher_drops_the_trials_it_lacks(tmp_path, caplog):
    """The journal was uploaded before the searcher's snapshot: a trial asked in between is not in
    it. It is left out of the study (with a warning); the others carry on."""
    s = searcher(tmp_path / JOURNAL_FILE)
    s.suggest("old")
    stale = (tmp_path / JOURNAL_FILE).read_bytes()  # the last upload
    s.suggest("new")
    s.save(str(tmp_path / "searcher.pkl"))
    (tmp_path / JOURNAL_FILE).write_bytes(stale)

    restored = searcher(tmp_path / JOURNAL_FILE)
    with caplog.at_level("WARNING"):
        restored.restore(str(tmp_path / "searcher.pkl"))
    assert "trial new is not in" in caplog.text
    restored.on_trial_result("new", {"val/acc": 0.1, "training_iteration": 1, "epoch": 1})
    restored.on_trial_complete("new", {"val/acc": 0.2, "epoch": 4})
    restored.on_trial_complete("old", {"val/acc": 0.6, "epoch": 4})
    restored.suggest("later")
    assert states(tmp_path / JOURNAL_FILE) == [(TrialState.COMPLETE, 0.6), (TrialState.RUNNING, None)]


def test_in_an_object_store_the_journal_is_uploaded_with_each_snapshot_of_the_searcher(tmp_path, monkeypatch):
    """Tune uploads the searcher's snapshot right after ``save``: the journal goes first, so the
    store never holds a searcher that knows trials its journal lacks. (A ``file://`` URI stands
    in for the store here: pyarrow writes it the same way.)"""
    store = tmp_path / "store"
    store.mkdir()
    run = f"file://{store}"
    monkeypatch.setenv("SWEEPLAB_CACHE", str(tmp_path / "cache"))
    local = RunFolder.at(run).local
    local.mkdir(parents=True)
    s = searcher(local / JOURNAL_FILE, run_location=run)
    s.suggest("first")
    s.save(str(tmp_path / "searcher.pkl"))
    assert (store / JOURNAL_FILE).read_bytes() == (local / JOURNAL_FILE).read_bytes()
    run_trial(s, "second", [0.5, 0.6, 0.7, 0.8])
    assert (store / JOURNAL_FILE).stat().st_size < (local / JOURNAL_FILE).stat().st_size  # not before the next
    s.save(str(tmp_path / "searcher.pkl"))
    assert (store / JOURNAL_FILE).read_bytes() == (local / JOURNAL_FILE).read_bytes()


def test_a_journal_without_the_study_starts_it_again(tmp_path, caplog):
    s = searcher(tmp_path / JOURNAL_FILE)
    s.suggest("lost")
    s.save(str(tmp_path / "searcher.pkl"))
    (tmp_path / JOURNAL_FILE).unlink()
    restored = searcher(tmp_path / "other.journal")  # Tune builds the searcher, then restores it
    with caplog.at_level("WARNING"):
        restored.restore(str(tmp_path / "searcher.pkl"))
    assert "study s is not in" in caplog.text and "trial lost is not in" in caplog.text
    restored.suggest("next")
    assert states(tmp_path / JOURNAL_FILE) == [(TrialState.RUNNING, None)]


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_named_in_sweep_files_samples_past_its_startup(name):
    startup = 2 if SAMPLERS[name].startup_trials else None
    sampler = make_sampler(name, seed=0, n_startup_trials=startup, concurrent=False)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.3) ** 2 + t.suggest_float("y", 0, 1), n_trials=5)
    assert len(study.trials) == 5 and all(t.state == TrialState.COMPLETE for t in study.trials)


def test_a_trial_the_restored_searcher_never_asked_for_runs_on_outside_the_study(tmp_path, caplog):
    """Tune's snapshot of the trials can be newer than the searcher's in an object store: the
    restored trial reports to a searcher that does not know it (this ended a resume with KeyError)."""
    s = searcher(tmp_path / JOURNAL_FILE)
    run_trial(s, "known", [0.5, 0.6, 0.7, 0.8])
    s.on_trial_result("unknown", {"val/acc": 0.4, "training_iteration": 1, "epoch": 1})
    s.on_trial_complete("unknown", {"val/acc": 0.5, "training_iteration": 4, "epoch": 4})
    assert "trial unknown is not in the restored searcher" in caplog.text
    assert states(tmp_path / JOURNAL_FILE) == [(TrialState.COMPLETE, 0.8)]


def test_the_study_names_its_objective_and_each_trial_names_its_ray_trial(tmp_path):
    s = PrunedAwareOptunaSearch(space=SPACE, metric="best/val/acc", mode="max",
                                sampler=optuna.samplers.RandomSampler(seed=0), study_name="s",
                                storage=storage(tmp_path / JOURNAL_FILE), fixed_epochs=2, run_location=str(tmp_path))
    s.suggest("ray-a")
    s.on_trial_complete("ray-a", {"best/val/acc": 0.7, "epoch": 2, "training_iteration": 2})
    study = optuna.load_study(study_name="s", storage=storage(tmp_path / JOURNAL_FILE))
    assert study.metric_names == ["best/val/acc"]  # not "Objective 0" in optuna-dashboard
    (trial,) = study.trials
    assert trial.user_attrs["ray_trial_id"] == "ray-a" and trial.value == 0.7
    assert "mlflow_run_id" not in trial.user_attrs  # not tracked: nothing to link
