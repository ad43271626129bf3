"""AffectNet and FER+ in their published layouts, written here in miniature."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from pydantic import ValidationError

from sweeplab.context import CONTEXT_KEY
from sweeplab.data import DATASETS, AffectNetOptions, FerPlusOptions, build_dataset, parse_dataset_options
from sweeplab.data.fer import AFFECTNET_CLASSES, FERPLUS_CLASSES, ferplus_label
from sweeplab.engine import MemoryReporter, train
from sweeplab.spec import validate_files

SIZE = 16  # image_size used by the tests (small and fast)

# -- AffectNet ----------------------------------------------------------------------------------
AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
                    "expression,valence,arousal")
FACE = (10, 5, 20, 16)  # face_x, face_y, face_width, face_height in every 40x30 test image
LANDMARKS = ";".join(f"{v:.2f}" for v in range(136))  # 68 (x, y) points, as published


def _face_jpeg(path, shade):
    """A 40x30 blue image with a red face box (its shade varies per image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (40, 30), (0, 0, 255))
    x, y, w, h = FACE
    image.paste(Image.new("RGB", (w, h), (255, shade, 0)), (x, y))
    image.save(path, "JPEG", quality=95)


def _affectnet_csv(path, rows, header=AFFECTNET_HEADER):
    lines = [header]
    for image, expression in rows:
        x, y, w, h = FACE
        lines.append(f'{image},{x},{y},{w},{h},"{LANDMARKS}",{expression},0.25,-0.5')
    path.write_text("\n".join(lines) + "\n")
    return path


# training.csv: every expression 0..10 twice (16 rows with 0..7); validation.csv: each once (8 with 0..7)
AFFECTNET_TRAIN = [(f"{100 + e}/train_{e}_{k}.jpg", e) for k in range(2) for e in range(11)]
AFFECTNET_TEST = [(f"{200 + e}/val_{e}.jpg", e) for e in range(11)]


@pytest.fixture
def affectnet_root(tmp_path):
    root = tmp_path / "AffectNet"
    for i, (image, _) in enumerate(AFFECTNET_TRAIN + AFFECTNET_TEST):
        _face_jpeg(root / "Manually_Annotated_Images" / image, shade=10 * i)
    _affectnet_csv(root / "training.csv", AFFECTNET_TRAIN)
    _affectnet_csv(root / "validation.csv", AFFECTNET_TEST)
    return root


def affectnet(root, **options):
    return build_dataset({"name": "affectnet", "root": str(root), "image_size": SIZE, "workers": 0,
                          "augment": False, **options}, seed=0)


