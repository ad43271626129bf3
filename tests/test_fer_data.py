"""Facial expression data: RAF-DB's published layout and CSV manifests, written here in miniature."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from sweeplab.data import DATASETS, FerCsvOptions, RafDbOptions, build_dataset, parse_dataset_options
from sweeplab.data.fer import RAF_DB_CLASSES, stratified_holdout
from sweeplab.context import CONTEXT_KEY
from sweeplab.engine import MemoryReporter, train
from sweeplab.spec import SpecError, load_sweep

from conftest import REPO

# RAF-DB lines "name label" with labels 1..7: 14 train images (2 per class), 7 test images
RAF_TRAIN = [(f"train_{i + 1:05d}.jpg", i % 7 + 1) for i in range(14)]
RAF_TEST = [(f"test_{i + 1:04d}.jpg", i % 7 + 1) for i in range(7)]
SIZE = 16  # image_size used by the tests (small and fast)


def _jpeg(path, shade=0, size=(20, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (shade, 255 - shade, 90)).save(path, "JPEG")


@pytest.fixture
def raf_root(tmp_path):
    root = tmp_path / "RAF-DB" / "basic"
    lines = []
    for name, label in RAF_TRAIN + RAF_TEST:
        _jpeg(root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"), shade=30 * label)
        _jpeg(root / "Image" / "original" / name, shade=30 * label, size=(40, 30))
        lines.append(f"{name} {label}")
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


def raf(root, **options):
    return build_dataset({"name": "raf_db", "root": str(root), "image_size": SIZE, "workers": 0, **options}, seed=0)


# -- RAF-DB -------------------------------------------------------------------------------------
def test_raf_db_reads_the_published_layout_with_0_based_labels(raf_root):
    data = raf(raf_root, val_source="test")
    assert DATASETS["raf_db"] is RafDbOptions and RafDbOptions.task == "classification"
    assert data.info.class_names == RAF_DB_CLASSES == (
        "Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
    assert data.info.num_classes == 7 and data.info.input_shape == (3, SIZE, SIZE)
    assert data.train.targets.tolist() == [label - 1 for _, label in RAF_TRAIN]
    assert data.test.targets.tolist() == [label - 1 for _, label in RAF_TEST]
    assert data.val is data.test and data.info.train_size == 14 and data.num_workers == 0
    assert [p.rsplit("/", 1)[1] for p in data.train.paths[:2]] == ["train_00001_aligned.jpg", "train_00002_aligned.jpg"]
    assert torch.equal(data.train_clean_targets, data.train.targets)
    image, target, index = data.train[3]
    assert image.shape == (3, SIZE, SIZE) and target.dtype == torch.long and target.item() == 3 and index == 3
    assert data.info.train_class_counts == (2,) * 7


def test_raf_db_original_images(raf_root):
    data = raf(raf_root, images="original", val_source="test")
    assert data.train.paths[0].endswith("Image/original/train_00001.jpg")
    assert data.train[0][0].shape == (3, SIZE, SIZE)


def test_raf_db_holds_out_a_stratified_clean_val_share_and_noises_train_only(raf_root):
    data = raf(raf_root, val_fraction=0.49, noise_rate=0.5)
    # 0.49 * 14 -> 7 held out, one per class (each class has 2)
    assert len(data.val) == 7 and len(data.train) == 7 and sorted(data.val.targets.tolist()) == list(range(7))
    assert data.val.paths[0].endswith("_aligned.jpg") and not set(data.val.paths) & set(data.train.paths)
    names = {f"{name.removesuffix('.jpg')}_aligned.jpg": label - 1 for name, label in RAF_TRAIN + RAF_TEST}
    for split in (data.val, data.test):  # val and test keep the published labels
        assert split.targets.tolist() == [names[p.rsplit("/", 1)[1]] for p in split.paths]
    clean = data.train_clean_targets
    assert clean.tolist() == [names[p.rsplit("/", 1)[1]] for p in data.train.paths]
    assert int((data.train.targets != clean).sum()) == round(0.5 * 7)
    assert data.info.train_class_counts == tuple(np.bincount(data.train.targets.numpy(), minlength=7))
    again = raf(raf_root, val_fraction=0.49, noise_rate=0.5)
    assert again.val.paths == data.val.paths and torch.equal(again.train.targets, data.train.targets)


def test_raf_db_targets_can_be_relabelled(raf_root):
    data = raf(raf_root, val_source="test")
    data.train.targets[0] = 6
    assert data.train[0][1].item() == 6


def test_scn_trains_on_raf_db_and_relabels(raf_root):
    """A tiny end-to-end trial: 3-channel images, the file dataset's targets rewritten by SCN."""
    config = {
        "epochs": 2, "batch_size": 4, "lr": 0.05, "relabel_epoch": 1, "margin_2": 0.0,
        CONTEXT_KEY: {"method": "scn", "seed": 0, "model": {"backbone": "small_cnn"},
                      "dataset": {"name": "raf_db", "root": str(raf_root), "image_size": SIZE, "workers": 0,
                                  "augment": False, "val_source": "test", "noise_rate": 0.3}},
    }
    reporter = MemoryReporter()
    train(config, reporter)
    assert len(reporter.results) == 2 and "test/acc" in reporter.results[-1]
    assert sum(r["train/relabel_count"] for r in reporter.results) > 0
    assert "train/label_noise" in reporter.results[-1]
    assert reporter.checkpoint["method"]["targets"].shape == (14,)


