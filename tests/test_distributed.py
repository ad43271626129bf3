"""Multi-worker trials: the resources schema, the data-parallel hook of the engine (in a real
two-process gloo group, without Ray), and one real two-worker trial on Ray Train inside Tune."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F
from torch.utils.data import RandomSampler

from conftest import write_sweep
from sweeplab import distributed, engine, optim, runner
from sweeplab import method as engine_method
from sweeplab.data import build_dataset
from sweeplab.data.samplers import ClassAwareSampler
from sweeplab.distributed import ShardedSampler, TorchDistributed
from sweeplab.catalog import method_class
from sweeplab.context import CONTEXT_KEY, DistributedContext, TrialContext
from sweeplab.ray_session import ResourcesUnavailable, check_resources
from sweeplab.engine import MemoryReporter
from sweeplab.models import build_backbone
from sweeplab.spaces import SpecError
from sweeplab.spec import Sweep, load_sweep

WORLD = 2
DIGITS = {"name": "noisy_digits", "noise_rate": 0.2}


# ---------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------
def sweep_with(tmp_path, resources, **sections):
    return load_sweep(write_sweep(tmp_path, "res", num_samples=1, epochs=2, resources=resources, **sections))


def issues(tmp_path, resources, **sections):
    with pytest.raises(SpecError) as caught:
        sweep_with(tmp_path, resources, **sections)
    return {(i.key, i.message) for i in caught.value.issues}


def test_resources_default_to_one_worker_as_before(tmp_path):
    res = sweep_with(tmp_path, {"cpus": 2, "gpus": 0}).resources
    assert (res.workers, res.cpus, res.gpus) == (1, 2, 0)
    assert distributed.trial_resources(res) == {"cpu": 2, "gpu": 0}
    assert not distributed.is_distributed(res)


def test_per_worker_keys_win_over_cpus_and_gpus_and_survive_the_resolved_file(tmp_path):
    sweep = sweep_with(tmp_path, {"cpus": 1, "gpus": 0, "workers": 4, "cpus_per_worker": 3, "gpus_per_worker": 1})
    res = sweep.resources
    assert (res.workers, res.cpus, res.gpus) == (4, 3, 1)  # cpus/gpus hold what each worker gets
    again = Sweep.from_document(sweep.document, sweep.file)
    assert again.resources == res
    assert distributed.trial_resources(res) == {"cpu": 0, "memory": 64 * 1024**2}  # the trial itself: ~nothing
    assert distributed.worker_resources(res.cpus, res.gpus) == {"CPU": 3, "GPU": 1}
    assert distributed.worker_resources(1, 0) == {"CPU": 1}


def test_cpus_and_gpus_are_per_worker_when_no_per_worker_key_is_given(tmp_path):
    res = sweep_with(tmp_path, {"cpus": 2, "gpus": 1, "workers": 2}).resources
    assert (res.workers, res.cpus, res.gpus) == (2, 2, 1)


@pytest.mark.parametrize("resources, key, text", [
    ({"workers": 0}, "resources.workers", "must be >= 1"),
    ({"workers": 1.5}, "resources.workers", "whole number"),
    ({"workers": 2, "cpus_per_worker": 0}, "resources.cpus_per_worker", "must be > 0"),
    ({"workers": 2, "gpus_per_worker": -1}, "resources.gpus_per_worker", "must be >= 0"),
    ({"workers": 2, "gpus_per_worker": 0.5}, "resources.gpus_per_worker", "allowed: 0 or 1"),
    ({"workers": 2, "gpus": 2}, "resources.gpus", "allowed: 0 or 1"),
    ({"workers": 2, "worker": 3}, "resources.worker", "allowed: cpus, gpus, workers, cpus_per_worker"),
])
def test_resource_errors_name_the_key(tmp_path, resources, key, text):
    found = issues(tmp_path, resources)
    assert any(k == key and text in m for k, m in found), found


def test_a_batch_smaller_than_the_workers_is_refused(tmp_path):
    found = issues(tmp_path, {"workers": 4}, methods={"ce": {"num_samples": 1, "overrides": {
        "epochs": 2, "batch_size": {"type": "categorical", "choices": [2, 64]}}}})
    assert any(k == "resources.workers" and "batch_size 2" in m for k, m in found), found


def test_a_fractional_gpu_is_fine_for_a_single_worker_trial(tmp_path):
    assert sweep_with(tmp_path, {"gpus": 0.5}).resources.gpus == 0.5


def test_resources_are_checked_against_a_local_ray_per_worker(tmp_path, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    check_resources(sweep_with(tmp_path, {"workers": 2, "cpus_per_worker": 1}), address_given=False)
    with pytest.raises(ResourcesUnavailable, match=r"resources.cpus_per_worker: .*3 workers x 1 CPU"):
        check_resources(sweep_with(tmp_path, {"workers": 3, "cpus_per_worker": 1}), address_given=False)


def test_a_local_ray_runs_as_many_multi_worker_trials_at_once_as_fit(tmp_path):
    res = sweep_with(tmp_path, {"workers": 2, "cpus_per_worker": 1}).resources
    assert distributed.trials_that_fit(res, {"CPU": 2.0}) == 1
    assert distributed.trials_that_fit(res, {"CPU": 5.0}) == 2
    gpu = sweep_with(tmp_path, {"workers": 2, "cpus_per_worker": 1, "gpus_per_worker": 1}).resources
    assert distributed.trials_that_fit(gpu, {"CPU": 16.0, "GPU": 4.0}) == 2


def test_a_multi_worker_trial_records_its_workers_in_mlflow_params():
    ctx = TrialContext(method="ce", dataset=DIGITS, model={}, seed=0)
    assert "workers" not in ctx.run_params()
    assert ctx.but(distributed=DistributedContext(workers=2)).run_params()["workers"] == 2


# ---------------------------------------------------------------------------
# Sharding and batch splitting (no process group needed)
# ---------------------------------------------------------------------------
def test_shards_split_the_single_process_order_between_ranks():
    order = list(RandomSampler(range(11), generator=torch.Generator().manual_seed(5)))
    cut = [list(ShardedSampler(RandomSampler(range(11), generator=torch.Generator().manual_seed(5)), r, 3, True))
           for r in range(3)]
    assert [len(c) for c in cut] == [3, 3, 3]
    assert [cut[i % 3][i // 3] for i in range(9)] == order[:9]  # interleaved: the single order, tail dropped
    padded = [ShardedSampler(list(range(11)), r, 3, False) for r in range(3)]
    assert [len(s) for s in padded] == [4, 4, 4]
    assert sorted(i for s in padded for i in s) == sorted(list(range(11)) + [0])  # padded from the start


def test_a_methods_own_sampler_is_sharded_the_same_way_on_every_rank():
    targets = torch.tensor([0] * 20 + [1] * 3 + [2] * 1)

    def sampler():  # the engine's per-epoch generator: the same on every rank
        return ClassAwareSampler(targets, num_samples=12, generator=engine.epoch_generator(0, 4))

    whole = list(sampler())
    parts = [list(ShardedSampler(sampler(), r, 2, drop_last=True)) for r in range(2)]
    assert parts[0] == whole[0::2] and parts[1] == whole[1::2]


def test_batch_size_is_the_global_batch():
    assert engine.local_batch_size(64, 1) == 64
    assert engine.local_batch_size(64, 2) == 32
    assert engine.local_batch_size(65, 2) == 32  # rounded down
    with pytest.raises(ValueError, match="smaller than the 4 workers"):
        engine.local_batch_size(3, 4)


def test_a_single_process_trial_reports_train_samples():
    reporter = MemoryReporter()
    engine.train({"epochs": 1, "batch_size": 64, CONTEXT_KEY: {"method": "ce", "dataset": DIGITS}}, reporter)
    n = len(build_dataset(DIGITS, 0).train)
    assert reporter.results[0]["train/samples"] == n // 64 * 64


# ---------------------------------------------------------------------------
# The engine in a real two-rank gloo group (spawned processes, no Ray)
# ---------------------------------------------------------------------------
def without_batchnorm(module: nn.Module) -> nn.Module:
    """BatchNorm keeps per-rank batch statistics; without it a data-parallel step is exactly
    the single-process step."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.Identity())
        else:
            without_batchnorm(child)
    return module


