"""The training loop without Ray: metrics, checkpoints, resume, divergence."""

import math

import pytest
import torch

from sweeplab import engine, optim
from sweeplab.context import CONTEXT_KEY
from sweeplab.engine import MemoryReporter, train
from trainables.ce import CrossEntropy


def trial_config(**hp):
    hp.setdefault("epochs", 3)
    hp.setdefault("batch_size", 64)
    return {
        **hp,
        CONTEXT_KEY: {
            "method": "ce",
            "dataset": {"name": "noisy_digits", "noise_rate": 0.2},
            "model": {"backbone": "small_cnn", "weights": None},
            "seed": 3,
            "metric": "val/acc",
            "mode": "max",
        },
    }


class RecordingTracker:
    def __init__(self):
        self.events = []

    def start(self, params):
        self.events.append(("start", dict(params)))

    def log_metrics(self, metrics, step):
        self.events.append(("metrics", step, dict(metrics)))

    def log_dict(self, obj, name):
        self.events.append(("dict", name))

    def finish(self, status, error=None):
        self.events.append(("finish", status, error))


def test_loop_reports_every_epoch_with_one_naming_scheme():
    reporter, tracker = MemoryReporter(), RecordingTracker()
    final = train(trial_config(lr=3e-3), reporter, tracker)
    assert [r["epoch"] for r in reporter.results] == [1, 2, 3]
    for r in reporter.results:
        for key in ("train/loss", "train/acc", "val/loss", "val/acc", "val/mean_class_acc", "train/lr"):
            assert math.isfinite(r[key]), key
    assert "test/acc" not in reporter.results[0]
    for key in ("test/acc", "best/val/acc", "best/test/acc", "best/epoch"):
        assert key in final
    assert final["val/acc"] > 0.5  # learns through 20% noise in three epochs
    assert tracker.events[0][0] == "start" and tracker.events[0][1]["lr"] == 3e-3
    assert tracker.events[-1] == ("finish", "finished", None)
    assert [e[1] for e in tracker.events if e[0] == "metrics"] == [1, 2, 3]
    # the trial's objective, every epoch: the best epoch so far (sweeplab.objective)
    for n, r in enumerate(reporter.results, start=1):
        so_far = [x["val/acc"] for x in reporter.results[:n]]
        assert r["best/val/acc"] == max(so_far) and r["best/epoch"] == so_far.index(max(so_far)) + 1
    started = tracker.events[0][1]  # what does not apply is not logged
    assert started["optimizer"] == "adam" and "momentum" not in started and "adam_eps" in started
    assert "lr_step_epochs" not in started and "lr_gamma" not in started


def test_checkpoint_is_loadable_with_weights_only(tmp_path):
    class FirstOnly(MemoryReporter):
        def report(self, metrics, checkpoint):
            super().report(metrics, checkpoint)
            if self.first is None:
                self.first = checkpoint

    reporter = FirstOnly()
    reporter.first = None
    train(trial_config(epochs=2), reporter)
    for checkpoint, resumable in ((reporter.first, True), (reporter.checkpoint, False)):
        path = tmp_path / "state.pt"
        torch.save(checkpoint, path)
        state = torch.load(path, weights_only=True)
        # the last epoch's (a finished trial) keeps the weights, not what a resume needs
        assert "model" in state and state["best"]["state"] is not None and ("optimizer" in state) == resumable


def test_resume_from_checkpoint_reproduces_the_uninterrupted_trial():
    straight = MemoryReporter()
    train(trial_config(epochs=3, lr=2e-3), straight)

    first = MemoryReporter()
    cfg2 = trial_config(epochs=3, lr=2e-3)
    # stop after two epochs: run a copy of the trial whose reporter raises after epoch 2
    class StopAfterTwo(MemoryReporter):
        def report(self, metrics, checkpoint):
            super().report(metrics, checkpoint)
            if metrics["epoch"] == 2:
                raise KeyboardInterrupt

    stopper = StopAfterTwo()
    with pytest.raises(KeyboardInterrupt):
        train(cfg2, stopper)
    assert stopper.checkpoint["epoch"] == 2

    resumed = MemoryReporter(checkpoint=stopper.checkpoint)
    train(trial_config(epochs=3, lr=2e-3), resumed)
    assert [r["epoch"] for r in resumed.results] == [3]
    for name, tensor in straight.checkpoint["model"].items():
        assert torch.equal(tensor, resumed.checkpoint["model"][name]), name
    assert resumed.results[-1]["val/acc"] == straight.results[-1]["val/acc"]
    assert resumed.results[-1]["best/test/acc"] == straight.results[-1]["best/test/acc"]


