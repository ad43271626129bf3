"""A small CNN backbone for 8x8 grayscale digits (the built-in datasets).

Three 3x3 conv + BatchNorm + ReLU blocks with one 2x2 max-pool after the second
(8x8 -> 4x4), then global average pooling to ``SMALL_CNN_FEATURES`` features;
with ``global_pool=False`` the last block's feature map (B, 128, H/2, W/2) instead.
Works on any input of at least 2x2 pixels.
"""

from __future__ import annotations

from torch import nn

SMALL_CNN_FEATURES = 128


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """(B, C, H, W) images -> (B, 128) pooled features, or (B, 128, H/2, W/2) maps."""

    def __init__(self, in_channels: int = 1, feature_dim: int = SMALL_CNN_FEATURES, global_pool: bool = True):
        super().__init__()
        layers = [conv_bn_relu(in_channels, 32), conv_bn_relu(32, 64), nn.MaxPool2d(2), conv_bn_relu(64, feature_dim)]
        if global_pool:
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.feature_dim = feature_dim
        self.global_pool = global_pool

    def forward(self, images):
        return self.features(images)
