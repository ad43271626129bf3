"""Runs started before the core was reshaped stay resumable: what they stored (trial contexts,
pickled callbacks and searcher, checkpoints) is read by the new modules."""

from __future__ import annotations

import logging
import pickle

import pytest
import torch

from sweeplab.callbacks import ProgressPrinter, TrialEndRecorder, TrialNamer
from sweeplab.context import CONTEXT_KEY, TrackingContext, TrialContext
from sweeplab.optim import load_optimizer_state, make_optimizer
from sweeplab.method import ParamGroup

# the context a study's trials were given before it was typed (the keys the old runner wrote)
OLD_CONTEXT = {
    "method": "ce", "dataset": {"name": "noisy_digits", "noise_rate": 0.2},
    "model": {"backbone": "small_cnn", "weights": None}, "seed": 0, "metric": "val/acc", "mode": "max",
    "threads": 1, "gpus": 0.0, "objectives": [["val/acc", "max"]],
    "tracking": {"uri": "sqlite:///x.db", "experiment_id": "1", "parent_run_id": "p", "tags": {"a": "b"}},
    "distributed": {"workers": 2, "cpus_per_worker": 1.0, "gpus_per_worker": 0.0, "storage": "/r/train",
                    "keep": None},
}


def test_an_old_trial_context_reads_as_the_typed_one():
    ctx = TrialContext.from_config({"lr": 0.1, CONTEXT_KEY: OLD_CONTEXT})
    assert ctx.tracking == TrackingContext("sqlite:///x.db", "1", "p", {"a": "b"})
    assert ctx.distributed.workers == 2 and ctx.trial is None
    assert ctx.objectives == (("val/acc", "max"),) and ctx.run_params()["workers"] == 2
    assert TrialContext.from_dict(ctx.to_dict()) == ctx  # and it round-trips


def test_keys_of_another_version_are_left_out_and_an_empty_tracking_is_none(caplog):
    with caplog.at_level(logging.WARNING, logger="sweeplab.context"):
        ctx = TrialContext.from_dict({**OLD_CONTEXT, "tracking": {}, "from_the_future": 1})
    assert ctx.tracking is None and "from_the_future" in caplog.text


def test_pickles_that_name_the_old_runner_module_still_load():
    for obj in (TrialNamer("ce"), ProgressPrinter("ce", "val/acc", 4, 2)):
        old = pickle.dumps(obj, protocol=0).replace(b"sweeplab.callbacks", b"sweeplab.runner")
        assert b"sweeplab.runner" in old
        assert type(pickle.loads(old)) is type(obj)
    from sweeplab import runner
    from sweeplab.searcher import PrunedAwareOptunaSearch

    assert runner.PrunedAwareOptunaSearch is PrunedAwareOptunaSearch  # the searcher, pickled by Tune


def test_a_recorder_pickled_with_a_tracking_mapping_still_records():
    recorder = TrialEndRecorder(TrackingContext("sqlite:///x.db", "1", "p", {}), "ce")
    recorder.track = dict(OLD_CONTEXT["tracking"])  # what an old pickle holds
    assert recorder.study_tracking == TrackingContext("sqlite:///x.db", "1", "p", {"a": "b"})


def test_an_scn_checkpoint_with_its_old_epoch_counter_loads():
    from sweeplab.data.indexed import IndexedTensorDataset
    from sweeplab.method import DataInfo, all_hyperparameters
    from trainables.scn import SCN

    info = DataInfo(task="classification", num_classes=3, class_names=("a", "b", "c"), input_shape=(1, 8, 8),
                    train_size=3)
    method = SCN(all_hyperparameters(SCN), info)
    dataset = IndexedTensorDataset(torch.zeros(3, 1, 8, 8), torch.tensor([0, 0, 0]))
    method.attach_train_data(dataset, None)
    method.load_state_dict({"epochs_done": 4, "targets": torch.tensor([0, 2, 1])})
    assert dataset.targets.tolist() == [0, 2, 1]


def test_an_optimizer_saved_before_groups_had_names_resumes_with_them():
    model = torch.nn.Linear(2, 2)
    hp = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.0, "momentum": 0.9}
    old = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).state_dict()  # one unnamed group
    groups = [ParamGroup("model", list(model.parameters()))]
    optimizer = make_optimizer(hp, groups)
    load_optimizer_state(optimizer, old, groups)
    assert optimizer.param_groups[0]["name"] == "model" and optimizer.param_groups[0]["lr_scale"] == 1.0
    two = [ParamGroup("weight", [model.weight]), ParamGroup("bias", [model.bias], 10.0)]
    with pytest.raises(ValueError, match=r"parameter groups \['model'\] but the method now has \['weight', 'bias'\]"):
        load_optimizer_state(make_optimizer(hp, two), optimizer.state_dict(), two)