def test_a_diverging_trial_ends_cleanly_as_diverged():
    reporter, tracker = MemoryReporter(), RecordingTracker()
    out = train(trial_config(lr=1e12, optimizer="sgd", momentum=0.0, epochs=3), reporter, tracker)
    assert out["diverged"] == 1.0
    assert out["val/acc"] == float("-inf")  # worst value: every scheduler and searcher ranks it last
    assert tracker.events[-1][:2] == ("finish", "diverged")
    assert "loss became" in tracker.events[-1][2]


def test_unknown_hyperparameter_is_refused():
    with pytest.raises(KeyError, match="not known"):
        train(trial_config(no_such_hp=1), MemoryReporter())


def test_a_value_its_declaration_does_not_allow_is_refused_before_training():
    tracker = RecordingTracker()
    with pytest.raises(ValueError, match=r"batch_size: 0 is out of range; allowed: a whole number >= 1"):
        train(trial_config(batch_size=0), MemoryReporter(), tracker)
    assert tracker.events == []  # nothing started (the driver records the trial as failed)


class FailsInItsStep(CrossEntropy):
    def training_step(self, model, batch):
        raise ValueError("a bug in the method's step")


def test_a_failing_trial_is_recorded_failed_and_raises():
    tracker = RecordingTracker()
    with pytest.raises(ValueError, match="a bug"):
        train(trial_config(), MemoryReporter(), tracker, method_cls=FailsInItsStep)
    assert tracker.events[-1][:2] == ("finish", "failed")
    assert "ValueError: a bug in the method's step" in tracker.events[-1][2]


def test_engine_trains_a_resnet_on_a_users_image_folder(tmp_path):
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("val", 3)):
        for label, colour in (("cat", 0), ("dog", 2)):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = (torch.rand(20, 20, 3, generator=rng) * 60).to(torch.uint8)
                pixels[..., colour] += 150
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    config = trial_config(epochs=2, batch_size=4, lr=1e-3)
    config[CONTEXT_KEY]["dataset"] = {"name": "image_folder", "root": str(tmp_path), "image_size": 32, "workers": 0}
    config[CONTEXT_KEY]["model"] = {"backbone": "resnet18", "weights": None}
    reporter = MemoryReporter()
    final = train(config, reporter)
    assert [r["epoch"] for r in reporter.results] == [1, 2]
    assert 0.0 <= final["test/acc"] <= 1.0 and math.isfinite(final["train/loss"])


def test_a_zero_gpu_trial_stays_on_the_cpu():
    assert engine.pick_device(0).type == "cpu"
    assert engine.pick_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_a_diverged_multi_objective_trial_reports_the_worst_value_of_every_objective():
    config = trial_config(lr=1e12, optimizer="sgd", momentum=0.0, epochs=2)
    config[CONTEXT_KEY]["objectives"] = [["val/acc", "max"], ["val/loss", "min"]]
    out = train(config, MemoryReporter())
    assert out["val/acc"] == float("-inf") and out["val/loss"] == float("inf")


@pytest.mark.parametrize("schedule, expected", [
    ("step", [0.1, 0.1, 0.01, 0.01, 0.001]),  # x lr_step_gamma every lr_step_epochs
    ("exponential", [0.1 * 0.5**e for e in range(5)]),
    ("constant", [0.1] * 5),
])
def test_learning_rate_schedules_per_epoch(schedule, expected):
    hp = {"lr_schedule": schedule, "epochs": 5, "lr_gamma": 0.5, "lr_step_epochs": 2, "lr_step_gamma": 0.1}
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = optim.make_schedule(hp, optimizer)
    rates = []
    for _ in range(5):
        rates.append(optimizer.param_groups[0]["lr"])
        if scheduler is not None:
            scheduler.step()
    assert rates == pytest.approx(expected)
