"""PASCAL VOC average precision at IoU 0.5 with difficult objects ignored, as the VOC devkit computes it
(`VOCevaldet.m`; Everingham et al. 2010): per class, detections of all images sorted by score; each is matched
to the ground-truth box of its image it overlaps most; IoU above 0.5 with a box not yet taken is a true
positive, with a taken box a false positive (a duplicate), with a difficult box neither. AP is the 11-point
interpolated precision (VOC2007) or the area under the precision envelope (VOC2010 on, `all_point`).

Written here because no maintained library computes it: torchmetrics and pycocotools compute COCO's AP,
whose matching (the best still-free box, crowd regions by intersection over the detection) and interpolation
(101 recall points) differ from VOC's, so their 0.5 number is not the one VOC papers report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

IOU_THRESHOLD = 0.5


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of `boxes` (continuous coordinates)."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, np.finfo(np.float64).eps)


def average_precision(recall: np.ndarray, precision: np.ndarray, all_point: bool = False) -> float:
    """11-point interpolated AP (VOC2007), or the area under the precision envelope (VOC2010+)."""
    if not all_point:
        return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                              for t in np.linspace(0, 1, 11)]))
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def class_ap(preds: Sequence[dict[str, torch.Tensor]], targets: Sequence[dict[str, torch.Tensor]], label: int,
             all_point: bool = False) -> float | None:
    """AP of one class over a split; None when the split holds no non-difficult object of it."""
    gts, taken, npos = [], [], 0
    for t in targets:
        keep = (t["labels"] == label).numpy()
        boxes = t["boxes"].double().numpy()[keep]
        difficult = t.get("difficult", torch.zeros(len(t["labels"]), dtype=torch.bool)).numpy()[keep]
        gts.append((boxes, difficult))
        taken.append(np.zeros(len(boxes), dtype=bool))
        npos += int((~difficult).sum())
    if npos == 0:
        return None
    dets = [(float(s), i, b) for i, p in enumerate(preds)
            for s, b, lab in zip(p["scores"].tolist(), p["boxes"].double().numpy(), p["labels"].tolist())
            if lab == label]
    dets.sort(key=lambda d: -d[0])  # stable: equal scores keep image order, as the devkit's sort does
    tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
    for k, (_, i, box) in enumerate(dets):
        boxes, difficult = gts[i]
        if len(boxes) == 0:
            fp[k] = 1
            continue
        iou = box_iou(box, boxes)
        j = int(iou.argmax())
        if iou[j] > IOU_THRESHOLD:
            if difficult[j]:
                continue
            if taken[i][j]:
                fp[k] = 1
            else:
                tp[k], taken[i][j] = 1, True
        else:
            fp[k] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / npos
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return average_precision(recall, precision, all_point)


def voc_ap(preds: Sequence[dict[str, torch.Tensor]], targets: Sequence[dict[str, torch.Tensor]], num_classes: int,
           all_point: bool = False) -> tuple[float, list[float | None]]:
    """(mean AP over the classes present, per-class AP with None for a class absent from the split)."""
    per_class = [class_ap(preds, targets, c, all_point) for c in range(num_classes)]
    present = [a for a in per_class if a is not None]
    return (float(np.mean(present)) if present else float("nan")), per_class
