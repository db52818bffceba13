"""Backbone registry: own CIFAR-style ResNets and torchvision models, cut into ordered stages, with a new head.

Every backbone is a `StagedBackbone` (harness.models.staged): `stages` run input -> output and the last one
returns flat features of size `feature_dim`, so `freeze_depth = k` means "the first k stages are frozen" for
every network. This module only declares them (names, descriptions, stage counts, input sizes); a backbone's network
code is imported when it is built.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from harness.core.registry import Registry

if TYPE_CHECKING:
    from harness.models.staged import StagedBackbone


@dataclass(frozen=True)
class BackboneInfo:
    """How to build a backbone and how many stages the built network has (what `freeze_depth` counts, known
    without building it); torchvision ones also name their weights enum (input size, normalisation)."""

    build: Callable[[object | None], StagedBackbone]
    description: str
    stages: int
    torchvision_name: str | None = None
    min_size: int = 8
    task: str = "classification"  # what the network predicts: a classification backbone, or a detector
    resolve_weights: Callable[[str], object] | None = None  # the network's own weights names (detectors)


BACKBONES: Registry[BackboneInfo] = Registry("backbone")


# ---- own CIFAR-style residual networks (He et al. 2016, section 4.2; harness.models.staged) ----

def cifar_backbone(depth: int, width: int, weights: object | None) -> StagedBackbone:
    """An own CIFAR-style ResNet-`depth` of base width `width` (randomly initialised; `weights` unused)."""
    from harness.models.staged import cifar_resnet

    return cifar_resnet(depth, width)


def _register_cifar(name: str, depth: int, width: int = 16) -> None:
    BACKBONES.register(name)(BackboneInfo(
        build=functools.partial(cifar_backbone, depth, width),
        description=f"own CIFAR-style ResNet-{depth} (width {width}, 4 stages), fast on the CPU", stages=4))


for _name, _depth, _width in (("resnet8", 8, 16), ("resnet14", 14, 16), ("resnet20", 20, 16),
                              ("resnet32", 32, 16), ("resnet56", 56, 16), ("resnet20x4", 20, 64)):
    _register_cifar(_name, _depth, _width)


# ---- torchvision models, cut into stages (harness.models.staged.CUTS) ----

# name: (cut, description, stages, min_size: the smallest input side its weights' metadata allows, at least 8)
TORCHVISION: dict[str, tuple[str, str, int, int]] = {
    "resnet18": ("resnet", "torchvision ResNet-18 (5 stages)", 5, 8),
    "resnet34": ("resnet", "torchvision ResNet-34 (5 stages)", 5, 8),
    "resnet50": ("resnet", "torchvision ResNet-50 (5 stages)", 5, 8),
    "alexnet": ("features_by_pool", "torchvision AlexNet (3 stages: two conv blocks, then convs + FC layers)", 3, 63),
    "vgg11_bn": ("features_by_pool", "torchvision VGG-11 with BatchNorm (5 stages)", 5, 32),
    "mobilenet_v3_small": ("features", "torchvision MobileNetV3-Small (13 stages)", 13, 8),
    "efficientnet_b0": ("features", "torchvision EfficientNet-B0 (9 stages)", 9, 8),
    "convnext_tiny": ("features", "torchvision ConvNeXt-Tiny (8 stages)", 8, 32),
    "vit_b_16": ("vit", "torchvision ViT-B/16 (embedding + 12 encoder blocks), 224x224 input", 13, 224),
}


def torchvision_backbone(name: str, cut: str, weights: object | None) -> StagedBackbone:
    """torchvision's model `name` with `weights` (an enum member, or None), cut into stages."""
    from harness.models.staged import cut_torchvision

    return cut_torchvision(name, cut, weights)


for _name, (_cut, _desc, _stages, _min_size) in TORCHVISION.items():
    BACKBONES.register(_name)(BackboneInfo(build=functools.partial(torchvision_backbone, _name, _cut),
                                           description=_desc, stages=_stages, torchvision_name=_name,
                                           min_size=_min_size))


@functools.cache
def backbone_parameters(name: str) -> int:
    """Parameters of a backbone without its head, from a copy built on the meta device (no memory, no weights)."""
    import torch

    from harness.models.staged import count_parameters

    with torch.device("meta"):
        return count_parameters(BACKBONES.get(name).build(None))[0]


def stage_count(name: str) -> int:
    """How many stages a backbone has, as its entry declares (tests/test_startup.py builds each to check)."""
    return BACKBONES.get(name).stages