def test_raf_db_missing_root_label_file_or_image_folder_are_named(raf_root, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValidationError, match=str(missing)):
        parse_dataset_options({"name": "raf_db", "root": str(missing)})
    (raf_root / "EmoLabel" / "list_patition_label.txt").rename(raf_root / "labels.txt")
    with pytest.raises(ValidationError, match="EmoLabel/list_patition_label.txt"):
        parse_dataset_options({"name": "raf_db", "root": str(raf_root)})
    # an explicit label file elsewhere is fine
    options = parse_dataset_options({"name": "raf_db", "root": str(raf_root), "label_file": str(raf_root / "labels.txt")})
    assert options.label_file == (raf_root / "labels.txt").resolve()
    (raf_root / "Image" / "original").rename(raf_root / "Image" / "elsewhere")
    with pytest.raises(ValidationError, match="Image/original"):
        parse_dataset_options({"name": "raf_db", "root": str(raf_root), "label_file": str(raf_root / "labels.txt"),
                               "images": "original"})


@pytest.mark.parametrize("line, message", [
    ("train_00099.jpg 8", "label '8' is not one of 1..7"),
    ("train_00099.jpg 0", "label '0' is not one of 1..7"),
    ("train_00099.jpg happy", "label 'happy'"),
    ("val_00001.jpg 3", "starts with neither train_ nor test_"),
    ("train_00099.jpg", "expected '<image name> <label 1-7>'"),
])
def test_raf_db_bad_label_lines_are_refused_before_anything_runs(raf_root, line, message):
    label_file = raf_root / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text(label_file.read_text() + line + "\n")
    with pytest.raises(ValidationError) as error:
        parse_dataset_options({"name": "raf_db", "root": str(raf_root)})
    assert message in str(error.value) and f"{label_file}, line {len(RAF_TRAIN + RAF_TEST) + 1}" in str(error.value)


def test_raf_db_missing_images_are_named(raf_root):
    gone = raf_root / "Image" / "aligned" / "test_0003_aligned.jpg"
    gone.unlink()
    with pytest.raises(FileNotFoundError, match=str(gone)):
        raf(raf_root)


def test_fer_noisy_sweep_validates_on_a_raf_db_tree_and_names_a_missing_root(raf_root, tmp_path):
    sweep_file = REPO / "sweeps" / "fer_noisy.yaml"
    sweep = load_sweep(sweep_file, sets=[f"dataset.root={raf_root}"])
    assert sweep.dataset["name"] == "raf_db" and [s.method for s in sweep.studies] == ["ce", "scn"]
    scn = next(s for s in sweep.studies if s.method == "scn")
    assert scn.space["relabel_epoch"].choices == (5, 10, 15, 20, "never")
    missing = tmp_path / "no" / "RAF-DB"
    with pytest.raises(SpecError) as error:
        load_sweep(sweep_file, sets=[f"dataset.root={missing}"])
    assert "dataset.root" in str(error.value) and str(missing) in str(error.value)
    demo = load_sweep(sweep_file, profile="demo")
    scn = next(s for s in demo.studies if s.method == "scn")
    assert demo.dataset["name"] == "noisy_digits" and scn.space["relabel_epoch"].choices == (3, 5, "never")
    assert scn.space["epochs"].value == 12


