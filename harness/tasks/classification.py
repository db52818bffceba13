"""Classification: one label per image. A new head (dropout, then linear) on the backbone's features,
cross-entropy with optional label smoothing, and metrics from logits (scikit-learn and torchmetrics do the
maths)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from harness.tasks.base import Task, register

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

ECE_BINS = 15
CONFUSION_MAX_CLASSES = 100  # above this the matrix (classes squared counts) is left out of the records


def linear_head(feature_dim: int, num_classes: int, dropout: float) -> nn.Module:
    """Dropout, then a linear layer from the features to one logit per class."""
    import torch.nn as nn

    return nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))


def cross_entropy(label_smoothing: float) -> nn.Module:
    """Cross-entropy on logits; takes class indices or class probabilities (MixUp/CutMix targets)."""
    import torch.nn as nn

    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, object]:
    """Accuracy, top-5, macro-F1, macro one-vs-rest ROC AUC, NLL, ECE, per-class accuracy and (up to
    CONFUSION_MAX_CLASSES classes) the confusion matrix (rows: true class, columns: predicted) of one split."""
    import torch
    from sklearn import metrics as skm
    from torchmetrics.functional.classification import multiclass_calibration_error

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
    if num_classes <= CONFUSION_MAX_CLASSES:
        out["confusion_matrix"] = skm.confusion_matrix(y, pred, labels=classes).tolist()
    if num_classes > 5:
        out["top5_accuracy"] = float(skm.top_k_accuracy_score(y, p, k=5, labels=classes))
    return out


def _roc_auc(y: np.ndarray, p: np.ndarray, classes: list[int]) -> float:
    """Macro one-vs-rest AUC over the classes present; NaN when fewer than two are present."""
    from sklearn import metrics as skm

    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    if len(classes) == 2:
        return float(skm.roc_auc_score(y, p[:, 1]))
    scores = [skm.roc_auc_score(y == c, p[:, c]) for c in present]
    return float(np.mean(scores))


CLASSIFICATION = register(Task(
    "classification", "one label per image: linear head, cross-entropy, accuracy, macro-F1, ROC AUC, NLL, ECE",
    head=linear_head, criterion=cross_entropy, metrics=classification_metrics,
    headlines=("accuracy", "balanced_accuracy", "top5_accuracy", "macro_f1", "roc_auc"),
    shown=("accuracy", "nll"),
    scalars=("accuracy", "balanced_accuracy", "top5_accuracy", "macro_f1", "roc_auc", "nll", "ece")))
