"""The networks behind the detector registry (harness.models.detectors): `Detector` (a torchvision detection
model with its backbone's stages), the small FCOS detectors on the own CIFAR-style ResNets and torchvision's
detectors with new class heads. Imported when a detector is built, never to list or check one."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import get_model
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.fcos import FCOS, FCOSClassificationHead, FCOSHead
from torchvision.models.detection.retinanet import RetinaNetClassificationHead
from torchvision.models.detection.ssdlite import SSDLiteClassificationHead
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from harness.core.errors import ConfigError
from harness.models.backbones import BACKBONES
from harness.models.staged import CUTS, StageFreezing, StagedBackbone, load_state_checked
from harness.models.weights import LoadedWeights

# make(num_classes, weights, requested, native, mean, std) -> (detection model, stages, feature_dim, label_offset)
Make = Callable[..., tuple[nn.Module, list[nn.Module], int, int]]


class StageView:
    """A detector's backbone stages seen in order (the modules stay the detector's own: no second copy)."""

    def __init__(self, stages: list[nn.Module], feature_dim: int) -> None:
        self.stages, self.feature_dim = stages, feature_dim

    @property
    def num_stages(self) -> int:
        return len(self.stages)


class Detector(StageFreezing):
    """A detection model with its backbone's stages (`backbone`, so freezing and the run's summary read them
    as for a classifier). Takes uint8 or float images; in training
    mode flips each image and its boxes with probability 1/2 when `flip` is set, drops difficult objects from
    the targets and returns the detector's losses; in evaluation mode returns boxes, scores and 0-based labels."""

    def __init__(self, detector: nn.Module, stages: list[nn.Module], feature_dim: int, label_offset: int,
                 flip: bool = False) -> None:
        super().__init__()
        self.detector = detector
        self.backbone = StageView(stages, feature_dim)
        self.label_offset, self.flip = label_offset, flip
        self.frozen_stages = 0
        self.facts: dict[str, object] = {}

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None):
        images = [x.float().div(255) if x.dtype == torch.uint8 else x for x in images]
        if not self.training:
            return [{"boxes": o["boxes"], "scores": o["scores"], "labels": o["labels"] - self.label_offset}
                    for o in self.detector(images)]
        kept = []
        for i, t in enumerate(targets):
            keep = ~t["difficult"] if "difficult" in t else torch.ones_like(t["labels"], dtype=torch.bool)
            boxes = t["boxes"][keep]
            if self.flip and torch.rand(()) < 0.5:
                width = images[i].shape[-1]
                images[i] = images[i].flip(-1)
                boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
            kept.append({"boxes": boxes, "labels": t["labels"][keep] + self.label_offset})
        return self.detector(images, kept)


# ---- small FCOS detectors on the harness's own CIFAR-style ResNets ----

