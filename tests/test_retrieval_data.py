"""Metric-learning datasets with class-disjoint splits (CUB-200-2011, Cars196, Stanford Online
Products), written here in miniature: the published class ids, a few images each."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from scipy.io import savemat

from sweeplab.data import (DATASETS, Cars196Options, CubRetrievalOptions, SopOptions, parse_dataset_options)
from sweeplab.data.retrieval import contiguous, hold_out_classes

SIZE = 16  # image_size used by the tests (small and fast)
BOX = (10, 5, 20, 16)  # x, y, width, height of the red object in every 40x30 test image
CORNERS = (BOX[0] + 1, BOX[1] + 1, BOX[0] + BOX[2], BOX[1] + BOX[3])  # x1, y1, x2, y2: inclusive, 1-based
PER_CLASS = 3  # images of each class listed

# class ids with images: the last train class and the first test class sit at the published boundary
CUB_TRAIN, CUB_TEST = (*range(1, 10), 100), (101, 102, 103, 200)
CARS_TRAIN, CARS_TEST = (*range(1, 10), 98), (99, 100, 101, 196)
SOP_TRAIN, SOP_TEST = tuple(range(1, 11)), (11319, 11320, 11321, 22634)


def _jpeg(path, shade=0):
    """A 40x30 blue image with a red ``BOX`` (its shade varies per image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (40, 30), (0, 0, 255))
    x, y, w, h = BOX
    image.paste(Image.new("RGB", (w, h), (255, shade, 0)), (x, y))
    image.save(path, "JPEG", quality=95)


def _write_cub(root):
    """CUB_200_2011 with classes.txt's 200 classes and images for CUB_TRAIN + CUB_TEST; returns
    {image path: class id}. No train_test_split.txt: the retrieval split does not read it."""
    images, labels, boxes, truth = [], [], [], {}
    key = 0
    for class_id in CUB_TRAIN + CUB_TEST:
        for k in range(PER_CLASS):
            key += 1
            relative = f"{class_id:03d}.Bird_{class_id}/bird_{key:04d}.jpg"
            _jpeg(root / "images" / relative, shade=key % 250)
            images.append(f"{key} {relative}")
            labels.append(f"{key} {class_id}")
            boxes.append(f"{key} {BOX[0]:.1f} {BOX[1]:.1f} {BOX[2]:.1f} {BOX[3]:.1f}")
            truth[str(root / "images" / relative)] = class_id
    for name, lines in (("images.txt", images), ("image_class_labels.txt", labels), ("bounding_boxes.txt", boxes),
                        ("classes.txt", [f"{c} {c:03d}.Bird_{c}" for c in range(1, 201)])):
        (root / name).write_text("\n".join(lines) + "\n")
    return truth


def _cars_annotations(rows):
    """A struct array as cars_annos.mat's ``annotations``."""
    fields = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")
    records = np.zeros(len(rows), dtype=[(f, "O") for f in fields])
    for i, row in enumerate(rows):
        records[i] = row
    return records


def _cars_rows():
    x1, y1, x2, y2 = CORNERS
    rows, key = [], 0
    for class_id in CARS_TRAIN + CARS_TEST:
        for k in range(PER_CLASS):
            key += 1
            rows.append((f"car_ims/{key:06d}.jpg", np.uint8(x1), np.uint8(y1), np.uint16(x2), np.uint8(y2),
                         np.uint8(class_id), np.uint8(key % 2)))
    return rows


def _write_cars(root, rows=None):
    rows = _cars_rows() if rows is None else rows
    names = np.array([f"Make Model {c} 2012" for c in range(1, 197)], dtype=object)
    savemat(root / "cars_annos.mat", {"annotations": _cars_annotations(rows), "class_names": names})
    truth = {}
    for key, row in enumerate(rows):
        _jpeg(root / row[0], shade=key % 250)
        truth[str(root / row[0])] = int(row[5])
    return truth


