"""Long-tailed multi-label data: built-in digit mosaics, VOC-MLT, COCO-MLT and CSV lists."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from sklearn.datasets import load_digits

from sweeplab.data import (DATASETS, CocoMltOptions, LongTailedDigitsOptions, MultiLabelCsvOptions, VocMltOptions,
                           build_dataset, parse_dataset_options)
from sweeplab.data.digits import split_digits
from sweeplab.data.multilabel import groups_from_counts, read_class_split, resolve_class_split, stratified_holdout
from sweeplab.data.multilabel_files import VOC_CLASSES

from conftest import VOC_TEST, VOC_TRAIN, _jpeg, _voc_xml  # noqa: F401  (the tiny VOC tree, fixture voc_root)

# -- long-tailed digits ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_bundle():
    return LongTailedDigitsOptions().build(seed=0)


def _reconstruct(sources: np.ndarray, tiles: int) -> np.ndarray:
    """Mosaics rebuilt (unstandardised) from their tile sources."""
    images = load_digits().images / 16.0
    out = np.zeros((len(sources), 8 * tiles, 8 * tiles))
    for i, row in enumerate(sources):
        for slot, source in enumerate(row):
            if source >= 0:
                r, c = divmod(slot, tiles)
                out[i, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] = images[source]
    return out


def test_lt_digits_items_and_info(digits_bundle):
    image, target, index = digits_bundle.train[3]
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32
    assert target.shape == (10,) and target.dtype == torch.float32 and index == 3
    assert set(target.unique().tolist()) <= {0.0, 1.0}
    info = digits_bundle.info
    assert info.task == "multilabel" and info.num_classes == 10 and info.input_shape == (1, 16, 16)
    assert info.class_names == tuple("0123456789") and info.train_size == len(digits_bundle.train) == 1200
    assert len(digits_bundle.val) == len(digits_bundle.test) == 500 and digits_bundle.num_workers == 0
    assert LongTailedDigitsOptions.task == "multilabel" and DATASETS["lt_digits"] is LongTailedDigitsOptions


def test_lt_digits_labels_are_the_digits_in_the_tiles(digits_bundle):
    digit_labels = load_digits().target
    for split in (digits_bundle.train, digits_bundle.val, digits_bundle.test):
        sources, targets = split.source_indices, split.targets.numpy()
        for row, target in zip(sources, targets):
            assert set(digit_labels[row[row >= 0]]) == set(np.flatnonzero(target))
        label_counts = targets.sum(1)
        assert label_counts.min() == 1 and label_counts.max() == 3
        # the pixels are the tiles' digit images, standardised (an affine map of the rebuilt mosaics)
        rebuilt = _reconstruct(sources[:200], 2).ravel()
        assert np.corrcoef(rebuilt, split.inputs[:200].numpy().ravel())[0, 1] > 0.99999
    train = digits_bundle.train.inputs
    assert abs(train.mean().item()) < 1e-4 and abs(train.std().item() - 1) < 1e-3


def test_lt_digits_train_is_long_tailed_with_three_groups(digits_bundle):
    info = digits_bundle.info
    counts = np.array(info.train_class_counts)
    assert counts.tolist() == digits_bundle.train.targets.sum(0).int().tolist()
    assert counts.max() / counts.min() == pytest.approx(100, rel=0.1)
    assert np.all(np.diff(counts) < 0)  # digit order: 0 most frequent, 9 rarest
    groups = info.class_groups
    assert all(groups[g] for g in ("head", "medium", "tail"))
    assert groups == groups_from_counts(counts, 100, 20)
    assert all(counts[c] >= 100 for c in groups["head"]) and all(counts[c] < 20 for c in groups["tail"])


def test_lt_digits_val_and_test_are_balanced(digits_bundle):
    for split in (digits_bundle.val, digits_bundle.test):
        counts = split.targets.sum(0).numpy()
        assert counts.min() > 0 and counts.max() / counts.min() <= 1.05


def test_lt_digits_splits_share_no_digit_image(digits_bundle):
    used = [set(s.source_indices[s.source_indices >= 0].tolist())
            for s in (digits_bundle.train, digits_bundle.val, digits_bundle.test)]
    assert not (used[0] & used[1]) and not (used[0] & used[2]) and not (used[1] & used[2])
    # each split draws from its own pool (60/20/20 % of the digits), a class's images in shuffled passes:
    # as many distinct images as tiles of that class, up to the whole pool
    digit_labels = load_digits().target
    pools = split_digits(digit_labels, 0.2, 0.2, seed=0)
    for split, distinct, pool in zip((digits_bundle.train, digits_bundle.val, digits_bundle.test), used, pools):
        assert distinct <= set(pool.tolist())
        tiles = split.source_indices[split.source_indices >= 0]
        for c in range(10):
            in_pool = int(np.sum(digit_labels[pool] == c))
            assert sum(digit_labels[i] == c for i in distinct) == min(int(np.sum(digit_labels[tiles] == c)), in_pool)


def test_lt_digits_is_deterministic_and_seeded(digits_bundle):
    again = LongTailedDigitsOptions().build(seed=0)
    other = LongTailedDigitsOptions().build(seed=1)
    for name in ("train", "val", "test"):
        a, b = getattr(digits_bundle, name), getattr(again, name)
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(other.train.inputs, digits_bundle.train.inputs)


def test_lt_digits_options(tmp_path):
    bundle = build_dataset({"name": "lt_digits", "tiles": 3, "train_size": 300, "imbalance": 10,
                            "max_labels_per_image": 5, "shuffle_classes": True, "val_size": 50,
                            "test_size": 60, "head_min": 50, "tail_max": 10}, seed=2)
    assert bundle.train.inputs.shape == (300, 1, 24, 24) and len(bundle.test) == 60
    counts = np.array(bundle.info.train_class_counts)
    assert counts.max() / counts.min() == pytest.approx(10, rel=0.15)
    assert not np.all(np.diff(counts) < 0)  # shuffled class order
    assert bundle.info.class_groups == groups_from_counts(counts, 50, 10)
    images, targets, _ = next(iter(torch.utils.data.DataLoader(bundle.train, batch_size=8)))
    assert images.shape == (8, 1, 24, 24) and targets.shape == (8, 10) and targets.dtype == torch.float32
    with pytest.raises(ValidationError, match="exceeds the 4 tiles"):
        LongTailedDigitsOptions(tiles=2, max_labels_per_image=5)
    with pytest.raises(ValidationError, match="tail_max"):
        LongTailedDigitsOptions(head_min=10, tail_max=20)


# -- class splits and the held-out split ------------------------------------------------


def test_class_split_text_forms_and_errors(tmp_path):
    names = ["a", "b", "c", "d"]
    labelled = tmp_path / "split.txt"
    labelled.write_text("# groups\nhead: 0, 1\nmiddle: c\ntail: 3\n")
    assert resolve_class_split(read_class_split(labelled), names, labelled) == \
        {"head": (0, 1), "medium": (2,), "tail": (3,)}
    bare = tmp_path / "bare.txt"
    bare.write_text("1 0\n2\nd\n")
    assert resolve_class_split(read_class_split(bare), names, bare)["head"] == (0, 1)
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("head: traffic light, 0\nmedium:\ntail: 1\n")
    assert resolve_class_split(read_class_split(spaced), ["x", "y", "traffic light"], spaced) == \
        {"head": (0, 2), "medium": (), "tail": (1,)}
    bad = tmp_path / "bad.txt"
    bad.write_text("head: 0\ntail: 1\n")
    with pytest.raises(ValueError, match=rf"{bad}.*lacks group\(s\) medium"):
        read_class_split(bad)
    with pytest.raises(ValueError, match=r"in both head and tail"):
        resolve_class_split({"head": [0, 1], "medium": [2], "tail": [1, 3]}, names, "x")
    with pytest.raises(ValueError, match=r"classes \[3\] are in no group"):
        resolve_class_split({"head": [0, 1], "medium": [2], "tail": []}, names, "x")
    with pytest.raises(ValueError, match=r"unknown class 'e'"):
        resolve_class_split({"head": ["e"], "medium": [], "tail": []}, names, "x")


def test_stratified_holdout_keeps_rare_classes_in_train():
    rng = np.random.default_rng(0)
    targets = (rng.random((500, 6)) < np.array([0.5, 0.3, 0.1, 0.05, 0.01, 0.004])).astype(np.float32)
    keep, held = stratified_holdout(targets, 0.1, seed=1)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 500
    assert abs(len(held) - 50) <= 3
    frequent = targets[held, :2].sum(0) / targets[:, :2].sum(0)
    assert np.all(np.abs(frequent - 0.1) < 0.03)
    assert np.all(targets[keep].sum(0) >= 0.8 * targets.sum(0))  # rare classes stay (mostly) in train
    again, _ = stratified_holdout(targets, 0.1, seed=1)
    assert np.array_equal(again, keep)


# -- VOC-MLT ---------------------------------------------------------------------------------


def _names(target, classes):
    return {classes[i] for i in torch.nonzero(target).flatten().tolist()}


def test_voc_mlt_reads_the_published_layout(voc_root):
    bundle = VocMltOptions(root=voc_root, image_size=16, workers=0, val_source="test").build(seed=0)
    info = bundle.info
    assert info.task == "multilabel" and info.class_names == VOC_CLASSES and info.num_classes == 20
    assert info.input_shape == (3, 16, 16) and len(bundle.train) == info.train_size == 6
    labels = [_names(bundle.train[i][1], VOC_CLASSES) for i in range(6)]
    assert labels == [{"horse", "person"}, {"bottle"}, {"dog"}, {"person", "tvmonitor"}, {"person"}, {"aeroplane"}]
    assert info.train_class_counts[VOC_CLASSES.index("person")] == 3
    assert info.class_groups["head"] == () and len(info.class_groups["tail"]) == 20
    image, target, index = bundle.test[1]
    assert image.shape == (3, 16, 16) and target.dtype == torch.float32 and target.shape == (20,) and index == 1
    assert bundle.val is bundle.test and _names(target, VOC_CLASSES) == {"car"}  # difficult kept by default
    skipped = VocMltOptions(root=voc_root, image_size=16, skip_difficult=True, val_source="test").build(seed=0)
    assert _names(skipped.train[3][1], VOC_CLASSES) == {"person"} and skipped.test[1][1].sum() == 0


def test_voc_mlt_holds_out_a_stratified_val_share(voc_root):
    bundle = VocMltOptions(root=voc_root, image_size=16, val_fraction=0.2).build(seed=0)
    assert len(bundle.train) + len(bundle.val) == 6 and 1 <= len(bundle.val) <= 2
    assert set(bundle.train.paths).isdisjoint(bundle.val.paths)
    assert sum(bundle.info.train_class_counts) == int(bundle.train.targets.sum())
    assert bundle.info.train_size == len(bundle.train)


@pytest.mark.parametrize("form", ["text", "pickle_sets", "pickle_arrays"])
def test_voc_mlt_class_split_from_text_and_pickles(voc_root, tmp_path, form):
    head, medium, tail = list(range(6)), list(range(6, 12)), list(range(12, 20))
    if form == "text":
        path = tmp_path / "class_split.txt"
        path.write_text(f"head: {' '.join(map(str, head))}\nmedium: {' '.join(VOC_CLASSES[c] for c in medium)}\n"
                        f"tail: {' '.join(map(str, tail))}\n")
    else:
        convert = set if form == "pickle_sets" else np.array
        path = tmp_path / "class_split.pkl"
        path.write_bytes(pickle.dumps({"head": convert(head), "middle": convert(medium), "tail": convert(tail)},
                                      protocol=2))
    bundle = VocMltOptions(root=voc_root, image_size=16, class_split=path).build(seed=0)
    assert bundle.info.class_groups == {"head": tuple(head), "medium": tuple(medium), "tail": tuple(tail)}


def test_voc_mlt_refuses_a_malicious_class_split_before_running(voc_root, tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return os.system, (f"touch {tmp_path / 'ran'}",)

    path = tmp_path / "class_split.pkl"
    path.write_bytes(pickle.dumps({"head": Evil()}))
    with pytest.raises(ValidationError, match=rf"class_split[\s\S]*{path}[\s\S]*forbidden global \w+\.system"):
        VocMltOptions(root=voc_root, class_split=path)
    assert not (tmp_path / "ran").exists()


def test_voc_mlt_validation_names_missing_paths(voc_root, tmp_path):
    missing_root = tmp_path / "nowhere"
    with pytest.raises(ValidationError, match=str(missing_root)):
        parse_dataset_options({"name": "voc_mlt", "root": str(missing_root)})
    ids = voc_root / "longtail2012" / "img_id.txt"
    ids.unlink()
    with pytest.raises(ValidationError, match=rf"train_ids[\s\S]*{ids}"):
        VocMltOptions(root=voc_root)
    other_ids = tmp_path / "ids.txt"
    other_ids.write_text("2008_000008\n")
    assert VocMltOptions(root=voc_root, train_ids=other_ids, val_source="test").build(0).info.train_size == 1
    with pytest.raises(ValidationError, match=rf"class_split[\s\S]*{tmp_path / 'split.pkl'}"):
        VocMltOptions(root=voc_root, train_ids=other_ids, class_split=tmp_path / "split.pkl")


def test_voc_mlt_build_errors_name_the_file(voc_root):
    (voc_root / "VOC2012" / "JPEGImages" / "2008_000019.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="2008_000019.jpg"):
        VocMltOptions(root=voc_root).build(seed=0)
    _jpeg(voc_root / "VOC2012" / "JPEGImages" / "2008_000019.jpg")
    _voc_xml(voc_root / "VOC2012" / "Annotations" / "2008_000019.xml", [("unicorn", 0)])
    with pytest.raises(ValueError, match=r"2008_000019.xml.*unknown VOC class 'unicorn'"):
        VocMltOptions(root=voc_root).build(seed=0)


def test_options_dump_and_reload_with_the_default_paths(voc_root):
    options = VocMltOptions(root=voc_root)
    dumped = options.model_dump(mode="json")
    assert dumped["train_ids"] == str(voc_root / "longtail2012" / "img_id.txt")
    assert parse_dataset_options(dumped) == options


# -- COCO-MLT --------------------------------------------------------------------------------


COCO_CATEGORIES = [{"id": 18, "name": "dog", "supercategory": "animal"},
                   {"id": 1, "name": "person", "supercategory": "person"},
                   {"id": 3, "name": "car", "supercategory": "vehicle"}]


def _instances(images, annotations):
    return {"info": {}, "licenses": [], "categories": COCO_CATEGORIES,
            "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 20, "height": 16} for i in images],
            "annotations": [{"id": n, "image_id": i, "category_id": c, "bbox": box, "area": box[2] * box[3],
                             "iscrowd": crowd}
                            for n, (i, c, box, crowd) in enumerate(annotations)]}


@pytest.fixture
def coco_root(tmp_path):
    root = tmp_path / "coco"
    ok, tiny = [1, 1, 5, 5], [1, 1, 0.5, 5]
    train = _instances([9, 25, 30, 42, 73], [
        (9, 1, ok, 0), (9, 18, ok, 0), (25, 3, ok, 1),  # a crowd box counts
        (30, 18, tiny, 0),  # a degenerate box does not
        (42, 1, ok, 0), (73, 3, ok, 0)])
    val = _instances([139, 285, 632], [(139, 1, ok, 0), (139, 3, ok, 0), (632, 18, ok, 0)])  # 285: no label
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(train))
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(val))
    for split, doc in (("train2017", train), ("val2017", val)):
        for img in doc["images"]:
            _jpeg(root / split / img["file_name"])
    (root / "longtail2017").mkdir()
    (root / "longtail2017" / "img_id.pkl").write_text("9\n25\n30\n42\n")  # plain text despite the name
    return root


def test_coco_mlt_reads_the_published_layout(coco_root):
    bundle = CocoMltOptions(root=coco_root, image_size=16, workers=1, val_source="test").build(seed=0)
    info = bundle.info
    assert info.class_names == ("person", "car", "dog")  # json category id order: 1, 3, 18
    assert [p.rsplit("/", 1)[-1] for p in bundle.train.paths] == [f"{i:012d}.jpg" for i in (9, 25, 30, 42)]
    labels = [_names(bundle.train[i][1], info.class_names) for i in range(4)]
    assert labels == [{"person", "dog"}, {"car"}, set(), {"person"}]
    assert info.train_class_counts == (2, 1, 1) and bundle.num_workers == 1
    assert [p.rsplit("/", 1)[-1] for p in bundle.test.paths] == ["000000000139.jpg", "000000000632.jpg"]
    assert _names(bundle.test[0][1], info.class_names) == {"person", "car"}
    assert bundle.test[0][0].shape == (3, 16, 16)


def test_coco_mlt_errors_name_the_paths(coco_root):
    json_path = coco_root / "annotations" / "instances_val2017.json"
    json_path.rename(coco_root / "elsewhere.json")
    with pytest.raises(ValidationError, match=rf"test_annotations[\s\S]*{json_path}"):
        CocoMltOptions(root=coco_root)
    (coco_root / "elsewhere.json").rename(json_path)
    ids = coco_root / "longtail2017" / "img_id.pkl"
    ids.write_text("9\n12345\n")
    with pytest.raises(ValueError, match=rf"{ids}: id '12345' \(line 2\)"):
        CocoMltOptions(root=coco_root).build(seed=0)
    ids.unlink()
    with pytest.raises(ValidationError, match=str(ids)):
        CocoMltOptions(root=coco_root)


# -- CSV ---------------------------------------------------------------------------------------


@pytest.fixture
def csv_root(tmp_path):
    for name in ("a", "b", "c", "d", "e", "f"):
        _jpeg(tmp_path / "img" / f"{name}.jpg")
    (tmp_path / "train.csv").write_text("path,labels\nimg/a.jpg,cat;dog\nimg/b.jpg,dog\nimg/c.jpg,\n"
                                        "img/d.jpg,dog ; bird\n")
    (tmp_path / "test.csv").write_text("path,labels\nimg/e.jpg,cat\nimg/f.jpg,emu\n")
    return tmp_path


def test_csv_classes_labels_and_splits(csv_root):
    options = MultiLabelCsvOptions(train=csv_root / "train.csv", test=csv_root / "test.csv", image_size=12,
                                   val_fraction=0.25)
    bundle = options.build(seed=0)
    assert bundle.info.class_names == ("bird", "cat", "dog", "emu")  # sorted union over the CSVs
    assert len(bundle.train) == 3 and len(bundle.val) == 1 and len(bundle.test) == 2
    assert _names(bundle.test[1][1], bundle.info.class_names) == {"emu"}
    assert bundle.info.train_class_counts[3] == 0 and 3 in bundle.info.class_groups["tail"]

    (csv_root / "val.csv").write_text("path,labels\n/" + str(csv_root / "img" / "b.jpg").lstrip("/") + ",bird\n")
    with_val = MultiLabelCsvOptions(train=csv_root / "train.csv", val=csv_root / "val.csv",
                                    test=csv_root / "test.csv", image_size=12,
                                    classes=["dog", "cat", "bird", "emu"]).build(seed=0)
    assert len(with_val.train) == 4 and len(with_val.val) == 1
    assert with_val.info.class_names == ("dog", "cat", "bird", "emu")
    assert _names(with_val.train[3][1], with_val.info.class_names) == {"dog", "bird"}
    assert with_val.info.train_class_counts == (3, 1, 1, 0)


def test_csv_errors_name_file_and_line(csv_root):
    train, test = csv_root / "train.csv", csv_root / "test.csv"
    with pytest.raises(ValueError, match=rf"{test}, line 3: unknown label\(s\) \['emu'\]"):
        MultiLabelCsvOptions(train=train, test=test, classes=["bird", "cat", "dog"]).build(seed=0)
    (csv_root / "img" / "d.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{train}, line 5: image not found: .*d.jpg"):
        MultiLabelCsvOptions(train=train, test=test).build(seed=0)
    with pytest.raises(ValidationError, match=str(csv_root / "nope.csv")):
        MultiLabelCsvOptions(train=csv_root / "nope.csv", test=test)
    image_root = MultiLabelCsvOptions(train=train, test=test, image_root=csv_root / "img")
    with pytest.raises(FileNotFoundError, match=r"img/img/a.jpg"):
        image_root.build(seed=0)


def test_multilabel_datasets_are_registered_with_their_task():
    for name in ("lt_digits", "voc_mlt", "coco_mlt", "multilabel_csv"):
        assert DATASETS[name].task == "multilabel"
    assert DATASETS["noisy_digits"].task == "classification"
