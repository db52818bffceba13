"""Tasks as plugins: the classification task's head, loss and metrics; the loop takes its task from the bundle."""

from dataclasses import replace

import pytest
import torch
import torch.nn as nn
from torch.utils.data import default_collate

import harness.train.inputs
from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.data.bundle import Split
from harness.data.registry import load_dataset
from harness.tasks import TASKS, Task, task_of
from harness.tasks.classification import classification_metrics
from harness.train.loop import fit


def tiny(**kw) -> TrialConfig:
    return TrialConfig.from_dict({"dataset": "digits:0-2", "backbone": "resnet8", "method": "scratch", "epochs": 1,
                                  "batch_size": 32, **kw})


def with_task(monkeypatch: pytest.MonkeyPatch, task: str = "classification", metric: str = "accuracy") -> None:
    """Make the loop load bundles that name `task` and `metric`."""
    load = harness.train.inputs.load_dataset
    monkeypatch.setattr(harness.train.inputs, "load_dataset",
                        lambda *a, **kw: replace(load(*a, **kw), task=task, metric=metric))


def test_bundles_are_classification_unless_they_say_otherwise():
    bundle = load_dataset("digits")
    assert bundle.task == "classification"
    assert task_of(bundle) is TASKS.get("classification")


def test_classification_head_is_dropout_then_a_linear_layer_per_class():
    head = TASKS.get("classification").head(64, 10, 0.25)
    assert isinstance(head[0], nn.Dropout) and head[0].p == 0.25
    assert isinstance(head[1], nn.Linear) and (head[1].in_features, head[1].out_features) == (64, 10)
    assert head.eval()(torch.zeros(3, 64)).shape == (3, 10)


def test_classification_loss_takes_labels_or_class_probabilities_with_label_smoothing():
    loss = TASKS.get("classification").criterion(0.1)
    logits, labels = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
    assert loss(logits, labels) == pytest.approx(float(nn.CrossEntropyLoss(label_smoothing=0.1)(logits, labels)))
    assert loss(logits, torch.tensor([[1.0, 0.0, 0.0]])) == pytest.approx(float(loss(logits, labels)))


def test_classification_gathers_one_row_per_image_and_scores_it():
    task = TASKS.get("classification")
    split = Split(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 2, 1]))
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2]]))
    outputs, targets = task.gather(lambda s: logits[:len(s)], split)
    assert torch.equal(outputs, logits) and torch.equal(targets, split.labels)
    metrics = task.metrics(outputs, targets, 3)
    assert metrics == classification_metrics(logits, split.labels, 3)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert task.collate is None  # PyTorch's default collation


def test_a_bundle_naming_an_unknown_task_is_a_one_line_error(monkeypatch):
    with pytest.raises(ConfigError) as e:
        task_of(replace(load_dataset("digits"), task="detektion"))
    assert str(e.value) == "dataset 'digits': unknown task 'detektion'; choose from: detection, classification"
    with_task(monkeypatch, "segmentation")
    with pytest.raises(ConfigError, match=r"^dataset 'digits:0-2': unknown task 'segmentation'; choose from: "):
        fit(tiny())


def test_a_headline_metric_the_task_does_not_compute_is_a_one_line_error(monkeypatch):
    with_task(monkeypatch, metric="nll")
    with pytest.raises(ConfigError, match=r"^dataset 'digits:0-2': metric 'nll' is not a classification metric; "
                                          r"choose from: accuracy, balanced_accuracy"):
        fit(tiny())


def test_the_loop_takes_head_loss_collation_and_metrics_from_the_bundles_task(monkeypatch):
    calls = {"collate": 0, "criterion": [], "metrics": 0}

    def collate(batch):
        calls["collate"] += 1
        return default_collate(batch)

    def criterion(label_smoothing):
        calls["criterion"].append(label_smoothing)
        return nn.CrossEntropyLoss()

    def metrics(outputs, targets, num_classes):
        calls["metrics"] += 1
        return {"hits": float((outputs.argmax(1) == targets).float().mean()), "per_class": [0.0] * num_classes}

    toy = Task("toy", "a test task", head=lambda dim, classes, dropout: nn.Sequential(nn.Linear(dim, classes, bias=False)),
               criterion=criterion, metrics=metrics, headlines=("hits",), shown=("hits",), collate=collate)
    monkeypatch.setitem(TASKS._entries, "toy", toy)
    with_task(monkeypatch, "toy", metric="hits")
    lines = []
    result = fit(tiny(label_smoothing=0.1, evaluate_test=True), log=lines.append)
    head = result.model.head
    assert len(head) == 1 and head[0].bias is None and head[0].out_features == 3
    assert calls["criterion"] == [0.1] and calls["collate"] > 0 and calls["metrics"] == 2  # val and test
    assert set(result.summary["val"]) == {"hits", "per_class"} and "val_hits" in result.summary["history"][-1]
    assert "val_hits" in lines[-1]