def _write_sop(root):
    truth = {}
    for split, classes in (("train", SOP_TRAIN), ("test", SOP_TEST)):
        lines, key = ["image_id class_id super_class_id path"], 0
        for class_id in classes:
            super_id, folder = (1, "bicycle_final") if class_id % 2 else (2, "cabinet_final")
            for k in range(PER_CLASS):
                key += 1
                relative = f"{folder}/{111085122000 + class_id}_{k}.JPG"
                _jpeg(root / relative, shade=key % 250)
                lines.append(f"{key} {class_id} {super_id} {relative}")
                truth[str(root / relative)] = class_id
        (root / f"Ebay_{split}.txt").write_text("\n".join(lines) + "\n")
    return truth


WRITERS = {"cub_retrieval": _write_cub, "cars196": _write_cars, "sop": _write_sop}
CLASSES = {"cub_retrieval": (CUB_TRAIN, CUB_TEST), "cars196": (CARS_TRAIN, CARS_TEST), "sop": (SOP_TRAIN, SOP_TEST)}
CLASS_NAMES = {"cub_retrieval": lambda c: f"{c:03d}.Bird_{c}", "cars196": lambda c: f"Make Model {c} 2012",
               "sop": str}


def _tree(tmp_path, name):
    root = tmp_path / name
    root.mkdir()
    return root, WRITERS[name](root)


@pytest.fixture(params=sorted(WRITERS))
def dataset(request, tmp_path):
    """``(name, root, {image path: published class id})`` for each dataset."""
    return (request.param, *_tree(tmp_path, request.param))


def build(name, root, seed=0, **options):
    raw = {"name": name, "root": str(root), "image_size": SIZE, "workers": 0, "augment": False, **options}
    return parse_dataset_options(raw).build(seed)


def _options(name, root, **options):
    return parse_dataset_options({"name": name, "root": str(root), **options})


def _classes(split, truth):
    return [truth[p] for p in split.paths]


def test_helpers_hold_out_whole_classes_and_relabel_in_order():
    labels = np.repeat(np.arange(10) * 3, 2)
    keep, held = hold_out_classes(labels, 0.3, seed=1)
    assert len(np.unique(labels[held])) == 3 and not set(labels[keep]) & set(labels[held])
    assert contiguous([5, 2, 5, 9])[0].tolist() == [1, 0, 1, 2] and contiguous([5, 2, 5, 9])[1].tolist() == [2, 5, 9]


def test_the_published_class_split_with_val_source_test(dataset):
    name, root, truth = dataset
    train_ids, test_ids = CLASSES[name]
    data = build(name, root, val_source="test")
    assert DATASETS[name].task == "retrieval" and data.info.task == "retrieval"
    assert data.val is data.test and data.train_clean_targets is None and data.num_workers == 0
    assert sorted(set(_classes(data.train, truth))) == list(train_ids)
    assert sorted(set(_classes(data.test, truth))) == list(test_ids)
    assert len(data.train) == PER_CLASS * len(train_ids) and len(data.test) == PER_CLASS * len(test_ids)
    # targets 0..C-1 in the order of the class ids, in each split
    assert data.train.targets.tolist() == [train_ids.index(c) for c in _classes(data.train, truth)]
    assert data.test.targets.tolist() == [test_ids.index(c) for c in _classes(data.test, truth)]
    assert data.info.num_classes == len(train_ids) == _options(name, root, val_source="test").num_classes
    assert data.info.class_names == tuple(CLASS_NAMES[name](c) for c in train_ids)
    assert data.info.train_size == len(data.train) and data.info.train_class_counts == (PER_CLASS,) * len(train_ids)
    assert data.info.input_shape == (3, SIZE, SIZE) == _options(name, root, image_size=SIZE).input_shape
    image, target, index = data.train[4]
    assert image.shape == (3, SIZE, SIZE) and target.dtype == torch.long and target.item() == 1 and index == 4
    assert data.test[0][0].shape == (3, SIZE, SIZE)