def test_affectnet_keeps_expressions_0_to_7_and_drops_none_uncertain_non_face(affectnet_root):
    data = affectnet(affectnet_root, val_source="test")
    assert DATASETS["affectnet"] is AffectNetOptions and AffectNetOptions.task == "classification"
    assert data.info.task == "classification" and data.info.num_classes == 8
    assert data.info.class_names == AFFECTNET_CLASSES == (
        "Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
    assert data.train.targets.tolist() == list(range(8)) * 2 and data.test.targets.tolist() == list(range(8))
    assert data.info.train_class_counts == (2,) * 8 and data.info.train_size == 16
    assert data.val is data.test and data.info.input_shape == (3, SIZE, SIZE)
    kept = [image for image, e in AFFECTNET_TRAIN if e <= 7]
    assert data.train.paths == [str(affectnet_root / "Manually_Annotated_Images" / image) for image in kept]
    image, target, index = data.train[3]
    assert image.shape == (3, SIZE, SIZE) and target.dtype == torch.long and target.item() == 3 and index == 3
    assert torch.equal(data.train_clean_targets, data.train.targets)


def test_affectnet_7_classes_drops_contempt(affectnet_root):
    data = affectnet(affectnet_root, classes=7, val_source="test")
    assert data.info.class_names == AFFECTNET_CLASSES[:7] and data.info.num_classes == 7
    assert data.train.targets.tolist() == list(range(7)) * 2 and data.test.targets.tolist() == list(range(7))
    assert data.info.train_class_counts == (2,) * 7
    assert not any("train_7_" in p or "val_7" in p for p in data.train.paths + data.test.paths)
    with pytest.raises(ValidationError, match="classes"):
        parse_dataset_options({"name": "affectnet", "root": str(affectnet_root), "classes": 6})


def test_affectnet_face_crop_changes_size_and_content(affectnet_root):
    cropped, whole = affectnet(affectnet_root, val_source="test"), affectnet(affectnet_root, val_source="test",
                                                                             crop_face=False)
    assert cropped.train.boxes[0] == tuple(map(float, FACE)) and whole.train.boxes[0] is None
    for data in (cropped, whole):
        data.train.transform = None  # the PIL image as read (and cropped)
    face, full = cropped.train[0][0], whole.train[0][0]
    assert full.size == (40, 30) and face.size == (20, 16)
    red, green, blue = np.asarray(face, dtype=float).reshape(-1, 3).mean(axis=0)
    assert red > 200 and blue < 60  # the red face box, not the blue background
    assert np.asarray(full, dtype=float)[..., 2].mean() > 100
    # transformed, both are image_size, but differ
    a, b = affectnet(affectnet_root, val_source="test"), affectnet(affectnet_root, val_source="test", crop_face=False)
    assert a.train[0][0].shape == b.train[0][0].shape == (3, SIZE, SIZE)
    assert not torch.allclose(a.train[0][0], b.train[0][0])


def test_affectnet_val_is_a_stratified_share_of_training_and_noise_touches_train_only(affectnet_root):
    data = affectnet(affectnet_root, val_fraction=0.49, noise_rate=0.5)
    # round(0.49 * 16) = 8 held out: one of each class's two
    assert len(data.val) == 8 and len(data.train) == 8 and sorted(data.val.targets.tolist()) == list(range(8))
    assert not set(data.val.paths) & set(data.train.paths) and len(data.test) == 8
    assert len(data.val.boxes) == 8 and all(box == tuple(map(float, FACE)) for box in data.val.boxes)
    assert int((data.train.targets != data.train_clean_targets).sum()) == 4
    assert data.info.train_class_counts == tuple(np.bincount(data.train.targets.numpy(), minlength=8))
    assert data.test.targets.tolist() == list(range(8))


def test_affectnet_other_files_and_image_folder(affectnet_root, tmp_path):
    (affectnet_root / "Manually_Annotated_Images").rename(tmp_path / "faces")
    with pytest.raises(ValidationError, match="Manually_Annotated_Images"):
        parse_dataset_options({"name": "affectnet", "root": str(affectnet_root)})
    train = _affectnet_csv(tmp_path / "mine.csv", AFFECTNET_TRAIN[:8])
    data = affectnet(affectnet_root, images=str(tmp_path / "faces"), train_csv=str(train), val_source="test")
    assert data.train.targets.tolist() == list(range(8)) and data.train.paths[0].startswith(str(tmp_path / "faces"))


def test_affectnet_problems_are_named_before_anything_runs(affectnet_root, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValidationError, match=str(missing)):
        parse_dataset_options({"name": "affectnet", "root": str(missing)})
    (affectnet_root / "validation.csv").rename(affectnet_root / "val.csv")
    with pytest.raises(ValidationError, match=str(affectnet_root / "validation.csv")):
        parse_dataset_options({"name": "affectnet", "root": str(affectnet_root)})
    (affectnet_root / "val.csv").rename(affectnet_root / "validation.csv")
    train = affectnet_root / "training.csv"
    _affectnet_csv(train, AFFECTNET_TRAIN, header=AFFECTNET_HEADER.replace("expression", "emotion"))
    with pytest.raises(ValidationError) as error:
        parse_dataset_options({"name": "affectnet", "root": str(affectnet_root)})
    assert f"{train}, line 1" in str(error.value) and "lacks column(s) expression" in str(error.value)
    # without the face box columns: crop_face must be off
    header = "subDirectory_filePath,expression"
    train.write_text(header + "\n" + "".join(f"{image},{e}\n" for image, e in AFFECTNET_TRAIN))
    with pytest.raises(ValidationError) as error:
        parse_dataset_options({"name": "affectnet", "root": str(affectnet_root)})
    assert f"{train}, line 1: crop_face needs the column(s) face_x, face_y, face_width, face_height" in str(error.value)
    data = affectnet(affectnet_root, crop_face=False, val_source="test")
    assert data.train.targets.tolist() == list(range(8)) * 2 and data.train.boxes[0] is None


@pytest.mark.parametrize("expression, message", [
    ("11", "expression '11' is not one of 0..10"),
    ("-1", "expression '-1' is not one of 0..10"),
    ("happy", "expression 'happy' is not one of 0..10 (0 Neutral, 1 Happy"),
])
def test_affectnet_bad_expressions_name_file_and_line(affectnet_root, expression, message):
    train = _affectnet_csv(affectnet_root / "training.csv", AFFECTNET_TRAIN[:3] + [("100/x.jpg", expression)])
    with pytest.raises(ValueError) as error:
        affectnet(affectnet_root)
    assert message in str(error.value) and f"{train}, line 5" in str(error.value)
    assert "8 None, 9 Uncertain, 10 Non-Face: dropped" in str(error.value)


def test_affectnet_missing_images_and_bad_boxes_are_named(affectnet_root):
    gone = affectnet_root / "Manually_Annotated_Images" / AFFECTNET_TEST[2][0]
    gone.unlink()
    with pytest.raises(FileNotFoundError, match=str(gone)):
        affectnet(affectnet_root)
    train = affectnet_root / "training.csv"
    train.write_text(AFFECTNET_HEADER + "\n" + f"{AFFECTNET_TRAIN[0][0]},1,2,0,5,,3,0,0\n")
    with pytest.raises(ValueError, match=rf"{train}, line 2: face_width and face_height must be > 0"):
        affectnet(affectnet_root)


def test_ce_trains_on_affectnet(affectnet_root):
    _train_one_epoch({"name": "affectnet", "root": str(affectnet_root), "image_size": SIZE, "workers": 0,
                      "val_source": "test", "classes": 7})


# -- FER+ ---------------------------------------------------------------------------------------
FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
# (Usage, image name, votes: 8 emotions, unknown, NF), the FER+ label
FERPLUS_ROWS = [
    ("Training", "fer0000000.png", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0),
    ("Training", "fer0000001.png", [0, 6, 4, 0, 0, 0, 0, 0, 0, 0], 1),
    ("Training", "fer0000002.png", [0, 0, 0, 4, 4, 0, 0, 0, 2, 0], 3),  # tie sadness/anger: the first, sadness
    ("Training", "", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10], None),  # removed by FER+ (no name, NF)
    ("Training", "fer0000004.png", [0, 0, 0, 0, 0, 2, 3, 0, 5, 0], None),  # unknown is the maximum
    ("Training", "fer0000005.png", [2, 0, 0, 0, 0, 0, 0, 4, 0, 4], 7),  # contempt ties NF: the emotion
    ("Training", "fer0000006.png", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], None),  # no vote at all
    ("Training", "fer0000007.png", [0, 2, 5, 0, 0, 0, 0, 0, 0, 3], 2),
    ("PublicTest", "fer0000008.png", [7, 3, 0, 0, 0, 0, 0, 0, 0, 0], 0),
    ("PublicTest", "fer0000009.png", [0, 0, 0, 0, 0, 0, 9, 0, 0, 1], 6),
    ("PublicTest", "fer0000010.png", [0, 0, 0, 0, 4, 0, 0, 0, 0, 6], None),  # NF is the maximum
    ("PrivateTest", "fer0000011.png", [0, 0, 0, 0, 5, 5, 0, 0, 0, 0], 4),  # tie anger/disgust: anger
    ("PrivateTest", "fer0000012.png", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0], 1),
    ("PrivateTest", "fer0000013.png", [0, 0, 1, 0, 0, 0, 0, 0, 1, 8], None),
]


