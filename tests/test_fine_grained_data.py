"""CUB-200-2011, Stanford Cars and FGVC-Aircraft in their published layouts, written here in miniature."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from scipy.io import loadmat, savemat

from sweeplab.context import CONTEXT_KEY
from sweeplab.data import DATASETS, AircraftOptions, CubOptions, StanfordCarsOptions, parse_dataset_options
from sweeplab.data.fine_grained import AIRCRAFT_BANNER, CARS_FIELDS, read_cars_annotations
from sweeplab.engine import MemoryReporter, train

SIZE = 16  # image_size used by the tests (small and fast)
BOX = (10, 5, 20, 16)  # x, y, width, height of the red object in every 40x30 test image


def _jpeg(path, shade=0):
    """A 40x30 blue image with a red ``BOX`` (its shade varies per image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (40, 30), (0, 0, 255))
    x, y, w, h = BOX
    image.paste(Image.new("RGB", (w, h), (255, shade, 0)), (x, y))
    image.save(path, "JPEG", quality=95)


def build(name, root, seed=0, **options):
    raw = {"name": name, "root": str(root), "image_size": SIZE, "workers": 0, "augment": False, **options}
    return parse_dataset_options(raw).build(seed)


def _options(name, root, **options):
    return parse_dataset_options({"name": name, "root": str(root), **options})


def _stem(path):
    return path.rsplit("/", 1)[1]


# -- CUB-200-2011 -------------------------------------------------------------------------------
CUB_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross")
# image ids 1..18: class (i - 1) % 3 + 1; ids 1..12 train (4 a class), 13..18 test (2 a class)
CUB_IDS = range(1, 19)


def _cub_class(i):
    return (i - 1) % 3 + 1


@pytest.fixture
def cub_root(tmp_path):
    root = tmp_path / "CUB_200_2011"
    images, labels, split, boxes = [], [], [], []
    for i in CUB_IDS:
        relative = f"{CUB_CLASSES[_cub_class(i) - 1]}/bird_{i:04d}.jpg"
        _jpeg(root / "images" / relative, shade=10 * i)
        images.append(f"{i} {relative}")
        labels.append(f"{i} {_cub_class(i)}")
        split.append(f"{i} {int(i <= 12)}")
        boxes.append(f"{i} {BOX[0]:.1f} {BOX[1]:.1f} {BOX[2]:.1f} {BOX[3]:.1f}")
    for name, lines in (("images.txt", images), ("image_class_labels.txt", labels), ("train_test_split.txt", split),
                        ("bounding_boxes.txt", boxes),
                        ("classes.txt", [f"{c + 1} {name}" for c, name in enumerate(CUB_CLASSES)])):
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def test_cub_reads_the_published_layout(cub_root):
    data = build("cub", cub_root, val_source="test")
    assert DATASETS["cub"] is CubOptions and CubOptions.task == "classification"
    assert data.info.class_names == CUB_CLASSES and data.info.num_classes == 3
    assert data.info.input_shape == (3, SIZE, SIZE) and data.info.train_size == 12
    assert data.train.targets.tolist() == [_cub_class(i) - 1 for i in range(1, 13)]
    assert data.test.targets.tolist() == [_cub_class(i) - 1 for i in range(13, 19)]
    assert data.val is data.test and data.info.train_class_counts == (4, 4, 4)
    assert data.train.paths[0] == str(cub_root / "images" / CUB_CLASSES[0] / "bird_0001.jpg")
    assert data.train.boxes == [None] * 12  # crop_box is off by default
    image, target, index = data.train[4]
    assert image.shape == (3, SIZE, SIZE) and target.dtype == torch.long and target.item() == 1 and index == 4
    options = _options("cub", cub_root, image_size=SIZE)
    assert options.num_classes == 3 and options.input_shape == (3, SIZE, SIZE)


