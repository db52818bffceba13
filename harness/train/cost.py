"""What a run costs: wall-clock, training and compile seconds, training images per second, peak memory, parameters."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from harness.models.staged import count_parameters


@dataclass
class CostMeter:
    """The clock and counters of one run: started with the run, fed each epoch's training seconds and images."""

    started: float = field(default_factory=time.perf_counter)
    train_seconds: float = 0.0
    images: int = 0
    compile_seconds: float = 0.0  # steps that compiled a graph (`compile: true`), not in train_seconds

    def add(self, seconds: float, images: int, compile_seconds: float = 0.0) -> None:
        self.train_seconds += seconds
        self.images += images
        self.compile_seconds += compile_seconds

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.started

    def summary(self, model: nn.Module, device: torch.device, amp: torch.dtype | None,
                workers: int) -> dict[str, Any]:
        """The run's `cost` section: time, throughput, peak memory, parameters and where it ran."""
        total, trainable = count_parameters(model)
        peak, peak_source = peak_memory_mb(device)
        return {"wall_seconds": self.elapsed(), "train_seconds": self.train_seconds,
                "compile_seconds": self.compile_seconds,
                "train_images_per_s": self.images / self.train_seconds if self.train_seconds else 0.0,
                "peak_memory_mb": peak, "peak_memory_source": peak_source,
                "params_total": total, "params_trainable": trainable, "device": str(device),
                "amp": str(amp).replace("torch.", "") if amp else "off", "workers": workers}


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory in MiB and what was measured: CUDA's peak allocation, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"