@pytest.mark.parametrize("fraction, held", [(0.1, 1), (0.3, 3)])
def test_val_is_a_seeded_share_of_the_training_classes(dataset, fraction, held):
    name, root, truth = dataset
    train_ids, test_ids = CLASSES[name]
    data = build(name, root, val_fraction=fraction)
    train, val, test = (set(_classes(split, truth)) for split in (data.train, data.val, data.test))
    assert len(val) == held and len(train) == len(train_ids) - held
    assert train | val == set(train_ids) and test == set(test_ids)
    assert not train & val and not train & test and not val & test  # class-disjoint
    assert len(data.val) == PER_CLASS * held and not set(data.val.paths) & set(data.train.paths)
    for split, classes in ((data.train, train), (data.val, val), (data.test, test)):
        ordered = sorted(classes)
        assert split.targets.tolist() == [ordered.index(c) for c in _classes(split, truth)]
    assert data.info.num_classes == len(train) == _options(name, root, val_fraction=fraction).num_classes
    assert data.info.class_names == tuple(CLASS_NAMES[name](c) for c in sorted(train))
    again = build(name, root, val_fraction=fraction)
    assert again.val.paths == data.val.paths and torch.equal(again.train.targets, data.train.targets)
    others = [set(_classes(build(name, root, seed=seed, val_fraction=fraction).val, truth)) for seed in range(1, 6)]
    assert any(classes != val for classes in others)


def test_default_options(dataset):
    name, root, _ = dataset
    options = _options(name, root)
    assert options.image_size == 224 and options.resize_side == 256 and options.augment and options.workers is None
    assert options.val_source == "train_fraction" and options.val_fraction == 0.1
    assert options.num_classes == len(CLASSES[name][0]) - 1 and options.input_shape == (3, 224, 224)
    assert _options(name, root, image_size=448).resize_side == 512
    assert _options(name, root, image_size=224, resize=300).resize_side == 300
    with pytest.raises(ValidationError, match=r"resize \(200\) must be at least image_size \(224\)"):
        _options(name, root, resize=200)
    with pytest.raises(ValidationError, match="noise_rate"):  # no label noise here
        _options(name, root, noise_rate=0.2)
    data = build(name, root, augment=True, resize=24)
    train_steps, eval_steps = data.train.transform.transforms, data.test.transform.transforms
    assert [type(t).__name__ for t in train_steps] == ["Resize", "RandomCrop", "RandomHorizontalFlip", "ToTensor",
                                                       "Normalize"]
    assert [type(t).__name__ for t in eval_steps] == ["Resize", "CenterCrop", "ToTensor", "Normalize"]
    assert train_steps[0].size == (24, 24) and data.val.transform is data.test.transform


def test_a_missing_image_is_named_at_build(dataset):
    name, root, truth = dataset
    gone = next(path for path, class_id in truth.items() if class_id == CLASSES[name][1][-1])
    (root / gone).unlink()
    _options(name, root)  # images are checked at build
    with pytest.raises(FileNotFoundError, match=rf"test \(listed in .*\): 1 image\(s\) missing: {gone}"):
        build(name, root)


@pytest.mark.parametrize("name", ["cub_retrieval", "cars196"])
def test_box_crop(tmp_path, name):
    root, _ = _tree(tmp_path, name)
    cropped, whole = build(name, root, val_source="test", crop_box=True), build(name, root, val_source="test")
    assert cropped.train.boxes[0] == tuple(map(float, BOX)) and whole.train.boxes[0] is None
    for data in (cropped, whole):
        data.train.transform = None  # the PIL image as read (and cropped)
    crop, full = cropped.train[0][0], whole.train[0][0]
    assert full.size == (40, 30) and crop.size == (20, 16)
    red, _, blue = np.asarray(crop, dtype=float).reshape(-1, 3).mean(axis=0)
    assert red > 200 and blue < 60  # the red box, not the blue background