def one_epoch(method_name: str, dataset: dict, parallel, batch_size: int = 64):
    """One epoch of a method's own step on a BatchNorm-free small CNN, plain SGD."""
    torch.manual_seed(0)
    data = build_dataset(dataset, 0)
    method_cls = method_class(method_name)
    hp = engine.resolve_hyperparameters(method_cls, {"batch_size": batch_size, "optimizer": "sgd", "lr": 0.05,
                                                     "momentum": 0.0, "weight_decay": 0.0})
    method = method_cls(hp, data.info)
    method.attach_train_data(data.train, data.train_clean_targets)
    backbone, features = build_backbone("small_cnn", data.info.input_shape[0])
    model = method.build_model(without_batchnorm(backbone), features)
    optimizer = optim.make_optimizer(hp, method.param_groups(model))
    loader, second = engine.train_loaders(method, data, batch_size, engine.epoch_generator(0, 0), parallel=parallel)
    metrics = engine.train_one_epoch(method, parallel.wrap_model(model), loader, optimizer, torch.device("cpu"),
                                     second, parallel)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, metrics, len(loader)


def trial(epochs=2, method="ce", **hp):
    return {"epochs": epochs, "batch_size": 64, **hp, CONTEXT_KEY: {"method": method, "dataset": DIGITS, "seed": 1}}


