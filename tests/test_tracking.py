"""MLflow tracking of a trial against a real SQLite store: re-discovery, no duplicate epochs,
buffering while the store is unreachable."""

from __future__ import annotations

import pytest

from sweeplab import tracking


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = tracking.ensure_experiment(uri, "t")
    parent = tracking.client(uri).create_run(experiment).info.run_id
    return uri, experiment, parent


def tracker(store, trial_id="trial1"):
    uri, experiment, parent = store
    return tracking.MlflowTrialTracker(uri, experiment, parent, trial_id, f"ce_{trial_id}", {"sweeplab.method": "ce"})


def history(store, run_id, key="val/acc"):
    return [(m.step, m.value) for m in tracking.client(store[0]).get_metric_history(run_id, key)]


def test_a_restarted_trial_continues_its_run_without_repeating_epochs(store):
    first = tracker(store)
    first.start({"lr": 0.1})
    for epoch in (1, 2):
        first.log_metrics({"val/acc": epoch / 10, "epoch": epoch}, step=epoch)
    again = tracker(store)  # the trial restarts (retry, restore) and repeats epoch 2 from a checkpoint
    again.start({"lr": 0.1})
    assert again.run_id == first.run_id
    for epoch in (2, 3):
        again.log_metrics({"val/acc": epoch / 10, "epoch": epoch}, step=epoch)
    again.finish("finished")
    assert history(store, first.run_id) == [(1, 0.1), (2, 0.2), (3, 0.3)]
    run = tracking.client(store[0]).get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["sweeplab.status"] == "finished"


def test_metrics_are_buffered_while_the_store_fails_and_logged_in_order_after(store, monkeypatch):
    t = tracker(store)
    t.start({"lr": 0.1})
    real = t._client.log_batch
    outage = {"left": 4}  # two epochs x two attempts each

    def flaky(*args, **kwargs):
        if kwargs.get("metrics") and outage["left"] > 0:
            outage["left"] -= 1
            raise ConnectionError("tracking server unreachable")
        return real(*args, **kwargs)

    monkeypatch.setattr(t._client, "log_batch", flaky)
    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    for epoch in (1, 2, 3):
        t.log_metrics({"val/acc": epoch / 10, "epoch": epoch}, step=epoch)
        if epoch < 3:
            assert len(t._pending) == epoch  # kept, not dropped
    assert t._pending == []
    assert history(store, t.run_id) == [(1, 0.1), (2, 0.2), (3, 0.3)]


def test_an_unreachable_server_does_not_stop_the_trial(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    t = tracking.MlflowTrialTracker("http://127.0.0.1:9", "0", "parent", "trial1", "ce_trial1", {})
    t.start({"lr": 0.1})  # nothing listens on port 9: every call fails at once
    t.log_metrics({"val/acc": 0.5, "epoch": 1}, step=1)
    t.finish("finished")
    assert t.run_id is None and len(t._pending) == 1
    assert "sync-mlflow" in caplog.text
