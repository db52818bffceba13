"""This machine's GPU count for the pre-flight, without importing torch where the answer is plain: none visible
(CUDA_VISIBLE_DEVICES empty or -1) or no accelerator device node at all means 0; otherwise torch counts them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

DEVICE_NODES = ("nvidia[0-9]*", "dxg", "kfd")  # NVIDIA GPUs; WSL2's GPU paravirtualisation; AMD ROCm
HIDDEN = ("", "-1")  # CUDA_VISIBLE_DEVICES values that hide every GPU


def plainly_none(dev: Path = Path("/dev"), environ: Mapping[str, str] = os.environ) -> bool:
    """Whether torch would count 0 GPUs here, known without it: every GPU hidden, or no device node a GPU
    backend of torch opens under `dev`."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in HIDDEN:
        return True
    return not any(next(dev.glob(pattern), None) for pattern in DEVICE_NODES)


def gpu_count(dev: Path = Path("/dev"), environ: Mapping[str, str] = os.environ) -> int:
    """The GPUs torch can use on this machine: 0 where `plainly_none`, else torch's count (it is imported)."""
    if plainly_none(dev, environ):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
