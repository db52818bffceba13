"""The AlexNet-style target network of feature transfer (harness.methods.feature_transfer) and the shape of
the source features it reads."""

from __future__ import annotations

import torch
import torch.nn as nn

from harness.models.staged import StagedBackbone

ALEXNET_CONVS = ((64, 11), (192, 5), (384, 3), (256, 3), (256, 3))  # (channels, kernel) of AlexNet's convolutions
ALEXNET_POOL_SIDE = 6  # AlexNet's adaptive average pooling before the classifier


class _MeanTokens(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def _odd_at_most(k: int, side: int) -> int:
    return min(k, side if side % 2 else side - 1) if side > 1 else 1


def target_network(in_shape: tuple[int, ...], depth: int, width: int, num_classes: int, dropout: float,
                   fc: int = 1024) -> nn.Module:
    """The AlexNet-style target network for (C, H, W) feature maps: `depth` of AlexNet's convolutions (kernels
    capped by the map, padded to keep its size) with ReLU and AlexNet's max pooling while the map is at least 3
    wide, average pooling to at most 6x6, then AlexNet's classifier with `fc` units; for flat (D,) features or
    (tokens, D) sequences (averaged over tokens), the classifier alone."""
    layers: list[nn.Module] = []
    if len(in_shape) == 3:
        channels, side = in_shape[0], min(in_shape[1:])
        for i, (c, k) in enumerate(ALEXNET_CONVS[:depth]):
            out, k = max(1, round(c * width / 64)), _odd_at_most(k, side)
            layers += [nn.Conv2d(channels, out, k, padding=k // 2), nn.ReLU(inplace=True)]
            if (i < 2 or i == depth - 1) and side >= 3:  # AlexNet pools after its first, second and last
                layers.append(nn.MaxPool2d(3, stride=2))
                side = (side - 3) // 2 + 1
            channels = out
        pooled = min(ALEXNET_POOL_SIDE, side)
        layers += [nn.AdaptiveAvgPool2d(pooled), nn.Flatten()]
        dim = channels * pooled * pooled
    else:
        if len(in_shape) == 2:
            layers.append(_MeanTokens())
        dim = in_shape[-1]
    layers += [nn.Dropout(dropout), nn.Linear(dim, fc), nn.ReLU(inplace=True),
               nn.Dropout(dropout), nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Linear(fc, num_classes)]
    return nn.Sequential(*layers)


@torch.no_grad()
def feature_shape(trunk: StagedBackbone, input_size: int) -> tuple[int, ...]:
    """The shape of the trunk's output for one image of side `input_size` (without the batch dimension)."""
    was_training = trunk.training
    shape = tuple(trunk.eval()(torch.zeros(2, 3, input_size, input_size)).shape[1:])
    trunk.train(was_training)
    return shape
