"""Classification metrics from logits (scikit-learn and torchmetrics do the maths)."""

from __future__ import annotations

import math
import numpy as np
import torch
from sklearn import metrics as skm
from torchmetrics.functional.classification import multiclass_calibration_error

ECE_BINS = 15


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, object]:
    """Accuracy, top-5, macro-F1, macro one-vs-rest ROC AUC, NLL, ECE and per-class accuracy of one split."""
    logits = logits.detach().float().cpu()
    labels = labels.detach().long().cpu()
    probs = torch.softmax(logits, dim=1)
    y, p = labels.numpy(), probs.numpy().astype(np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    pred = p.argmax(axis=1)
    classes = list(range(num_classes))
    per_class = skm.recall_score(y, pred, labels=classes, average=None, zero_division=np.nan)
    out: dict[str, object] = {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": float(np.nanmean(per_class)),
        "macro_f1": float(skm.f1_score(y, pred, labels=classes, average="macro", zero_division=0)),
        "roc_auc": _roc_auc(y, p, classes),
        "nll": float(skm.log_loss(y, p, labels=classes)),
        "ece": float(multiclass_calibration_error(probs, labels, num_classes=num_classes, n_bins=ECE_BINS, norm="l1")),
        "per_class_accuracy": [None if math.isnan(v) else float(v) for v in per_class],
    }
    if num_classes > 5:
        out["top5_accuracy"] = float(skm.top_k_accuracy_score(y, p, k=5, labels=classes))
    return out


def _roc_auc(y: np.ndarray, p: np.ndarray, classes: list[int]) -> float:
    """Macro one-vs-rest AUC over the classes present; NaN when fewer than two are present."""
    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    if len(classes) == 2:
        return float(skm.roc_auc_score(y, p[:, 1]))
    scores = [skm.roc_auc_score(y == c, p[:, c]) for c in present]
    return float(np.mean(scores))
