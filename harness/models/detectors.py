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

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from harness.core.errors import ConfigError, NotHere
from harness.data.preprocessing import Preprocessing
from harness.models.backbones import BACKBONES, BackboneInfo

if TYPE_CHECKING:
    from harness.models.detector_nets import Detector, StageView
    from harness.models.weights import LoadedWeights

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DETECTION_WEIGHTS = "none, imagenet, coco or checkpoint:PATH"


@dataclass(frozen=True)
class DetectorSpec:
    """How a named detector is built: `BUILDERS[builder](*builder_args)` (harness.models.detector_nets) is its
    `make(num_classes, weights, requested, native, mean, std)` (input sizes: the run's `image_size`, 0 when
    unset, and the dataset's), which returns (detection model, stages, feature_dim, label_offset); how many
    backbone stages it has; which classification backbone a checkpoint must hold; where its ImageNet backbone
    weights come from; its normalisation."""

    builder: str
    builder_args: tuple
    description: str
    stages: int
    source_backbone: str
    imagenet: Callable[[], object] | None = None  # the backbone's ImageNet weights enum
    coco: bool = False
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


DETECTORS: dict[str, DetectorSpec] = {}


def _register(name: str, spec: DetectorSpec) -> None:
    DETECTORS[name] = spec
    BACKBONES.register(name)(BackboneInfo(build=lambda weights: staged_view(name), description=spec.description,
                                          stages=spec.stages, task="detection",
                                          resolve_weights=lambda w: detector_weights(w, name)))


def staged_view(name: str, num_classes: int = 2) -> StageView:
    """The stages of a randomly initialised detector (what `freeze_depth` counts)."""
    from harness.models.weights import LoadedWeights

    prep = Preprocessing(64, IMAGENET_MEAN, IMAGENET_STD, "none")
    return build_detector(name, LoadedWeights("none"), num_classes, prep).backbone


_register("fcos_resnet8", DetectorSpec("own_fcos", ("resnet8",), "FCOS on the own resnet8 with a 2-level feature "
                                       "pyramid (4 stages), fast on the CPU", 4, "resnet8"))
_register("fcos_resnet20", DetectorSpec("own_fcos", ("resnet20",), "FCOS on the own resnet20 with a 2-level feature "
                                        "pyramid (4 stages), fast on the CPU", 4, "resnet20"))


def _imagenet(enum_name: str, member: str = "IMAGENET1K_V1") -> Callable[[], object]:
    def enum() -> object:
        from torchvision.models import get_model_weights

        return getattr(get_model_weights(enum_name), member)
    return enum


for _name, _family, _body, _dim, _source, _desc, _stages in (
        ("fasterrcnn_resnet50_fpn_v2", "fasterrcnn", "resnet", 2048, "resnet50",
         "torchvision Faster R-CNN R50-FPN v2 (5 backbone stages)", 5),
        ("retinanet_resnet50_fpn_v2", "retinanet", "resnet", 2048, "resnet50",
         "torchvision RetinaNet R50-FPN v2 (5 backbone stages)", 5),
        ("fcos_resnet50_fpn", "fcos", "resnet", 2048, "resnet50", "torchvision FCOS R50-FPN (5 backbone stages)", 5),
        ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn", "children", 960, "mobilenet_v3_large",
         "torchvision Faster R-CNN MobileNetV3-Large 320 FPN (17 backbone stages)", 17),
        ("ssdlite320_mobilenet_v3_large", "ssdlite", "ssd", 960, "mobilenet_v3_large",
         "torchvision SSDlite320 MobileNetV3-Large (15 backbone stages)", 15)):
    _register(_name, DetectorSpec("torchvision", (_name, _family, _body, _dim), _desc, _stages, _source,
                                  imagenet=_imagenet(_source), coco=True,
                                  mean=(0.5,) * 3 if _family == "ssdlite" else IMAGENET_MEAN,
                                  std=(0.5,) * 3 if _family == "ssdlite" else IMAGENET_STD))


# ---- weights and building ----

def _cached(enum: object, spec: str, name: str) -> object:
    from harness.models.weights import weights_file

    path = weights_file(enum)
    if not path.is_file():
        raise NotHere(f"weights='{spec}' for '{name}': file {path.name} not found in {path.parent}; on a machine "
                          f"with internet run `harness fetch {name}` and copy the file there")
    return enum


def detector_weights(spec: str, name: str) -> LoadedWeights:
    """Resolve `none`, `imagenet`, `coco` or `checkpoint:PATH` for a detector; files come from the torch cache."""
    from torchvision.models import get_model_weights

    from harness.models.weights import LoadedWeights, read_checkpoint

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
    from harness.models.detector_nets import BUILDERS, Detector

    d = DETECTORS[name]
    make = BUILDERS[d.builder](*d.builder_args)
    model, stages, dim, offset = make(num_classes, weights, image_size, prep.image_size, prep.mean, prep.std)
    return Detector(model, stages, dim, offset, flip)


def fetch_detector_weights(name: str) -> list[Path]:
    """Download a torchvision detector's COCO weights and its backbone's ImageNet weights into the torch cache
    (needs internet)."""
    from torchvision.models import get_model_weights

    from harness.models.weights import weights_file

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
