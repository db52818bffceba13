import math

import numpy as np
import pytest
import torch

from harness.results.stats import mean_confidence_interval, welch_p_value

from harness.tasks.classification import classification_metrics


def test_metrics_of_a_hand_made_prediction():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2]]))
    labels = torch.tensor([0, 1, 2, 1])
    m = classification_metrics(logits, labels, 3)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["per_class_accuracy"] == [1.0, 0.5, 1.0]
    assert m["balanced_accuracy"] == pytest.approx(2.5 / 3)
    # F1 per class: class0 p=1/2 r=1 -> 2/3; class1 p=1 r=1/2 -> 2/3; class2 1 -> macro 7/9
    assert m["macro_f1"] == pytest.approx(7 / 9)
    assert m["nll"] == pytest.approx(-np.mean(np.log([0.7, 0.6, 0.6, 0.3])), rel=1e-5)
    # confidences 0.7, 0.6, 0.6, 0.5; correct 1, 1, 1, 0 -> bins: |1-0.7|/4 + |1-0.6|*2/4 + |0-0.5|/4
    assert m["ece"] == pytest.approx((0.3 + 0.8 + 0.5) / 4, abs=1e-6)
    assert "top5_accuracy" not in m


def test_top5_only_beyond_five_classes_and_auc_of_perfect_scores():
    labels = torch.arange(10).repeat(3)
    logits = torch.nn.functional.one_hot(labels, 10).float() * 5
    m = classification_metrics(logits, labels, 10)
    assert m["top5_accuracy"] == 1.0 and m["roc_auc"] == 1.0 and m["accuracy"] == 1.0


def test_auc_is_nan_with_one_class_present():
    m = classification_metrics(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), 3)
    assert math.isnan(m["roc_auc"]) and m["per_class_accuracy"][1] is None


def test_t_interval_and_welch():
    mean, half = mean_confidence_interval([0.90, 0.92, 0.94])
    assert mean == pytest.approx(0.92)
    assert half == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-5)
    assert math.isnan(mean_confidence_interval([0.5])[1])
    assert welch_p_value([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert welch_p_value([1, 2, 3], [10, 11, 12]) < 0.01