# -- stratified hold-out -----------------------------------------------------------------------
def test_stratified_holdout_is_per_class_and_seeded():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    keep, held = stratified_holdout(labels, 0.1, seed=0)
    assert len(held) == 10 and np.bincount(labels[held]).tolist() == [5, 3, 2]
    assert sorted(keep.tolist() + held.tolist()) == list(range(100))
    again, _ = stratified_holdout(labels, 0.1, seed=0)
    other, _ = stratified_holdout(labels, 0.1, seed=1)
    assert np.array_equal(keep, again) and not np.array_equal(keep, other)
    # remainders: 0.25 * [3, 3, 2] = [0.75, 0.75, 0.5] -> 2 in all (round(0.25 * 8)), from the largest remainders
    keep, held = stratified_holdout(np.array([0, 0, 0, 1, 1, 1, 2, 2]), 0.25, seed=0)
    assert len(held) == 2 and sorted(np.array([0, 0, 0, 1, 1, 1, 2, 2])[held].tolist()) == [0, 1]
    assert len(stratified_holdout(np.array([0, 1, 2]), 0.1, seed=0)[1]) == 1  # at least one


# -- CSV manifests ------------------------------------------------------------------------------
@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "faces"
    for i in range(12):
        _jpeg(folder / f"img{i}.jpg", shade=20 * i)
    return folder


def write_csv(path, rows, header="path,label"):
    path.write_text(header + "\n" + "".join(f"{p},{label}\n" for p, label in rows))
    return path


def csv_data(tmp_path, images, train_labels, test_labels, **options):
    train = write_csv(tmp_path / "train.csv", [(f"img{i}.jpg", lab) for i, lab in enumerate(train_labels)])
    test = write_csv(tmp_path / "test.csv", [(f"img{8 + i}.jpg", lab) for i, lab in enumerate(test_labels)])
    raw = {"name": "fer_csv", "train": str(train), "test": str(test), "image_root": str(images),
           "image_size": SIZE, "workers": 0, "val_source": "test", **options}
    return build_dataset(raw, seed=0)


def test_fer_csv_with_named_classes(tmp_path, images):
    classes = ["neutral", "happy", "sad"]
    data = csv_data(tmp_path, images, ["happy", "sad", "neutral", "happy", "sad", "neutral", "happy", "sad"],
                    ["sad", "neutral", "happy", "happy"], classes=classes)
    assert DATASETS["fer_csv"] is FerCsvOptions
    assert data.info.class_names == tuple(classes) and data.info.num_classes == 3
    assert data.train.targets.tolist() == [1, 2, 0, 1, 2, 0, 1, 2] and data.test.targets.tolist() == [2, 0, 1, 1]
    assert data.train.paths[0] == str(images / "img0.jpg") and data.train[0][0].shape == (3, SIZE, SIZE)


def test_fer_csv_indices_with_classes_and_label_base(tmp_path, images):
    data = csv_data(tmp_path, images, [1, 2, 3, 1, 2, 3, 1, 2], [3, 3, 1, 2], classes=["a", "b", "c"], label_base=1)
    assert data.train.targets.tolist() == [0, 1, 2, 0, 1, 2, 0, 1] and data.test.targets.tolist() == [2, 2, 0, 1]
    # names and indices may mix when classes are given
    data = csv_data(tmp_path, images, ["a", 1, "c", 0, 1, 2, 0, 1], [2, 2, 0, 1], classes=["a", "b", "c"])
    assert data.train.targets.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]