def test_cub_val_is_a_stratified_seeded_share_of_train_and_noise_touches_train_only(cub_root):
    data = build("cub", cub_root, val_fraction=0.25, noise_rate=0.5)
    # 0.25 * 12 -> 3 held out, one per class (each has 4)
    assert len(data.val) == 3 and len(data.train) == 9 and len(data.test) == 6
    assert sorted(data.val.targets.tolist()) == [0, 1, 2] and not set(data.val.paths) & set(data.train.paths)
    truth = {f"bird_{i:04d}.jpg": _cub_class(i) - 1 for i in CUB_IDS}
    assert data.val.targets.tolist() == [truth[_stem(p)] for p in data.val.paths]
    assert data.train_clean_targets.tolist() == [truth[_stem(p)] for p in data.train.paths]
    assert int((data.train.targets != data.train_clean_targets).sum()) == round(0.5 * 9)
    again = build("cub", cub_root, val_fraction=0.25, noise_rate=0.5)
    assert again.val.paths == data.val.paths and torch.equal(again.train.targets, data.train.targets)
    others = [build("cub", cub_root, seed=seed, val_fraction=0.25).val.paths for seed in range(1, 6)]
    assert any(paths != data.val.paths for paths in others)


def test_cub_box_crop(cub_root):
    cropped, whole = build("cub", cub_root, val_source="test", crop_box=True), build("cub", cub_root, val_source="test")
    assert cropped.train.boxes[0] == tuple(map(float, BOX))
    for data in (cropped, whole):
        data.train.transform = None  # the PIL image as read (and cropped)
    bird, full = cropped.train[0][0], whole.train[0][0]
    assert full.size == (40, 30) and bird.size == (20, 16)
    red, _, blue = np.asarray(bird, dtype=float).reshape(-1, 3).mean(axis=0)
    assert red > 200 and blue < 60  # the red box, not the blue background
    a, b = build("cub", cub_root, val_source="test", crop_box=True), build("cub", cub_root, val_source="test")
    assert a.test[0][0].shape == b.test[0][0].shape == (3, SIZE, SIZE)
    assert not torch.allclose(a.test[0][0], b.test[0][0])


def test_cub_missing_files_and_folders_are_named(cub_root, tmp_path):
    with pytest.raises(ValidationError, match=str(tmp_path / "nowhere")):
        _options("cub", tmp_path / "nowhere")
    (cub_root / "bounding_boxes.txt").unlink()
    _options("cub", cub_root)  # the boxes are read only to crop
    with pytest.raises(ValidationError, match=f"file does not exist: {cub_root / 'bounding_boxes.txt'}"):
        _options("cub", cub_root, crop_box=True)
    (cub_root / "train_test_split.txt").unlink()
    with pytest.raises(ValidationError, match=f"file does not exist: {cub_root / 'train_test_split.txt'}"):
        _options("cub", cub_root)


@pytest.mark.parametrize("file, line, message", [
    ("image_class_labels.txt", "19 1 2", "expected '<image id> <class id>', got '19 1 2'"),
    ("image_class_labels.txt", "x 1", "expected '<image id> <class id>'"),
    ("image_class_labels.txt", "3 2", "id 3 listed twice (first on line 3)"),
    ("image_class_labels.txt", "19 1", "image id 19 is not in"),
    ("train_test_split.txt", "19 2", "'2' is neither 1 (train) nor 0 (test)"),
    ("bounding_boxes.txt", "19 1 2 0 4", "width, height > 0"),
    ("bounding_boxes.txt", "19 1 2 a 4", "is not four numbers"),
])
def test_cub_bad_lines_name_the_file_and_line(cub_root, file, line, message):
    path = cub_root / file
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(ValidationError) as error:
        _options("cub", cub_root, crop_box=True)
    assert message in str(error.value) and f"{path}, line {len(CUB_IDS) + 1}" in str(error.value)


def test_cub_ids_and_classes_must_agree(cub_root):
    labels = cub_root / "image_class_labels.txt"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join(lines[:4] + lines[6:]) + "\n")  # ids 5 and 6 gone
    with pytest.raises(ValidationError, match=rf"{labels}: no line for image id\(s\) 5, 6 \(listed in .*images.txt\)"):
        _options("cub", cub_root)
    labels.write_text("\n".join(lines[:-1] + ["18 4"]) + "\n")
    with pytest.raises(ValidationError, match=rf"{labels}, line 18: class 4 is not in .*classes.txt \(1..3\)"):
        _options("cub", cub_root)
    (cub_root / "classes.txt").write_bytes(b"1 \xff\n")
    with pytest.raises(ValidationError, match=rf"unreadable {cub_root / 'classes.txt'}: not UTF-8 text"):
        _options("cub", cub_root)
    (cub_root / "classes.txt").write_text("1 a\n2 b\n4 c\n")
    with pytest.raises(ValidationError, match="class ids must run 1..3, one line each; missing 3"):
        _options("cub", cub_root)


