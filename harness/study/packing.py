"""Packing small trials onto a GPU without running out of its memory.

A cell asking for a fraction of a GPU per trial (`gpus_per_trial: 0.25`) gets its trials' peak memory measured
once by a short probe on a GPU (harness.train.memory: the cell's largest configuration, a few training steps);
then `trials_per_gpu` says how many such trials fit a GPU with a safety margin, and the fraction each trial asks
Ray for is raised to 1 / that count where fewer fit than the suite asked for. Ray then places no more trials on
a GPU than fit, on every node, and Tune's concurrency follows from the fraction. The arithmetic is pure and
tested on the CPU; only `probe_cell` needs a GPU (it runs as a Ray task holding the trial's share of one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from harness.core.config import TrialConfig
from harness.study.spaces import Dist
from harness.study.suite import Cell, Resources
from harness.train.memory import MemoryEstimate, probe_memory

GPU_MARGIN = 0.10  # share of a GPU's memory kept free (allocator fragmentation, evaluation batches)
FRACTION_STEP = 1e-4  # Ray's resolution of fractional resources
LARGEST = {"batch_size": max, "image_size": max, "freeze_depth": min}  # the search's most memory-hungry values


@dataclass(frozen=True)
class Packing:
    """How a cell's trials share GPUs: the fraction each asks Ray for, how many fit one GPU, and the estimate."""

    gpus_per_trial: float
    trials_per_gpu: int
    estimate_bytes: int
    gpu_bytes: int


def trials_per_gpu(gpu_bytes: int, estimate_bytes: int, margin: float = GPU_MARGIN) -> int:
    """How many trials of `estimate_bytes` peak memory fit a GPU of `gpu_bytes` with `margin` of it kept free
    (at least 1: a trial that fits no GPU still gets one to itself)."""
    if estimate_bytes <= 0:
        raise ValueError(f"estimate_bytes={estimate_bytes}: a trial's memory estimate must be positive")
    return max(1, int(gpu_bytes * (1 - margin) // estimate_bytes))


def packed_fraction(requested: float, per_gpu: int) -> float:
    """The GPU share a trial asks Ray for: the suite's fraction, raised to 1 / `per_gpu` (rounded down to Ray's
    resolution, so that `per_gpu` of them still fit one GPU) where fewer trials fit a GPU than the fraction would
    place; whole GPUs and 0 stay as they are."""
    if requested <= 0 or requested >= 1:
        return requested
    share = math.floor(1 / per_gpu / FRACTION_STEP + 1e-6) * FRACTION_STEP  # down: per_gpu x share must fit 1
    return min(1.0, max(requested, round(share, 4)))


def concurrent_trials(gpus: float, fraction: float) -> int:
    """How many trials asking `fraction` of a GPU run at once on `gpus` whole GPUs (Ray packs per GPU)."""
    if fraction <= 0:
        raise ValueError("concurrent_trials is for trials that ask for a GPU")
    return int(gpus) * int(1 / fraction + 1e-9) if fraction < 1 else int(gpus // fraction)


def plan_packing(resources: Resources, gpu_bytes: int, estimate: MemoryEstimate,
                 margin: float = GPU_MARGIN) -> Packing:
    """The packing of trials of `resources` whose peak memory is `estimate` on GPUs of `gpu_bytes`."""
    per_gpu = trials_per_gpu(gpu_bytes, estimate.bytes, margin)
    fraction = packed_fraction(resources.gpus_per_trial, per_gpu)
    return Packing(fraction, min(per_gpu, int(1 / fraction + 1e-9)), estimate.bytes, gpu_bytes)


def packs(resources: Resources) -> bool:
    """Whether a cell's trials share GPUs (a fraction of one per single-worker trial)."""
    return 0 < resources.gpus_per_trial < 1 and resources.workers_per_trial == 1


def probe_config(cell: Cell) -> TrialConfig:
    """The cell's most memory-hungry search configuration: the largest batch and input size, the fewest frozen
    stages; other searched values at their low end."""
    config = dict(cell.constants)
    for key, value in cell.space.items():
        ends = ((list(value.args) if value.kind in ("choice", "grid") else list(value.args[:2]))
                if isinstance(value, Dist) else [value])
        config[key] = LARGEST.get(key, lambda v: v[0])(ends)
    return TrialConfig.from_dict(config)


def _probe(values: dict[str, Any], data_root: str | None) -> tuple[MemoryEstimate, int]:
    from harness.data.root import use_data_root

    use_data_root(data_root)
    device = torch.device("cuda")
    return probe_memory(TrialConfig.from_dict(values), device), int(torch.cuda.get_device_properties(device).total_memory)


def probe_cell(cell: Cell, data_root: str | None = None) -> tuple[MemoryEstimate, int]:
    """The estimate of one trial of `cell` and its GPU's memory, from a Ray task holding the trial's resources."""
    import ray

    task = ray.remote(num_cpus=cell.resources.cpus_per_trial, num_gpus=cell.resources.gpus_per_trial)(_probe)
    return ray.get(task.remote(probe_config(cell).to_dict(), data_root))


_PACKED: dict[str, Packing] = {}


def packed_resources(cells: list[Cell], gpus: float) -> Resources:
    """The resources trials of `cells` (one resource shape) ask Ray for: the suite's, with the GPU fraction
    raised to what the largest probed memory estimate among them allows (each cell probed once per process)."""
    from harness.data.root import DATA_ENV, runtime_env_vars

    resources = cells[0].resources
    if not packs(resources) or gpus < 1:
        return resources
    for cell in cells:
        if cell.cell_id not in _PACKED:
            estimate, gpu_bytes = probe_cell(cell, runtime_env_vars().get(DATA_ENV))
            _PACKED[cell.cell_id] = plan_packing(cell.resources, gpu_bytes, estimate)
    return replace(resources, gpus_per_trial=max(_PACKED[c.cell_id].gpus_per_trial for c in cells))
