"""`compile: true`: the trained network through `torch.compile`, and a count of the graphs compiled so far, by
which the loop tells compile time (the steps that compiled) from training time."""

from __future__ import annotations

import os

import torch
from torch import nn

BACKEND_ENV = "HARNESS_COMPILE_BACKEND"  # torch.compile's backend (default inductor; tests use `eager`)


def compile_model(net: nn.Module) -> nn.Module:
    """`net` compiled by torch.compile (backend from $HARNESS_COMPILE_BACKEND, else inductor); it shares its
    parameters, so the optimiser, checkpoints and evaluation keep using the module itself."""
    return torch.compile(net, backend=os.environ.get(BACKEND_ENV) or "inductor")


def compiled_graphs() -> int:
    """How many graphs torch.compile has compiled in this process (0 before any)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
