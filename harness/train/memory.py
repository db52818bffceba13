"""A trial's peak device memory, from a short probe: the run prepared as a trial prepares it (its data placed,
features cached), then a few training steps of its batch. On a GPU the probe reads the allocator's peak; on the
CPU it adds up what a GPU would hold (network, gradients, optimiser state, the tensors autograd saves for one
step, the images kept on the device), so packing can be planned and tested without one."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from harness.core.config import TrialConfig
from harness.train.loop import Hooks, pick_device, prepare, train_epoch
from harness.train.placement import split_bytes

CUDA_CONTEXT_BYTES = 512 * 2**20  # a process's CUDA context and kernels, outside torch's allocator statistics
PROBE_STEPS = 3


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes one trial takes on its device, how they were found, and (CPU accounting) their parts."""

    bytes: int
    source: str
    parts: dict[str, int] = field(default_factory=dict)


def tensor_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of distinct storages among `tensors`."""
    seen: dict[int, int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def probe_memory(config: TrialConfig, device: torch.device | None = None, steps: int = PROBE_STEPS
                 ) -> MemoryEstimate:
    """Peak device memory of a trial of `config` (its largest batch), from `steps` training steps."""
    device = device or pick_device()
    config = config.replace(epochs=1, evaluate_test=False, compile=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        train_epoch(prepare(config, Hooks(device=device)), 1, max_steps=steps)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_reserved(device)
        return MemoryEstimate(peak + CUDA_CONTEXT_BYTES, "cuda probe", {"reserved": peak,
                                                                         "context": CUDA_CONTEXT_BYTES})
    return _accounted(config, device, steps)


def _accounted(config: TrialConfig, device: torch.device, steps: int) -> MemoryEstimate:
    """What the run would hold on a GPU, added up on the CPU (float32 activations: an upper bound under autocast)."""
    p = prepare(config, Hooks(device=device))
    params = {t.untyped_storage().data_ptr() for t in p.model.parameters()}
    saved: list[torch.Tensor] = []
    most = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in params:
            saved.append(t)
        return t

    def unpack(t: torch.Tensor) -> torch.Tensor:
        most[0] = max(most[0], tensor_bytes(saved))
        saved.clear()  # the step's backward has started: its saved tensors are all in
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        train_epoch(p, 1, max_steps=steps)
    parts = {"weights": module_bytes(p.model), "gradients": grad_bytes(p.trained),
             "optimizer": sum(tensor_bytes([v for v in s.values() if isinstance(v, torch.Tensor)])
                              for s in p.optimizer.state.values()),
             "activations": most[0], "data": split_bytes(p.inputs), "context": CUDA_CONTEXT_BYTES}
    return MemoryEstimate(sum(parts.values()), "cpu accounting", parts)


def module_bytes(model: nn.Module) -> int:
    """Bytes of a network's parameters and buffers."""
    return tensor_bytes([*model.parameters(), *model.buffers()])


def grad_bytes(model: nn.Module) -> int:
    """Bytes of the gradients of a network's trainable parameters."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
