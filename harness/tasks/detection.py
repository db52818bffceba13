"""Detection: boxes and labels per image. The network is a whole detector (harness.models.detectors: a
torchvision detection model on a staged backbone) that returns its own losses in training; batches are lists
of images of any size with lists of targets. Metrics: `map50`, VOC2007's 11-point AP at IoU 0.5 with difficult
objects ignored (the VOC protocol's headline; harness.tasks.voc_ap), `map50_area` (VOC2010+'s all-point AP),
COCO's `map` over IoU 0.5:0.95 and `map75` (torchmetrics' MeanAveragePrecision with the pycocotools backend:
the reference COCO evaluator, whose numbers papers report; difficult objects are passed as crowd regions, which
COCO ignores), and the per-class APs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from harness.core.errors import ConfigError
from harness.models.detectors import build_detector
from harness.tasks.base import Predict, Task, register

if TYPE_CHECKING:
    import torch
    from torch import nn

UNUSED = ("dropout", "label_smoothing", "mixup", "cutmix")


def no_head(feature_dim: int, num_classes: int, dropout: float) -> nn.Module:
    raise ConfigError("detection builds whole detectors (harness.models.detectors), not a head on flat features")


def detector_losses(label_smoothing: float) -> nn.Module:
    """The detector computes its own losses; this criterion sums them."""
    from harness.models.detector_nets import SumLosses

    return SumLosses()


def collate_detection(batch: list[Any]) -> Any:
    """A batch of detection images and targets as lists (harness.data.boxes)."""
    from harness.data.boxes import collate_detection as collate

    return collate(batch)


def detection_loss(net: nn.Module, x: Any, y: Any, criterion: nn.Module) -> torch.Tensor:
    """One batch's loss: the sum of the detector's losses (classification, box regression, centre-ness, RPN)."""
    return criterion(net(x, y))


def predictions_and_targets(predict: Predict, split: Any) -> tuple[list[dict], list[dict]]:
    """Per image: the detector's boxes, scores and labels, and the split's targets."""
    return predict(split), list(split.targets)


def detection_metrics(preds: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]],
                      num_classes: int) -> dict[str, object]:
    """map50 (VOC07 11-point), map50_area (all-point), COCO map and map75, per-class APs of one split."""
    from harness.tasks.voc_ap import voc_ap

    preds = [{k: v.detach().float().cpu() if k != "labels" else v.detach().long().cpu() for k, v in p.items()}
             for p in preds]
    map50, per_class = voc_ap(preds, targets, num_classes)
    map50_area, per_class_area = voc_ap(preds, targets, num_classes, all_point=True)
    coco = coco_map(preds, targets)
    return {"map50": map50, "map50_area": map50_area, "map": coco["map"], "map75": coco["map_75"],
            "detections_per_image": sum(len(p["labels"]) for p in preds) / max(1, len(preds)),
            "per_class_ap50": per_class, "per_class_ap50_area": per_class_area}


def coco_map(preds: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """COCO's mAP@[.5:.95] and mAP@.75 (torchmetrics, pycocotools backend); difficult objects as crowd regions."""
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
    metric.update([{"boxes": p["boxes"], "scores": p["scores"], "labels": p["labels"]} for p in preds],
                  [{"boxes": t["boxes"].float(), "labels": t["labels"],
                    "iscrowd": t.get("difficult", torch.zeros(len(t["labels"]), dtype=torch.bool)).long()}
                   for t in targets])
    out = metric.compute()
    return {k: _finite(out[k]) for k in ("map", "map_75")}


def _finite(v: torch.Tensor) -> float:
    """torchmetrics reports -1 where nothing could be scored; that is NaN here."""
    x = float(v)
    return float("nan") if x < 0 or math.isnan(x) else x


def build(config: Any, weights: Any, num_classes: int, prep: Any) -> nn.Module:
    """The run's detector: the named detector with its weights, flipping training images when augmenting."""
    if config.augment not in ("none", "basic"):
        raise ConfigError(f"augment='{config.augment}': detection takes none or basic (horizontal flip with boxes)")
    return build_detector(config.backbone, weights, num_classes, prep, flip=config.augment == "basic",
                          image_size=config.image_size)


DETECTION = register(Task(
    "detection", "boxes per image: a torchvision detector on a staged backbone, its own losses, VOC07 map50 "
    "(11-point, difficult ignored), all-point map50_area, COCO map",
    head=no_head, criterion=detector_losses, metrics=detection_metrics,
    headlines=("map50", "map50_area", "map"), shown=("map50",), gather=predictions_and_targets,
    collate=collate_detection, scalars=("map50", "map50_area", "map", "map75", "detections_per_image"),
    build=build, loss=detection_loss, batch_transform=False, caches_features=False, unused=UNUSED))
