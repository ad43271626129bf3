"""Search-space YAML <-> Param <-> Optuna, and the problems a space file can have."""

from __future__ import annotations

import textwrap

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sweeplab.spaces import (
    Param,
    SpecError,
    fixed_values,
    flatten,
    nest,
    parse_space,
    to_optuna,
    upper_bound,
)

SPACE = textwrap.dedent(
    """
    lr: {type: float, low: 1e-4, high: 1.0e-1, log: true}
    weight_decay: {type: float, low: 0.0, high: 1.0e-3, step: 1.0e-4}
    batch_size: {type: categorical, choices: [32, 64, 128]}
    epochs: {type: int, low: 2, high: 8}
    width: {type: int, low: 8, high: 256, log: true}
    label_smoothing: 0.1
    milestones: [3, 6]
    optimizer: {value: adam}
    scn:
      beta: {type: float, low: 0.5, high: 0.9}
      warmup: {type: int, low: 0, high: 10, step: 2}
      relabel: true
    """
)


def parse(text: str) -> dict[str, Param]:
    return parse_space(yaml.safe_load(textwrap.dedent(text)), "space.yaml")


def test_parse_reads_every_kind():
    space = parse(SPACE)
    assert space["lr"] == Param("float", low=1e-4, high=0.1, log=True)
    assert space["weight_decay"] == Param("float", low=0.0, high=1e-3, step=1e-4)
    assert space["batch_size"] == Param("categorical", choices=(32, 64, 128))
    assert space["epochs"] == Param("int", low=2, high=8)
    assert space["label_smoothing"] == Param("fixed", value=0.1)
    assert space["milestones"] == Param("fixed", value=[3, 6])
    assert space["optimizer"] == Param("fixed", value="adam")
    assert space["scn/beta"] == Param("float", low=0.5, high=0.9)
    assert space["scn/warmup"] == Param("int", low=0, high=10, step=2)
    assert space["scn/relabel"] == Param("fixed", value=True)


def test_exponent_strings_are_floats():
    # YAML 1.1 reads 1e-4 (no dot) as a string
    raw = yaml.safe_load("lr: {type: float, low: 1e-4, high: 1e-1, log: true}\nwd: 5e-4\n"
                         "c: {type: categorical, choices: [1e-3, 1e-2]}")
    assert raw["lr"]["low"] == "1e-4"
    space = parse_space(raw, "space.yaml")
    assert space["lr"].low == pytest.approx(1e-4) and isinstance(space["lr"].low, float)
    assert space["wd"].value == pytest.approx(5e-4)
    assert space["c"].choices == (1e-3, 1e-2)


def test_optuna_round_trip():
    space = parse(SPACE)
    dists = to_optuna(space)
    searched = {name: p for name, p in space.items() if p.kind != "fixed"}
    assert set(dists) == set(searched)
    assert dists["lr"] == FloatDistribution(1e-4, 0.1, log=True)
    assert dists["weight_decay"] == FloatDistribution(0.0, 1e-3, step=1e-4)
    assert dists["epochs"] == IntDistribution(2, 8)
    assert dists["scn/warmup"] == IntDistribution(0, 10, step=2)
    assert dists["batch_size"] == CategoricalDistribution([32, 64, 128])


def test_int_upper_bound_is_inclusive_in_optuna():
    dist = to_optuna(parse("epochs: {type: int, low: 2, high: 8}"))["epochs"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = {study.ask({"epochs": dist}).params["epochs"] for _ in range(300)}
    assert values == set(range(2, 9))


def test_fixed_values_nest_groups():
    space = parse(SPACE)
    assert fixed_values(space) == {"label_smoothing": 0.1, "milestones": [3, 6], "optimizer": "adam",
                                   "scn": {"relabel": True}}


def test_nest_and_flatten():
    flat = {"lr": 0.1, "scn/beta": 0.5, "scn/inner/k": 3}
    assert nest(flat) == {"lr": 0.1, "scn": {"beta": 0.5, "inner": {"k": 3}}}
    assert flatten(nest(flat)) == flat
    with pytest.raises(ValueError):
        nest({"scn": 1, "scn/beta": 2})


def test_upper_bound():
    space = parse("a: {type: int, low: 2, high: 8}\nb: {type: categorical, choices: [3, 12, 5]}\nc: 4\n"
                  "d: {type: categorical, choices: [x, y]}")
    assert [upper_bound(space[k]) for k in "abc"] == [8, 12, 4]
    with pytest.raises(TypeError):
        upper_bound(space["d"])


def test_int_step_one_is_the_default_step():
    assert parse("e: {type: int, low: 1, high: 5, step: 1}")["e"] == Param("int", low=1, high=5)


BAD = [
    ("lr: {type: float, low: 0.1, high: 1.0, lgo: true}", "lr.lgo", "unknown key 'lgo'; allowed: type, low, high"),
    ("lr: {type: real, low: 0.1, high: 1.0}", "lr.type", "unknown type 'real'; allowed: float, int, categorical"),
    ("lr: {type: float, high: 1.0}", "lr", "needs 'low'"),
    ("lr: {type: float, low: 0.1, high: 0.01}", "lr", "inverted range"),
    ("lr: {type: float, low: 0.1, high: 0.1}", "lr", "use a fixed value"),
    ("lr: {type: float, low: 0.0, high: 0.1, log: true}", "lr.low", "log scale needs low > 0"),
    ("lr: {type: float, low: 0.1, high: 1.0, log: true, step: 0.1}", "lr.step", "cannot be combined"),
    ("lr: {type: float, low: 0.1, high: 1.0, step: 0}", "lr.step", "must be > 0"),
    ("lr: {type: float, low: 0.0, high: 1.0, step: 0.3}", "lr.high", "not a multiple of step"),
    ("lr: {type: float, low: abc, high: 1.0}", "lr.low", "must be a finite number"),
    ("e: {type: int, low: 1.5, high: 4}", "e.low", "whole numbers"),
    ("e: {type: int, low: 1, high: 9, step: 2.5}", "e.step", "whole numbers"),
    ("c: {type: categorical}", "c.choices", "non-empty list"),
    ("c: {type: categorical, choices: []}", "c.choices", "non-empty list"),
    ("c: {type: categorical, choices: [1, 2, 1]}", "c.choices[2]", "appears twice"),
    ("c: {type: categorical, choices: [[1, 2], 3]}", "c.choices[0]", "not a scalar"),
    ("lr: {type: float, low: 0.1, high: 1.0, choices: [1]}", "lr.choices", "categorical only"),
    ("c: {type: categorical, choices: [1], low: 0}", "c.low", "does not apply to type categorical"),
    ("o: {value: adam, low: 1}", "o", "takes only 'value'"),
    ("lr: {low: 0.1, high: 1.0}", "lr", "no 'type'"),
    ("g: {}", "g", "empty group"),
    ("g: {beta: {type: float, low: 1, high: 0}}", "g.beta", "inverted range"),
]


@pytest.mark.parametrize("text, key, message", BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_specs_name_file_and_key(text, key, message):
    with pytest.raises(SpecError) as caught:
        parse(text)
    assert any(i.file == "space.yaml" and i.key == key and message in i.message for i in caught.value.issues), str(
        caught.value)
    assert f"space.yaml: {key}: " in str(caught.value)


def test_all_problems_reported_together():
    with pytest.raises(SpecError) as caught:
        parse("a: {type: float, low: 1, high: 0}\nb: {type: int, low: 1, high: 1}\nc: {type: what}\n"
              "d: {type: float, low: 0.1, high: 1.0}")
    assert [i.key for i in caught.value.issues] == ["a", "b", "c.type"]
