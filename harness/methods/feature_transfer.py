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
from typing import TYPE_CHECKING

from harness.core.errors import ConfigError
from harness.core.config import MethodArgs, TrialConfig, param
from harness.methods.base import Method, register

if TYPE_CHECKING:
    from harness.models.staged import Classifier, StagedBackbone


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


def build(config: TrialConfig, backbone: StagedBackbone, num_classes: int, input_size: int) -> Classifier:
    """The source network cut after `feature_layer` stages, with the target network as its head."""
    from harness.methods.training.feature_transfer import feature_shape, target_network
    from harness.models.staged import Classifier, StagedBackbone

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
