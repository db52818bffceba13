"""What a training step minimises: a method's `Objective` (cross-entropy on the possibly mixed batch, or a
method's own data term) plus penalties on the weights (L1 for every method, L2-SP for `l2sp`).

The engine builds a `MethodContext` once the model is on its device and asks the method for its objective;
methods without one get the plain `Objective`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from harness.augment import BatchTransform, Mix
from harness.backbones import Classifier, Preprocessing
from harness.datasets import AnySplit, DatasetBundle
from harness.spec import TrialConfig

Penalty = Callable[[], torch.Tensor]


@dataclass
class MethodContext:
    """What a method's objective may use: the run's config, network, data, input pipeline and device."""

    config: TrialConfig
    model: Classifier
    trained: nn.Module  # what the optimiser updates: the model, or its head alone on cached features
    bundle: DatasetBundle
    prep: Preprocessing
    transform: BatchTransform | None  # the target's input pipeline (None on cached features)
    device: torch.device
    amp: torch.dtype | None
    criterion: nn.Module
    mix: Mix | None
    predict: Callable[[nn.Module, AnySplit | torch.Tensor, BatchTransform | None], torch.Tensor]
    prepare_loader: Callable[[DataLoader], DataLoader] = lambda d: d
    log: Callable[[str], None] | None = None
    penalties: list[Penalty] = field(default_factory=list)
    prepared: Any = None  # what the method's `prepare` hook returned before the run was seeded


class Objective:
    """Cross-entropy of the network on the (MixUp/CutMix-mixed) batch, plus the penalties on the weights."""

    def __init__(self, ctx: MethodContext, penalties: list[Penalty] | None = None) -> None:
        self.ctx, self.criterion, self.mix = ctx, ctx.criterion, ctx.mix
        self.penalties = list(ctx.penalties) + list(penalties or [])

    def mixed(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mix(x, y) if self.mix is not None else (x, y)

    def __call__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The data term of one step (run under autocast)."""
        x, y = self.mixed(x, y)
        return self.criterion(net(x), y)

    def penalty(self) -> torch.Tensor | None:
        """The weight penalties of one step, in float32 outside autocast; None when there are none."""
        if not self.penalties:
            return None
        return torch.stack([p() for p in self.penalties]).sum()

    def extras(self, status: str) -> dict[str, dict[str, Any]]:
        """Facts the run's summary gains once training ends: {"model": {...}, "cost": {...}}."""
        return {}


def l1_penalty(module: nn.Module, strength: float) -> Penalty | None:
    """strength * sum |w| over the trained weight tensors (those weight decay applies to); None when off."""
    if strength <= 0:
        return None
    weights = [p for p in module.parameters() if p.requires_grad and p.ndim > 1]
    return lambda: strength * torch.stack([p.abs().sum() for p in weights]).sum()


class L2SP:
    """L2-SP (Li et al., 2018): alpha * ||w - w0||^2 over the trained backbone parameters, pulling them
    towards their pretrained values w0, plus beta * ||w||^2 over the new head's weight matrices."""

    def __init__(self, model: Classifier, alpha: float, beta: float) -> None:
        self.backbone = [p for p in model.backbone.parameters() if p.requires_grad]
        self.anchors = [p.detach().clone() for p in self.backbone]
        self.head = [p for p in model.head.parameters() if p.requires_grad and p.ndim > 1]
        self.alpha, self.beta = alpha, beta

    def distance(self) -> torch.Tensor:
        """||w - w0||^2 of the backbone."""
        if not self.backbone:
            return torch.zeros(())
        return torch.stack([(p - p0).pow(2).sum() for p, p0 in zip(self.backbone, self.anchors)]).sum()

    def __call__(self) -> torch.Tensor:
        penalty = self.alpha * self.distance()
        if self.head:
            penalty = penalty + self.beta * torch.stack([p.pow(2).sum() for p in self.head]).sum()
        return penalty


class L2SPObjective(Objective):
    """Fine-tuning whose loss carries the L2-SP penalty; the summary records how far the backbone moved."""

    def __init__(self, ctx: MethodContext) -> None:
        self.l2sp = L2SP(ctx.model, ctx.config.l2sp_alpha, ctx.config.l2sp_beta)
        super().__init__(ctx, [self.l2sp])

    def extras(self, status: str) -> dict[str, dict[str, Any]]:
        with torch.no_grad():
            return {"model": {"distance_to_pretrained": float(self.l2sp.distance().sqrt())}}


def weight_distance(model: Classifier, reference: dict[str, torch.Tensor]) -> float:
    """Euclidean distance between a backbone's parameters and those in a reference state dict."""
    total = 0.0
    for name, p in model.backbone.named_parameters():
        total += (p.detach().float().cpu() - reference[name].float()).pow(2).sum().item()
    return total ** 0.5
