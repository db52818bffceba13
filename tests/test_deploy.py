"""The deployment files: the `ray up` cluster file passes Ray's own config validation, the KubeRay RayJob has
the fields the operator requires, and the command each runs is one the harness accepts (planned offline)."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest
import yaml

from harness.cli import main

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def cluster_file() -> dict:
    return yaml.safe_load((DEPLOY / "cluster.yaml").read_text())


def test_the_cluster_file_passes_rays_config_validation():
    jsonschema = pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = cluster_file()
    validate_config(prepare_config(copy.deepcopy(config)))
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"]["GPU"] == 0
    assert all(t["resources"]["GPU"] >= 1 for name, t in nodes.items() if name != config["head_node_type"])
    assert any("[cluster]" in c for c in config["setup_commands"])
    broken = copy.deepcopy(config)
    broken["available_node_types"]["worker.gpu"]["min_workerz"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_the_rayjob_has_what_kuberay_requires():
    job = yaml.safe_load((DEPLOY / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"]
    spec = job["spec"]
    assert spec["entrypoint"] and spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())  # map[string]string
        (container, *_) = group["template"]["spec"]["containers"]
        assert container["name"] and container["image"]
        mounted = {m["name"] for m in container.get("volumeMounts", [])}
        assert mounted <= {v["name"] for v in group["template"]["spec"].get("volumes", [])}
    for group in cluster["workerGroupSpecs"]:
        assert group["groupName"] and group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1


def test_the_rayjob_entrypoint_is_a_run_the_harness_plans_offline(tmp_path, capsys):
    job = yaml.safe_load((DEPLOY / "rayjob.yaml").read_text())
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "harness.cli", "run"] and "--address" in argv
    args = argv[3:]
    i = args.index("--address")
    del args[i:i + 2]  # planned on this machine, not against a cluster that may be running here
    for flag, value in (("--results-dir", tmp_path / "results"), ("--data-root", tmp_path / "data")):
        args[args.index(flag) + 1] = str(value)
    assert main([*args, "--dry-run"]) == 0  # cluster resources and ImageNet weights are listed as not here
    out = capsys.readouterr().out
    assert "total:" in out and not (tmp_path / "results").exists()
