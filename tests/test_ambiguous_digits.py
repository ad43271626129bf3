"""Ambiguous digits: blends with look-alike partners, annotator labels, clean val/test."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch
from sklearn.datasets import load_digits

from sweeplab.data import AmbiguousDigitsOptions
from sweeplab.data.ambiguous_digits import (
    LOOKALIKE_PAIRS,
    PARTNERS,
    blend_images,
    build_ambiguous_digits,
)

RAW = (load_digits().data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
LABELS = load_digits().target.astype(np.int64)


def build(seed=0, **options):
    return build_ambiguous_digits(AmbiguousDigitsOptions(**options), seed)


@pytest.fixture(scope="module")
def bundle():
    return build(seed=0)


def unstandardise(dataset, train):
    return dataset.inputs.numpy() * train.pixel_std + train.pixel_mean


def test_partner_table_is_symmetric_and_covers_every_digit():
    assert set(PARTNERS) == set(range(10)) and all(PARTNERS[c] for c in range(10))
    for x, y in LOOKALIKE_PAIRS:
        assert y in PARTNERS[x] and x in PARTNERS[y]
    assert PARTNERS[3] == (5, 8) and PARTNERS[7] == (1, 2) and PARTNERS[0] == (6,)


def test_deterministic_per_seed_and_seed_matters():
    a, b, c = build(seed=4), build(seed=4), build(seed=5)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).inputs, getattr(b, split).inputs)
        assert torch.equal(getattr(a, split).targets, getattr(b, split).targets)
    assert torch.equal(a.train.lam, b.train.lam) and torch.equal(a.train.partner, b.train.partner)
    assert torch.equal(a.extra_tests["blended"].inputs, b.extra_tests["blended"].inputs)
    assert not np.array_equal(a.train.source_indices, c.train.source_indices)
    # the blended test set has its own stream: train options do not move it
    d = build(seed=4, blend_fraction=0.9, labelling="dominant")
    assert torch.equal(a.extra_tests["blended"].lam, d.extra_tests["blended"].lam)
    assert torch.equal(a.extra_tests["blended"].partner_source, d.extra_tests["blended"].partner_source)


@pytest.mark.parametrize("fraction", [0.0, 0.4, 1.0])
def test_blend_share_is_exact(fraction):
    data = build(seed=1, blend_fraction=fraction)
    blended = data.train.partner >= 0
    assert int(blended.sum()) == round(fraction * len(data.train))
    assert torch.all(data.train.lam[~blended] == 1.0) and torch.all(data.train.partner_source[~blended] == -1)


@pytest.mark.parametrize("low,high", [(0.5, 1.0), (0.6, 0.8)])
def test_lambda_in_range(low, high):
    data = build(seed=2, blend_fraction=1.0, lambda_low=low, lambda_high=high)
    for lam in (data.train.lam, data.extra_tests["blended"].lam):
        assert float(lam.min()) >= low and float(lam.max()) <= high
        assert float(lam.max() - lam.min()) > 0.8 * (high - low)  # spread over the range, not a constant


def test_partner_always_a_listed_lookalike_from_the_same_split(bundle):
    for dataset, split in ((bundle.train, bundle.train), (bundle.extra_tests["blended"], bundle.test)):
        blended = (dataset.partner >= 0).numpy()
        clean = dataset.clean_targets.numpy()[blended]
        partner = dataset.partner.numpy()[blended]
        source = dataset.partner_source.numpy()[blended]
        assert all(int(p) in PARTNERS[int(c)] for c, p in zip(clean, partner))
        assert np.array_equal(LABELS[source], partner)  # b really is an image of y_b
        assert np.isin(source, split.source_indices).all()  # ... taken from the same split
    # digits with two partners get both
    train = bundle.train
    for digit in (3, 5, 7, 8, 9):
        got = set(train.partner[(train.clean_targets == digit) & (train.partner >= 0)].tolist())
        assert got == set(PARTNERS[digit])


def test_blended_pixels_are_lambda_a_plus_one_minus_lambda_b(bundle):
    train = bundle.train
    assert np.allclose(blend_images(np.ones((2, 1, 8, 8)), np.zeros((2, 1, 8, 8)), [0.7, 0.5])[:, 0, 0, 0], [0.7, 0.5])
    raw = unstandardise(train, train)
    lam = train.lam.numpy()
    source_b = train.partner_source.numpy()
    blended = source_b >= 0
    a = RAW[train.source_indices]
    expected = a.copy()
    expected[blended] = blend_images(a[blended], RAW[source_b[blended]], lam[blended])
    assert np.allclose(raw, expected, atol=1e-5)
    manual = lam[blended, None, None, None] * a[blended] + (1 - lam[blended, None, None, None]) * RAW[source_b[blended]]
    assert np.allclose(raw[blended], manual, atol=1e-5)
    # the blended test set alike, every image blended
    tb = bundle.extra_tests["blended"]
    assert bool((tb.partner >= 0).all())
    expected = blend_images(RAW[tb.source_indices], RAW[tb.partner_source.numpy()], tb.lam.numpy())
    assert np.allclose(unstandardise(tb, train), expected, atol=1e-5)


def test_standardised_with_the_training_inputs_statistics(bundle):
    x = bundle.train.inputs
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-3


def test_annotator_labels_follow_lambda():
    # Pool blended train samples over seeds. Each is labelled y_b with probability 1 - lam, so
    # the count of y_b labels has mean sum(1 - lam) and variance sum(lam (1 - lam)); allow 4 sd.
    lam, to_partner, flipped = [], [], []
    for seed in range(4):
        train = build(seed=seed, blend_fraction=1.0).train
        blended = train.partner >= 0
        lam.append(train.lam[blended].numpy())
        to_partner.append((train.targets == train.partner)[blended].numpy())
        flipped.append((train.targets != train.clean_targets)[blended].numpy())
    lam, to_partner, flipped = map(np.concatenate, (lam, to_partner, flipped))
    assert np.array_equal(to_partner, flipped)  # every changed label is the partner, never another digit
    p = 1.0 - lam.astype(np.float64)
    sd = np.sqrt(np.sum(p * (1 - p)))
    assert abs(to_partner.sum() - p.sum()) < 4 * sd, (to_partner.sum(), p.sum(), sd)
    # and ambiguity drives it: the more ambiguous half flips far more often than the clearer half
    ambiguous = lam < np.median(lam)
    assert to_partner[ambiguous].mean() > 0.35 and to_partner[~ambiguous].mean() < 0.15
    assert to_partner[lam > 0.95].mean() < 0.05


def test_unblended_train_labels_are_clean(bundle):
    train = bundle.train
    unblended = train.partner < 0
    assert torch.equal(train.targets[unblended], train.clean_targets[unblended])


def test_dominant_labelling_never_flips():
    data = build(seed=3, blend_fraction=1.0, labelling="dominant")
    assert torch.equal(data.train.targets, data.train.clean_targets)
    assert torch.equal(data.train.targets, data.train_clean_targets)


def test_clean_targets_info_and_train_class_counts(bundle):
    train = bundle.train
    assert bundle.train_clean_targets.dtype == torch.int64
    assert np.array_equal(bundle.train_clean_targets.numpy(), LABELS[train.source_indices])
    assert torch.equal(train.clean_targets, bundle.train_clean_targets)
    info = bundle.info
    assert info.task == "classification" and info.num_classes == 10 and info.input_shape == (1, 8, 8)
    assert info.train_size == len(train)
    assert info.train_class_counts == tuple(np.bincount(train.targets.numpy(), minlength=10).tolist())
    assert not torch.equal(train.targets, train.clean_targets)  # the counts are of the noisy labels


def test_val_and_test_are_clean_and_splits_disjoint(bundle):
    train = bundle.train
    for split in (bundle.val, bundle.test):
        assert np.array_equal(split.targets.numpy(), LABELS[split.source_indices])
        assert np.allclose(unstandardise(split, train), RAW[split.source_indices], atol=1e-5)
        assert bool((split.partner < 0).all()) and bool((split.lam == 1.0).all())
    tb = bundle.extra_tests["blended"]
    assert np.array_equal(tb.source_indices, bundle.test.source_indices)
    assert np.array_equal(tb.targets.numpy(), LABELS[tb.source_indices])  # labelled y_a
    sets = [set(s.source_indices.tolist()) for s in (train, bundle.val, bundle.test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(map(len, sets)) == len(LABELS)


def test_shapes_and_items(bundle):
    for dataset in (bundle.train, bundle.val, bundle.test, bundle.extra_tests["blended"]):
        assert dataset.inputs.shape[1:] == (1, 8, 8) and dataset.inputs.dtype == torch.float32
        x, y, i = dataset[3]
        assert x.shape == (1, 8, 8) and y.dtype == torch.int64 and i == 3
    assert bundle.train.lam.dtype == torch.float32 and bundle.train.partner.dtype == torch.int64


def test_options_validation():
    options = AmbiguousDigitsOptions()
    assert (options.name, options.blend_fraction, options.lambda_low, options.lambda_high, options.labelling) == \
        ("ambiguous_digits", 0.4, 0.5, 1.0, "annotator")
    assert AmbiguousDigitsOptions.task == "classification"
    assert AmbiguousDigitsOptions.model_validate({"name": "ambiguous_digits", "lambda_low": 0.7}).build(0).info.num_classes == 10
    for bad in ({"lambda_low": 0.4}, {"lambda_low": 0.8, "lambda_high": 0.8}, {"lambda_low": 0.9, "lambda_high": 0.6},
                {"lambda_high": 1.1}, {"blend_fraction": 1.5}, {"labelling": "majority"}, {"noise_rate": 0.2},
                {"name": "noisy_digits"}):
        with pytest.raises(pydantic.ValidationError):
            AmbiguousDigitsOptions.model_validate(bad)
    with pytest.raises(pydantic.ValidationError):
        options.blend_fraction = 0.1  # frozen


def test_a_trial_trains_on_it_through_the_engine():
    from sweeplab.context import CONTEXT_KEY
    from sweeplab.engine import MemoryReporter, train

    reporter = MemoryReporter()
    final = train({"epochs": 1, "batch_size": 64, CONTEXT_KEY: {"method": "scn", "dataset": {
        "name": "ambiguous_digits", "blend_fraction": 0.4}, "seed": 0}}, reporter)
    assert 0.0 <= final["test/acc"] <= 1.0 and final["train/samples"] > 0