def test_cub_needs_no_split_file_but_its_other_files(tmp_path):
    root, _ = _tree(tmp_path, "cub_retrieval")
    assert not (root / "train_test_split.txt").exists()
    assert DATASETS["cub_retrieval"] is CubRetrievalOptions
    (root / "bounding_boxes.txt").unlink()
    _options("cub_retrieval", root)  # the boxes are read only to crop
    with pytest.raises(ValidationError, match=f"file does not exist: {root / 'bounding_boxes.txt'}"):
        _options("cub_retrieval", root, crop_box=True)
    labels = root / "image_class_labels.txt"
    labels.write_text(labels.read_text() + "999 1\n")
    with pytest.raises(ValidationError, match=rf"{labels}, line {PER_CLASS * 14 + 1}: image id 999 is not in"):
        _options("cub_retrieval", root)
    labels.write_text(labels.read_text().replace("999 1\n", "x 1\n"))
    with pytest.raises(ValidationError, match=rf"{labels}, line {PER_CLASS * 14 + 1}: expected"):
        _options("cub_retrieval", root)
    (root / "classes.txt").write_text("".join(f"{c} c{c}\n" for c in range(1, 101)))  # no test classes
    labels.write_text("".join(f"{line.split()[0]} {min(int(line.split()[1]), 100)}\n"
                              for line in labels.read_text().splitlines()[:-1]))
    with pytest.raises(ValidationError, match=rf"{root / 'images.txt'}: no test images .*101..100; 100 classes"):
        _options("cub_retrieval", root)
    (root / "images.txt").unlink()
    with pytest.raises(ValidationError, match=f"file does not exist: {root / 'images.txt'}"):
        _options("cub_retrieval", root)


def test_cars196_annotations_and_errors(tmp_path):
    root, _ = _tree(tmp_path, "cars196")
    assert DATASETS["cars196"] is Cars196Options
    assert _options("cars196", root).annotations == root / "cars_annos.mat"
    rows = _cars_rows()
    rows[4] = rows[4][:5] + (np.uint8(197),) + rows[4][6:]
    _write_cars(root, rows)
    with pytest.raises(ValidationError, match=rf"{root / 'cars_annos.mat'}, annotation 5: class 197 is not one of "
                                              r"1..196 \(the classes of cars_annos.mat\)"):
        _options("cars196", root)
    rows[4] = rows[4][:3] + (np.uint16(CORNERS[0] - 2),) + rows[4][4:]  # x2 < x1
    _write_cars(root, rows)
    with pytest.raises(ValidationError, match=r"annotation 5: the box .* has x2 < x1"):
        _options("cars196", root)
    devkit = root / "devkit.mat"  # the classification devkit's files have fname, not relative_im_path
    savemat(devkit, {"annotations": np.zeros(2, dtype=[(f, "O") for f in ("bbox_x1", "class", "fname")]),
                     "class_names": np.array(["a", "b"], dtype=object)})
    with pytest.raises(ValidationError, match=rf"{devkit}: annotations lacks the field\(s\) relative_im_path, "
                                              "bbox_y1, bbox_x2, bbox_y2"):
        _options("cars196", root, annotations=str(devkit))
    (root / "cars_annos.mat").unlink()
    with pytest.raises(ValidationError, match=f"file does not exist: {root / 'cars_annos.mat'}"):
        _options("cars196", root)


