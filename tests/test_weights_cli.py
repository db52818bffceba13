"""Source checkpoints, weights errors and the CLI as a user runs it (subprocess, exit codes, one-line errors)."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from harness.models.weights import load_weights, read_checkpoint
from harness.core.errors import ConfigError
from harness.train.artifacts import pretrain, source_config


def harness(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_pretrain_reuses_the_same_settings(source_checkpoint):
    config = source_config("digits:0-4", "resnet8", epochs=15, augment="basic")
    t0 = time.perf_counter()
    path, reused = pretrain(config, out_dir=source_checkpoint.parent)
    assert reused and path == source_checkpoint and time.perf_counter() - t0 < 5
    meta = read_checkpoint(str(path), "resnet8").meta
    assert meta["dataset"] == "digits:0-4" and meta["num_classes"] == 5 and meta["val_accuracy"] > 0.9


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        load_weights(f"checkpoint:{bad}", "resnet8")


def test_checkpoint_of_another_backbone_or_shape_names_the_problem(source_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="holds a 'resnet8' network, not backbone 'resnet20'"):
        load_weights(f"checkpoint:{source_checkpoint}", "resnet20")
    blob = torch.load(source_checkpoint, weights_only=True)
    blob["state_dict"]["stages.0.0.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(blob, tmp_path / "odd.pt")
    from harness.train.loop import train_loop
    from harness.core.config import TrialConfig
    with pytest.raises(ConfigError, match=r"layer 'stages.0.0.weight' has shape \(8, 3, 3, 3\) in the checkpoint, "
                                          r"\(16, 3, 3, 3\) in the backbone"):
        train_loop(TrialConfig(backbone="resnet8", weights=f"checkpoint:{tmp_path / 'odd.pt'}", epochs=1))


def test_missing_imagenet_weights_name_file_folder_and_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        with pytest.raises(ConfigError) as e:
            load_weights("imagenet", "resnet18")
    finally:
        torch.hub.set_dir(os.path.join(os.path.expanduser("~"), ".cache", "torch", "hub"))
    assert "resnet18-f37072fd.pth" in str(e.value) and str(tmp_path / "hub" / "checkpoints") in str(e.value)
    assert "harness fetch resnet18" in str(e.value)


def test_cli_train_prints_epochs_and_a_json_summary(source_checkpoint):
    r = harness("train", "--dataset", "digits", "--backbone", "resnet8", "--method", "finetune",
                "--weights", f"checkpoint:{source_checkpoint}", "--lr", "0.05", "--epochs", "2")
    assert r.returncode == 0, r.stderr
    assert [line.split()[:2] for line in r.stderr.splitlines() if line.startswith("epoch")] == \
        [["epoch", "1/2"], ["epoch", "2/2"]]
    summary = json.loads(r.stdout)
    assert summary["status"] == "ok" and summary["test"]["accuracy"] > 0.5
    assert set(summary["cost"]) >= {"wall_seconds", "train_images_per_s", "peak_memory_mb", "params_total",
                                    "params_trainable"}


@pytest.mark.parametrize("args,message", [
    (["--dataset", "digitz"], "unknown dataset 'digitz'; choose from: digits"),
    (["--lr", "-1"], "lr=-1.0: must be > 0"),
    (["--batch-size", "0"], "batch_size=0: must be >= 1"),
    (["--method", "partial", "--freeze-depth", "7"], "freeze_depth=7: backbone 'resnet8' has 4 stages; allowed 0-4"),
    (["--method", "finetune", "--freeze-depth", "2"], "freeze_depth=2: not used by method 'finetune'"),
    (["--weights", "checkpoint:/no/such.pt"], "no such file"),
])
def test_cli_bad_input_is_one_line_with_exit_code_2(args, message):
    r = harness("train", "--backbone", "resnet8", "--epochs", "1", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: ") and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_cli_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    r = harness("train", "--dataset", f"folder:{tmp_path / 'empty'}", "--epochs", "1")
    assert r.returncode == 2 and "holds no images" in r.stderr


def test_cli_list_shows_every_registry():
    r = harness("list")
    assert r.returncode == 0
    for name in ("digits", "shapes", "folder:PATH", "resnet20", "resnet18", "vit_b_16", "scratch", "linear_probe",
                 "finetune", "partial"):
        assert f"  {name} " in r.stdout
