"""The bad-input table: every command refuses bad input with exit code 2, one line on stderr naming the offending
field, no traceback, nothing written to the results folder, and (for `run`) before Ray starts."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
import torch
import yaml

from harness.cli import main

SUITE = {"name": "bad", "datasets": ["digits:0-4"], "methods": ["finetune", "partial"],
         "backbones": [{"name": "resnet8", "weights": "none"}], "search": {"num_samples": 1}}

# name of the bad input: (argv, where the suite/file fixtures go in as {suite}, {dir}, ..., a word the line names)
SUITE_FILES = {
    "lr_negative": {"overrides": {"lr": -1}},
    "batch_size_zero": {"overrides": {"batch_size": 0}},
    "warmup_beyond_epochs": {"overrides": {"epochs": {"int": [1, 3]}, "warmup_epochs": {"uniform": [0, 2.5]}}},
    "unknown_key": {"overrides": {"foo": 1}},
    "freeze_beyond_stages": {"methods": ["partial"], "overrides": {"freeze_depth": {"int": [1, 9]}}},
    "unknown_distribution": {"overrides": {"lr": {"normal": [0, 1]}}},
    "empty_range": {"overrides": {"lr": {"loguniform": [0.1, 0.01]}}},
    "metric_in_file": {"search": {"metric": "val_acc"}},
    "mode": {"search": {"metric": "val_accuracy", "mode": "up"}},
    "final_vary": {"final_vary": ["subset"]},
    "source_key": {"backbones": [{"name": "resnet8", "weights": "source:nosuch"}]},
}

RUN = [
    ("epochs_zero", ["--epochs", "0"], "epochs"),
    ("epochs_negative", ["--epochs", "-5"], "epochs"),
    ("num_samples_text", ["--num-samples", "abc"], "--num-samples"),
    ("num_samples_zero", ["--num-samples", "0"], "num_samples"),
    ("gpus_64", ["--gpus-per-trial", "64"], "gpus_per_trial"),
    ("gpus_text", ["--gpus-per-trial", "x"], "--gpus-per-trial"),
    ("cpus_zero", ["--cpus-per-trial", "0"], "cpus_per_trial"),
    ("workers_zero", ["--workers-per-trial", "0"], "workers_per_trial"),
    ("metric_typo", ["--metric", "val_acuracy"], "metric"),
    ("weights_bogus", ["--weights", "bogus"], "weights"),
    ("weights_missing_file", ["--weights", "checkpoint:/nonexistent/x.pt"], "weights"),
    ("class_range", ["--datasets", "digits:5-15"], "5-15"),
    ("dataset_option", ["--datasets", "digits?foo=1"], "foo"),
    ("option_type", ["--datasets", "shapes?per_class=many"], "per_class"),
    ("catalogue_option_value", ["--datasets", "cifar100?protocol=bogus"], "protocol"),
    ("folder_missing", ["--datasets", "folder:/nonexistent"], "/nonexistent"),
    ("dataset_unknown", ["--datasets", "nosuch"], "nosuch"),
    ("few_shot_too_large", ["--samples-per-class", "100000", "--datasets", "digits:0-1"], "samples_per_class"),
    ("few_shot_negative", ["--samples-per-class", "-1"], "samples_per_class"),
    ("method_unknown", ["--methods", "bogus"], "bogus"),
    ("backbone_unknown", ["--backbones", "bogus"], "bogus"),
    ("algorithm", ["--algorithm", "bogus"], "algorithm"),
    ("scheduler", ["--scheduler", "bogus"], "scheduler"),
    ("final_seeds_zero", ["--final-seeds", "0"], "final_seeds"),
    ("concurrent_cells_zero", ["--max-concurrent-cells", "0"], "max_concurrent_cells"),
    ("suite_unknown", ["--suite", "nosuch"], "nosuch"),
    ("address_malformed", ["--address", "not-an-address"], "--address"),
    ("address_refused", ["--address", "127.0.0.1:1"], "--address"),
    ("flag_unknown", ["--bogus-flag"], "--bogus-flag"),
    *((f"suite_{name}", ["--suite", "{suite:" + name + "}"], word) for name, word in [
        ("lr_negative", "lr"), ("batch_size_zero", "batch_size"), ("warmup_beyond_epochs", "warmup_epochs"),
        ("unknown_key", "foo"), ("freeze_beyond_stages", "freeze_depth"), ("unknown_distribution", "normal"),
        ("empty_range", "lr"), ("metric_in_file", "metric"), ("mode", "mode"), ("final_vary", "final_vary"),
        ("source_key", "source:nosuch")]),
    ("resume_broken_yaml", ["--resume", "{resume:broken}"], "suite.yaml"),
    ("resume_python_tag", ["--resume", "{resume:python}"], "suite.yaml"),
    ("resume_not_a_run", ["--resume", "{dir}"], "--resume"),
    ("resume_with_flags", ["--resume", "{resume:broken}", "--epochs", "2"], "--resume"),
]
OTHER = [
    ("train_lr_negative", ["train", "--lr", "-1"], "lr"),
    ("train_lr_text", ["train", "--lr", "x"], "lr"),
    ("train_dropout_one", ["train", "--dropout", "1"], "dropout"),
    ("train_class_range", ["train", "--dataset", "digits:5-15"], "5-15"),
    ("train_weights_missing", ["train", "--weights", "checkpoint:/nonexistent/x.pt"], "weights"),
    ("train_meta_lacks_keys", ["train", "--backbone", "resnet8", "--weights", "checkpoint:{checkpoint:meta}"],
     "image_size"),
    ("train_not_a_checkpoint", ["train", "--backbone", "resnet8", "--weights", "checkpoint:{checkpoint:junk}"],
     "weights"),
    ("train_few_shot_too_large", ["train", "--dataset", "digits:0-1", "--samples-per-class", "500"],
     "samples_per_class"),
    ("train_freeze_beyond_stages", ["train", "--backbone", "resnet8", "--method", "partial", "--freeze-depth", "9"],
     "freeze_depth"),
    ("train_knob_of_other_method", ["train", "--method", "finetune", "--freeze-depth", "2"], "freeze_depth"),
    ("train_optimizer", ["train", "--optimizer", "adam"], "optimizer"),
    ("pretrain_epochs_text", ["pretrain", "--epochs", "x", "--out-dir", "{results}/sources"], "epochs"),
    ("pretrain_dataset", ["pretrain", "--dataset", "nope", "--out-dir", "{results}/sources"], "nope"),
    ("pretrain_backbone", ["pretrain", "--backbone", "nope", "--out-dir", "{results}/sources"], "nope"),
    ("leaderboard_missing_folder", ["leaderboard", "{dir}/nosuch"], "nosuch"),
    ("leaderboard_not_a_run", ["leaderboard", "{dir}"], "records.jsonl"),
    ("leaderboard_record_without_cell_id", ["leaderboard", "{records:no_cell_id}"], "cell_id"),
    ("leaderboard_format", ["leaderboard", "{records:no_cell_id}", "--format", "xlsx"], "xlsx"),
    ("leaderboard_out_suffix", ["leaderboard", "{records:no_cell_id}", "--out", "{results}/board.xyz"], "xyz"),
    ("status_missing_folder", ["status", "{dir}/nosuch"], "nosuch"),
    ("status_not_a_run", ["status", "{dir}"], "suite.yaml"),
    ("status_watch_text", ["status", "{dir}", "--watch", "soon"], "--watch"),
    ("fetch_unknown", ["fetch", "nosuch"], "nosuch"),
    ("fetch_no_imagenet_weights", ["fetch", "resnet8"], "resnet8"),
    ("list_format", ["list", "--format", "pdf"], "--format"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The files the table points at: suite files, broken run folders, broken checkpoints and records."""
    root = tmp_path_factory.mktemp("inputs")
    made: dict[str, Path] = {"dir": root}
    for name, extra in SUITE_FILES.items():
        made[f"suite:{name}"] = root / f"{name}.yaml"
        made[f"suite:{name}"].write_text(yaml.safe_dump({**SUITE, **extra}))
    for name, text in (("broken", "name: [unclosed\n"), ("python", "name: !!python/object/apply:os.system ['echo hi']\n")):
        (root / name).mkdir()
        (root / name / "suite.yaml").write_text(text)
        made[f"resume:{name}"] = root / name
    made["checkpoint:meta"] = root / "meta.pt"
    torch.save({"format": "harness-source/1", "backbone": "resnet8", "state_dict": {}, "meta": {}},
               made["checkpoint:meta"])
    made["checkpoint:junk"] = root / "junk.pt"
    made["checkpoint:junk"].write_bytes(b"not a checkpoint")
    (root / "no_cell_id").mkdir()
    (root / "no_cell_id" / "records.jsonl").write_text(json.dumps({"kind": "cell", "schema": 3,
                                                                   "dataset": "digits"}) + "\n")
    made["records:no_cell_id"] = root / "no_cell_id"
    return made


