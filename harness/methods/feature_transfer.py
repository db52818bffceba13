"""Feature transfer (the seed's ResNet-18 source feeding an AlexNet-style target): the first `feature_layer`
stages of the frozen source network turn images into feature maps, and a new target network learns the task from
them. The target, `alexnet_style`, follows AlexNet's own layer pattern (Krizhevsky et al., 2012): up to five
convolutions with AlexNet's kernels (11, 5, 3, 3, 3) and channel ratios (64, 192, 384, 256, 256, scaled by
`target_width` / 64), overlapping 3x3 max pooling after the first, second and last, adaptive average pooling to
6x6, then the fully connected classifier with dropout (dropout, fc, ReLU, dropout, fc, ReLU, linear; `target_fc`
units, AlexNet's 4096). It is adapted to the source's feature map: a kernel never exceeds the map, pooling stops
when the map is under 3 wide, and the average pooling keeps at most the map's side. Flat features (D,) or token
sequences (averaged over tokens) have no map: they get the classifier alone. The source network is fully frozen,
so its features are computed once and cached when nothing augments the images.

The source network is the cell's backbone and the network its weights hold (a checkpoint of another network is
refused); records and the leaderboard name the source (`source_network`) and the target (`target_network`,
`alexnet_style`). A negative `feature_layer` counts from the end of the source network, so search spaces give
negative bounds to serve every source.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from harness.models.backbones import Classifier, StagedBackbone
from harness.core.errors import ConfigError
from harness.core.config import MethodArgs, TrialConfig, param
from harness.methods.base import Method, register


@dataclass(frozen=True)
class FeatureTransferArgs(MethodArgs):
    """Where the source network is cut, and the size of the target network trained on its features."""

    feature_layer: int = param(-1, "source stages feeding the target network, negative counted from the end",
                               check=lambda v: v != 0, end_relative=True,
                               allowed="must be a stage count >= 1, or negative to count from the last stage "
                                       "(-1 = all but the last)")
    target_depth: int = param(2, "convolutions of the AlexNet-style target network", low=0, high=5,
                              note="0 = its fully connected classifier alone")
    target_width: int = param(64, "channels of its first convolution (AlexNet: 64; the others keep AlexNet's "
                              "ratios 64:192:384:256:256)", low=1)
    target_fc: int = param(1024, "units of each of its two hidden fully connected layers (AlexNet: 4096)", low=1,
                           hashed_at_default=False)


def layer_count(config: TrialConfig, num_stages: int) -> int:
    """How many source stages feed the target network (`feature_layer`, negative counted from the end)."""
    layer = config.method_args.feature_layer
    k = layer if layer > 0 else num_stages + layer
    if not 1 <= k <= num_stages:
        raise ConfigError(f"feature_layer={layer}: the source network has {num_stages} stages; "
                          f"allowed 1-{num_stages}, or -1 to -{num_stages - 1} counted from the end")
    return k


TARGET_NETWORK = "alexnet_style"
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
    was_training = trunk.training
    shape = tuple(trunk.eval()(torch.zeros(2, 3, input_size, input_size)).shape[1:])
    trunk.train(was_training)
    return shape


def build(config: TrialConfig, backbone: StagedBackbone, num_classes: int, input_size: int) -> Classifier:
    """The source network cut after `feature_layer` stages, with the target network as its head."""
    k = layer_count(config, backbone.num_stages)
    trunk = StagedBackbone(list(backbone.stages[:k]), feature_dim=0)
    shape = feature_shape(trunk, input_size)
    trunk.feature_dim = shape[0] if len(shape) != 2 else shape[-1]
    args = config.method_args
    head = target_network(shape, args.target_depth, args.target_width, num_classes, config.dropout, args.target_fc)
    model = Classifier(trunk, num_classes, head=head)
    model.facts = {"feature_layer": k, "feature_shape": list(shape), "target_network": TARGET_NETWORK,
                   "target_depth": args.target_depth, "target_width": args.target_width, "target_fc": args.target_fc}
    return model


register(Method("feature_transfer", "a new AlexNet-style target network (alexnet_style: AlexNet's convolutions, "
                "max pooling and fully connected classifier with dropout, sized by target_depth, target_width, "
                "target_fc) trained on the frozen source network's features after feature_layer stages (cached)",
                layer_count, args=FeatureTransferArgs, build=build))
