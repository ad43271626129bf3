"""What a trial's checkpoint holds and keeps (``sweeplab.checkpoints``)."""

from __future__ import annotations

import io

import torch

from sweeplab import engine
from sweeplab.checkpoints import (
    STATE_FILE, best_weights, checkpoint_retention, final_checkpoint, keep_only_weights, keep_only_weights_of,
    newest_intact_checkpoint)
from sweeplab.context import CONTEXT_KEY


def test_retention_keeps_the_latest_checkpoints():
    assert checkpoint_retention(1) == {"num_to_keep": 1}
    assert checkpoint_retention(None) == {"num_to_keep": None}


class KeepEvery(engine.MemoryReporter):
    def __init__(self):
        super().__init__()
        self.saved = []

    def report(self, metrics, checkpoint):
        super().report(metrics, checkpoint)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # as the trial writes it, at the moment it reports
        self.saved.append(buffer.getvalue())


def test_checkpoints_hold_the_best_weights_once_and_the_last_one_only_weights(tmp_path):
    config = {"epochs": 3, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "lr_schedule": "constant",
              CONTEXT_KEY: {"method": "ce", "dataset": {"name": "noisy_digits"}, "seed": 0, "metric": "val/acc",
                            "mode": "max", "gpus": 0}}
    reporter = KeepEvery()
    engine.train(config, reporter)
    states = [torch.load(io.BytesIO(b), weights_only=True) for b in reporter.saved]
    weights = sum(t.numel() * t.element_size() for t in states[0]["model"].values())
    first = states[0]  # epoch 1 is the best so far: its weights are stored once
    assert first["best"]["epoch"] == 1 and len(reporter.saved[0]) < 3.5 * weights  # weights + Adam's 2, not 4
    assert set(first) >= {"optimizer", "rng", "schedule", "precision"}
    last = states[-1]
    assert not set(last) & {"optimizer", "rng", "schedule", "precision"}  # nothing resumes a finished trial
    assert len(reporter.saved[-1]) < 2.5 * weights
    (tmp_path / STATE_FILE).write_bytes(reporter.saved[-1])
    best = best_weights(tmp_path)
    assert best.keys() == last["model"].keys()
    assert all(torch.equal(best[k], last["best"]["state"][k]) for k in best)


def test_final_checkpoint_leaves_out_what_only_a_resume_reads():
    full = {"epoch": 3, "model": {}, "optimizer": {}, "schedule": {}, "precision": {}, "method": {}, "best": {},
            "rng": {}}
    metrics = {"epoch": 3, "val/acc": 0.5, "note": "text"}
    final = final_checkpoint(full, metrics)
    assert set(final) == {"epoch", "model", "method", "best", "metrics"}
    assert final["metrics"] == {"epoch": 3, "val/acc": 0.5}  # its numbers, reported again by a restored trial


def test_a_trial_restored_from_its_last_checkpoint_reports_its_final_results_again():
    config = {"epochs": 2, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "lr_schedule": "constant",
              CONTEXT_KEY: {"method": "ce", "dataset": {"name": "noisy_digits"}, "seed": 0, "metric": "val/acc",
                            "mode": "max", "gpus": 0}}
    first = engine.MemoryReporter()
    final = engine.train(config, first)
    restored = engine.MemoryReporter(checkpoint=first.checkpoint)
    assert engine.train(config, restored) == final
    assert restored.results == [final]  # nothing trained again, the last result reported once more


def test_the_newest_intact_checkpoint_skips_one_cut_short(tmp_path):
    from pyarrow.fs import LocalFileSystem

    fs = LocalFileSystem()
    for index, state in ((1, {"epoch": 2}), (2, {"epoch": 3}), (4, None)):
        folder = tmp_path / f"checkpoint_{index:06d}"
        folder.mkdir()
        if state is not None:
            torch.save(state, folder / STATE_FILE)
    whole = (tmp_path / "checkpoint_000002" / STATE_FILE).read_bytes()
    (tmp_path / "checkpoint_000003").mkdir()
    (tmp_path / "checkpoint_000003" / STATE_FILE).write_bytes(whole[: len(whole) // 2])  # killed while written
    (tmp_path / "events.out").write_text("")
    trial = str(tmp_path)
    assert newest_intact_checkpoint(fs, trial) == f"{trial}/checkpoint_000002"  # 4 is empty, 3 cut short
    assert newest_intact_checkpoint(fs, trial, after=2) is None
    assert newest_intact_checkpoint(fs, str(tmp_path / "missing")) is None


def test_a_stopped_trials_checkpoint_keeps_only_its_weights(tmp_path):
    from ray.train import Checkpoint

    full = {"epoch": 2, "model": {"w": torch.ones(64)}, "optimizer": {"state": {0: {"exp_avg": torch.ones(64)}}},
            "schedule": {}, "precision": {}, "method": {}, "best": {"epoch": 1}, "rng": {"torch": torch.ones(8)}}
    torch.save(full, tmp_path / STATE_FILE)
    before = (tmp_path / STATE_FILE).stat().st_size
    saved = keep_only_weights(Checkpoint.from_directory(str(tmp_path)))
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert set(state) == {"epoch", "model", "method", "best"} and torch.equal(state["model"]["w"], torch.ones(64))
    assert saved == before - (tmp_path / STATE_FILE).stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # the new file replaced the old
    assert keep_only_weights(Checkpoint.from_directory(str(tmp_path))) == 0  # already trimmed
    assert keep_only_weights_of([Checkpoint.from_directory(str(tmp_path / "missing"))]) == 0  # warned, skipped
