"""Multi-branch (multi-task) transfer: one shared backbone with the target's head and an auxiliary head.

The auxiliary task is a second labelled dataset (`aux_dataset: digits:0-4`, e.g. the source dataset; its
training split only) or, with `aux_dataset: rotation`, self-supervised prediction of which of four quarter
turns was applied to a target image. Every step puts one target batch and one auxiliary batch through the
shared backbone in a single forward (one pass, so DistributedDataParallel sees one graph) and minimises
main + aux_weight * aux. Only the main task is scored; with aux_weight = 0 no auxiliary batch is drawn and
the auxiliary head stays frozen, which is fine-tuning exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from harness.data.augment import BatchTransform, batch_transform
from harness.models.backbones import Classifier, StagedBackbone
from harness.data.bundle import AnySplit
from harness.data.registry import DATASETS, load_dataset, parse_spec
from harness.core.errors import ConfigError
from harness.methods.base import Method, register
from harness.methods.objective import MethodContext, Objective
from harness.core.config import MethodArgs, TrialConfig, param

ROTATIONS = 4
AUX_ROTATION = "rotation"


@dataclass(frozen=True)
class MultiBranchArgs(MethodArgs):
    """The auxiliary task and its weight in the loss."""

    aux_dataset: str = param(AUX_ROTATION, "auxiliary task: a dataset spec (its training split), or rotation "
                             "prediction on the target images", check=bool,
                             allowed=f"give a dataset spec or {AUX_ROTATION}")
    aux_weight: float = param(0.5, "weight of the auxiliary loss; 0 is fine-tuning exactly", low=0)


def check(config: TrialConfig) -> None:
    """Fail fast on an unknown auxiliary dataset name."""
    aux = config.method_args.aux_dataset
    name = parse_spec(aux)[0]
    if aux != AUX_ROTATION and name not in DATASETS:
        raise ConfigError(f"aux_dataset='{aux}': give {AUX_ROTATION} or a dataset spec; "
                          f"{DATASETS.unknown_message(name)}")


def aux_classes(config: TrialConfig) -> int:
    """Classes of the auxiliary task: four quarter turns, or the auxiliary dataset's classes."""
    if config.method_args.aux_dataset == AUX_ROTATION:
        return ROTATIONS
    return load_dataset(config.method_args.aux_dataset, split_seed=config.split_seed).num_classes


class MultiBranchClassifier(Classifier):
    """A Classifier with a second head; `forward(x)` is the main task, `forward(x, aux)` returns both tasks'
    logits from one pass of the concatenated batches through the shared backbone."""

    def __init__(self, backbone: StagedBackbone, num_classes: int, aux_classes: int, dropout: float,
                 train_aux: bool) -> None:
        super().__init__(backbone, num_classes, dropout)
        with torch.random.fork_rng(devices=[]):  # the main network initialises as fine-tuning's does
            self.aux_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.feature_dim, aux_classes))
        self.aux_head.requires_grad_(train_aux)

    def forward(self, x: torch.Tensor, aux: torch.Tensor | None = None):  # noqa: ANN201
        if aux is None:
            return self.head(self.backbone(x))
        features = self.backbone(torch.cat([x, aux]))
        return self.head(features[:len(x)]), self.aux_head(features[len(x):])

    def aux_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.aux_head(self.backbone(x))


def build(config: TrialConfig, backbone: StagedBackbone, num_classes: int, input_size: int) -> Classifier:
    return MultiBranchClassifier(backbone, num_classes, aux_classes(config), config.dropout,
                                 config.method_args.aux_weight > 0)