class KeepingReporter(MemoryReporter):
    """Keeps every epoch's checkpoint."""

    def __init__(self, checkpoint=None):
        super().__init__(checkpoint)
        self.checkpoints = []

    def report(self, metrics, checkpoint):
        super().report(metrics, checkpoint)
        self.checkpoints.append(torch.load(_roundtrip(checkpoint), weights_only=True) if checkpoint else None)


def _roundtrip(obj):
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


class AuxBranchNet(nn.Module):
    def __init__(self, backbone, feature_dim, num_classes):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(feature_dim, num_classes)
        self.aux = nn.Linear(feature_dim, num_classes)  # trained on some steps only

    def forward(self, x, with_aux: bool):
        features = self.backbone(x)
        return self.fc(features), (self.aux(features) if with_aux else None)


class UnusedBranch(engine_method.Method):
    """A step uses the auxiliary branch every other step (as DMUE's branch j sits out a batch
    without class j): DDP must be told that some parameters get no gradient."""

    find_unused_parameters = True

    def __init__(self, hp, data):
        super().__init__(hp, data)
        self.steps = 0

    def build_model(self, backbone, feature_dim):
        return AuxBranchNet(backbone, feature_dim, self.data.num_classes)

    def training_step(self, model, batch):
        inputs, targets, _ = batch
        self.steps += 1
        logits, aux = model(inputs, with_aux=self.steps % 2 == 0)
        loss = F.cross_entropy(logits, targets)
        if aux is not None:
            loss = loss + F.cross_entropy(aux, targets)
        return {"loss": loss, "logits": logits}

    @torch.no_grad()
    def predict(self, model, inputs):
        return model(inputs, with_aux=False)[0]


class UnusedBranchUndeclared(UnusedBranch):
    find_unused_parameters = False


