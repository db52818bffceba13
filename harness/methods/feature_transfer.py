"""Feature transfer (the seed's ResNet-18 source feeding an AlexNet-style target): the first `feature_layer`
stages of the frozen source network turn images into feature maps, and a new small target network learns the
task from them: an AlexNet-style CNN (`target_depth` blocks of conv-BN-ReLU-maxpool, `target_width` channels,
then a linear classifier) on feature maps, an MLP on flat features or token sequences. The source network is
fully frozen, so its features are computed once and cached when nothing augments the images.

The source network is the one the weights hold: with `weights: checkpoint:PATH` it is the checkpoint's
network whatever `backbone` says (the seeds suite names such a cell by its target's style, `alexnet`, beside
AlexNet from scratch; the summary records `source_backbone`). A negative `feature_layer` counts from the end
of that network, so search spaces give negative bounds to serve every source.
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
    target_depth: int = param(2, "blocks of the target network", low=0, note="0 = a linear classifier")
    target_width: int = param(64, "channels (or units) of the target network", low=1)


def layer_count(config: TrialConfig, num_stages: int) -> int:
    """How many source stages feed the target network (`feature_layer`, negative counted from the end)."""
    layer = config.method_args.feature_layer
    k = layer if layer > 0 else num_stages + layer
    if not 1 <= k <= num_stages:
        raise ConfigError(f"feature_layer={layer}: the source network has {num_stages} stages; "
                          f"allowed 1-{num_stages}, or -1 to -{num_stages - 1} counted from the end")
    return k


class _MeanTokens(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def target_network(in_shape: tuple[int, ...], depth: int, width: int, num_classes: int, dropout: float) -> nn.Module:
    """AlexNet-style CNN for (C, H, W) feature maps (pooling while the maps are at least 4 wide), MLP for flat
    (D,) features or (tokens, D) sequences (averaged over tokens); depth 0 is a linear classifier."""
    layers: list[nn.Module] = []
    if len(in_shape) == 3:
        channels, side = in_shape[0], min(in_shape[1:])
        for _ in range(depth):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if side >= 4:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            channels = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        dim = channels
    else:
        if len(in_shape) == 2:
            layers.append(_MeanTokens())
        dim = in_shape[-1]
        for _ in range(depth):
            layers += [nn.Linear(dim, width), nn.ReLU(inplace=True)]
            dim = width
    layers += [nn.Dropout(dropout), nn.Linear(dim, num_classes)]
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
    head = target_network(shape, args.target_depth, args.target_width, num_classes, config.dropout)
    model = Classifier(trunk, num_classes, head=head)
    model.facts = {"feature_layer": k, "feature_shape": list(shape), "target_depth": args.target_depth,
                   "target_width": args.target_width}
    return model


register(Method("feature_transfer", "a new small CNN/MLP (target_depth, target_width) trained on the frozen "
                "source network's features after feature_layer stages (cached)", layer_count,
                args=FeatureTransferArgs, any_source=True, build=build))
