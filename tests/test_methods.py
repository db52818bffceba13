"""Each transfer method's defining property, on digits with a resnet8 source pretrained on digits 0-4."""

import statistics

import pytest
import torch

from harness.train.loop import fit, train_loop
from harness.core.config import TrialConfig


def config(source, **kw) -> TrialConfig:
    base = {"dataset": "digits", "backbone": "resnet8", "epochs": 4, "lr": 0.05, "batch_size": 32,
            "weights": f"checkpoint:{source}"}
    return TrialConfig.from_dict({**base, **kw})


@pytest.mark.parametrize("method,extra,floor", [
    ("scratch", {"weights": "none"}, 0.6),
    ("linear_probe", {"lr": 0.5}, 0.6),
    ("finetune", {}, 0.8),
    ("partial", {"freeze_depth": 2}, 0.8),
])
def test_each_method_beats_chance_on_digits(source_checkpoint, method, extra, floor):
    summary = train_loop(config(source_checkpoint, method=method, evaluate_test=True, **extra))
    assert summary["status"] == "ok" and summary["epochs_completed"] == 4
    assert summary["test"]["accuracy"] > floor  # chance is 0.1
    assert len(summary["history"]) == 4 and "val_accuracy" in summary["history"][-1]


def backbone_state(path):
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.parametrize("augment", ["none", "basic"])
def test_linear_probe_leaves_backbone_unchanged(source_checkpoint, augment):
    result = fit(config(source_checkpoint, method="linear_probe", augment=augment, epochs=2))
    before = backbone_state(source_checkpoint)
    after = result.model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm statistics
    assert result.summary["model"]["cached_features"] == (augment == "none")
    assert result.summary["cost"]["params_trainable"] == 64 * 10 + 10


def test_partial_freezes_exactly_the_first_k_stages(source_checkpoint):
    result = fit(config(source_checkpoint, method="partial", freeze_depth=2, epochs=2))
    before = backbone_state(source_checkpoint)
    after = result.model.backbone.state_dict()
    for stage in range(4):
        keys = [k for k in before if k.startswith(f"stages.{stage}.")]
        unchanged = [torch.equal(before[k], after[k]) for k in keys]
        if stage < 2:
            assert all(unchanged), f"stage {stage} changed"
        else:
            assert not any(unchanged[i] for i, k in enumerate(keys) if k.endswith("weight")), f"stage {stage} frozen"


def test_cached_features_give_the_same_linear_probe(source_checkpoint):
    c = config(source_checkpoint, method="linear_probe", lr=0.5, dropout=0.2, epochs=3)
    cached = fit(c).summary
    plain = fit(c, cache_features=False).summary
    assert cached["model"]["cached_features"] and not plain["model"]["cached_features"]
    assert cached["val"]["accuracy"] == pytest.approx(plain["val"]["accuracy"], abs=0.01)
    assert cached["history"][-1]["train_loss"] == pytest.approx(plain["history"][-1]["train_loss"], rel=1e-3)


def test_transfer_beats_scratch_on_few_shot_digits(source_checkpoint):
    """digits 0-4 source -> digits 5-9 target with 10 images per class, same budget, three seeds and subsets."""
    def mean_test_accuracy(**kw):
        accs = [train_loop(config(source_checkpoint, dataset="digits:5-9", samples_per_class=10, epochs=15,
                                  batch_size=16, seed=seed, subset_seed=seed, evaluate_test=True,
                                  **kw))["test"]["accuracy"]
                for seed in range(3)]
        return statistics.mean(accs)

    transfer = mean_test_accuracy(method="finetune")
    scratch = mean_test_accuracy(method="scratch", weights="none")
    assert transfer > scratch + 0.03, (transfer, scratch)


def test_nonfinite_loss_is_reported_as_diverged_not_raised():
    rows = []
    summary = train_loop(TrialConfig(backbone="resnet8", method="scratch", lr=1e12, epochs=3, momentum=0.0),
                         reporter=rows.append)
    assert summary["status"] == "diverged"
    assert rows[-1]["status"] == "diverged" and summary["test"] is None


def test_final_runs_validate_once_with_identical_results(source_checkpoint):
    """validate_every_epoch=False (final runs) skips the per-epoch validation and changes nothing else."""
    cfg = config(source_checkpoint, dataset="digits:5-9", method="finetune", epochs=3, evaluate_test=True, dropout=0.1)
    rows = []
    every = train_loop(cfg)
    once = train_loop(cfg, reporter=rows.append, validate_every_epoch=False)
    assert len(every["history"]) == 3 and [r["epoch"] for r in rows] == [3] and len(once["history"]) == 1
    assert once["epochs_completed"] == every["epochs_completed"] == 3
    assert once["val"] == every["val"] and once["test"] == every["test"]
    assert rows[0]["val_accuracy"] == every["history"][-1]["val_accuracy"]