def scenarios(parallel: TorchDistributed, shared: Path) -> dict:
    """What each rank does; returns what the tests check."""
    out = {"rank": parallel.rank, "world_size": parallel.world_size}

    # collectives of the hook
    out["all_finite"] = (parallel.all_finite(torch.tensor(1.0)),
                         parallel.all_finite(torch.tensor(float("nan") if parallel.rank == 1 else 1.0)))
    out["sum"] = parallel.sum({"a": 1.0, "b": float(parallel.rank)})

    class Data:
        targets = torch.arange(10)

    data = Data()
    with parallel.shared_targets(data):  # rank 0 relabels 0..2, rank 1 relabels 2..4 (2 on both)
        changed = [0, 1, 2] if parallel.rank == 0 else [2, 3, 4]
        data.targets[changed] = 100 + parallel.rank
    out["targets"] = data.targets.clone()

    # DDP keeps the wrapped module's attributes reachable
    model = nn.Sequential(nn.Linear(3, 2))
    model.extra = "here"
    out["wrapped_attr"] = parallel.wrap_model(model).extra

    # data-parallel epochs equal single-process ones (no BatchNorm): CE and LTML's paired batches
    out["ce"] = one_epoch("ce", DIGITS, parallel)
    out["ltml"] = one_epoch("ltml", {"name": "lt_digits"}, parallel)

    # whole trials: two epochs; then a resume from rank 0's epoch-1 checkpoint
    straight = KeepingReporter()
    engine.train(trial(lr=3e-3), straight, None, parallel)
    out["straight"] = {"results": straight.results, "final": straight.checkpoints[-1]}
    if parallel.rank == 0:
        torch.save(straight.checkpoints[0], shared / "epoch1.pt")
    dist.barrier()
    resumed = KeepingReporter(torch.load(shared / "epoch1.pt", weights_only=True))
    engine.train(trial(lr=3e-3), resumed, None, parallel)
    out["resumed"] = {"results": resumed.results, "final": resumed.checkpoints[-1]}

    # SCN relabels on each rank's shard; every rank ends with the same labels
    scn = KeepingReporter()
    engine.train(trial(method="scn", relabel_epoch=1, lr=3e-3), scn, None, parallel)
    out["scn"] = {"results": scn.results, "targets": scn.checkpoints[-1]["method"]["targets"]}

    # a loss that blows up ends the trial on every rank (no rank left waiting in a collective)
    diverged = MemoryReporter()
    out["diverged"] = engine.train(trial(lr=1e12, optimizer="sgd", momentum=0.0), diverged, None, parallel)

    # a branch some steps leave unused: fine when the method says so (DDP finds the unused parameters)
    unused = KeepingReporter()
    engine.train(trial(epochs=1), unused, None, parallel, method_cls=UnusedBranch)
    out["unused"] = {"results": unused.results, "final": unused.checkpoints[-1]}
    # ... and DDP's error when it does not (last: the group is of no use to DDP after it)
    try:
        engine.train(trial(epochs=1), MemoryReporter(), None, parallel, method_cls=UnusedBranchUndeclared)
        out["undeclared"] = None
    except RuntimeError as exc:
        out["undeclared"] = str(exc)
    return out