def rotate(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Image i turned by turns[i] quarter turns (square images)."""
    out = x
    for r in range(1, ROTATIONS):
        out = torch.where((turns == r).view(-1, 1, 1, 1), torch.rot90(x, r, dims=(2, 3)), out)
    return out


class AuxBatches:
    """An endless stream of transformed batches of the auxiliary dataset's training split, reshuffled each pass."""

    def __init__(self, split: AnySplit, batch_size: int, transform: BatchTransform, ctx: MethodContext) -> None:
        generator = torch.Generator().manual_seed(ctx.config.seed + 1)
        loader = DataLoader(split.dataset(), batch_size=batch_size, shuffle=True, generator=generator,
                            drop_last=len(split) > batch_size, **split.loader_kwargs())
        self.loader, self.transform, self.device = ctx.prepare_loader(loader), transform, ctx.device
        self.passes, self.batches = 0, iter(())

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = next(self.batches, None)
        if batch is None:
            self.passes += 1
            if hasattr(self.loader, "sampler") and hasattr(self.loader.sampler, "set_epoch"):
                self.loader.sampler.set_epoch(self.passes)
            self.batches = iter(self.loader)
            batch = next(self.batches)
        x, y = batch
        return self.transform(x.to(self.device, non_blocking=True), train=True), y.to(self.device, non_blocking=True)


class _AuxView(nn.Module):
    def __init__(self, model: MultiBranchClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.aux_logits(x)


class MultiBranchObjective(Objective):
    """main cross-entropy (on the mixed batch when MixUp/CutMix is on) + aux_weight * auxiliary cross-entropy."""

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        c, args = ctx.config, ctx.config.method_args
        self.weight, self.rotation = args.aux_weight, args.aux_dataset == AUX_ROTATION
        self.aux_loss, self.aux_steps = torch.zeros((), device=ctx.device), 0
        self.aux_bundle, self.stream = None, None
        if not self.rotation and self.weight > 0:
            self.aux_bundle = load_dataset(args.aux_dataset, split_seed=c.split_seed, image_size=ctx.prep.image_size)
            self.aux_transform = batch_transform(c, ctx.prep, self.aux_bundle.flip,
                                                 ctx.transform.channels_last).to(ctx.device)
            self.stream = AuxBatches(self.aux_bundle.train, c.batch_size, self.aux_transform, ctx)

    def __call__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.weight == 0:
            return super().__call__(net, x, y)
        if self.rotation:
            turns = torch.randint(0, ROTATIONS, (len(x),), device=x.device)
            xa, ya = rotate(x, turns), turns
        else:
            xa, ya = self.stream.next()
        xm, ym = self.mixed(x, y)
        main, aux = net(xm, xa)
        aux_loss = F.cross_entropy(aux, ya)
        self.aux_loss += aux_loss.detach().float()
        self.aux_steps += 1
        return self.criterion(main, ym) + self.weight * aux_loss

    @torch.no_grad()
    def aux_accuracy(self) -> float:
        """Accuracy of the auxiliary head: on the auxiliary dataset's validation split, or on the target's
        validation images each turned by (index mod 4) quarter turns."""
        ctx, model = self.ctx, self.ctx.model
        if not self.rotation:
            logits = ctx.predict(_AuxView(model), self.aux_bundle.val, self.aux_transform)
            return float((logits.argmax(1) == self.aux_bundle.val.labels).float().mean())
        was_training = model.training
        model.eval()
        correct, seen = 0, 0
        for x in ctx.bundle.val.batches(256):
            x = ctx.transform(x.to(ctx.device), train=False)
            turns = torch.arange(seen, seen + len(x), device=ctx.device) % ROTATIONS
            with torch.autocast(ctx.device.type, dtype=ctx.amp, enabled=ctx.amp is not None):
                pred = model.aux_logits(rotate(x, turns)).argmax(1)
            correct += int((pred == turns).sum())
            seen += len(x)
        model.train(was_training)
        return correct / max(1, seen)

    def extras(self, status: str) -> dict[str, dict[str, Any]]:
        facts: dict[str, Any] = {"aux_task": self.ctx.config.method_args.aux_dataset, "aux_weight": self.weight,
                                 "aux_classes": self.ctx.model.aux_head[-1].out_features}
        if self.weight > 0:
            facts["aux_train_loss"] = float(self.aux_loss) / max(1, self.aux_steps)
            facts["aux_val_accuracy"] = self.aux_accuracy() if status == "ok" else None
        return {"model": facts}


register(Method("multibranch", "multi-task fine-tuning: shared backbone, target head + auxiliary head (aux_dataset: "
                "a second dataset, or rotation prediction); loss = main + aux_weight x aux",
                args=MultiBranchArgs, validate=check, build=build, objective=MultiBranchObjective))