def test_cub_missing_images_are_named_at_build(cub_root):
    gone = cub_root / "images" / CUB_CLASSES[1] / "bird_0014.jpg"
    gone.unlink()
    with pytest.raises(FileNotFoundError, match=rf"CUB-200-2011 test .*1 image\(s\) missing: {gone}"):
        build("cub", cub_root)


def test_resize_defaults_to_the_reference_ratio_and_must_cover_the_crop(cub_root):
    assert _options("cub", cub_root).resize_side == 600 and _options("cub", cub_root).image_size == 448
    assert _options("cub", cub_root, image_size=224).resize_side == 300
    assert _options("cub", cub_root, image_size=224, resize=256).resize_side == 256
    _options("cub", cub_root, image_size=224, resize=224)
    with pytest.raises(ValidationError, match=r"resize \(200\) must be at least image_size \(224\)"):
        _options("cub", cub_root, image_size=224, resize=200)


def test_fine_grained_transforms_resize_both_sides_then_crop(cub_root):
    data = build("cub", cub_root, val_source="test", augment=True, resize=24)
    train_steps, eval_steps = data.train.transform.transforms, data.test.transform.transforms
    assert [type(t).__name__ for t in train_steps] == ["Resize", "RandomCrop", "RandomHorizontalFlip", "ToTensor",
                                                       "Normalize"]
    assert [type(t).__name__ for t in eval_steps] == ["Resize", "CenterCrop", "ToTensor", "Normalize"]
    assert train_steps[0].size == eval_steps[0].size == (24, 24) and eval_steps[1].size == (SIZE, SIZE)
    assert data.train[0][0].shape == data.test[0][0].shape == (3, SIZE, SIZE)


def test_a_trial_trains_on_cub(cub_root):
    config = {
        "epochs": 1, "batch_size": 4, "lr": 0.05,
        CONTEXT_KEY: {"method": "ce", "seed": 0, "model": {"backbone": "small_cnn"},
                      "dataset": {"name": "cub", "root": str(cub_root), "image_size": SIZE, "workers": 0,
                                  "val_fraction": 0.25}},
    }
    reporter = MemoryReporter()
    train(config, reporter)
    assert len(reporter.results) == 1 and "test/acc" in reporter.results[-1]


def test_fine_grained_sweep_validates_on_a_cub_tree_and_checks_patch_sizes_against_the_map(cub_root):
    from conftest import REPO
    from sweeplab.spec import SpecError, load_sweep

    sweep_file = REPO / "sweeps" / "fine_grained.yaml"
    sweep = load_sweep(sweep_file, sets=[f"dataset.root={cub_root}"])
    assert sweep.dataset["name"] == "cub" and [s.method for s in sweep.studies] == ["ce", "db_gce"]
    db_gce = next(s for s in sweep.studies if s.method == "db_gce")
    assert db_gce.space["lr_schedule"].value == "step" and db_gce.space["patch_size"].choices == (2, 3, 4, 7)
    # ResNet-50 at 224 ends on a 7x7 map: G = 7 still fits, G = 8 does not
    with pytest.raises(SpecError, match=r"patch_size 8 does not fit .*backbone 'resnet50''s last feature map, 7x7"):
        load_sweep(sweep_file, sets=[f"dataset.root={cub_root}", "dataset.image_size=224", "dataset.resize=256",
                                     "methods.db_gce.overrides.patch_size={type: categorical, choices: [7, 8]}"])


# -- Stanford Cars ------------------------------------------------------------------------------
CARS_CLASSES = ("AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi S4 Sedan 2007")
CORNERS = (BOX[0] + 1, BOX[1] + 1, BOX[0] + BOX[2], BOX[1] + BOX[3])  # x1, y1, x2, y2: inclusive, 1-based