class CifarPyramid(nn.Module):
    """A CIFAR-style ResNet's last two stages (strides 2 and 4) under a feature pyramid (plus a max-pooled level)."""

    def __init__(self, trunk: StagedBackbone, out_channels: int) -> None:
        super().__init__()
        self.trunk = trunk
        widths = [trunk.feature_dim // 2, trunk.feature_dim]
        self.fpn = FeaturePyramidNetwork(widths, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        stem, first, second, last = self.trunk.stages
        c2 = second(first(stem(x)))
        c3 = last[0](c2)  # the stage's blocks, without the classifier's pooling
        return self.fpn(OrderedDict([("0", c2), ("1", c3)]))


def own_fcos(source: str, channels: int = 32) -> Make:
    """An FCOS detector on the own CIFAR-style ResNet `source` under a 2-level feature pyramid."""

    def make(num_classes: int, weights: LoadedWeights, requested: int, native: int, mean: tuple, std: tuple):
        input_size = requested or native
        trunk = BACKBONES.get(source).build(None)
        if weights.state_dict is not None:
            load_state_checked(trunk, weights.state_dict, f"checkpoint for '{source}'")
        anchors = AnchorGenerator(((2,), (4,), (8,)), ((1.0,),) * 3)  # FCOS: one point per location, size = stride
        model = FCOS(CifarPyramid(trunk, channels), num_classes, min_size=input_size, max_size=input_size,
                     image_mean=list(mean), image_std=list(std), anchor_generator=anchors,
                     head=FCOSHead(channels, 1, num_classes, num_convs=2), score_thresh=0.05,
                     detections_per_img=50)
        return model, list(trunk.stages), trunk.feature_dim, 0
    return make


# ---- torchvision's detectors ----

def _class_head(model: nn.Module, family: str, num_classes: int) -> None:
    """Replace a COCO detector's class head with a new one for `num_classes` (background included where used)."""
    if family == "fasterrcnn":
        predictor = model.roi_heads.box_predictor
        model.roi_heads.box_predictor = FastRCNNPredictor(predictor.cls_score.in_features, num_classes)
    elif family == "retinanet":
        old = model.head.classification_head
        model.head.classification_head = RetinaNetClassificationHead(
            old.conv[0][0].in_channels, old.num_anchors, num_classes, norm_layer=_norm_of(old))
    elif family == "fcos":
        old = model.head.classification_head
        model.head.classification_head = FCOSClassificationHead(old.conv[0].in_channels, old.num_anchors, num_classes)
    else:  # ssdlite
        old = model.head.classification_head
        channels = [m[0][0].in_channels for m in old.module_list]
        anchors = model.anchor_generator.num_anchors_per_location()
        norm = type(old.module_list[0][0][1])
        model.head.classification_head = SSDLiteClassificationHead(
            channels, anchors, num_classes, lambda c: norm(c, eps=0.001, momentum=0.03))


def _norm_of(head: nn.Module) -> Callable[[int], nn.Module]:
    norm = head.conv[0][1]
    return lambda c: nn.GroupNorm(norm.num_groups, c)


def torchvision_detector(name: str, family: str, body: str, feature_dim: int) -> Make:
    """torchvision's detector `name` (of `family`), its backbone body cut into stages by BODIES[body]."""
    stages = BODIES[body]
    offset = 1 if family in ("fasterrcnn", "ssdlite") else 0

    def make(num_classes: int, weights: LoadedWeights, requested: int, native: int, mean: tuple, std: tuple):
        kwargs = {"min_size": requested, "max_size": round(requested * 1333 / 800)} if requested else {}
        if weights.kind == "coco":
            model = get_model(name, weights=weights.weights_enum, **kwargs)
            _class_head(model, family, num_classes + offset)
        else:
            backbone_enum = weights.weights_enum if weights.kind == "imagenet-backbone" else None
            model = get_model(name, weights=None, weights_backbone=backbone_enum, num_classes=num_classes + offset,
                              trainable_backbone_layers=None if backbone_enum is None else _all_layers(name),
                              **kwargs)
        model.transform.image_mean, model.transform.image_std = list(mean), list(std)
        cut = stages(model)
        if weights.state_dict is not None:
            _load_harness_backbone(model, weights, name)
        return model, cut, feature_dim, offset
    return make


def _all_layers(name: str) -> int:
    return 6 if "mobilenet" in name else 5


def _resnet_body(model: nn.Module) -> list[nn.Module]:
    b = model.backbone.body
    return [nn.Sequential(b.conv1, b.bn1, b.relu, b.maxpool), b.layer1, b.layer2, b.layer3, b.layer4]


def _children_body(model: nn.Module) -> list[nn.Module]:
    return list(model.backbone.body.children())


def _ssd_body(model: nn.Module) -> list[nn.Module]:
    first, rest = model.backbone.features
    return [*first.children(), rest]


def _load_harness_backbone(model: nn.Module, weights: LoadedWeights, name: str) -> None:
    """A harness-trained ResNet-50 (`harness pretrain`) into an R50 detector's body, layer by layer."""
    classifier = get_model("resnet50", weights=None)
    staged = CUTS["resnet"](classifier)  # stages share the classifier's modules
    load_state_checked(staged, weights.state_dict, f"checkpoint for '{name}'")
    state = {k: v for k, v in classifier.state_dict().items() if not k.startswith("fc.")}
    missing, unexpected = model.backbone.body.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ConfigError(f"checkpoint for '{name}': layer '{(missing or unexpected)[0]}' does not match the detector")


class SumLosses(nn.Module):
    """The detection criterion: the sum of the losses a detector returns in training mode."""

    def forward(self, losses: dict[str, torch.Tensor], targets: object = None) -> torch.Tensor:
        return sum(losses.values())


BODIES: dict[str, Callable[[nn.Module], list[nn.Module]]] = {
    "resnet": _resnet_body,
    "children": _children_body,
    "ssd": _ssd_body,
}

BUILDERS: dict[str, Callable[..., Make]] = {"own_fcos": own_fcos, "torchvision": torchvision_detector}
