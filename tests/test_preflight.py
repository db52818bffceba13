"""Pre-flight: the configurations at a search space's bounds, every problem listed by --dry-run, what is valid but
missing here listed without failing, and every shipped suite planned offline."""

from __future__ import annotations

import math
import sys

import pytest
import yaml

from harness.cli import main
from harness.study.gpus import gpu_count, plainly_none
from harness.study.plan import build_plan
from harness.study.preflight import (MAX_COMBINATIONS, bound_configs, extremes, local_resources, needs_gpus,
                                     preflight)
from harness.study.spaces import Dist
from harness.study.suite import cells, suite_from_dict, suites_dir

BASE = {"name": "pf", "datasets": ["digits:0-4"], "methods": ["finetune"],
        "backbones": [{"name": "resnet8", "weights": "none"}], "search": {"num_samples": 1}}


def one_cell(**extra):
    return cells(suite_from_dict({**BASE, **extra}, "test"))[0]


def test_bounds_are_every_combination_of_each_keys_ends():
    cell = one_cell(overrides={"lr": {"loguniform": [0.01, 0.1]}, "epochs": {"int": [1, 3]},
                               "dropout": {"uniform": [0.0, 1.0]}, "augment": {"choice": ["none", "basic"]},
                               "batch_size": 16})
    configs = list(bound_configs(cell))
    searched = {k: extremes(k, v) for k, v in cell.space.items() if isinstance(v, Dist)}
    assert len(configs) == math.prod(len(v) for v in searched.values()) >= 16
    assert {c["lr"] for c in configs} == {0.01, 0.1} and {c["epochs"] for c in configs} == {1, 3}
    assert {c["augment"] for c in configs} == {"none", "basic"} and {c["batch_size"] for c in configs} == {16}
    dropouts = sorted({c["dropout"] for c in configs})  # Tune draws dropout from [0, 1): just below 1 is reached
    assert dropouts == [0.0, math.nextafter(1.0, 0.0)]
    assert all(c["dataset"] == "digits:0-4" and c["method"] == "finetune" for c in configs)


def test_an_upper_bound_inside_the_keys_range_is_tried_itself():
    assert extremes("warmup_epochs", Dist("uniform", (0.0, 2.5))) == [0.0, 2.5]
    assert extremes("epochs", Dist("int", (1, 3))) == [1, 3]


def test_many_keys_fall_back_to_each_value_with_the_rest_low_and_high():
    values = [0.1 * i for i in range(1, 11)]
    cell = one_cell(overrides={"lr": {"choice": values}, "momentum": {"choice": values[:9]},
                               "weight_decay": {"choice": values}})
    searched = {k: extremes(k, v) for k, v in cell.space.items() if isinstance(v, Dist)}
    assert math.prod(len(v) for v in searched.values()) > MAX_COMBINATIONS
    configs = list(bound_configs(cell))
    assert len(configs) == 2 * sum(len(v) for v in searched.values())
    assert {c["lr"] for c in configs} == set(values) and {c["momentum"] for c in configs} == set(values[:9])


def test_a_search_space_that_clashes_only_at_its_bounds_is_refused():
    suite = suite_from_dict({**BASE, "overrides": {"epochs": {"int": [2, 4]},
                                                   "warmup_epochs": {"uniform": [0.0, 3.0]}}}, "test")
    problems = preflight(build_plan(suite, "/tmp/nowhere"), (2.0, 0.0))
    assert [p.text for p in problems] == ["warmup_epochs=3.0: must be in [0, epochs=2]"]


def test_dry_run_lists_every_problem_one_line_each(tmp_path, capsys):
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump({**BASE, "search": {"metric": "val_acc"},
                                    "backbones": [{"name": "resnet8", "weights": "checkpoint:/nope.pt"}],
                                    "datasets": [{"name": "digits:0-1", "samples_per_class": 200}]}))
    assert main(["run", "--dry-run", "--suite", str(path), "--results-dir", str(tmp_path / "r")]) == 2
    out = capsys.readouterr()
    errors = out.err.splitlines()
    assert len(errors) == 3 and all(e.startswith("harness: error: ") for e in errors)
    assert any("checkpoint:/nope.pt" in e for e in errors) and any("val_acc" in e for e in errors)
    assert any("samples_per_class=200" in e and "107" in e for e in errors)
    assert "total:" in out.out  # the plan is printed all the same
    assert not (tmp_path / "r").exists()


def test_valid_but_not_here_is_listed_by_dry_run_and_refused_by_run(tmp_path, capsys):
    args = ["run", "--suite", "quick", "--datasets", "digits:0-4", "--methods", "scratch", "--gpus-per-trial", "1",
            "--results-dir", str(tmp_path / "r")]
    assert main([*args, "--dry-run"]) == 0
    assert "not here: resources: a trial needs 1 GPUs" in capsys.readouterr().out
    assert main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "this machine has 0" in err[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("suite", sorted(p.stem for p in suites_dir().glob("*.yaml")))
def test_every_shipped_suite_plans_offline(suite, tmp_path, capsys):
    assert main(["run", "--dry-run", "--suite", suite, "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "total:" in out.out and "error" not in out.err


@pytest.mark.parametrize("nodes,visible,none", [
    ((), None, True), (("nvidiactl", "nvidia-uvm"), None, True), (("nvidia0",), None, False),
    (("dxg",), None, False), (("kfd",), None, False), (("nvidia0",), "", True), (("nvidia0", "nvidia1"), "-1", True),
    (("nvidia0",), " -1 ", True), (("nvidia0",), "0", False), ((), "0", True)])
def test_no_gpu_is_plain_without_a_device_node_or_with_every_gpu_hidden(nodes, visible, none, tmp_path):
    for node in nodes:
        (tmp_path / node).touch()
    assert plainly_none(tmp_path, {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}) is none


def test_gpus_are_counted_by_torch_only_where_there_may_be_some(tmp_path, monkeypatch):
    import torch

    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "nvidia0").touch()
    (tmp_path / "cpu").mkdir()
    assert gpu_count(tmp_path / "gpu", {}) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    monkeypatch.setitem(sys.modules, "torch", None)  # from here on, importing torch fails
    assert gpu_count(tmp_path / "cpu", {}) == 0 and gpu_count(tmp_path / "gpu", {"CUDA_VISIBLE_DEVICES": ""}) == 0
    with pytest.raises(ImportError):
        gpu_count(tmp_path / "gpu", {})


def test_gpus_are_counted_only_for_a_plan_whose_trials_ask_for_one(monkeypatch):
    plan = build_plan(suite_from_dict(BASE, "test"), "/tmp/nowhere")
    gpu_plan = build_plan(suite_from_dict({**BASE, "resources": {"gpus_per_trial": 0.5}}, "test"), "/tmp/nowhere")
    assert not needs_gpus(plan) and needs_gpus(gpu_plan)
    counted: list[int] = []
    monkeypatch.setattr("harness.study.preflight.gpu_count", lambda: counted.append(2) or 2)
    assert local_resources(count_gpus=False)[1] == 0 and not counted
    assert local_resources(count_gpus=True)[1] == 2 and counted == [2]