def _rank_main(rank: int, world: int, init: str, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        out = scenarios(TorchDistributed(), Path(folder))
        torch.save(out, Path(folder) / f"rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks():
    """Every scenario, run once by two spawned ranks of a gloo group."""
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_rank_main, args=(WORLD, os.path.join(folder, "rendezvous"), folder), nprocs=WORLD, join=True)
        return [torch.load(Path(folder) / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_hook_collectives(ranks):
    for out in ranks:
        assert out["world_size"] == WORLD
        assert out["all_finite"] == (True, False)  # NaN on rank 1 only: both ranks stop
        assert out["sum"] == {"a": 2.0, "b": 1.0}
        assert out["wrapped_attr"] == "here"
    expected = torch.tensor([100, 100, 100, 101, 101, 5, 6, 7, 8, 9])  # both relabelled 2: rank 0 wins
    for out in ranks:
        assert torch.equal(out["targets"], expected)


@pytest.mark.parametrize("method", ["ce", "ltml"])
def test_a_data_parallel_epoch_is_the_single_process_epoch(ranks, method):
    dataset = DIGITS if method == "ce" else {"name": "lt_digits"}
    alone_state, alone_metrics, alone_steps = one_epoch(method, dataset, engine.SingleProcess())
    for out in ranks:
        state, metrics, steps = out[method]
        assert steps == alone_steps  # each rank: every step, half of each batch
        for name, tensor in alone_state.items():
            assert torch.allclose(state[name], tensor, atol=1e-5, rtol=1e-4), name
        assert metrics["train/samples"] == alone_metrics["train/samples"]
        assert metrics["train/loss"] == pytest.approx(alone_metrics["train/loss"], rel=1e-4)


def test_rank_zero_evaluates_and_every_rank_trains_the_same_model(ranks):
    zero, one = ranks[0]["straight"], ranks[1]["straight"]
    n = len(build_dataset(DIGITS, 0).train)
    assert [r["epoch"] for r in zero["results"]] == [1, 2] == [r["epoch"] for r in one["results"]]
    for r in zero["results"]:
        assert 0.0 <= r["val/acc"] <= 1.0
        assert r["train/samples"] == WORLD * (n // WORLD // 32) * 32  # both ranks' batches
    assert "test/acc" in zero["results"][-1] and "best/test/acc" in zero["results"][-1]
    assert not any(k.startswith(("val/", "test/", "best/")) for r in one["results"] for k in r)
    for name, tensor in zero["final"]["model"].items():
        if "running_" not in name and "num_batches" not in name:  # BatchNorm statistics: each rank's own
            assert torch.equal(tensor, one["final"]["model"][name]), name  # (DDP gives rank 0's at each step)


def test_a_data_parallel_trial_resumes_exactly_from_rank_zeros_checkpoint(ranks):
    straight, resumed = ranks[0]["straight"], ranks[0]["resumed"]
    assert [r["epoch"] for r in resumed["results"]] == [2]
    for name, tensor in straight["final"]["model"].items():
        assert torch.equal(tensor, resumed["final"]["model"][name]), name
    assert resumed["results"][-1]["val/acc"] == straight["results"][-1]["val/acc"]


def test_relabelled_targets_are_shared_between_ranks(ranks):
    zero, one = ranks[0]["scn"], ranks[1]["scn"]
    assert torch.equal(zero["targets"], one["targets"])
    assert sum(r["train/relabel_count"] for r in zero["results"]) > 0
    assert not torch.equal(zero["targets"], build_dataset(DIGITS, 1).train.targets)


def test_a_branch_some_steps_leave_unused_trains_under_ddp_when_the_method_says_so(ranks):
    zero, one = ranks[0]["unused"], ranks[1]["unused"]
    assert [r["epoch"] for r in zero["results"]] == [1]
    for name, tensor in zero["final"]["model"].items():
        if "running_" not in name and "num_batches" not in name:
            assert torch.equal(tensor, one["final"]["model"][name]), name  # the ranks stay in step
    assert "find_unused_parameters" in ranks[0]["undeclared"]  # DDP's own advice, without the flag


def test_a_diverging_data_parallel_trial_ends_on_every_rank(ranks):
    for out in ranks:
        assert out["diverged"]["diverged"] == 1.0 and out["diverged"]["val/acc"] == float("-inf")


# ---------------------------------------------------------------------------
# One real multi-worker trial: Ray Train (gloo, 2 workers) inside Tune, MLflow once
# ---------------------------------------------------------------------------
@pytest.mark.integration
def test_a_two_worker_trial_trains_with_ray_train_and_is_logged_once(workdir, capsys):
    from mlflow.tracking import MlflowClient
    from ray import tune

    path = write_sweep(workdir, "ddp", num_samples=1, epochs=2, scheduler={"name": "fifo"},
                       resources={"workers": 2, "cpus_per_worker": 1},
                       methods={"ce": {"num_samples": 1, "overrides": {"epochs": 2, "batch_size": 64}}})
    started = time.monotonic()
    folder, (result,) = runner.run_sweep(load_sweep(path), num_cpus=2)
    run_dir = folder.local
    elapsed = time.monotonic() - started
    assert result.complete and result.finished == 1 and result.failed == 0

    # Tune saw the single-process metric names every epoch, with both workers' batches
    analysis = tune.ExperimentAnalysis(str(run_dir / "ce"))
    (trial,) = analysis.trials
    history = analysis.trial_dataframes[trial.trial_id]
    assert list(history["epoch"]) == [1, 2]
    assert history["val/acc"].notna().all() and history["train/loss"].notna().all()
    n = len(build_dataset(DIGITS, 0).train)  # each worker: every step, 32 of the 64
    assert list(history["train/samples"]) == [2 * (n // 2 // 32) * 32] * 2
    assert "best/test/acc" in trial.last_result

    # one MLflow child run, each epoch logged once (by rank 0), the world size as a param
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ddp")
    children = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 1
    run = children[0]
    assert run.data.tags["sweeplab.status"] == "finished" and run.info.status == "FINISHED"
    assert run.data.params["workers"] == "2" and run.data.params["batch_size"] == "64"
    for key in ("val/acc", "train/loss", "train/samples"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2], key

    # the checkpoints are Train's (rank 0's), in the run folder, under a name from the trial id
    train_run = run_dir / distributed.TRAIN_FOLDER / distributed.train_run_name(Path(trial.path).name)
    # kept: the latest (it holds the best epoch's weights too)
    assert len([p for p in train_run.glob("checkpoint_*") if p.is_dir()]) == 1

    first_result = history["time_total_s"].iloc[0]
    per_epoch = history["time_total_s"].iloc[1] - first_result
    with capsys.disabled():
        print(f"\n2-worker trial: sweep {elapsed:.1f} s, trial start to first result {first_result:.1f} s, "
              f"then {per_epoch:.2f} s per epoch")
