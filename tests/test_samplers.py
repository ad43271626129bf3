"""Class-aware sampling: each class drawn for equally often, rare classes' images seen far more."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sweeplab.data.samplers import ClassAwareSampler


def _long_tailed_multi_hot():
    """1,090 images with 1000 / 100 / 10 positives; 20 images hold both class 0 and class 1."""
    targets = torch.zeros(1090, 3)
    targets[:1000, 0] = 1
    targets[980:1080, 1] = 1
    targets[1080:, 2] = 1
    return targets


def test_classes_are_drawn_for_uniformly_and_the_sample_is_much_flatter():
    targets = _long_tailed_multi_hot()
    assert targets.sum(0).tolist() == [1000, 100, 10]
    sampler = ClassAwareSampler(targets, num_samples=9000, seed=0)
    draws = list(sampler.draws())
    drawn_for = np.bincount([c for _, c in draws], minlength=3)
    assert drawn_for.tolist() == [3000, 3000, 3000]  # whole cycles: exactly equal

    indices = torch.tensor([i for i, _ in draws])
    assert all(targets[i, c] == 1 for i, c in draws[:500])  # each draw holds the class it was drawn for
    share = targets[indices].mean(0).numpy()  # fraction of sampled images containing each class
    data_share = (targets.sum(0) / len(targets)).numpy()
    assert share.max() / share.min() < 1.2  # about 1/3 each (a few class-0 images hold class 1 too)
    assert data_share.max() / data_share.min() == pytest.approx(100)


def test_every_image_of_a_class_comes_before_any_repeats():
    targets = _long_tailed_multi_hot()
    draws = list(ClassAwareSampler(targets, num_samples=300, seed=3).draws())
    tail = [i for i, c in draws if c == 2]  # 100 draws for a class of 10 images: 10 full passes
    for start in range(0, 100, 10):
        assert sorted(tail[start:start + 10]) == list(range(1080, 1090))


def test_epoch_length_default_and_given():
    targets = _long_tailed_multi_hot()
    assert len(ClassAwareSampler(targets)) == len(list(ClassAwareSampler(targets))) == 1090
    sampler = ClassAwareSampler(targets, num_samples=77)
    assert len(sampler) == 77 and len(list(sampler)) == 77
    with pytest.raises(ValueError, match="num_samples"):
        ClassAwareSampler(targets, num_samples=0)


def test_determinism_by_seed_epoch_and_generator():
    targets = _long_tailed_multi_hot()
    first = list(ClassAwareSampler(targets, num_samples=200, seed=5))
    assert first == list(ClassAwareSampler(targets, num_samples=200, seed=5))
    assert first != list(ClassAwareSampler(targets, num_samples=200, seed=6))

    sampler = ClassAwareSampler(targets, num_samples=200, seed=5)
    assert list(sampler) == list(sampler) == first  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != first

    def with_generator(seed):
        return list(ClassAwareSampler(targets, num_samples=200, generator=torch.Generator().manual_seed(seed)))

    assert with_generator(1) == with_generator(1) != with_generator(2)


def test_single_label_targets_and_a_dataloader():
    labels = torch.tensor([0] * 90 + [1] * 9 + [3] * 1)  # class 2 has no image: skipped
    sampler = ClassAwareSampler(labels, num_samples=300, seed=0)
    drawn = labels[list(sampler)]
    assert torch.bincount(drawn, minlength=4).tolist() == [100, 100, 0, 100]
    dataset = torch.utils.data.TensorDataset(torch.arange(100), labels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=10, sampler=sampler)
    assert sum(len(batch[0]) for batch in loader) == 300


def test_rejects_targets_it_cannot_read():
    with pytest.raises(ValueError, match="multi-hot"):
        ClassAwareSampler(torch.rand(5))
    with pytest.raises(ValueError, match="no class"):
        ClassAwareSampler(torch.zeros(4, 3))
