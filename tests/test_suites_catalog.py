"""The catalogue suites resolve, `harness run --dry-run` shows them, and the CLI's data flags and offline errors."""

import json
import os
import subprocess
import sys

import pytest

from catalog_fixtures import no_md5, write_cifar10
from harness.cli import main
from harness.data.root import DATA_ENV
from harness.methods import METHODS
from harness.study.suite import apply_overrides, cells, load_suite, suite_from_dict

SUITES = {"quick": 8, "seeds": 24, "transfer12": 40, "vtab1k": 28}


def harness(*args, env=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def needs_methods(suite) -> None:
    missing = [m for d in suite.get("datasets", []) if isinstance(d, dict) for m in d.get("methods", [])
               if m not in METHODS]
    if missing:
        pytest.skip(f"methods not registered yet: {', '.join(sorted(set(missing)))}")


@pytest.mark.parametrize("name", SUITES)
def test_every_suite_file_parses_and_resolves(name):
    import yaml

    from harness.study.suite import suites_dir

    needs_methods(yaml.safe_load((suites_dir() / f"{name}.yaml").read_text()))
    suite = load_suite(name)
    cs = cells(suite, {key: f"checkpoint:/sources/{key}.pt" for key in suite.sources})
    assert len(cs) == SUITES[name] and len({c.cell_id for c in cs}) == len(cs)
    assert all(c.weights == "none" for c in cs if c.method == "scratch")


def test_vtab1k_and_transfer12_run_resnet50_imagenet_on_gpus():
    for name in ("vtab1k", "transfer12"):
        suite = load_suite(name)
        assert suite.resources.gpus_per_trial >= 1 and {b.weights for b in suite.backbones} == {"imagenet"}
    assert all("protocol=vtab1k" in d.name for d in load_suite("vtab1k").datasets)


def test_seeds_gives_each_experiment_its_own_methods_and_backbones():
    import yaml

    from harness.study.suite import suites_dir

    data = yaml.safe_load((suites_dir() / "seeds.yaml").read_text())
    experiments = {(d["name"], tuple(d["methods"]), tuple(b["name"] for b in d["backbones"]))
                   for d in data["datasets"]}
    assert experiments == {("mnist", ("scratch", "linear_probe", "finetune", "partial", "distill"), ("resnet20",)),
                           ("imagenet_subset", ("scratch", "multibranch", "finetune", "partial"), ("resnet18",)),
                           ("cifar10", ("scratch",), ("alexnet",)),  # AlexNet from scratch
                           ("cifar10", ("feature_transfer", "label_mapping"), ("resnet18",))}  # on the resnet18 source
    assert {d["name"]: d.get("samples_per_class", 0) for d in data["datasets"] if d.get("samples_per_class")} == \
        {"mnist": 10, "imagenet_subset": 50, "cifar10": 100}


def test_per_dataset_methods_and_backbones_and_their_overrides():
    suite = suite_from_dict({"datasets": ["digits", {"name": "shapes", "methods": ["finetune"],
                                                     "backbones": [{"name": "resnet14", "weights": "source:s"}]}],
                             "methods": ["scratch", "linear_probe"], "backbones": ["resnet8"],
                             "sources": {"s": {"dataset": "shapes", "backbone": "resnet14"}}}, "s.yaml")
    assert [(c.dataset.name, c.method, c.backbone.name) for c in cells(suite)] == [
        ("digits", "scratch", "resnet8"), ("digits", "linear_probe", "resnet8"), ("shapes", "finetune", "resnet14")]
    assert {b.weights for b in suite.all_backbones()} == {"none", "source:s"}
    flat = apply_overrides(suite, methods=["finetune"], backbones=["resnet8"])
    assert {(c.method, c.backbone.name) for c in cells(flat)} == {("finetune", "resnet8")}
    with pytest.raises(Exception, match="unknown method 'finetun'"):
        suite_from_dict({"datasets": [{"name": "digits", "methods": ["finetun"]}], "methods": ["scratch"],
                         "backbones": ["resnet8"]}, "s.yaml")


@pytest.mark.parametrize("name", ["quick", "transfer12", "vtab1k", "seeds"])
def test_dry_run_prints_cells_trials_resources_and_missing_data(name, tmp_path, monkeypatch, capsys):
    import yaml

    from harness.study.suite import suites_dir

    needs_methods(yaml.safe_load((suites_dir() / f"{name}.yaml").read_text()))
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert main(["run", "--suite", name, "--dry-run", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"suite {name}: {SUITES[name]} cells; resources per trial")
    assert any(line.startswith("total: ") for line in out)
    if name != "quick":
        assert any("MISSING" in line and f"--data-root {tmp_path}" in line for line in out)


def test_run_stops_before_ray_when_a_dataset_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert main(["run", "--suite", "transfer12", "--data-root", str(tmp_path), "--results-dir",
                 str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset 'food101' not found" in err[0] and "harness fetch food101" in err[0]
    assert not (tmp_path / "results").exists()


def test_cli_train_on_a_cifar10_fixture_end_to_end(tmp_path, monkeypatch, capsys):
    write_cifar10(tmp_path, per_batch=60, n_test=50)
    no_md5(monkeypatch)
    monkeypatch.setenv(DATA_ENV, "/nonexistent")
    assert main(["train", "--dataset", "cifar10", "--backbone", "resnet8", "--method", "scratch", "--epochs", "1",
                 "--batch-size", "64", "--data-root", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["status"] == "ok" and summary["data"]["metric"] == "accuracy"
    assert (summary["data"]["train"], summary["data"]["val"], summary["data"]["test"]) == (270, 30, 50)
    assert summary["test"]["accuracy"] >= 0 and "epoch   1/1" in captured.err


def test_cli_missing_data_and_missing_weights_are_one_line_exit_2(tmp_path):
    r = harness("train", "--dataset", "cifar10", "--backbone", "resnet8", "--epochs", "1", "--data-root",
                str(tmp_path))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert f"dataset 'cifar10' not found: {tmp_path} lacks cifar-10-batches-py/data_batch_1" in lines[0]
    assert f"harness fetch cifar10 --data-root {tmp_path}" in lines[0]
    r = harness("train", "--dataset", "digits", "--backbone", "resnet18", "--weights", "imagenet", "--epochs", "1",
                env={"TORCH_HOME": str(tmp_path / "torch")})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "resnet18-f37072fd.pth" in lines[0] and str(tmp_path / "torch" / "hub" / "checkpoints") in lines[0]
    assert "harness fetch resnet18" in lines[0]


def test_cli_fetch_knows_datasets_and_backbones(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert main(["fetch", "digits", "--data-root", str(tmp_path)]) == 0
    assert "nothing to fetch" in capsys.readouterr().out
    assert main(["fetch", "stanford_cars", "--data-root", str(tmp_path)]) == 2
    assert "torchvision cannot download it" in capsys.readouterr().err
    assert main(["fetch", "cifar11"]) == 2
    err = capsys.readouterr().err
    assert "'cifar11' is neither a dataset nor a backbone" in err and "cifar10" in err and "resnet50" in err


def test_cli_list_shows_the_catalogue(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist", "cifar10", "svhn", "stl10", "food101", "stanford_cars", "sun397", "imagenet_subset"):
        assert f"  {name} " in out
    assert "root=" not in out and "protocol=standard" in out
