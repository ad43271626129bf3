"""Built-in and folder datasets: label noise, splits, indexed items, relabelling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from sweeplab.data import ImageFolderOptions, NoisyDigitsOptions, build_dataset
from sweeplab.data.indexed import IndexedDataset, IndexedTensorDataset
from sweeplab.data.noise import inject_label_noise


# -- label noise -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["symmetric", "pairwise"])
@pytest.mark.parametrize("rate", [0.2, 0.4])
def test_noise_rate_is_exact_and_flipped_labels_change(kind, rate):
    clean = np.repeat(np.arange(10), 50)  # 500 labels
    noisy = inject_label_noise(clean, 10, rate, kind, seed=3)
    flipped = noisy != clean
    assert flipped.sum() == round(rate * len(clean))
    assert noisy.dtype == np.int64 and noisy.min() >= 0 and noisy.max() < 10
    if kind == "pairwise":
        assert np.array_equal(noisy[flipped], (clean[flipped] + 1) % 10)


def test_symmetric_noise_reaches_every_other_class():
    clean = np.zeros(2000, dtype=np.int64)
    noisy = inject_label_noise(clean, 5, 0.5, "symmetric", seed=0)
    counts = np.bincount(noisy[noisy != 0], minlength=5)[1:]
    assert counts.sum() == 1000 and counts.min() > 200  # about 250 each


def test_noise_is_deterministic_for_a_seed_and_accepts_tensors():
    clean = torch.arange(100) % 7
    first = inject_label_noise(clean, 7, 0.3, "symmetric", seed=11)
    assert np.array_equal(first, inject_label_noise(clean.numpy(), 7, 0.3, "symmetric", seed=11))
    assert not np.array_equal(first, inject_label_noise(clean, 7, 0.3, "symmetric", seed=12))


def test_zero_noise_returns_an_unchanged_copy():
    clean = np.arange(10)
    noisy = inject_label_noise(clean, 10, 0.0, "symmetric", seed=0)
    assert np.array_equal(noisy, clean) and noisy is not clean


def test_noise_rejects_bad_arguments():
    with pytest.raises(ValueError, match="known kinds"):
        inject_label_noise(np.zeros(4, dtype=int), 2, 0.5, "uniform", seed=0)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        inject_label_noise(np.array([0, 3]), 3, 0.5, "symmetric", seed=0)


# -- noisy digits ----------------------------------------------------------------------


def _digits(seed=0, **options):
    return NoisyDigitsOptions(**options).build(seed)


def test_digits_train_noise_rate_and_clean_targets():
    bundle = _digits(noise_rate=0.4, noise_type="pairwise")
    noisy, clean = bundle.train.targets, bundle.train_clean_targets
    sklearn_labels = load_digits().target
    assert torch.equal(clean, torch.as_tensor(sklearn_labels[bundle.train.source_indices]))
    flipped = noisy != clean
    assert flipped.sum().item() == round(0.4 * len(clean))
    assert torch.equal(noisy[flipped], (clean[flipped] + 1) % 10)
    assert bundle.info.train_class_counts == tuple(torch.bincount(noisy, minlength=10).tolist())


def test_digits_val_and_test_are_clean():
    bundle = _digits(noise_rate=0.4)
    sklearn_labels = load_digits().target
    for split in (bundle.val, bundle.test):
        assert np.array_equal(split.targets.numpy(), sklearn_labels[split.source_indices])


def test_digits_split_is_disjoint_stratified_and_seeded():
    bundle = _digits(val_fraction=0.15, test_fraction=0.2)
    labels = load_digits().target
    splits = [bundle.train.source_indices, bundle.val.source_indices, bundle.test.source_indices]
    assert sum(len(s) for s in splits) == len(labels)
    assert len(np.unique(np.concatenate(splits))) == len(labels)
    assert abs(len(bundle.test) - 0.2 * len(labels)) <= 1 and abs(len(bundle.val) - 0.15 * len(labels)) <= 10
    overall = np.bincount(labels) / len(labels)
    for split in splits:
        assert np.abs(np.bincount(labels[split], minlength=10) / len(split) - overall).max() < 0.01

    again, other = _digits(seed=0), _digits(seed=1)
    assert np.array_equal(again.test.source_indices, bundle.test.source_indices)
    assert not np.array_equal(other.test.source_indices, bundle.test.source_indices)


def test_digits_items_info_and_standardisation():
    bundle = _digits()
    image, target, index = bundle.train[5]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32
    assert target.dtype == torch.int64 and target.ndim == 0 and index == 5
    train_images = bundle.train.inputs
    assert abs(train_images.mean().item()) < 1e-4 and abs(train_images.std().item() - 1) < 1e-2
    info = bundle.info
    assert info.task == "classification" and info.num_classes == 10
    assert info.class_names == tuple("0123456789") and info.input_shape == (1, 8, 8)
    assert info.train_size == len(bundle.train) and bundle.num_workers == 0


def test_digits_through_build_dataset_and_a_dataloader():
    bundle = build_dataset({"name": "noisy_digits", "noise_rate": 0.2}, seed=4)
    images, targets, indices = next(iter(torch.utils.data.DataLoader(bundle.train, batch_size=16)))
    assert images.shape == (16, 1, 8, 8) and targets.shape == (16,) and targets.dtype == torch.int64
    assert torch.equal(indices, torch.arange(16))


# -- indexed datasets ------------------------------------------------------------------


def test_relabelling_the_tensor_dataset_changes_its_items():
    dataset = IndexedTensorDataset(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
    dataset.targets[2] = 7
    assert dataset[2][1].item() == 7
    dataset.targets[torch.tensor([0, 1])] = torch.tensor([5, 5])
    assert [dataset[i][1].item() for i in range(4)] == [5, 5, 7, 3]


def test_wrapper_reads_targets_from_its_own_tensor():
    base = torch.utils.data.TensorDataset(torch.randn(3, 2), torch.tensor([0, 1, 0]))
    dataset = IndexedDataset(base)  # TensorDataset has no .targets: read from its items
    assert dataset.targets.tolist() == [0, 1, 0]
    dataset.targets[1] = 4
    x, target, index = dataset[1]
    assert torch.equal(x, base[1][0]) and target.item() == 4 and index == 1
    with pytest.raises(ValueError, match="2 targets"):
        IndexedDataset(base, targets=[0, 1])


# -- image folders ---------------------------------------------------------------------


def _write_images(root, split, classes, per_class=3):
    for position, name in enumerate(classes):
        folder = root / split / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            mode = "L" if i == 0 else "RGB"  # a grayscale file must come out RGB too
            color = 40 * position + i if mode == "L" else (40 * position, 10 * i, 200)
            Image.new(mode, (20 + i, 16), color).save(folder / f"{i}.png")


@pytest.mark.parametrize("with_test", [False, True])
def test_image_folder_loads_classes_and_shapes(tmp_path, with_test):
    classes = ["cat", "dog", "fox"]
    _write_images(tmp_path, "train", classes, per_class=4)
    _write_images(tmp_path, "val", classes)
    if with_test:
        _write_images(tmp_path, "test", classes, per_class=2)
    options = ImageFolderOptions(root=tmp_path, image_size=12, workers=0, noise_rate=0.25)
    bundle = options.build(seed=0)

    assert bundle.info.class_names == tuple(classes) and bundle.info.num_classes == 3
    assert bundle.info.input_shape == (3, 12, 12) and bundle.info.train_size == 12
    assert len(bundle.test) == (6 if with_test else 9)
    assert (bundle.test is bundle.val) != with_test
    for split in (bundle.train, bundle.val, bundle.test):
        image, target, index = split[0]
        assert image.shape == (3, 12, 12) and image.dtype == torch.float32
        assert target.dtype == torch.int64 and index == 0

    clean = bundle.train_clean_targets
    assert clean.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert (bundle.train.targets != clean).sum().item() == 3  # round(0.25 * 12)
    assert bundle.val.targets.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    bundle.train.targets[0] = 2
    assert bundle.train[0][1].item() == 2


def test_image_folder_without_augmentation_is_deterministic(tmp_path):
    _write_images(tmp_path, "train", ["a", "b"])
    _write_images(tmp_path, "val", ["a", "b"])
    bundle = ImageFolderOptions(root=tmp_path, image_size=8, augment=False, workers=2).build(seed=0)
    assert torch.equal(bundle.train[1][0], bundle.train[1][0]) and bundle.num_workers == 2


def test_image_folder_class_mismatch_names_the_folders(tmp_path):
    _write_images(tmp_path, "train", ["cat", "dog"])
    _write_images(tmp_path, "val", ["cat", "emu"])
    with pytest.raises(ValueError, match=r"train.*val.*\['dog'\].*\['emu'\]"):
        ImageFolderOptions(root=tmp_path, image_size=8).build(seed=0)


def test_image_folder_missing_val_names_the_folder(tmp_path):
    _write_images(tmp_path, "train", ["cat"])
    with pytest.raises(FileNotFoundError, match="val"):
        ImageFolderOptions(root=tmp_path, image_size=8).build(seed=0)