@pytest.mark.parametrize("file, edit, line, message", [
    ("Ebay_train.txt", lambda text: "image_id class_id path\n" + text.split("\n", 1)[1], 1,
     "expected the header 'image_id class_id super_class_id path', got 'image_id class_id path'"),
    ("Ebay_train.txt", lambda text: text + "31 11 1\n", PER_CLASS * 10 + 2,
     "expected '<image id> <class id> <super class id> <path>'"),
    ("Ebay_train.txt", lambda text: text + "31 0 1 bicycle_final/1_0.JPG\n", PER_CLASS * 10 + 2, ">= 1), got"),
    ("Ebay_train.txt", lambda text: text + "3 11 1 bicycle_final/1_0.JPG\n", PER_CLASS * 10 + 2,
     "image id 3 listed twice (first on line 4)"),
    ("Ebay_test.txt", lambda text: text + "13 2 1 bicycle_final/1_0.JPG\n", PER_CLASS * 4 + 2,
     "class 2 is also a training class"),
])
def test_sop_bad_lines_name_the_file_and_line(tmp_path, file, edit, line, message):
    root, _ = _tree(tmp_path, "sop")
    path = root / file
    path.write_text(edit(path.read_text()))
    with pytest.raises(ValidationError) as error:
        _options("sop", root)
    assert message in str(error.value) and f"{path}, line {line}" in str(error.value)


def test_sop_lists_and_their_errors(tmp_path):
    root, _ = _tree(tmp_path, "sop")
    assert DATASETS["sop"] is SopOptions
    options = _options("sop", root)
    assert (options.train_list, options.test_list) == (root / "Ebay_train.txt", root / "Ebay_test.txt")
    assert "class 2 is also a training class (" + str(root / "Ebay_train.txt") + ", line 5)" in _error(
        root, "Ebay_test.txt", "13 2 1 bicycle_final/1_0.JPG\n")
    (root / "Ebay_test.txt").write_text("image_id class_id super_class_id path\n")
    with pytest.raises(ValidationError, match=rf"{root / 'Ebay_test.txt'}: no images \(only the header\)"):
        _options("sop", root)
    (root / "Ebay_test.txt").unlink()
    with pytest.raises(ValidationError, match=f"file does not exist: {root / 'Ebay_test.txt'}"):
        _options("sop", root)


def _error(root, file, extra):
    path = root / file
    text = path.read_text()
    path.write_text(text + extra)
    try:
        with pytest.raises(ValidationError) as error:
            _options("sop", root)
    finally:
        path.write_text(text)
    return str(error.value)


def test_too_few_training_classes_to_hold_out(tmp_path):
    root = tmp_path / "sop"
    root.mkdir()
    for split, classes in (("train", (1, 2)), ("test", (3, 4))):
        rows = "".join(f"{i} {c} 1 bicycle_final/{c}_{i}.JPG\n" for i, c in enumerate(classes, start=1))
        (root / f"Ebay_{split}.txt").write_text("image_id class_id super_class_id path\n" + rows)
    with pytest.raises(ValidationError, match=r"cannot hold out validation classes from 2 training class\(es\)"):
        _options("sop", root)
    assert _options("sop", root, val_source="test").num_classes == 2


def test_metric_learning_sweep_validates_on_a_cub_tree_and_checks_r_against_its_classes(tmp_path):
    from conftest import REPO
    from sweeplab.spec import SpecError, load_sweep

    root, _ = _tree(tmp_path, "cub_retrieval")
    sweep_file = REPO / "sweeps" / "metric_learning.yaml"
    base = [f"dataset.root={root}", "dataset.val_source=test"]  # the tree's 10 training classes all train
    # the search space's r from 0.05 cannot work with 10 classes: k = ceil(r C N) <= N below r = 1/10
    with pytest.raises(SpecError, match=r"r 0.05 does not fit the dataset's 10 training classes.*0.1 < r <= 1"):
        load_sweep(sweep_file, sets=base)
    sweep = load_sweep(sweep_file, sets=[*base, "methods.proxygml.overrides.r={type: float, low: 0.2, high: 1.0}"])
    assert sweep.dataset["name"] == "cub_retrieval"
    assert [s.method for s in sweep.studies] == ["proxygml", "proxy_nca", "proxy_anchor", "soft_triple",
                                                 "normalized_softmax"]