def _annotations(rows, fields=CARS_FIELDS, shape=None):
    """A struct array as the devkit's ``annotations``: fields of uint8/uint16 numbers and a string."""
    records = np.zeros(len(rows), dtype=[(f, "O") for f in fields])
    for i, row in enumerate(rows):
        records[i] = row
    return records if shape is None else records.reshape(shape)


def _cars_rows(first, count):
    x1, y1, x2, y2 = CORNERS
    return [(np.uint8(x1), np.uint8(y1), np.uint16(x2), np.uint8(y2), np.uint8(i % 3 + 1), f"{first + i:05d}.jpg")
            for i in range(count)]


@pytest.fixture
def cars_root(tmp_path):
    root = tmp_path / "stanford_cars"
    (root / "devkit").mkdir(parents=True)
    savemat(root / "devkit" / "cars_meta.mat", {"class_names": np.array(CARS_CLASSES, dtype=object)})
    savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": _annotations(_cars_rows(1, 12))})  # 1 x N
    # the test labels as an N x 1 struct array: the reader takes either shape
    savemat(root / "cars_test_annos_withlabels.mat", {"annotations": _annotations(_cars_rows(1, 6), shape=(6, 1))})
    for split, count in (("train", 12), ("test", 6)):
        for i in range(count):
            _jpeg(root / f"cars_{split}" / f"{i + 1:05d}.jpg", shade=20 * i)
    return root


def test_cars_mat_files_round_trip_in_the_devkit_layout(cars_root):
    contents = loadmat(cars_root / "devkit" / "cars_train_annos.mat")
    assert contents["annotations"].shape == (1, 12) and contents["annotations"].dtype.names == CARS_FIELDS
    assert loadmat(cars_root / "devkit" / "cars_meta.mat")["class_names"].shape == (1, 3)
    assert loadmat(cars_root / "cars_test_annos_withlabels.mat")["annotations"].shape == (6, 1)
    items, labels = read_cars_annotations(cars_root / "devkit" / "cars_train_annos.mat", 3, cars_root / "cars_train")
    assert labels.tolist() == [i % 3 for i in range(12)] and items[0] == (cars_root / "cars_train" / "00001.jpg",
                                                                          tuple(map(float, BOX)))
    one = cars_root / "one.mat"  # a single annotation squeezes to a 0-d struct
    savemat(one, {"annotations": _annotations(_cars_rows(1, 1))})
    assert read_cars_annotations(one, 3, cars_root)[1].tolist() == [0]


def test_cars_reads_the_published_layout(cars_root):
    data = build("stanford_cars", cars_root, val_source="test")
    assert DATASETS["stanford_cars"] is StanfordCarsOptions
    assert data.info.class_names == CARS_CLASSES and data.info.num_classes == 3
    assert data.train.targets.tolist() == [i % 3 for i in range(12)] and data.test.targets.tolist() == [0, 1, 2] * 2
    assert data.train.paths[0] == str(cars_root / "cars_train" / "00001.jpg")
    assert data.test.paths[-1] == str(cars_root / "cars_test" / "00006.jpg")
    assert data.info.train_class_counts == (4, 4, 4) and data.train.boxes == [None] * 12
    assert data.train[0][0].shape == (3, SIZE, SIZE) and _options("stanford_cars", cars_root).num_classes == 3
    data = build("stanford_cars", cars_root, val_fraction=0.25)
    assert len(data.val) == 3 and len(data.train) == 9 and sorted(data.val.targets.tolist()) == [0, 1, 2]


def test_cars_box_crop_takes_inclusive_one_based_corners(cars_root):
    data = build("stanford_cars", cars_root, val_source="test", crop_box=True)
    assert data.train.boxes[0] == tuple(map(float, BOX))  # x2 - x1 + 1 wide
    data.train.transform = None
    car = data.train[0][0]
    assert car.size == (20, 16)
    red, _, blue = np.asarray(car, dtype=float).reshape(-1, 3).mean(axis=0)
    assert red > 200 and blue < 60