def _argv(template: list[str], inputs: dict[str, Path], results: Path) -> list[str]:
    out = []
    for arg in template:
        for key, path in inputs.items():
            arg = arg.replace("{" + key + "}", str(path))
        out.append(arg.replace("{results}", str(results)))
    return out


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize("mode", ["--dry-run", "run"])
@pytest.mark.parametrize("name,args,word", RUN, ids=[r[0] for r in RUN])
def test_run_refuses_bad_input_before_ray_starts(name, args, word, mode, inputs, tmp_path, capsys):
    import ray

    if mode == "run" and name.startswith(("num_samples_text", "gpus_text", "flag_unknown")):
        pytest.skip("argparse refuses it before either mode differs")
    results = tmp_path / "results"
    argv = ["run", *_argv(args, inputs, results), "--results-dir", str(results)]
    code, lines = _refused(argv + ([mode] if mode == "--dry-run" else []), capsys)
    assert code == 2, lines
    assert len(lines) == 1 and word in lines[0] and "error" in lines[0], lines
    assert "Traceback" not in lines[0]
    assert not results.exists() or not any(results.iterdir())
    assert not ray.is_initialized()


@pytest.mark.parametrize("name,args,word", OTHER, ids=[o[0] for o in OTHER])
def test_other_commands_refuse_bad_input_on_one_line(name, args, word, inputs, tmp_path, capsys):
    results = tmp_path / "results"
    code, lines = _refused(_argv(args, inputs, results), capsys)
    assert code == 2, lines
    assert len(lines) == 1 and word in lines[0] and "error" in lines[0], lines
    assert not results.exists() or not any(results.iterdir())


def test_an_address_that_is_no_ray_head_is_refused_on_one_line_within_seconds(tmp_path, capsys):
    import time

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def accept_and_stay_silent() -> None:
        server.settimeout(0.2)
        held = []
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass
        for conn in held:
            conn.close()

    thread = threading.Thread(target=accept_and_stay_silent, daemon=True)
    thread.start()
    try:
        t0 = time.perf_counter()
        code, lines = _refused(["run", "--address", f"127.0.0.1:{port}", "--results-dir", str(tmp_path / "r")],
                               capsys)
        seconds = time.perf_counter() - t0
    finally:
        stop.set()
        thread.join()
        server.close()
    assert code == 2 and len(lines) == 1 and "is no Ray head" in lines[0], lines
    assert seconds < 10
