"""A trial's DataLoaders (``sweeplab.loaders``): the plan from the trial's CPUs, and one training
loader whose persistent worker processes serve every epoch's sampler and see relabelled targets."""

from __future__ import annotations

import torch
from torch.utils.data import SequentialSampler

from sweeplab.data.indexed import IndexedTensorDataset
from sweeplab.loaders import EpochLoader, LoaderPlan, TrainLoaders, evaluation_loader, loader_plan

CPU, GPU = torch.device("cpu"), torch.device("cuda")


def test_the_plan_follows_the_trials_cpus_and_what_the_dataset_asks():
    assert loader_plan(0, 8, GPU) == LoaderPlan(workers=0, pin_memory=True)  # in memory: no worker
    assert loader_plan(None, 8, GPU) == LoaderPlan(workers=7, pin_memory=True)  # one CPU trains
    assert loader_plan(None, 1, GPU).workers == 1  # a GPU trial still decodes beside its training thread
    assert loader_plan(None, 1, CPU) == LoaderPlan(workers=0, pin_memory=False)
    assert loader_plan(None, 4, CPU).workers == 3 and loader_plan(3, 16, CPU).workers == 3
    assert loader_plan(None, 8, GPU).persistent and not loader_plan(0, 8, GPU).persistent


def dataset(n: int = 12) -> IndexedTensorDataset:
    return IndexedTensorDataset(torch.arange(n, dtype=torch.float32).view(n, 1), torch.zeros(n, dtype=torch.long))


def test_one_loader_with_persistent_workers_serves_each_epochs_sampler_and_sees_relabelled_targets():
    data = dataset()
    loader = EpochLoader(data, batch_size=4, drop_last=False, plan=LoaderPlan(workers=1, pin_memory=False))
    first = loader.for_epoch(None, torch.Generator().manual_seed(0))
    order = torch.cat([x.view(-1) for x, _, _ in first]).long().tolist()
    assert sorted(order) == list(range(12)) and order != list(range(12))  # a shuffle
    workers = first._iterator._workers  # the processes of the first epoch
    data.targets[:] = 7  # what SCN does between epochs, in the shared-memory tensor
    second = loader.for_epoch(SequentialSampler(data), torch.Generator().manual_seed(1))
    batches = list(second)
    assert torch.cat([x.view(-1) for x, _, _ in batches]).long().tolist() == list(range(12))
    assert all((y == 7).all() for _, y, _ in batches)  # the worker read the new labels
    assert second is first and second._iterator._workers == workers  # the same processes
    again = loader.for_epoch(None, torch.Generator().manual_seed(0))
    assert torch.cat([x.view(-1) for x, _, _ in again]).long().tolist() == order  # (seed, epoch) decides


def test_a_paired_loader_is_built_once_and_shards_go_through_the_parallel():
    seen = []

    def shard(sampler, data, generator, drop_last):
        seen.append(sampler)
        return sampler

    loaders = TrainLoaders(dataset(), 4, True, LoaderPlan(workers=0, pin_memory=False), shard)
    first, second = loaders.for_epoch(None, SequentialSampler(range(12)), torch.Generator().manual_seed(0))
    assert second is not None and len(first) == 3 and len(seen) == 2
    _, again = loaders.for_epoch(None, SequentialSampler(range(12)), torch.Generator().manual_seed(1))
    assert again is second
    assert loaders.for_epoch(None, None, torch.Generator())[1] is None


def test_validation_workers_persist_and_test_workers_do_not():
    plan = LoaderPlan(workers=2, pin_memory=False)
    assert evaluation_loader(dataset(), 4, plan, every_epoch=True).persistent_workers
    assert not evaluation_loader(dataset(), 4, plan, every_epoch=False).persistent_workers
