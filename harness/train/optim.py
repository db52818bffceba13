"""The optimiser and the learning-rate schedule of a run."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from harness.core.config import TrialConfig


def make_optimizer(config: TrialConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum or AdamW; no weight decay on biases and normalisation parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0)


def make_scheduler(config: TrialConfig, optimizer: torch.optim.Optimizer,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The run's schedule: `warmup_epochs` of linear warm-up, then cosine decay over the remaining epochs."""
    steps = max(1, steps_per_epoch)
    return cosine_with_warmup(optimizer, round(config.warmup_epochs * steps), config.epochs * steps)


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int,
                       total_steps: int, start: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base learning rate, then cosine decay to zero, stepped per batch; `start` steps are
    taken as done (a federated client's round continues the run's schedule)."""

    def factor(step: int) -> float:
        step += start
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
