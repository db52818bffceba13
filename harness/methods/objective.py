"""What a training step minimises: a method's `Objective` (the task's loss on the possibly mixed batch, or a
method's own data term) plus penalties on the weights (L1 for every method, L2-SP for `l2sp`).

The loop builds a `MethodContext` once the model is on its device and asks the method for its objective;
methods without one get the plain `Objective`, whose loss is the task's criterion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from harness.core.config import TrialConfig
from harness.data.preprocessing import Preprocessing
from harness.tasks.base import Task

if TYPE_CHECKING:
    import torch
    import torch.nn as nn
    from torch.utils.data import DataLoader

    from harness.data.augment import BatchTransform, Mix
    from harness.data.bundle import AnySplit, DatasetBundle
    from harness.models.staged import Classifier

Penalty = Callable[[], "torch.Tensor"]


@dataclass
class MethodContext:
    """What a method's objective may use: the run's config, network, data, task, input pipeline and device."""

    config: TrialConfig
    model: Classifier
    trained: nn.Module  # what the optimiser updates: the model, or its head alone on cached features
    bundle: DatasetBundle
    task: Task
    prep: Preprocessing
    transform: BatchTransform | None  # the target's input pipeline (None on cached features)
    device: torch.device
    amp: torch.dtype | None
    criterion: nn.Module  # the task's loss
    mix: Mix | None
    predict: Callable[[nn.Module, AnySplit | torch.Tensor, BatchTransform | None], torch.Tensor]
    prepare_loader: Callable[[DataLoader], DataLoader] = lambda d: d
    log: Callable[[str], None] | None = None
    penalties: list[Penalty] = field(default_factory=list)


class Objective:
    """The task's loss of the network on the (MixUp/CutMix-mixed) batch, plus the penalties on the weights."""

    def __init__(self, ctx: MethodContext, penalties: list[Penalty] | None = None) -> None:
        self.ctx, self.criterion, self.mix = ctx, ctx.criterion, ctx.mix
        self.penalties = list(ctx.penalties) + list(penalties or [])

    def mixed(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mix(x, y) if self.mix is not None else (x, y)

    def __call__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The data term of one step (run under autocast)."""
        x, y = self.mixed(x, y)
        return self.ctx.task.loss(net, x, y, self.criterion)

    def penalty(self) -> torch.Tensor | None:
        """The weight penalties of one step, in float32 outside autocast; None when there are none."""
        import torch

        if not self.penalties:
            return None
        return torch.stack([p() for p in self.penalties]).sum()

    def extras(self, status: str) -> dict[str, dict[str, Any]]:
        """Facts the run's summary gains once training ends: {"model": {...}, "cost": {...}}."""
        return {}


def l1_penalty(module: nn.Module, strength: float) -> Penalty | None:
    """strength * sum |w| over the trained weight tensors (those weight decay applies to); None when off."""
    import torch

    if strength <= 0:
        return None
    weights = [p for p in module.parameters() if p.requires_grad and p.ndim > 1]
    return lambda: strength * torch.stack([p.abs().sum() for p in weights]).sum()