def _pixels(row):
    """48x48 grey values distinct per row (a ramp shifted by the row)."""
    return (np.arange(48 * 48) * 7 + 13 * row) % 256


def write_fer2013(path, rows=FERPLUS_ROWS, header="emotion,pixels,Usage", pixels=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [header]
    for i, (usage, *_rest) in enumerate(rows):
        values = pixels(i) if pixels else " ".join(map(str, _pixels(i)))
        lines.append(f"{i % 7},{values},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_ferplus(path, rows=FERPLUS_ROWS, header=FERPLUS_HEADER):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f"{u},{name},{','.join(map(str, v))}\n" for u, name, v, _ in rows))
    return path


@pytest.fixture
def ferplus_files(tmp_path):
    return write_fer2013(tmp_path / "fer2013" / "fer2013.csv"), write_ferplus(tmp_path / "FERPlus" / "fer2013new.csv")


def ferplus(files, **options):
    fer2013, labels = files
    return build_dataset({"name": "ferplus", "fer2013_csv": str(fer2013), "ferplus_csv": str(labels),
                          "augment": False, **options}, seed=0)


def _kept(usage):
    return [(i, label) for i, (u, _, _, label) in enumerate(FERPLUS_ROWS) if u == usage and label is not None]


def test_ferplus_vote_rule():
    votes = lambda *v: np.asarray(v)  # noqa: E731
    assert ferplus_label(votes(0, 3, 3, 0, 0, 0, 0, 0, 0, 0)) == 1  # tie: the first in column order
    assert ferplus_label(votes(0, 0, 0, 0, 0, 0, 0, 2, 0, 2)) == 7  # an emotion tying NF is kept
    assert ferplus_label(votes(0, 0, 0, 0, 0, 0, 0, 2, 3, 0)) is None  # unknown above every emotion
    assert ferplus_label(votes(1, 0, 0, 0, 0, 0, 0, 0, 0, 9)) is None  # NF above every emotion
    assert ferplus_label(votes(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)) is None  # no vote


def test_ferplus_majority_labels_splits_and_dropped_rows(ferplus_files):
    data = ferplus(ferplus_files)
    assert DATASETS["ferplus"] is FerPlusOptions and FerPlusOptions.task == "classification"
    assert data.info.task == "classification" and data.info.num_classes == 8
    assert data.info.class_names == FERPLUS_CLASSES == (
        "Neutral", "Happiness", "Surprise", "Sadness", "Anger", "Disgust", "Fear", "Contempt")
    for split, usage in ((data.train, "Training"), (data.val, "PublicTest"), (data.test, "PrivateTest")):
        assert [(int(i), int(t)) for i, t in zip(split.source_indices, split.targets)] == _kept(usage)
        assert split.soft_targets is None  # target: majority
    assert data.train.targets.tolist() == [0, 1, 3, 7, 2] and data.val.targets.tolist() == [0, 6]
    assert data.test.targets.tolist() == [4, 1]
    assert data.info.train_size == 5 and data.info.train_class_counts == (1, 1, 1, 1, 0, 0, 0, 1)
    assert data.info.input_shape == (1, 48, 48) and data.num_workers == 0
    assert torch.equal(data.train_clean_targets, data.train.targets)
    # the faces come from the same rows of fer2013.csv
    assert torch.equal(data.train.pixels[1], torch.from_numpy(_pixels(1).astype(np.uint8).reshape(48, 48)))
    assert torch.equal(data.test.pixels[0], torch.from_numpy(_pixels(11).astype(np.uint8).reshape(48, 48)))
    image, target, index = data.train[2]
    assert image.shape == (1, 48, 48) and image.dtype == torch.float32 and target.item() == 3 and index == 2
    # standardised with the train split's scalar mean and std
    train_images = torch.stack([data.train[i][0] for i in range(len(data.train))])
    assert abs(train_images.mean().item()) < 1e-4 and abs(train_images.std(unbiased=False).item() - 1) < 1e-4


def test_ferplus_distribution_targets(ferplus_files):
    data = ferplus(ferplus_files, target="distribution", noise_rate=0.4)
    for split in (data.train, data.val, data.test):
        assert split.soft_targets.shape == (len(split), 8) and split.soft_targets.dtype == torch.float32
        assert torch.allclose(split.soft_targets.sum(dim=1), torch.ones(len(split)))
        assert split.targets.dtype == torch.long
    assert data.train.soft_targets[1].tolist() == pytest.approx([0, 0.6, 0.4, 0, 0, 0, 0, 0])
    assert data.train.soft_targets[3].tolist() == pytest.approx([1 / 3, 0, 0, 0, 0, 0, 0, 2 / 3])  # NF left out
    # noise rewrites the trained-on labels only, the published votes stay
    assert int((data.train.targets != data.train_clean_targets).sum()) == 2
    assert data.train_clean_targets.tolist() == [0, 1, 3, 7, 2]
    assert data.train.soft_targets.argmax(dim=1).tolist() == [0, 1, 3, 7, 2]
    assert data.val.targets.tolist() == [0, 6] and data.test.targets.tolist() == [4, 1]


def test_ferplus_resized_and_augmented(ferplus_files):
    data = ferplus(ferplus_files, image_size=24, augment=True)
    assert data.info.input_shape == (1, 24, 24)
    assert data.train[0][0].shape == data.val[0][0].shape == data.test[1][0].shape == (1, 24, 24)
    torch.manual_seed(0)
    draws = [data.train[1][0] for _ in range(4)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])  # random crops / flips
    assert torch.equal(data.val[0][0], data.val[0][0])  # eval: deterministic


def test_ferplus_counts_usage_and_headers_are_checked_before_anything_runs(ferplus_files, tmp_path):
    fer2013, labels = ferplus_files
    raw = {"name": "ferplus", "fer2013_csv": str(fer2013), "ferplus_csv": str(labels)}
    assert parse_dataset_options(raw).target == "majority"
    write_fer2013(fer2013, FERPLUS_ROWS[:-1])
    with pytest.raises(ValidationError) as error:
        parse_dataset_options(raw)
    assert f"{fer2013} has 13 image rows but {labels} has 14 label rows" in str(error.value)
    swapped = FERPLUS_ROWS[:7] + [("PublicTest", *FERPLUS_ROWS[7][1:])] + FERPLUS_ROWS[8:]
    write_fer2013(fer2013, swapped)
    with pytest.raises(ValidationError) as error:
        parse_dataset_options(raw)
    assert f"row 8: {fer2013}, line 9 has Usage PublicTest but {labels}, line 9 has Training" in str(error.value)
    write_fer2013(fer2013)
    write_ferplus(labels, header=FERPLUS_HEADER.removesuffix(",NF"))
    with pytest.raises(ValidationError) as error:
        parse_dataset_options(raw)
    assert f"{labels}, line 1: the FER+ label file (fer2013new.csv) header lacks column(s) 'NF'" in str(error.value)
    write_ferplus(labels)
    write_fer2013(fer2013, header="emotion,image,Usage")
    with pytest.raises(ValidationError) as error:
        parse_dataset_options(raw)
    assert f"{fer2013}, line 1: the FER2013 (fer2013.csv) header lacks column(s) 'pixels'" in str(error.value)
    write_fer2013(fer2013)
    bad_votes = [FERPLUS_ROWS[0][:2] + (["x"] + [0] * 9, 0)] + FERPLUS_ROWS[1:]
    write_ferplus(labels, bad_votes)
    with pytest.raises(ValidationError, match=rf"{labels}, line 2: neutral vote 'x' is not a whole number >= 0"):
        parse_dataset_options(raw)
    write_ferplus(labels, [("Validation", *FERPLUS_ROWS[0][1:])] + FERPLUS_ROWS[1:])
    with pytest.raises(ValidationError, match="line 2: Usage 'Validation' is not one of Training, PublicTest"):
        parse_dataset_options(raw)
    with pytest.raises(ValidationError, match=str(tmp_path / "nope.csv")):
        parse_dataset_options({**raw, "fer2013_csv": str(tmp_path / "nope.csv")})
    with pytest.raises(ValidationError, match="target"):
        parse_dataset_options({**raw, "target": "soft"})


def test_ferplus_bad_pixels_name_file_and_line(ferplus_files):
    fer2013, _ = ferplus_files
    write_fer2013(fer2013, pixels=lambda i: "1 2 3" if i == 4 else " ".join(map(str, _pixels(i))))
    # row 4 (line 6) is dropped (unknown wins), so its pixels are never read
    assert len(ferplus(ferplus_files).train) == 5
    write_fer2013(fer2013, pixels=lambda i: "1 2 3" if i == 1 else " ".join(map(str, _pixels(i))))
    with pytest.raises(ValueError, match=rf"{fer2013}, line 3: pixels must be 2304 \(48x48\) .*got 3 value"):
        ferplus(ferplus_files)
    write_fer2013(fer2013, pixels=lambda i: " ".join(["7"] * 2303 + ["x"] if i == 2 else map(str, _pixels(i))))
    with pytest.raises(ValueError, match=rf"{fer2013}, line 4: pixels must be .* got 'x'"):
        ferplus(ferplus_files)
    write_fer2013(fer2013, pixels=lambda i: " ".join(["300"] * 2304))
    with pytest.raises(ValueError, match=rf"{fer2013}, line 2: .*0..255, got 300..300"):
        ferplus(ferplus_files)


def test_ce_trains_on_ferplus_grey_faces(ferplus_files):
    fer2013, labels = ferplus_files
    _train_one_epoch({"name": "ferplus", "fer2013_csv": str(fer2013), "ferplus_csv": str(labels),
                      "target": "distribution", "image_size": SIZE})


def test_a_ferplus_sweep_naming_a_missing_file_is_reported_at_its_key(ferplus_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, labels = ferplus_files
    missing = tmp_path / "no" / "fer2013.csv"
    sweep = tmp_path / "ferplus.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "ferplus_test",
        "dataset": {"name": "ferplus", "fer2013_csv": str(missing), "ferplus_csv": str(labels)},
        "model": {"backbone": "small_cnn"},
        "methods": {"ce": {"num_samples": 1, "overrides": {"epochs": 1}}},
    }, sort_keys=False))
    issues = validate_files([sweep])
    assert [(i.file, i.key) for i in issues] == [(str(sweep), "dataset.fer2013_csv")]
    assert str(missing) in issues[0].message
    write_fer2013(missing)
    assert validate_files([sweep]) == []


def _train_one_epoch(dataset):
    config = {"epochs": 1, "batch_size": 4, "lr": 0.05,
              CONTEXT_KEY: {"method": "ce", "seed": 0, "model": {"backbone": "small_cnn"},
                            "dataset": {"workers": 0, **dataset}}}
    reporter = MemoryReporter()
    train(config, reporter)
    assert len(reporter.results) == 1 and "test/acc" in reporter.results[-1]
