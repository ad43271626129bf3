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


GOOD_NAMES = ["val/acc", "epoch", "test/recall_1", "a b", "a-b.c", "time:s", "a\n", "é/ü", "x" * 250]
BAD_NAMES = ["test/recall@1", "a//b", "../x", "/x", "x/", "a/./b", "a/../b", ".", "", "a#b", "a\tb", "x" * 251]


@pytest.mark.parametrize("name", GOOD_NAMES + BAD_NAMES)
def test_metric_name_problem_agrees_with_mlflow(name):
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_metric, _validate_metric_name

    def refused(check):
        try:
            check()
        except MlflowException:
            return True
        return False

    problem = tracking.metric_name_problem(name)
    assert (problem is not None) == (name in BAD_NAMES)
    # _validate_metric: the name rules of _validate_metric_name, and the key length limit
    assert (problem is not None) == refused(lambda: _validate_metric(name, 0.5, 0, 0))
    if len(name) <= 250:
        assert (problem is not None) == refused(lambda: _validate_metric_name(name))


def test_metric_name_problem_says_which_characters_are_allowed():
    problem = tracking.metric_name_problem("test/recall@1")
    assert "'@'" in problem and "underscores" in problem and "slashes" in problem
    assert "'a/b'" in tracking.metric_name_problem("a//b")


def test_a_refused_metric_name_is_left_out_and_the_other_metrics_still_land(store, caplog):
    t = tracker(store)
    t.start({"lr": 0.1})
    for epoch in (1, 2):
        t.log_metrics({"val/acc": epoch / 10, "test/recall@1": 0.5, "epoch": epoch}, step=epoch)
    t.finish("finished")
    assert t._pending == []
    assert history(store, t.run_id) == [(1, 0.1), (2, 0.2)]
    assert history(store, t.run_id, "epoch") == [(1, 1.0), (2, 2.0)]
    warnings = [r.getMessage() for r in caplog.records if "test/recall@1" in r.getMessage()]
    assert len(warnings) == 1 and "'@'" in warnings[0]  # one warning per name, not per epoch
    assert {r.name for r in caplog.records if "test/recall@1" in r.getMessage()} == {"sweeplab.tracking"}


def test_a_batch_the_store_refuses_is_dropped_and_the_next_epoch_lands(store, caplog, monkeypatch):
    sleeps = []
    monkeypatch.setattr(tracking.time, "sleep", sleeps.append)
    t = tracker(store)
    t.start({"lr": 0.1})
    c = tracking.client(store[0])
    t.log_metrics({"val/acc": 0.1, "epoch": 1}, step=1)
    c.delete_run(t.run_id)  # deleted in the UI meanwhile: the store refuses to log to it (a bad request)
    t.log_metrics({"val/acc": 0.2, "epoch": 2}, step=2)
    assert t._pending == [] and sleeps == []  # dropped at once, not kept nor retried
    assert "refused epoch 2 of trial trial1 (val/acc, epoch); dropped, not retried" in caplog.text
    assert "must be in the 'active' state" in caplog.text
    c.restore_run(t.run_id)
    t.log_metrics({"val/acc": 0.3, "epoch": 3}, step=3)
    t.finish("finished")
    assert t._pending == []
    assert history(store, t.run_id) == [(1, 0.1), (3, 0.3)]


def test_refusal_reason_tells_a_bad_request_from_an_outage():
    from mlflow.exceptions import MlflowException, RestException, get_error_code
    from mlflow.protos.databricks_pb2 import BAD_REQUEST, INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

    refusals = [
        MlflowException("bad name", INVALID_PARAMETER_VALUE),  # the SQLite store's validation
        RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad name"}),  # a server's JSON 400
    ]
    outages = [
        ConnectionError("unreachable"),
        TimeoutError("timed out"),
        MlflowException("API request to http://x failed with exception Max retries exceeded"),  # no code
        MlflowException("database is locked", TEMPORARILY_UNAVAILABLE),
        RestException({"error_code": "INTERNAL_ERROR", "message": "boom"}),
        MlflowException("API request failed with error code 503 != 200", get_error_code(503)),
        MlflowException("database disk image is malformed", BAD_REQUEST),  # the SQL store's database errors
        MlflowException("API request failed with error code 400 != 200", get_error_code(400)),  # a bare 400
    ]
    assert all(tracking.refusal_reason(e) for e in refusals)
    assert not any(tracking.refusal_reason(e) for e in outages)


def test_params_the_store_refuses_are_skipped_not_retried(store, caplog, monkeypatch):
    sleeps = []
    monkeypatch.setattr(tracking.time, "sleep", sleeps.append)
    uri, experiment, parent = store
    c = tracking.client(uri)
    run_id = tracking.create_trial_run(c, experiment, parent, "t9", "ce_t9", {}, params={"lr": 0.1})
    assert tracking.log_params(c, run_id, {"lr": 0.2}) is False  # params cannot change: a refusal
    assert "Changing param values is not allowed" in caplog.text and sleeps == []
    assert c.get_run(run_id).data.params == {"lr": "0.1"}


def test_every_trial_run_is_created_by_create_trial_run_once(store, caplog):
    uri, experiment, parent = store
    c = tracking.client(uri)
    params = {"lr": 0.1, "opt": {"name": "sgd"}, "loss": {"w@1": 2}}
    # the driver records a trial that failed before it opened its run, then the trial is retried
    tracking.record_trial_end(uri, experiment, parent, "trial2", "failed", error="boom", run_name="ce_trial2",
                              tags={"sweeplab.method": "ce"}, params=params)
    recorded = tracking.find_trial_run(uri, experiment, parent, "trial2")
    assert recorded.data.tags["sweeplab.status"] == "failed" and recorded.info.status == "FAILED"
    assert recorded.data.params == {"lr": "0.1", "opt/name": "sgd"}  # the refused name left out
    assert "param 'loss/w@1' is not logged" in caplog.text
    t = tracker(store, "trial2")
    t.start(params)
    t.log_metrics({"val/acc": 0.5, "epoch": 1}, step=1)
    t.finish("finished")
    assert t.run_id == recorded.info.run_id
    runs = c.search_runs([experiment], filter_string="tags.`sweeplab.trial_id` = 'trial2'")
    assert len(runs) == 1
    # a run the tracker creates carries the same tags, the status included
    fresh = tracking.MlflowTrialTracker(uri, experiment, parent, "trial3", "ce_trial3", {"sweeplab.method": "ce"},
                                        where={tracking.TAG_HOST: "node-a"})
    fresh.start({"lr": 0.2})
    run = c.get_run(fresh.run_id)
    assert {k: run.data.tags[k] for k in ("mlflow.parentRunId", "mlflow.runName", "sweeplab.trial_id",
                                           "sweeplab.status", "sweeplab.method", tracking.TAG_HOST)} == {
        "mlflow.parentRunId": parent, "mlflow.runName": "ce_trial3", "sweeplab.trial_id": "trial3",
        "sweeplab.status": "running", "sweeplab.method": "ce", tracking.TAG_HOST: "node-a"}
    assert run.data.params == {"lr": "0.2"}
