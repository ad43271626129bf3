"""Backbones by name: modules mapping images (B, C, H, W) to pooled features (B, feature_dim),
or with ``global_pool=False`` to their last feature map (B, feature_dim, h, w) (timm's
``global_pool=''``: a method that puts its head on the map, e.g. a 1x1 convolution).

``build_backbone`` is the one factory; ``BACKBONES`` lists the names it knows.
Weights are only ever read from a local file (a state dict saved with
``torch.save``), never downloaded.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from sweeplab.models.small_cnn import SmallCNN


def build_resnet(name: str, in_channels: int) -> tuple[nn.Module, int]:
    # torchvision is imported here, not with this package: ~2 s that the driver (checking a sweep
    # file) and a small_cnn trial never need
    from sweeplab.models.resnet import build_resnet as build

    return build(name, in_channels)


def _build_small_cnn(in_channels: int) -> tuple[nn.Module, int]:
    net = SmallCNN(in_channels)
    return net, net.feature_dim


_BUILDERS: dict[str, Callable[[int], tuple[nn.Module, int]]] = {
    "small_cnn": _build_small_cnn,
    "resnet18": partial(build_resnet, "resnet18"),
    "resnet34": partial(build_resnet, "resnet34"),
    "resnet50": partial(build_resnet, "resnet50"),
}
BACKBONES: tuple[str, ...] = tuple(_BUILDERS)


def build_backbone(name: str, in_channels: int, weights: str | Path | None = None,
                   global_pool: bool = True) -> tuple[nn.Module, int]:
    """``(backbone, feature_dim)`` for a backbone name, optionally loading a local weights file.
    ``global_pool=False``: the backbone ends at its last feature map, of ``feature_dim`` channels."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    backbone, feature_dim = _BUILDERS[name](in_channels)
    if weights is not None:
        load_backbone_weights(backbone, weights)  # into the pooled form: the file's own layout
    if not global_pool:
        backbone = _without_pooling(backbone)
    return backbone, feature_dim


def _without_pooling(backbone: nn.Module) -> nn.Module:
    """The same layers (and weights) ending at the last feature map."""
    if isinstance(backbone, SmallCNN):
        return _small_cnn_map(backbone)
    from sweeplab.models import resnet

    return resnet.feature_map(backbone)


def _small_cnn_map(net: SmallCNN) -> SmallCNN:
    out = SmallCNN(net.features[0][0].in_channels, net.feature_dim, global_pool=False)
    out.features.load_state_dict(net.features.state_dict())
    return out


def feature_map_size(name: str, input_shape: tuple[int, int, int]) -> tuple[int, int]:
    """The (h, w) of backbone ``name``'s last feature map for inputs of ``input_shape`` (C, H, W),
    from a forward pass on the meta device (no memory, no compute): exact for any backbone."""
    with torch.device("meta"):
        backbone, _ = build_backbone(name, input_shape[0], global_pool=False)
        out = backbone.eval()(torch.empty(1, *input_shape))
    return int(out.shape[-2]), int(out.shape[-1])


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a state dict saved at ``path`` into ``backbone`` (strictly, CPU, ``weights_only``).

    A classifier's ``fc.*`` entries (torchvision ImageNet checkpoints) are dropped.
    Where the backbone's first convolution takes other than 3 channels and the file's
    takes 3, the file's kernel is averaged over its colour channels, repeated and
    scaled by 3 / channels (so a grayscale image copied to RGB gives the same response). Any other mismatch raises ``ValueError`` naming the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"cannot read backbone weights from {path} (expected a state dict saved with torch.save): {error}"
        ) from error
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")

    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    own = backbone.state_dict()
    stem = state.get("conv1.weight")
    if stem is not None and "conv1.weight" in own and stem.shape[1] == 3 != own["conv1.weight"].shape[1]:
        in_channels = own["conv1.weight"].shape[1]
        state["conv1.weight"] = stem.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) * (3 / in_channels)

    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(key for key in set(own) & set(state) if own[key].shape != state[key].shape)
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"weights in {path} do not fit the backbone: missing keys {_few(missing)}, "
            f"unexpected keys {_few(unexpected)}, wrong shapes {_few(wrong_shape)}"
        )
    backbone.load_state_dict(state)


def _few(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit]) or "none"
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def split_last_stage(backbone: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``(trunk, last_stage)`` with ``last_stage(trunk(x)) == backbone(x)``: the last stage
    (ResNet ``layer4``, the small CNN's last block), followed by global pooling when the
    backbone pools. Methods with several branches over a shared trunk (LTML, DMUE) copy the
    last stage once per branch."""
    if isinstance(backbone, SmallCNN):
        layers = list(backbone.features.children())  # block, block, pool, block[, avgpool, flatten]
        cut = -3 if backbone.global_pool else -1
        return nn.Sequential(*layers[:cut]), nn.Sequential(*layers[cut:])
    from torchvision.models import ResNet

    from sweeplab.models import resnet
    if isinstance(backbone, ResNet):
        trunk = nn.Sequential(*(getattr(backbone, name) for name in resnet.TRUNK))
        return trunk, nn.Sequential(backbone.layer4, backbone.avgpool, nn.Flatten())
    if resnet.is_feature_map(backbone):
        return nn.Sequential(*(getattr(backbone, name) for name in resnet.TRUNK)), nn.Sequential(backbone.layer4)
    raise TypeError(f"cannot split {type(backbone).__name__} into a trunk and a last stage")
