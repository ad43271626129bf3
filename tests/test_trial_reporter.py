"""The reporter a Tune trial hands its results to: in the background, while the next epoch trains.

The stand-in for ``ray.tune`` here has the three calls the reporter makes; real Tune runs it in
the sweep tests (test_sweeps, test_object_store: kill and resume, ASHA stopping trials)."""

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sweeplab.checkpoints import STATE_FILE
from sweeplab.engine import train
from sweeplab.trial import CheckpointReporter
from test_engine import RecordingTracker, trial_config


class SlowTune:
    """``report`` copies the checkpoint's state file, then waits for ``release`` (the driver's
    turn); ``stop_at``: the epoch whose report raises ``SystemExit`` (Tune stopping the trial)."""

    def __init__(self, stop_at=None):
        self.release = threading.Event()
        self.entered = threading.Event()
        self.stop_at = stop_at
        self.reports = []
        self.folders = []
        self.Checkpoint = SimpleNamespace(from_directory=lambda folder: folder)

    def get_checkpoint(self):
        return None

    def report(self, metrics, checkpoint=None):
        state = torch.load(Path(checkpoint) / STATE_FILE, weights_only=True) if checkpoint else None
        self.folders.append(checkpoint)
        self.entered.set()
        self.release.wait(timeout=30)
        self.reports.append((dict(metrics), state))
        if metrics.get("epoch") == self.stop_at:
            raise SystemExit(0)


def test_report_returns_before_the_hand_over_ends_with_the_state_as_it_was():
    api = SlowTune()
    reporter = CheckpointReporter(api, in_background=True)
    weights = torch.zeros(3)
    reporter.report({"epoch": 1}, {"w": weights})
    assert api.entered.wait(timeout=10)
    weights += 1  # the next step changes the weights in place while Tune still copies
    assert api.reports == []  # report returned while the hand-over waits for the driver
    reporter.settle()  # nothing raised yet, nothing waited for
    api.release.set()
    reporter.settle(wait=True)
    metrics, state = api.reports[0]
    assert metrics == {"epoch": 1} and torch.equal(state["w"], torch.zeros(3))
    assert not Path(api.folders[0]).exists()  # the serialised copy is removed once Tune has it


def test_one_hand_over_at_a_time_in_order():
    api = SlowTune()
    api.release.set()
    reporter = CheckpointReporter(api, in_background=True)
    for epoch in range(1, 6):
        reporter.report({"epoch": epoch}, {"w": torch.full((2,), float(epoch))} if epoch % 2 else None)
    reporter.settle(wait=True)
    assert [m["epoch"] for m, _ in api.reports] == [1, 2, 3, 4, 5]
    assert [None if s is None else s["w"][0].item() for _, s in api.reports] == [1.0, None, 3.0, None, 5.0]


def test_a_stop_inside_the_hand_over_is_raised_in_the_training_thread():
    api = SlowTune(stop_at=1)
    api.release.set()
    reporter = CheckpointReporter(api, in_background=True)
    reporter.report({"epoch": 1}, {"w": torch.zeros(1)})
    with pytest.raises(SystemExit):
        reporter.settle(wait=True)
    with pytest.raises(SystemExit):  # and again: the trial does not go on after it
        reporter.report({"epoch": 2}, None)
    assert len(api.reports) == 1


def test_a_trial_stopped_at_an_epoch_logs_no_later_epoch():
    api = SlowTune(stop_at=1)
    api.release.set()
    tracker = RecordingTracker()
    with pytest.raises(SystemExit):
        train(trial_config(epochs=3), CheckpointReporter(api, in_background=True), tracker)
    assert [m["epoch"] for m, _ in api.reports] == [1]
    assert [e[1] for e in tracker.events if e[0] == "metrics"] == [1]
    assert not any(e[0] == "finish" for e in tracker.events)  # stopped, not failed: Tune records it


def test_reporting_inline_raises_in_the_call():
    api = SlowTune(stop_at=1)
    api.release.set()
    reporter = CheckpointReporter(api)
    with pytest.raises(SystemExit):
        reporter.report({"epoch": 1}, {"w": torch.zeros(1)})
    assert not Path(api.folders[0]).exists()
