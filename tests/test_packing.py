"""Packing small trials on a GPU: the memory estimate of a probe and the arithmetic from it to Ray's resources."""

from __future__ import annotations

import json

import pytest

from harness.core.config import TrialConfig
from harness.study.packing import (
    Packing,
    concurrent_trials,
    packed_fraction,
    packed_resources,
    packs,
    plan_packing,
    probe_config,
    trials_per_gpu,
)
from harness.study.suite import Resources, cells, load_suite
from harness.train.memory import CUDA_CONTEXT_BYTES, MemoryEstimate, probe_memory

GiB = 2**30


def test_trials_per_gpu_keeps_a_margin_free_and_gives_a_too_large_trial_a_gpu_alone() -> None:
    assert trials_per_gpu(80 * GiB, 10 * GiB) == 7  # 72 GiB usable
    assert trials_per_gpu(80 * GiB, 10 * GiB, margin=0.0) == 8
    assert trials_per_gpu(24 * GiB, 100 * GiB) == 1
    with pytest.raises(ValueError):
        trials_per_gpu(24 * GiB, 0)


def test_the_gpu_fraction_is_raised_to_what_fits_and_ray_places_that_many_per_gpu() -> None:
    assert packed_fraction(0.25, 7) == 0.25  # 4 asked, 7 fit
    assert packed_fraction(0.25, 2) == 0.5
    assert packed_fraction(0.25, 3) == 0.3333 and concurrent_trials(1, 0.3333) == 3
    assert packed_fraction(0.1, 7) == 0.1428 and concurrent_trials(2, 0.1428) == 14
    assert packed_fraction(1.0, 1) == 1.0 and packed_fraction(0.0, 1) == 0.0
    assert concurrent_trials(4, 0.5) == 8 and concurrent_trials(3, 1.0) == 3


def test_a_plan_of_packing_from_an_estimate() -> None:
    resources = Resources(cpus_per_trial=1, gpus_per_trial=0.25)
    assert plan_packing(resources, 24 * GiB, MemoryEstimate(9 * GiB, "test")) == Packing(0.5, 2, 9 * GiB, 24 * GiB)
    assert plan_packing(resources, 80 * GiB, MemoryEstimate(2 * GiB, "test")) == Packing(0.25, 4, 2 * GiB, 80 * GiB)
    assert packs(resources) and not packs(Resources(gpus_per_trial=1)) and not packs(Resources())
    assert not packs(Resources(gpus_per_trial=0.5, workers_per_trial=2))


def test_cells_without_gpu_fractions_or_without_gpus_keep_their_resources(tmp_path) -> None:
    cell = _cell(tmp_path, {"cpus_per_trial": 1, "gpus_per_trial": 0.25})
    assert packed_resources([cell], gpus=0) is cell.resources  # no GPU in the cluster: nothing to probe


def test_the_probe_takes_the_cells_most_memory_hungry_configuration(tmp_path) -> None:
    cell = _cell(tmp_path, {"cpus_per_trial": 1}, {"batch_size": {"choice": [16, 64, 32]},
                                                   "lr": {"loguniform": [0.01, 0.1]}, "freeze_depth": {"int": [0, 2]}})
    config = probe_config(cell)
    assert (config.batch_size, config.method_args.freeze_depth, config.lr) == (64, 0, 0.01)


def test_the_cpu_estimate_adds_up_what_a_gpu_would_hold_and_grows_with_the_batch() -> None:
    base = {"dataset": "digits:0-2", "samples_per_class": 16, "backbone": "resnet8", "method": "scratch"}
    small = probe_memory(TrialConfig(**base, batch_size=8), steps=2)
    large = probe_memory(TrialConfig(**base, batch_size=32), steps=2)
    assert small.source == "cpu accounting" and small.bytes == sum(small.parts.values())
    assert small.parts["context"] == CUDA_CONTEXT_BYTES
    assert small.parts["weights"] == large.parts["weights"] > 0
    assert small.parts["gradients"] <= small.parts["weights"]
    assert small.parts["optimizer"] == small.parts["gradients"]  # SGD's momentum buffers
    assert small.parts["data"] == large.parts["data"] > 0  # the in-memory images a GPU would hold
    assert 3 < large.parts["activations"] / small.parts["activations"] < 5


def _cell(tmp_path, resources: dict, overrides: dict | None = None):
    path = tmp_path / "suite.yaml"
    path.write_text(json.dumps({"name": "pack", "datasets": ["digits:0-2"], "methods": ["partial"],
                                "backbones": [{"name": "resnet8", "weights": "none"}], "resources": resources,
                                "overrides": overrides or {}}))
    return cells(load_suite(str(path)))[0]