def test_cars_test_labels_path_and_errors(cars_root, tmp_path):
    labels = cars_root / "cars_test_annos_withlabels.mat"
    labels.rename(tmp_path / "elsewhere.mat")
    with pytest.raises(ValidationError, match=f"file does not exist: {labels}"):
        _options("stanford_cars", cars_root)
    options = _options("stanford_cars", cars_root, test_annotations=str(tmp_path / "elsewhere.mat"))
    assert options.test_annotations == (tmp_path / "elsewhere.mat").resolve()
    (tmp_path / "elsewhere.mat").rename(labels)
    # the devkit's cars_test_annos.mat has no class field
    unlabelled = cars_root / "devkit" / "cars_test_annos.mat"
    savemat(unlabelled, {"annotations": _annotations([row[:4] + row[5:] for row in _cars_rows(1, 2)],
                                                     fields=CARS_FIELDS[:4] + CARS_FIELDS[5:])})
    with pytest.raises(ValidationError, match=rf"{unlabelled}: annotations lacks the field\(s\) class"):
        _options("stanford_cars", cars_root, test_annotations=str(unlabelled))
    rows = _cars_rows(1, 4)
    rows[2] = rows[2][:4] + (np.uint8(4),) + rows[2][5:]
    bad = cars_root / "bad.mat"
    savemat(bad, {"annotations": _annotations(rows)})
    with pytest.raises(ValidationError, match=rf"{bad}, annotation 3: class 4 is not one of 1..3"):
        _options("stanford_cars", cars_root, train_annotations=str(bad))
    (tmp_path / "junk.mat").write_text("not a MATLAB file")
    with pytest.raises(ValidationError, match=rf"unreadable {tmp_path / 'junk.mat'}: not a MATLAB file"):
        _options("stanford_cars", cars_root, meta=str(tmp_path / "junk.mat"))
    savemat(tmp_path / "other.mat", {"names": np.array(["a"], dtype=object)})
    with pytest.raises(ValidationError, match=r"other.mat: no variable 'class_names' \(it has names\)"):
        _options("stanford_cars", cars_root, meta=str(tmp_path / "other.mat"))


