"""The built-in fine-grained digits: classes (digit, mark variant), two redundant marks, the cue-erased test set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from sweeplab.data import FineDigitsOptions, build_dataset, parse_dataset_options
from sweeplab.data.fine_digits import SALIENT_MARKS, SUBTLE_MARKS, class_names, draw


def trimmed(mask: np.ndarray) -> np.ndarray:
    """The mask cut to the bounding box of its set entries."""
    rows, cols = np.nonzero(mask)
    return mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


@pytest.fixture(scope="module")
def bundle():
    return build_dataset({"name": "fine_digits"}, seed=0)


def test_classes_are_digit_and_variant_and_every_digit_image_is_drawn_in_every_variant(bundle):
    info = bundle.info
    assert info.num_classes == 20 and info.class_names[:5] == ("0a", "0b", "0c", "0d", "1a")
    assert info.input_shape == (1, 24, 24) and bundle.train.inputs.shape[1:] == (1, 24, 24)
    for split in (bundle.train, bundle.val, bundle.test):
        targets = split.targets.numpy()
        sources = split.source_indices
        assert len(targets) % 4 == 0
        # each source digit image appears once per variant, with the classes of its digit
        for source in np.unique(sources)[:20]:
            classes = sorted(targets[sources == source])
            assert classes == list(range(classes[0], classes[0] + 4)) and classes[0] % 4 == 0
    train, test = set(bundle.train.source_indices), set(bundle.test.source_indices)
    assert not train & test and not train & set(bundle.val.source_indices)
    assert info.train_class_counts == tuple(np.bincount(bundle.train.targets.numpy(), minlength=20))


def test_the_cue_erased_test_set_is_the_test_drawings_without_the_salient_mark(bundle):
    erased = bundle.extra_tests["cue_erased"]
    assert torch.equal(erased.targets, bundle.test.targets)
    difference = (bundle.test.inputs - erased.inputs)[:, 0]
    changed = difference.abs() > 1e-6
    # the difference is exactly one 3x3 mark: the variant's salient shape
    for i in range(8):
        salient = SALIENT_MARKS[int(bundle.test.targets[i]) % 4]
        assert trimmed(changed[i].numpy()).tolist() == trimmed(salient > 0).tolist()


def test_the_two_marks_are_drawn_apart_from_the_digit_and_each_other():
    options = FineDigitsOptions(noise=0.0, erase="subtle")
    digit = np.zeros((8, 8), dtype=np.float32)
    digit[2:6, 3:5] = 1.0
    for variant in range(4):
        full, without_subtle = draw(digit, variant, options, np.random.default_rng(variant))
        subtle = full - without_subtle
        assert np.isclose(subtle.max(), 0.5, rtol=0.11)
        assert trimmed(subtle > 0).tolist() == trimmed(SUBTLE_MARKS[variant] > 0).tolist()
        salient = without_subtle  # the digit (ink 1.0) and the salient mark, no noise
        assert np.isclose(salient[salient < 0.99].max(), 0.9, rtol=0.11)  # the salient mark's intensity
        assert ((subtle > 0) & (without_subtle > 0)).sum() == 0  # no overlap with the digit or the other mark


def test_the_marks_of_different_variants_differ_within_and_across_cues():
    shapes = [m.tobytes() for m in (*SALIENT_MARKS, *SUBTLE_MARKS)]
    assert len(set(shapes)) == len(shapes)


def test_the_same_seed_draws_the_same_data_and_options_are_checked():
    a, b = build_dataset({"name": "fine_digits", "digits": 2, "variants": 2}, 3), \
        build_dataset({"name": "fine_digits", "digits": 2, "variants": 2}, 3)
    assert torch.equal(a.train.inputs, b.train.inputs) and a.info.num_classes == 4
    assert class_names(FineDigitsOptions(digits=2, variants=3)) == ("0a", "0b", "0c", "1a", "1b", "1c")
    assert parse_dataset_options({"name": "fine_digits", "canvas": 32}).input_shape == (1, 32, 32)
    assert FineDigitsOptions(digits=3).num_classes == 12
    with pytest.raises(ValidationError, match="variants"):
        parse_dataset_options({"name": "fine_digits", "variants": 5})
    with pytest.raises(ValidationError, match="canvas"):
        parse_dataset_options({"name": "fine_digits", "canvas": 16})


def test_a_trial_reports_the_cue_erased_test_set_beside_test():
    from sweeplab.context import CONTEXT_KEY
    from sweeplab.engine import MemoryReporter, train
    from sweeplab.tasks import task_family

    config = {"epochs": 1, "batch_size": 32, "optimizer": "sgd", "lr": 0.03,
              CONTEXT_KEY: {"method": "db_gce", "seed": 0, "model": {"backbone": "small_cnn"},
                            "dataset": {"name": "fine_digits", "digits": 2, "variants": 2}}}
    final = train(config, MemoryReporter())
    expected = set(task_family("classification").reported_metrics(("cue_erased",)))
    assert {"test_cue_erased/acc", "best/test_cue_erased/acc", "test_cue_erased/mean_class_acc"} <= expected
    assert {m for m in expected if "cue_erased" in m} <= set(final)
    assert 0.0 <= final["test_cue_erased/acc"] <= 1.0