def test_fer_csv_without_classes(tmp_path, images):
    data = csv_data(tmp_path, images, [0, 1, 4, 0, 1, 4, 0, 1], [4, 4, 0, 1])
    assert data.info.class_names == ("0", "1", "2", "3", "4")  # 0..max label
    assert data.info.train_class_counts == (3, 3, 0, 0, 2)
    data = csv_data(tmp_path, images, ["sad", "happy"] * 4, ["happy"] * 4)
    assert data.info.class_names == ("happy", "sad") and data.train.targets.tolist() == [1, 0] * 4


def test_fer_csv_val_from_a_file_or_a_train_share_and_noise_on_train_only(tmp_path, images):
    labels = [0, 1, 0, 1, 0, 1, 0, 1]
    val = write_csv(tmp_path / "val.csv", [("img10.jpg", 1), ("img11.jpg", 0)])
    data = csv_data(tmp_path, images, labels, [0, 1, 0, 1], val=str(val), val_source="train_fraction",
                    noise_rate=0.5)
    assert data.val.targets.tolist() == [1, 0] and len(data.train) == 8
    assert data.train_clean_targets.tolist() == labels
    assert int((data.train.targets != data.train_clean_targets).sum()) == 4
    assert data.test.targets.tolist() == [0, 1, 0, 1]
    data = csv_data(tmp_path, images, labels, [0, 1, 0, 1], val_source="train_fraction", val_fraction=0.25)
    assert len(data.val) == 2 and sorted(data.val.targets.tolist()) == [0, 1] and len(data.train) == 6


def test_fer_csv_errors_name_file_line_and_path(tmp_path, images):
    with pytest.raises(ValueError, match=r"train\.csv, line 3: unknown label 'angry'"):
        csv_data(tmp_path, images, ["a", "angry"], ["a"], classes=["a", "b"])
    with pytest.raises(ValueError, match=r"train\.csv, line 2: unknown label '3'"):
        csv_data(tmp_path, images, [3, 0], [0], classes=["a", "b"])
    with pytest.raises(ValueError, match=r"line 3: integer label '1' among name labels"):
        csv_data(tmp_path, images, ["a", 1], ["a"])
    with pytest.raises(ValueError, match=r"label 0 is below label_base 1"):
        csv_data(tmp_path, images, [1, 0], [1], label_base=1)
    write_csv(tmp_path / "t.csv", [("img99.jpg", 0), ("img1.jpg", 1)])
    with pytest.raises(FileNotFoundError, match=str(images / "img99.jpg")):
        build_dataset({"name": "fer_csv", "train": str(tmp_path / "t.csv"), "test": str(tmp_path / "t.csv"),
                       "image_root": str(images), "workers": 0}, seed=0)
    write_csv(tmp_path / "bad.csv", [("img1.jpg", 0)], header="file,emotion")
    with pytest.raises(ValueError, match=r"bad\.csv: needs a header with columns path,label"):
        build_dataset({"name": "fer_csv", "train": str(tmp_path / "bad.csv"), "test": str(tmp_path / "bad.csv"),
                       "image_root": str(images)}, seed=0)


def test_fer_csv_options_are_checked_before_anything_runs(tmp_path, images):
    train = write_csv(tmp_path / "train.csv", [("img0.jpg", 0), ("img1.jpg", 1)])
    with pytest.raises(ValidationError, match=str(tmp_path / "missing.csv")):
        parse_dataset_options({"name": "fer_csv", "train": str(train), "test": str(tmp_path / "missing.csv")})
    with pytest.raises(ValidationError, match=str(tmp_path / "no_images")):
        parse_dataset_options({"name": "fer_csv", "train": str(train), "test": str(train),
                               "image_root": str(tmp_path / "no_images")})
    with pytest.raises(ValidationError, match="either a val CSV or val_source: test"):
        parse_dataset_options({"name": "fer_csv", "train": str(train), "test": str(train), "val": str(train),
                               "val_source": "test"})
    with pytest.raises(ValidationError, match="twice"):
        parse_dataset_options({"name": "fer_csv", "train": str(train), "test": str(train), "classes": ["a", "a"]})
    with pytest.raises(ValidationError, match="noise_rate"):
        parse_dataset_options({"name": "fer_csv", "train": str(train), "test": str(train), "noise_rate": 1.0})