def test_cars_missing_image_folder_and_images_are_named(cars_root):
    (cars_root / "cars_train" / "00007.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=str(cars_root / "cars_train" / "00007.jpg")):
        build("stanford_cars", cars_root)
    (cars_root / "cars_test").rename(cars_root / "test_images")
    with pytest.raises(ValidationError, match=f"folder does not exist: {cars_root / 'cars_test'}"):
        _options("stanford_cars", cars_root)


# -- FGVC-Aircraft ------------------------------------------------------------------------------
VARIANTS = ("707-320", "F/A-18", "Cessna 172")  # variants.txt order (not sorted)


def _aircraft_lines(first):
    """Six ``<id> <variant>`` rows, two per variant, ids from ``first``."""
    return [(f"{first + i:07d}", VARIANTS[i % 3]) for i in range(6)]


AIRCRAFT_SPLITS = {"train": _aircraft_lines(1025794), "val": _aircraft_lines(56978), "test": _aircraft_lines(1234567)}


def _aircraft_jpeg(path, shade):
    """A 40x30 image: red above, the 20-pixel blue banner below."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (40, 30), (0, 0, 255))
    image.paste(Image.new("RGB", (40, 30 - AIRCRAFT_BANNER), (255, shade, 0)), (0, 0))
    image.save(path, "JPEG", quality=95)


@pytest.fixture
def aircraft_root(tmp_path):
    root = tmp_path / "fgvc-aircraft-2013b"
    data = root / "data"
    lists = {**AIRCRAFT_SPLITS, "trainval": AIRCRAFT_SPLITS["train"] + AIRCRAFT_SPLITS["val"]}
    for split, rows in lists.items():
        for i, (image, _) in enumerate(rows):
            _aircraft_jpeg(data / "images" / f"{image}.jpg", shade=20 * i)
        (data / f"images_variant_{split}.txt").write_text("".join(f"{image} {v}\n" for image, v in rows))
    (data / "variants.txt").write_text("\n".join(VARIANTS) + "\n")
    return root


def test_aircraft_reads_trainval_and_names_with_spaces_and_slashes(aircraft_root):
    data = build("fgvc_aircraft", aircraft_root, val_source="test")
    assert DATASETS["fgvc_aircraft"] is AircraftOptions
    assert data.info.class_names == VARIANTS and data.info.num_classes == 3
    assert len(data.train) == 12 and len(data.test) == 6 and data.val is data.test
    assert data.train.targets.tolist() == [0, 1, 2] * 4 and data.test.targets.tolist() == [0, 1, 2] * 2
    assert data.train.paths[1] == str(aircraft_root / "data" / "images" / "1025795.jpg")
    assert data.train[0][0].shape == (3, SIZE, SIZE)
    (aircraft_root / "data" / "variants.txt").unlink()  # then the sorted names of the lists
    data = build("fgvc_aircraft", aircraft_root, val_source="test")
    assert data.info.class_names == ("707-320", "Cessna 172", "F/A-18")
    assert data.train.targets.tolist() == [0, 2, 1] * 4


def test_aircraft_split_train_takes_the_published_val(aircraft_root):
    data = build("fgvc_aircraft", aircraft_root, split="train")
    assert len(data.train) == 6 and len(data.val) == 6 and len(data.test) == 6
    assert [_stem(p) for p in data.val.paths] == [f"{image}.jpg" for image, _ in AIRCRAFT_SPLITS["val"]]
    assert data.val.targets.tolist() == [0, 1, 2] * 2
    data = build("fgvc_aircraft", aircraft_root, val_fraction=0.25)  # trainval: val held out of it
    assert len(data.val) == 3 and len(data.train) == 9 and sorted(data.val.targets.tolist()) == [0, 1, 2]
    with pytest.raises(ValidationError, match="split: train takes val from images_variant_val.txt"):
        _options("fgvc_aircraft", aircraft_root, split="train", val_source="test")
    (aircraft_root / "data" / "images_variant_val.txt").unlink()
    _options("fgvc_aircraft", aircraft_root)  # trainval needs no val list
    with pytest.raises(ValidationError, match="file does not exist: .*data/images_variant_val.txt"):
        _options("fgvc_aircraft", aircraft_root, split="train")


def test_aircraft_banner_is_cropped_off(aircraft_root):
    cropped = build("fgvc_aircraft", aircraft_root, val_source="test")
    whole = build("fgvc_aircraft", aircraft_root, val_source="test", crop_banner=False)
    for data in (cropped, whole):
        data.test.transform = None
    plane, full = cropped.test[0][0], whole.test[0][0]
    assert full.size == (40, 30) and plane.size == (40, 30 - AIRCRAFT_BANNER)
    red, _, blue = np.asarray(plane, dtype=float).reshape(-1, 3).mean(axis=0)
    assert red > 200 and blue < 60  # no banner left
    assert np.asarray(full, dtype=float)[..., 2].mean() > 100


@pytest.mark.parametrize("line, message", [
    ("1999999", "expected '<image id (digits)> <variant>', got '1999999'"),
    ("Boeing 707", "expected '<image id (digits)> <variant>'"),
    ("1025794 F/A-18", "image 1025794 listed twice (first on line 1)"),
    ("1999999 Cessna 208", "variant 'Cessna 208' is not in"),
])
def test_aircraft_bad_lines_name_the_file_and_line(aircraft_root, line, message):
    path = aircraft_root / "data" / "images_variant_trainval.txt"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(ValidationError) as error:
        _options("fgvc_aircraft", aircraft_root)
    assert message in str(error.value) and f"{path}, line 13" in str(error.value)


def test_aircraft_missing_lists_folders_and_images_are_named(aircraft_root):
    gone = aircraft_root / "data" / "images" / "1234568.jpg"
    gone.unlink()
    with pytest.raises(FileNotFoundError, match=rf"FGVC-Aircraft test .*missing: {gone}"):
        build("fgvc_aircraft", aircraft_root)
    test_list = aircraft_root / "data" / "images_variant_test.txt"
    test_list.unlink()
    with pytest.raises(ValidationError, match=f"file does not exist: {test_list}"):
        _options("fgvc_aircraft", aircraft_root)
    (aircraft_root / "data" / "images").rename(aircraft_root / "data" / "pictures")
    with pytest.raises(ValidationError, match=f"folder does not exist: {aircraft_root / 'data' / 'images'}"):
        _options("fgvc_aircraft", aircraft_root)
