"""The built-in retrieval digits: two-digit numbers, class-disjoint train / val / test, two styles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sweeplab.data import RetrievalDigitsOptions, build_dataset, parse_dataset_options
from sweeplab.data.retrieval_digits import draw_number


@pytest.fixture(scope="module")
def bundle():
    return build_dataset({"name": "retrieval_digits", "per_class": 10}, seed=0)


def test_train_val_and_test_numbers_are_disjoint_and_labels_contiguous(bundle):
    train, val, test = (set(s.numbers.tolist()) for s in (bundle.train, bundle.val, bundle.test))
    assert train | val == set(range(50)) and test == set(range(50, 100))
    assert not train & val and len(val) == 5 and bundle.info.num_classes == 45 == len(train)
    assert bundle.info.task == "retrieval" and bundle.info.input_shape == (1, 16, 16)
    for split in (bundle.train, bundle.val, bundle.test):
        assert split.targets.unique().tolist() == list(range(len(set(split.numbers.tolist()))))
        assert len(split) == 10 * len(set(split.numbers.tolist()))
    assert bundle.info.class_names == tuple(f"{n:02d}" for n in sorted(train))
    assert RetrievalDigitsOptions(per_class=10).num_classes == 45
    assert RetrievalDigitsOptions(val_source="test").num_classes == 50


def test_a_number_is_its_two_digits_side_by_side_and_style_1_inverts_them():
    tens, units = np.full((8, 8), 0.25, dtype=np.float32), np.full((8, 8), 0.75, dtype=np.float32)
    plain = draw_number(tens, units, 0, 0.0, np.random.default_rng(0))
    inverted = draw_number(tens, units, 1, 0.0, np.random.default_rng(0))
    assert plain[4:12, :8].mean() == pytest.approx(0.25) and plain[4:12, 8:].mean() == pytest.approx(0.75)
    assert inverted[4:12, :8].mean() == pytest.approx(0.75) and inverted[4:12, 8:].mean() == pytest.approx(0.25)
    assert plain[:4].sum() == 0 and plain[12:].sum() == 0


def test_the_same_seed_draws_the_same_data_and_val_can_be_test():
    a = build_dataset({"name": "retrieval_digits", "per_class": 4}, seed=1)
    b = build_dataset({"name": "retrieval_digits", "per_class": 4}, seed=1)
    assert torch.equal(a.train.inputs, b.train.inputs) and torch.equal(a.val.numbers, b.val.numbers)
    c = build_dataset({"name": "retrieval_digits", "per_class": 4}, seed=2)
    assert not torch.equal(a.train.inputs, c.train.inputs)
    d = build_dataset({"name": "retrieval_digits", "per_class": 4, "val_source": "test"}, seed=1)
    assert d.val is d.test and d.info.num_classes == 50
    with pytest.raises(Exception, match="styles"):
        parse_dataset_options({"name": "retrieval_digits", "styles": 3})
