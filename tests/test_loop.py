"""The loop as separate steps: prepare, train_epoch, evaluate compose to fit; the data is loaded once."""

import torch

import harness.train.inputs
from harness.core.config import TrialConfig
from harness.data.registry import load_dataset
from harness.train.inputs import predict
from harness.train.loop import evaluate, fit, prepare, train_epoch, train_loop


def tiny(**kw) -> TrialConfig:
    return TrialConfig.from_dict({"dataset": "digits:0-2", "backbone": "resnet8", "method": "scratch", "epochs": 1,
                                  "batch_size": 32, **kw})


def test_fit_loads_the_dataset_once(monkeypatch):
    load, calls = harness.train.inputs.load_dataset, []
    monkeypatch.setattr(harness.train.inputs, "load_dataset", lambda *a, **kw: calls.append(a) or load(*a, **kw))
    fit(tiny(samples_per_class=5, image_size=16))
    assert calls == [("digits:0-2",)]


def test_prepare_train_epoch_and_evaluate_are_the_loop_of_fit():
    config = tiny(dropout=0.2, evaluate_test=True)
    prepared = prepare(config)
    result = train_epoch(prepared, 1)
    assert not result.diverged and result.images == len(prepared.bundle.train)
    val, test = evaluate(prepared, "val"), evaluate(prepared, "test")
    summary = fit(config).summary
    assert summary["val"] == val and summary["test"] == test
    assert summary["history"][0]["train_loss"] == result.train_loss


def test_a_run_trained_on_validation_reports_no_validation_score():
    """VTAB-1k finals train on train + val: scoring val then would be in-sample, so nothing of it is reported."""
    summary = train_loop(TrialConfig(dataset="digits:0-4", backbone="resnet8", method="scratch", epochs=2,
                                     train_on_val=True, evaluate_test=True))
    assert summary["val"] is None and summary["test"]["accuracy"] > 0
    assert summary["data"]["train"] == len(load_dataset("digits:0-4").train) + len(load_dataset("digits:0-4").val)
    assert summary["history"] and not any(k.startswith("val_") for row in summary["history"] for k in row)


def test_evaluation_and_cached_features_keep_no_autograd_graph():
    """Scoring a split must not save activations for a backward pass: with autograd on, every batch's graph is
    held until the split ends (a resnet50 at 224 px then needs ~100 MB per validation image)."""
    prepared = prepare(tiny())
    seen = []
    prepared.trained.register_forward_hook(lambda module, inputs, output: seen.append(torch.is_grad_enabled()))
    evaluate(prepared, "val")
    assert seen and not any(seen)
    logits = predict(prepared.trained, prepared.bundle.val.images[:8], prepared.transform, prepared.device, None)
    assert logits.shape == (8, 3) and logits.grad_fn is None and not logits.requires_grad
