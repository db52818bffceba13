"""Detectors by name: torchvision's detection models and small FCOS detectors on the harness's own CPU backbones.

Every detector is a `Detector`: a torchvision detection model (which resizes and normalises its input images
itself and returns losses in training mode, boxes in evaluation mode) whose backbone body is cut into ordered
stages, so `freeze_depth = k` freezes the first k of them, the detection counterpart of torchvision's
`trainable_backbone_layers`. Weights: `none`; `imagenet` (the classification backbone's ImageNet weights, the
rest random); `coco` (the whole detector trained on COCO, with a new class head); `checkpoint:PATH` (a
classification backbone the harness trained: `resnet50` for the R50 detectors, `resnet8`/`resnet20` for
`fcos_resnet8`/`fcos_resnet20`). Weight files are read from the torch cache; nothing is downloaded here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import get_model, get_model_weights
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.fcos import FCOS, FCOSClassificationHead, FCOSHead
from torchvision.models.detection.retinanet import RetinaNetClassificationHead
from torchvision.models.detection.ssdlite import SSDLiteClassificationHead
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from harness.core.errors import ConfigError, NotHere
from harness.data.preprocessing import Preprocessing
from harness.models.backbones import (
    BACKBONES,
    TORCHVISION,
    BackboneInfo,
    StageFreezing,
    StagedBackbone,
    load_state_checked,
)
from harness.models.weights import LoadedWeights, read_checkpoint, weights_file

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DETECTION_WEIGHTS = "none, imagenet, coco or checkpoint:PATH"


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


@dataclass(frozen=True)
class DetectorSpec:
    """How a named detector is built: `make(num_classes, weights, requested, native, mean, std)` (input sizes:
    the run's `image_size`, 0 when unset, and the dataset's) returns (detection
    model, stages, feature_dim, label_offset); which classification backbone a checkpoint must hold; where its
    ImageNet backbone weights come from; its normalisation."""

    make: Callable[..., tuple[nn.Module, list[nn.Module], int, int]]
    description: str
    source_backbone: str
    imagenet: Callable[[], object] | None = None  # the backbone's ImageNet weights enum
    coco: bool = False
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


DETECTORS: dict[str, DetectorSpec] = {}


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


def _own_fcos(source: str, channels: int = 32) -> Callable[..., tuple[nn.Module, list[nn.Module], int, int]]:
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


def _torchvision(name: str, family: str, stages: Callable[[nn.Module], list[nn.Module]], feature_dim: int
                 ) -> Callable[..., tuple[nn.Module, list[nn.Module], int, int]]:
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
    staged = TORCHVISION["resnet50"][0](classifier)  # stages share the classifier's modules
    load_state_checked(staged, weights.state_dict, f"checkpoint for '{name}'")
    state = {k: v for k, v in classifier.state_dict().items() if not k.startswith("fc.")}
    missing, unexpected = model.backbone.body.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ConfigError(f"checkpoint for '{name}': layer '{(missing or unexpected)[0]}' does not match the detector")


def _register(name: str, spec: DetectorSpec) -> None:
    DETECTORS[name] = spec
    BACKBONES.register(name)(BackboneInfo(build=lambda weights: staged_view(name), description=spec.description,
                                          task="detection", resolve_weights=lambda w: detector_weights(w, name)))


def staged_view(name: str, num_classes: int = 2) -> StageView:
    """The stages of a randomly initialised detector (what `freeze_depth` counts)."""
    prep = Preprocessing(64, IMAGENET_MEAN, IMAGENET_STD, "none")
    return build_detector(name, LoadedWeights("none"), num_classes, prep).backbone


_register("fcos_resnet8", DetectorSpec(_own_fcos("resnet8"), "FCOS on the own resnet8 with a 2-level feature pyramid "
                                       "(4 stages), fast on the CPU", "resnet8"))
_register("fcos_resnet20", DetectorSpec(_own_fcos("resnet20"), "FCOS on the own resnet20 with a 2-level feature "
                                        "pyramid (4 stages), fast on the CPU", "resnet20"))


def _imagenet(enum_name: str, member: str = "IMAGENET1K_V1") -> Callable[[], object]:
    return lambda: getattr(get_model_weights(enum_name), member)


for _name, _family, _cut, _dim, _source, _desc in (
        ("fasterrcnn_resnet50_fpn_v2", "fasterrcnn", _resnet_body, 2048, "resnet50",
         "torchvision Faster R-CNN R50-FPN v2 (5 backbone stages)"),
        ("retinanet_resnet50_fpn_v2", "retinanet", _resnet_body, 2048, "resnet50",
         "torchvision RetinaNet R50-FPN v2 (5 backbone stages)"),
        ("fcos_resnet50_fpn", "fcos", _resnet_body, 2048, "resnet50", "torchvision FCOS R50-FPN (5 backbone stages)"),
        ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn", _children_body, 960, "mobilenet_v3_large",
         "torchvision Faster R-CNN MobileNetV3-Large 320 FPN (17 backbone stages)"),
        ("ssdlite320_mobilenet_v3_large", "ssdlite", _ssd_body, 960, "mobilenet_v3_large",
         "torchvision SSDlite320 MobileNetV3-Large (15 backbone stages)")):
    _register(_name, DetectorSpec(_torchvision(_name, _family, _cut, _dim), _desc, _source,
                                  imagenet=_imagenet(_source), coco=True,
                                  mean=(0.5,) * 3 if _family == "ssdlite" else IMAGENET_MEAN,
                                  std=(0.5,) * 3 if _family == "ssdlite" else IMAGENET_STD))


# ---- weights and building ----

def _cached(enum: object, spec: str, name: str) -> object:
    path = weights_file(enum)
    if not path.is_file():
        raise NotHere(f"weights='{spec}' for '{name}': file {path.name} not found in {path.parent}; on a machine "
                          f"with internet run `harness fetch {name}` and copy the file there")
    return enum


def detector_weights(spec: str, name: str) -> LoadedWeights:
    """Resolve `none`, `imagenet`, `coco` or `checkpoint:PATH` for a detector; files come from the torch cache."""
    d = DETECTORS[name]
    prep = Preprocessing(0, d.mean, d.std, f"{spec}:{name}")
    if spec == "none":
        return LoadedWeights("none")
    if spec == "imagenet":
        if d.imagenet is None:
            raise ConfigError(f"weights='imagenet': detector '{name}' has no ImageNet backbone; "
                              f"use checkpoint:PATH of a {d.source_backbone} or none")
        enum = _cached(d.imagenet(), spec, name)
        return LoadedWeights("imagenet-backbone", weights_enum=enum, meta=dict(enum.meta), preprocessing=prep)
    if spec == "coco":
        if not d.coco:
            raise ConfigError(f"weights='coco': detector '{name}' has no COCO weights; choose from: none, "
                              f"checkpoint:PATH")
        enum = _cached(get_model_weights(name).DEFAULT, spec, name)
        return LoadedWeights("coco", weights_enum=enum, meta=dict(enum.meta), preprocessing=prep)
    if spec.startswith("checkpoint:"):
        loaded = read_checkpoint(spec.partition(":")[2])
        if loaded.network != d.source_backbone:
            raise ConfigError(f"weights='{spec}': it holds a '{loaded.network}' network; detector '{name}' takes "
                              f"a {d.source_backbone} checkpoint")
        loaded.network = None
        return loaded
    raise ConfigError(f"weights='{spec}': choose from: {DETECTION_WEIGHTS}")


def build_detector(name: str, weights: LoadedWeights, num_classes: int, prep: Preprocessing,
                   flip: bool = False, image_size: int = 0) -> Detector:
    """A named detector for `num_classes` classes with its weights, normalising with `prep`; `image_size` (the
    run's, 0: unset) is the side torchvision's detectors resize to, the own ones take the dataset's size."""
    if name not in DETECTORS:
        info = BACKBONES.get(name)
        raise ConfigError(f"backbone '{name}' is a {info.task} backbone; a detection dataset needs a detector: "
                          f"{', '.join(DETECTORS)}")
    d = DETECTORS[name]
    model, stages, dim, offset = d.make(num_classes, weights, image_size, prep.image_size, prep.mean, prep.std)
    return Detector(model, stages, dim, offset, flip)


def fetch_detector_weights(name: str) -> list[Path]:
    """Download a torchvision detector's COCO weights and its backbone's ImageNet weights into the torch cache
    (needs internet)."""
    d = DETECTORS[name]
    enums = ([get_model_weights(name).DEFAULT] if d.coco else []) + ([d.imagenet()] if d.imagenet else [])
    if not enums:
        raise ConfigError(f"fetch: detector '{name}' has no published weights (train its backbone with "
                          f"`harness pretrain --backbone {d.source_backbone}`)")
    for enum in enums:
        try:
            enum.get_state_dict(progress=True)
        except OSError as e:
            raise ConfigError(f"fetch {name}: cannot download {enum.url} ({e}); no internet here?") from None
    return [weights_file(e) for e in enums]
