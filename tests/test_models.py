"""Backbones: every name builds and maps a batch to features; local weights files."""

from __future__ import annotations

import pytest
import torch

from sweeplab.models import BACKBONES, build_backbone

EXPECTED_FEATURES = {"small_cnn": 128, "resnet18": 512, "resnet34": 512, "resnet50": 2048}


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_backbone_maps_a_batch_to_features(name, in_channels):
    backbone, feature_dim = build_backbone(name, in_channels)
    assert feature_dim == EXPECTED_FEATURES[name]
    size = 8 if name == "small_cnn" else 32
    backbone.eval()
    with torch.no_grad():
        features = backbone(torch.randn(2, in_channels, size, size))
    assert features.shape == (2, feature_dim) and torch.isfinite(features).all()


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError, match="small_cnn, resnet18, resnet34, resnet50"):
        build_backbone("vgg11", 3)


def test_weights_file_loads(tmp_path):
    source, _ = build_backbone("small_cnn", 1)
    path = tmp_path / "small_cnn.pt"
    torch.save(source.state_dict(), path)
    loaded, _ = build_backbone("small_cnn", 1, weights=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_torchvision_style_weights_with_classifier_load_into_a_grayscale_resnet(tmp_path):
    import torchvision

    imagenet_style = torchvision.models.resnet18(weights=None)  # keeps its fc.* entries
    path = tmp_path / "resnet18.pth"
    torch.save(imagenet_style.state_dict(), path)
    rgb, _ = build_backbone("resnet18", 3, weights=path)
    assert torch.equal(rgb.layer4[1].conv2.weight, imagenet_style.layer4[1].conv2.weight)
    gray, _ = build_backbone("resnet18", 1, weights=path)
    assert torch.allclose(gray.conv1.weight[:, 0], imagenet_style.conv1.weight.sum(dim=1), atol=1e-6)


def test_bad_weights_files_are_named(tmp_path):
    mismatched = tmp_path / "wrong_keys.pt"
    torch.save({"not_a_layer.weight": torch.zeros(3)}, mismatched)
    with pytest.raises(ValueError, match=r"wrong_keys\.pt.*missing keys.*unexpected keys not_a_layer\.weight"):
        build_backbone("small_cnn", 1, weights=mismatched)

    wrong_shape = tmp_path / "wrong_shape.pt"
    other, _ = build_backbone("small_cnn", 3)
    torch.save(other.state_dict(), wrong_shape)
    with pytest.raises(ValueError, match=r"wrong_shape\.pt.*wrong shapes features\.0\.0\.weight"):
        build_backbone("small_cnn", 1, weights=wrong_shape)

    not_a_checkpoint = tmp_path / "garbage.pt"
    not_a_checkpoint.write_bytes(b"definitely not a torch file")
    with pytest.raises(ValueError, match=r"garbage\.pt"):
        build_backbone("small_cnn", 1, weights=not_a_checkpoint)

    with pytest.raises(FileNotFoundError, match=r"absent\.pt"):
        build_backbone("small_cnn", 1, weights=tmp_path / "absent.pt")


@pytest.mark.parametrize("name, channels, size", [("small_cnn", 1, 8), ("resnet18", 3, 32)])
def test_split_last_stage_composes_back_to_the_backbone(name, channels, size):
    from sweeplab.models import split_last_stage

    backbone, dim = build_backbone(name, channels)
    backbone.eval()
    trunk, last = split_last_stage(backbone)
    x = torch.randn(2, channels, size, size)
    assert torch.allclose(last(trunk(x)), backbone(x))
    assert last(trunk(x)).shape == (2, dim)
