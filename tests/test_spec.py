"""Sweep files: every bad input names its file, its key path and what is allowed; profiles,
``--set`` and the resolved document."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from sweeplab.spaces import Param
from sweeplab.spec import SpecError, Sweep, load_sweep, validate_files
from trainables.registry import METHODS

SPACE = {
    "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-1, "log": True},
    "epochs": {"type": "int", "low": 2, "high": 4},
    "batch_size": {"type": "categorical", "choices": [32, 64]},
    "label_smoothing": 0.1,
}

SWEEP = {
    "name": "digits_test",
    "dataset": {"name": "noisy_digits", "noise_rate": 0.3},
    "methods": {"ce": {"num_samples": 3, "search_space": "space.yaml"}},
    "profiles": {"demo": {"methods": {"ce": {"num_samples": 2}}, "search": {"max_concurrent": 1}}},
}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative defaults (mlflow.db, sweeplab_results) land here
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def write(folder: Path, doc, space=SPACE) -> Path:
    (folder / "space.yaml").write_text(space if isinstance(space, str) else yaml.safe_dump(space))
    path = folder / "sweep.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def errors_of(path, profile=None, sets=()) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_sweep(path, profile, sets)
    return caught.value


def edit(**changes):
    """A copy of SWEEP with dotted keys set (None deletes the key)."""
    doc = copy.deepcopy(SWEEP)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return doc


# (id, sweep document or text, space, profile, sets, file that holds it, key, part of the message)
BAD = [
    ("unknown top-level key", edit(colour="red"), SPACE, None, (), "sweep", "colour",
     "unknown key 'colour'; allowed: name, description, seed, dataset"),
    ("unknown nested key", edit(search__samplr="tpe"), SPACE, None, (), "sweep", "search.samplr",
     "unknown key 'samplr'; allowed: sampler, metric, mode"),
    ("unknown method", edit(methods__dino={}), SPACE, None, (), "sweep", "methods.dino",
     "unknown method 'dino'; known methods: bce, ce"),
    ("hyperparameter the method lacks (space file)", SWEEP, {**SPACE, "beta": 0.5}, None, (), "space", "beta",
     "unknown hyperparameter 'beta' for method 'ce'; allowed: adam_eps, batch_size, epochs, label_smoothing, lr"),
    ("hyperparameter the method lacks (overrides)", edit(methods__ce__overrides={"scn": {"beta": 0.5}}), SPACE, None,
     (), "sweep", "methods.ce.overrides.scn.beta", "unknown hyperparameter 'scn/beta'"),
    ("inverted range", SWEEP, {**SPACE, "lr": {"type": "float", "low": 0.1, "high": 0.001}}, None, (), "space", "lr",
     "inverted range: low 0.1 > high 0.001"),
    ("empty range", SWEEP, {**SPACE, "epochs": {"type": "int", "low": 3, "high": 3}}, None, (), "space", "epochs",
     "empty range"),
    ("log with non-positive bound", SWEEP, {**SPACE, "lr": {"type": "float", "low": 0, "high": 0.1, "log": True}},
     None, (), "space", "lr.low", "log scale needs low > 0"),
    ("unknown sampler", edit(search__sampler="bayes"), SPACE, None, (), "sweep", "search.sampler",
     "'bayes' is not allowed; allowed: 'tpe', 'random', 'cmaes', 'gp' or 'nsga2'"),
    ("unknown scheduler", edit(scheduler__name="pbt"), SPACE, None, (), "sweep", "scheduler.name",
     "allowed: 'asha', 'hyperband', 'median' or 'fifo'"),
    ("metric not reported", edit(search__metric="val/accuracy", search__mode="max"), SPACE, None, (), "sweep",
     "search.metric", "'val/accuracy' is not reported every epoch by method 'ce' (classification); allowed: train/loss"),
    ("metric without mode", edit(search__metric="val/loss"), SPACE, None, (), "sweep", "search.mode",
     "say whether to maximise or minimise it; allowed: max, min"),
    ("num_samples 0", edit(methods__ce__num_samples=0), SPACE, None, (), "sweep", "methods.ce.num_samples",
     "must be >= 1, got 0"),
    ("negative cpus", edit(resources__cpus=-1), SPACE, None, (), "sweep", "resources.cpus", "must be > 0"),
    ("unknown precision", edit(precision="fp8"), SPACE, None, (), "sweep", "precision",
     "'fp8' is not allowed; allowed: 'auto', 'fp32', 'bf16' or 'fp16'"),
    ("unknown method precision", edit(methods__ce__precision="half"), SPACE, None, (), "sweep",
     "methods.ce.precision", "'half' is not allowed; allowed: 'auto', 'fp32', 'bf16' or 'fp16'"),
    ("checkpoint.keep 0", edit(checkpoint__keep=0), SPACE, None, (), "sweep", "checkpoint.keep",
     "must be a whole number >= 1 or 'all', got 0"),
    ("missing data root", edit(dataset={"name": "image_folder", "root": "no/such/folder"}), SPACE, None, (), "sweep",
     "dataset.root", "folder does not exist"),
    ("unknown dataset", edit(dataset={"name": "cifar"}), SPACE, None, (), "sweep", "dataset.name",
     "unknown dataset 'cifar'; allowed: affectnet, ambiguous_digits, cars196, coco_mlt, cub, cub_retrieval, "
     "fer_csv, ferplus, fgvc_aircraft, fine_digits, image_folder"),
    ("unknown dataset option", edit(dataset__noise=0.2), SPACE, None, (), "sweep", "dataset.noise",
     "unknown key 'noise'; allowed: noise_rate, noise_type"),
    ("missing search-space file", edit(methods__ce__search_space="nowhere.yaml"), SPACE, None, (), "sweep",
     "methods.ce.search_space", "search-space file not found"),
    ("search-space file not a mapping", SWEEP, "- lr\n- epochs\n", None, (), "space", "(top level)",
     "not a search space (named by methods.ce.search_space): expected a mapping of hyperparameter name -> spec, "
     "found a list of 2 item(s)"),
    ("search-space file invalid YAML", SWEEP, "lr: {type: float\n", None, (), "space", "line 2", "invalid YAML"),
    ("bad engine choice", edit(methods__ce__overrides={"optimizer": "rmsprop"}), SPACE, None, (), "sweep",
     "methods.ce.overrides.optimizer", "optimizer: 'rmsprop' is not allowed; allowed: 'sgd', 'adam', 'adamw'"),
    ("bad engine choice in categorical", SWEEP,
     {**SPACE, "lr_schedule": {"type": "categorical", "choices": ["cosine", "linear"]}}, None, (), "space",
     "lr_schedule", "lr_schedule: 'linear' is not allowed; allowed: 'constant', 'cosine', 'exponential', 'step'"),
    ("unknown profile", SWEEP, SPACE, "cluster", (), "sweep", "--profile",
     "unknown profile 'cluster'; profiles in this file: demo"),
    ("--set without =", SWEEP, SPACE, None, ("methods.ce.num_samples",), "sweep", "--set",
     "'methods.ce.num_samples': no '='"),
    ("--set through a non-mapping", SWEEP, SPACE, None, ("name.first=1",), "sweep", "--set",
     "'name.first=1': 'name' is 'digits_test', not a mapping"),
    ("--set bad value", SWEEP, SPACE, None, ("methods.ce.num_samples=many",), "sweep", "methods.ce.num_samples",
     "must be a whole number, got 'many' (from --set methods.ce.num_samples=many)"),
    ("grace_period > epochs", edit(scheduler__grace_period=5), SPACE, None, (), "sweep", "scheduler.grace_period",
     "5 exceeds the epochs method 'ce' trains (4, from epochs in its search space); allowed: 1 to 4"),
    ("grace_period > fixed epochs", edit(scheduler__grace_period=3, methods__ce__overrides={"epochs": 2}), SPACE,
     None, (), "sweep", "scheduler.grace_period", "allowed: 1 to 2"),
    ("bad mode", edit(search__mode="maximize"), SPACE, None, (), "sweep", "search.mode",
     "must be 'max' or 'min'"),
    ("multi-objective with cmaes", edit(search__sampler="cmaes", search__metric=["val/acc", "val/loss"],
                                        search__mode=["max", "min"], scheduler__name="fifo"), SPACE, None, (),
     "sweep", "search.sampler", "allowed: tpe, random, nsga2"),
    ("metric list with one mode", edit(search__sampler="nsga2", search__metric=["val/acc", "val/loss"],
                                       search__mode="max", scheduler__name="fifo"), SPACE, None, (), "sweep",
     "search.mode", "does not match metric"),
    ("n_startup_trials with random", edit(search__sampler="random", search__n_startup_trials=5), SPACE, None, (),
     "sweep", "search.n_startup_trials", "only tpe, cmaes, gp do"),
    ("not a mapping", "- name: x\n", SPACE, None, (), "sweep", "(top level)",
     "not a sweep file: expected a mapping (name, dataset, methods, ...), found a list of 1 item(s)"),
    ("invalid YAML", "name: x\nmethods: {ce: [\n", SPACE, None, (), "sweep", "line 3", "invalid YAML"),
    ("missing required key", edit(dataset=None), SPACE, None, (), "sweep", "dataset",
     "required key is missing; e.g. dataset: {name: noisy_digits}"),
    ("no methods", edit(methods={}), SPACE, None, (), "sweep", "methods",
     "name at least one method; known methods: bce, ce"),
    ("bad sweep name", edit(name="my sweep"), SPACE, None, (), "sweep", "name", "only letters, digits"),
    ("unknown backbone", edit(model={"backbone": "vgg16"}), SPACE, None, (), "sweep", "model.backbone",
     "unknown backbone 'vgg16'; allowed: small_cnn"),
    ("missing weights file", edit(model={"weights": "nope.pt"}), SPACE, None, (), "sweep", "model.weights",
     "file not found: nope.pt"),
    ("section not a mapping", edit(search="tpe"), SPACE, None, (), "sweep", "search",
     "must be a mapping with keys: sampler"),
    ("reduction_factor 1", edit(scheduler__reduction_factor=1), SPACE, None, (), "sweep",
     "scheduler.reduction_factor", "must be > 1"),
    ("bad key from a profile", edit(profiles={"demo": {"search": {"max_concurent": 1}}}), SPACE, "demo", (), "sweep",
     "search.max_concurent", "unknown key 'max_concurent'; allowed: sampler, metric, mode, max_concurrent, "
                             "n_startup_trials (from profile 'demo')"),
    ("profile that is not a mapping", edit(profiles={"demo": "small"}), SPACE, "demo", (), "sweep", "profiles.demo",
     "a profile must be a mapping"),
]


@pytest.mark.parametrize("doc, space, profile, sets, where, key, message", [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_input_names_file_key_and_what_is_allowed(tmp_path, doc, space, profile, sets, where, key, message):
    path = write(tmp_path, doc, space)
    error = errors_of(path, profile, sets)
    file = str(path) if where == "sweep" else "space.yaml"  # the space file is shown relative to the cwd
    matches = [i for i in error.issues if i.file == file and i.key == key and message in i.message]
    assert matches, f"expected {file}: {key}: ...{message}... in\n{error}"
    assert f"{file}: {key}: " in str(error)


def test_bad_inputs_are_many():
    assert len(BAD) >= 15


def test_all_problems_of_a_file_come_together(tmp_path):
    doc = edit(colour="red", methods__ce__num_samples=0, search__sampler="bayes", methods__dino={},
               resources__gpus=-1)
    space = {**SPACE, "lr": {"type": "float", "low": 0.1, "high": 0.001}, "beta": 1}
    error = errors_of(write(tmp_path, doc, space))
    keys = {(Path(i.file).name, i.key) for i in error.issues}
    assert {("sweep.yaml", "colour"), ("sweep.yaml", "methods.ce.num_samples"), ("sweep.yaml", "search.sampler"),
            ("sweep.yaml", "methods.dino"), ("sweep.yaml", "resources.gpus"), ("space.yaml", "lr"),
            ("space.yaml", "beta")} <= keys
    assert len(str(error).splitlines()) == len(error.issues)


def test_valid_file_loads_with_defaults(tmp_path):
    sweep = load_sweep(write(tmp_path, SWEEP))
    assert sweep.name == "digits_test" and sweep.seed == 0 and sweep.description == ""
    assert sweep.dataset["name"] == "noisy_digits" and sweep.dataset["noise_rate"] == 0.3
    assert sweep.dataset["noise_type"] == "symmetric"  # the dataset's own defaults are filled in
    assert (sweep.model.backbone, sweep.model.weights) == ("small_cnn", None)
    assert (sweep.search.sampler, sweep.search.max_concurrent, sweep.search.n_startup_trials) == ("tpe", 2, None)
    assert (sweep.scheduler.name, sweep.scheduler.grace_period, sweep.scheduler.reduction_factor) == ("asha", 1, 2)
    assert (sweep.resources.cpus, sweep.resources.gpus) == (1, 0)
    assert sweep.tracking.uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert sweep.tracking.experiment == "digits_test"
    assert sweep.storage.path == str(tmp_path.resolve() / "sweeplab_results")
    assert (sweep.failure.max_failures, sweep.checkpoint.keep, sweep.checkpoint.kept) == (1, 1, 1)
    assert (sweep.precision, sweep.precision_of("ce"), sweep.model.channels_last) == ("auto", "auto", None)
    assert sweep.profile is None and sweep.file == tmp_path / "sweep.yaml"
    assert "profiles" not in sweep.document
    [study] = sweep.studies
    assert study.method == "ce" and study.entry is METHODS["ce"] and study.num_samples == 3
    assert study.space_file == (tmp_path / "space.yaml").resolve()
    assert study.space["epochs"] == Param("int", low=2, high=4)
    assert study.space["label_smoothing"] == Param("fixed", value=0.1)
    assert (study.metric, study.mode) == ("val/acc", "max")  # the registry's objective


def test_tracking_uri_from_environment_and_storage_made_absolute(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    sweep = load_sweep(write(tmp_path, edit(storage={"path": "results"})))
    assert sweep.tracking.uri == "http://127.0.0.1:5000"
    assert sweep.storage.path == str(tmp_path / "results")


def test_search_space_resolves_next_to_sweep_file_then_cwd(tmp_path):
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    path = write(sweeps, SWEEP)  # space.yaml next to the sweep file
    assert load_sweep(path).studies[0].space_file == (sweeps / "space.yaml").resolve()
    (sweeps / "space.yaml").rename(tmp_path / "space.yaml")  # now only in the cwd
    assert load_sweep(path).studies[0].space_file == (tmp_path / "space.yaml").resolve()


@pytest.mark.skipif(not METHODS["ce"].search_space.is_file(), reason="search_spaces/ce.yaml not written yet")
def test_null_search_space_is_the_registrys(tmp_path):
    sweep = load_sweep(write(tmp_path, edit(methods={"ce": {"num_samples": 2}})))
    assert sweep.studies[0].space_file == METHODS["ce"].search_space.resolve()


def test_overrides_replace_top_level_keys_of_the_space_file(tmp_path):
    doc = edit(methods__ce__overrides={"lr": 0.01, "epochs": {"type": "int", "low": 1, "high": 2},
                                       "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]}})
    space = load_sweep(write(tmp_path, doc)).studies[0].space
    assert space["lr"] == Param("fixed", value=0.01)
    assert space["epochs"] == Param("int", low=1, high=2)
    assert space["optimizer"] == Param("categorical", choices=("sgd", "adamw"))
    assert space["batch_size"] == Param("categorical", choices=(32, 64))  # untouched keys stay


def test_method_metric_and_mode(tmp_path):
    doc = edit(methods__ce__metric="val/loss", methods__ce__mode="min")
    study = load_sweep(write(tmp_path, doc)).studies[0]
    assert (study.metric, study.mode) == ("val/loss", "min")
    # an objective must be reported every epoch: test/* and best/* come only at the end, and
    # ce has no named loss parts (a scheduler would fail on the first result)
    for metric in ("test/acc", "best/val/acc", "train/loss/ce"):
        with pytest.raises(SpecError, match=f"'{metric}' is not reported every epoch"):
            load_sweep(write(tmp_path, edit(search__metric=metric, search__mode="max")))
    multi = edit(search__metric=["val/acc", "val/loss"], search__mode=["max", "min"], search__sampler="nsga2")
    study = load_sweep(write(tmp_path, multi)).studies[0]
    assert (study.metric, study.mode) == (["val/acc", "val/loss"], ["max", "min"])


def test_profile_merges_deeply_and_set_applies_after_it(tmp_path):
    path = write(tmp_path, SWEEP)
    demo = load_sweep(path, "demo")
    assert demo.profile == "demo"
    assert demo.methods["ce"].num_samples == 2  # from the profile
    assert demo.methods["ce"].search_space == str((tmp_path / "space.yaml").resolve())  # kept from the file
    assert demo.search.max_concurrent == 1 and demo.search.sampler == "tpe"
    both = load_sweep(path, "demo", ["methods.ce.num_samples=4", "scheduler.reduction_factor=3",
                                     "search.metric=val/loss", "search.mode=min", "description=a b"])
    assert both.methods["ce"].num_samples == 4 and isinstance(both.document["methods"]["ce"]["num_samples"], int)
    assert both.scheduler.reduction_factor == 3.0
    assert (both.studies[0].metric, both.studies[0].mode) == ("val/loss", "min")
    assert both.description == "a b"
    assert both.search.max_concurrent == 1  # the profile still applies


def test_profile_naming_another_dataset_replaces_it_whole(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    doc = edit(dataset={"name": "image_folder", "root": str(images), "image_size": 64},
               profiles={"demo": {"dataset": {"name": "noisy_digits", "noise_rate": 0.2}}})
    path = write(tmp_path, doc)
    assert load_sweep(path).dataset["root"] == str(images.resolve())
    assert load_sweep(path, "demo").dataset == {"noise_rate": 0.2, "noise_type": "symmetric", "name": "noisy_digits",
                                                 "val_fraction": 0.15, "test_fraction": 0.2, "image_size": 8}


def test_a_set_through_a_yaml_alias_changes_only_the_key_it_names(tmp_path):
    text = yaml.safe_dump({**SWEEP, "methods": {}}, sort_keys=False).replace("methods: {}\n", "") + (
        "methods:\n"
        "  ce:\n    num_samples: 1\n    search_space: space.yaml\n    overrides: &recipe {epochs: 3}\n"
        "  scn:\n    num_samples: 1\n    search_space: space.yaml\n    overrides: *recipe\n")
    space = {k: v for k, v in SPACE.items() if k != "label_smoothing"}
    sweep = load_sweep(write(tmp_path, text, space), sets=["methods.scn.overrides.beta=0.5"])
    ce, scn = sweep.studies
    assert scn.space["beta"].value == 0.5 and "beta" not in ce.space
    assert ce.space["epochs"].value == scn.space["epochs"].value == 3


def test_resolved_document_round_trips(tmp_path, monkeypatch):
    sweep = load_sweep(write(tmp_path, SWEEP), "demo", ["methods.ce.overrides={lr: 1e-3}"])
    saved = tmp_path / "elsewhere" / "resolved.yaml"
    saved.parent.mkdir()
    saved.write_text(sweep.to_yaml())
    monkeypatch.chdir(saved.parent)  # absolute paths: the saved file does not depend on the cwd
    again = load_sweep(saved)
    assert again == sweep
    assert again.document == sweep.document and again.studies == sweep.studies
    assert again.file == saved
    assert Sweep.from_document(yaml.safe_load(sweep.to_yaml()), saved) == sweep


def test_validate_files_checks_every_profile(tmp_path):
    good = write(tmp_path, SWEEP)
    assert validate_files([good]) == []
    doc = edit(profiles={"demo": {"methods": {"ce": {"num_samples": 0}}}})
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    [issue] = validate_files([good, bad])
    assert (issue.file, issue.key) == (str(bad), "methods.ce.num_samples")
    assert "(from profile 'demo')" in issue.message
    assert validate_files([bad], profile="nope")[0].key == "--profile"


@pytest.mark.parametrize("entry, fragment", [
    ({"epochs": 0}, "epochs: 0 is out of range; allowed: a whole number >= 1"),
    ({"batch_size": {"type": "categorical", "choices": [0, 32]}}, "batch_size: 0 is out of range"),
    ({"lr": {"type": "float", "low": 0.0, "high": 0.1}}, "lr: 0.0 is out of range; allowed: a number > 0"),
    ({"lr_gamma": 1.5}, "lr_gamma: 1.5 is out of range; allowed: a number > 0 and <= 1"),
    ({"momentum": -0.5}, "momentum: -0.5 is out of range; allowed: a number >= 0"),
])
def test_engine_hyperparameters_out_of_range(tmp_path, entry, fragment):
    doc = copy.deepcopy(SWEEP)
    doc["methods"]["ce"]["overrides"] = entry
    with pytest.raises(SpecError) as info:
        load_sweep(write(tmp_path, doc))
    key = next(iter(entry))
    assert f"methods.ce.overrides.{key}" in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize("section, fragment", [
    ({"tracking": {"uri": "mlruns"}}, "tracking.uri"),
    ({"tracking": {"uri": "file:///tmp/mlruns"}}, "tracking.uri"),
    ({"storage": {"path": "ftp://host/sweeps"}}, "storage.path"),
    ({"seed": 10**14}, "seed"),
])
def test_run_time_failures_are_caught_by_validation(tmp_path, section, fragment):
    doc = {**copy.deepcopy(SWEEP), **section}
    with pytest.raises(SpecError) as info:
        load_sweep(write(tmp_path, doc))
    assert f"sweep.yaml: {fragment}:" in str(info.value)


def test_an_azure_container_at_an_account_is_not_a_credential(tmp_path):
    doc = {**copy.deepcopy(SWEEP), "storage": {"path": "abfs://runs@myaccount.dfs.core.windows.net/sweeps"}}
    assert load_sweep(write(tmp_path, doc)).storage.path == doc["storage"]["path"]


def test_storage_may_be_an_object_store_uri(tmp_path):
    doc = {**copy.deepcopy(SWEEP), "storage": {"path": "s3://bucket/sweeps?endpoint_override=127.0.0.1:9000&scheme=http",
                                               "sync_period": 5}}
    sweep = load_sweep(write(tmp_path, doc))
    assert sweep.storage.path == doc["storage"]["path"]  # kept as written, not made a local folder
    assert sweep.storage.sync_period == 5


@pytest.mark.parametrize("path, fragment", [
    ("ftp://host/sweeps", "unknown storage scheme 'ftp'; allowed: a folder, or a URI with one of s3://"),
    ("s3://AKIA:secret@bucket/sweeps", "a credential in the URI (user:password@) would be logged"),
    ("abfs://c@acct.dfs.core.windows.net/x?sig=secret", "a credential in the URI (query option 'sig') would be"),
    ("s3:///sweeps", "no bucket"),
])
def test_bad_storage_uris_are_refused_with_what_is_allowed(tmp_path, path, fragment):
    doc = {**copy.deepcopy(SWEEP), "storage": {"path": path}}
    with pytest.raises(SpecError) as info:
        load_sweep(write(tmp_path, doc))
    assert "sweep.yaml: storage.path:" in str(info.value) and fragment in str(info.value)
    assert "secret" not in str(info.value)  # a credential is not echoed


def test_epochs_and_batch_size_must_be_whole(tmp_path):
    for entry in ({"epochs": 2.5}, {"batch_size": {"type": "float", "low": 16, "high": 64}}):
        doc = copy.deepcopy(SWEEP)
        doc["methods"]["ce"]["overrides"] = entry
        with pytest.raises(SpecError, match="is not a whole number|must be a whole number"):
            load_sweep(write(tmp_path, doc))


# -- a method's own options, declared once beside their defaults ---------------------------------------
@pytest.mark.parametrize("method, entry, fragment", [
    ("scn", {"relabel_scope": "high"}, "relabel_scope: 'high' is not allowed; allowed: 'all', 'low'"),
    ("scn", {"beta": 1.5}, "beta: 1.5 is out of range; allowed: a number >= 0 and <= 1"),
    ("scn", {"beta": {"type": "float", "low": 0.5, "high": 1.2}}, "beta: 1.2 is out of range"),
    ("scn", {"relabel_epoch": {"type": "categorical", "choices": [5, "sometimes"]}},
     "relabel_epoch: 'sometimes' is not a (finite) number; allowed: a whole number >= 1, or 'never'"),
    ("scn", {"relabel_scope": {"type": "float", "low": 0, "high": 1}}, "'relabel_scope' is categorical"),
    ("ltml", {"consistency": "kl"}, "consistency: 'kl' is not allowed; allowed: 'probs', 'logits'"),
    ("ltml", {"compensation": 1}, "compensation: 1 is not allowed; allowed: False, True"),
    ("bce", {"sampler_epoch_length": 0}, "sampler_epoch_length: 0 is out of range; allowed: a number > 0"),
])
def test_a_methods_options_are_checked_before_anything_runs(tmp_path, method, entry, fragment):
    dataset = {"name": "noisy_digits"} if method == "scn" else {"name": "lt_digits"}
    doc = {**copy.deepcopy(SWEEP), "dataset": dataset,
           "methods": {method: {"num_samples": 1, "overrides": entry}}}
    issues = validate_files([write(tmp_path, doc)])
    key = f"methods.{method}.overrides.{next(iter(entry))}"
    assert any(i.key == key and fragment in i.message for i in issues), issues


def test_every_values_a_search_space_can_give_are_checked(tmp_path):
    space = {**SPACE, "label_smoothing": {"type": "float", "low": 0.0, "high": 1.5}}
    issues = validate_files([write(tmp_path, SWEEP, space)])
    assert [(i.file, i.key) for i in issues] == [("space.yaml", "label_smoothing")]
    assert "label_smoothing: 1.5 is out of range; allowed: a number >= 0 and <= 1" in issues[0].message


# -- metric names MLflow would refuse ---------------------------------------------------------------------
def test_a_metric_name_mlflow_refuses_is_an_error_at_validation(tmp_path, monkeypatch):
    from trainables.scn import SCN

    monkeypatch.setattr(SCN, "epoch_metrics", (*SCN.epoch_metrics, "recall@1"))
    doc = {**copy.deepcopy(SWEEP), "methods": {"scn": {"num_samples": 1}}}
    issues = validate_files([write(tmp_path, doc)])
    [issue] = [i for i in issues if i.key == "methods.scn"]
    assert "reports metric 'train/recall@1', which MLflow refuses" in issue.message and "'@'" in issue.message


# -- hostile and broken files -------------------------------------------------------------------------------
BILLION_LAUGHS = "name: lol\n" + "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))


def test_nested_aliases_are_refused_at_once(tmp_path):
    import time

    path = tmp_path / "lol.yaml"
    path.write_text(BILLION_LAUGHS)
    assert path.stat().st_size < 1000  # a few hundred bytes standing for 9^9 values
    started = time.monotonic()
    [issue] = validate_files([path])
    assert time.monotonic() - started < 20  # (it took > 30 s, growing without bound, before the bound)
    assert issue.file == str(path) and "aliases" in issue.message and "refused" in issue.message


def test_a_sweep_file_that_is_not_utf8_is_refused_with_the_byte_offset(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    [issue] = validate_files([path])
    assert issue.file == str(path) and "not UTF-8 text: byte 0xe9 at offset 9" in issue.message


def test_a_search_space_that_is_another_kind_of_file_is_named_not_shown(tmp_path):
    secrets = tmp_path / "passwd"
    secrets.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    doc = {**copy.deepcopy(SWEEP), "methods": {"ce": {"num_samples": 1, "search_space": str(secrets)}}}
    issues = validate_files([write(tmp_path, doc)])
    text = "\n".join(map(str, issues))
    assert [Path(i.file).name for i in issues] == ["passwd"]  # the file is named (relative to the cwd)
    assert "not a search space (named by methods.ce.search_space)" in text
    assert "root" not in text and "nologin" not in text and "bash" not in text  # its content is not shown


def test_set_values_go_through_the_same_reader(tmp_path):
    error = errors_of(write(tmp_path, SWEEP), sets=["methods.ce.num_samples=[*x]"])
    [issue] = error.issues
    assert issue.key == "--set" and "not valid YAML" in issue.message


def test_a_batch_too_small_for_the_methods_class_means_is_refused_before_compute(tmp_path):
    doc = {**copy.deepcopy(SWEEP), "methods": {"dmue": {"num_samples": 1, "overrides": {"batch_size": 16}}}}
    issues = validate_files([write(tmp_path, doc)])
    assert any(i.key == "methods.dmue" and "batch_size 16, below 20 for the dataset's 10 classes: DMUE compares"
               in i.message for i in issues), issues
    doc["methods"]["dmue"]["overrides"]["batch_size"] = 20
    assert validate_files([write(tmp_path, doc)]) == []


def test_confirm_and_baseline_are_checked_before_anything_runs(tmp_path):
    from conftest import write_sweep

    path = write_sweep(tmp_path, "c", num_samples=2, epochs=2, confirm={"seeds": 1, "top": 0}, baseline="bce")
    issues = validate_files([path])
    keys = {i.key for i in issues}
    assert {"confirm.seeds", "confirm.top", "baseline"} <= keys, issues
    (baseline,) = [i for i in issues if i.key == "baseline"]
    assert "'bce' is not one of the sweep's methods; allowed: ce" in baseline.message
    sweep = load_sweep(write_sweep(tmp_path, "d", num_samples=2, epochs=2, confirm={"seeds": 4}))
    assert (sweep.confirm.seeds, sweep.confirm.top, sweep.baseline_method) == (4, 1, "ce")  # ce: the registry's baseline


def test_a_search_space_file_validates_as_one(tmp_path):
    from conftest import REPO

    assert validate_files([REPO / "search_spaces" / "scn.yaml"]) == []
    bad = tmp_path / "scn.yaml"
    bad.write_text("beta: {type: float, low: 0.9, high: 0.5}\nfoo: 3\n")
    messages = {i.key: i.message for i in validate_files([bad])}
    assert "inverted range" in messages["beta"] and "unknown hyperparameter 'foo' for method 'scn'" in messages["foo"]
    other = tmp_path / "my_space.yaml"
    other.write_text("lr: 0.1\n")
    (issue,) = validate_files([other])
    assert "'my_space' is not a method" in issue.message and "sweep file that uses it" in issue.message
