"""Multi-branch (multi-task) transfer: one shared backbone (the trunk) with the target's head and one head per
auxiliary task, trained jointly.

`aux_tasks` lists up to four auxiliary tasks joined by `+` (`rotation+digits:0-4`), each one of: a second
labelled dataset (`cifar100`; its training split only), a class subset of one (`digits:0-4`, labels re-indexed),
or `rotation`, self-supervised prediction of which of four quarter turns was applied to a target image. Task k
weighs `aux_weight` (the first), `aux_weight_2`, `aux_weight_3` or `aux_weight_4` in the loss, each searchable.
Every step puts one target batch and one batch per weighted task through the trunk in a single forward (one pass,
so DistributedDataParallel sees one graph) and minimises main + sum_k weight_k * aux_k. Only the main task is
the cell's score; each branch's validation accuracy is recorded as `aux<k>_accuracy` with the validation metrics.
A branch of weight 0 draws no batch and its head stays frozen; with every weight 0 it is fine-tuning exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.core.config import MethodArgs, TrialConfig, param
from harness.core.errors import ConfigError
from harness.data.registry import DATASETS, load_dataset, parse_spec
from harness.methods.base import Method, register
from harness.methods.objective import MethodContext, Objective

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from harness.data.augment import BatchTransform
    from harness.data.bundle import AnySplit
    from harness.models.staged import Classifier, StagedBackbone

ROTATIONS = 4
AUX_ROTATION = "rotation"
SEPARATOR = "+"
MAX_TASKS = 4
WEIGHT_HELP = "weight of the {} auxiliary task's loss; 0 leaves its head untrained"


@dataclass(frozen=True)
class MultiBranchArgs(MethodArgs):
    """The auxiliary tasks and the weight of each in the loss."""

    aux_tasks: str = param(AUX_ROTATION, f"auxiliary tasks joined by '{SEPARATOR}' (at most {MAX_TASKS}), each a "
                           f"dataset spec (its training split; a class subset such as digits:0-4) or rotation "
                           f"prediction on the target images", check=bool,
                           allowed=f"give dataset specs or {AUX_ROTATION}, joined by '{SEPARATOR}'")
    aux_weight: float = param(0.5, WEIGHT_HELP.format("first") + "; all 0 is fine-tuning exactly", low=0)
    aux_weight_2: float = param(0.5, WEIGHT_HELP.format("second"), low=0)
    aux_weight_3: float = param(0.5, WEIGHT_HELP.format("third"), low=0)
    aux_weight_4: float = param(0.5, WEIGHT_HELP.format("fourth"), low=0)


WEIGHT_KNOBS = ("aux_weight", "aux_weight_2", "aux_weight_3", "aux_weight_4")


def task_list(config: TrialConfig) -> list[str]:
    """The auxiliary tasks of a config, in order."""
    return [t.strip() for t in config.method_args.aux_tasks.split(SEPARATOR)]


def task_weights(config: TrialConfig) -> list[float]:
    """The loss weight of each auxiliary task, in order."""
    return [getattr(config.method_args, k) for k in WEIGHT_KNOBS[:len(task_list(config))]]


def check(config: TrialConfig) -> None:
    """Fail fast on an empty, unknown or repeated task, too many tasks, or a weight for a task not named."""
    spec = config.method_args.aux_tasks
    tasks = task_list(config)
    if len(tasks) > MAX_TASKS:
        raise ConfigError(f"aux_tasks='{spec}': {len(tasks)} tasks; at most {MAX_TASKS}")
    for task in tasks:
        if not task:
            raise ConfigError(f"aux_tasks='{spec}': an empty task; give dataset specs or {AUX_ROTATION}, joined "
                              f"by '{SEPARATOR}'")
        name = parse_spec(task)[0]
        if task != AUX_ROTATION and name not in DATASETS:
            raise ConfigError(f"aux_tasks='{spec}': task '{task}': give {AUX_ROTATION} or a dataset spec; "
                              f"{DATASETS.unknown_message(name)}")
    if len(set(tasks)) < len(tasks):
        raise ConfigError(f"aux_tasks='{spec}': a task is named twice")
    defaults = MultiBranchArgs()
    for knob in WEIGHT_KNOBS[len(tasks):]:
        value = getattr(config.method_args, knob)
        if value != getattr(defaults, knob):
            raise ConfigError(f"{knob}={value}: aux_tasks='{spec}' names {len(tasks)} task(s); "
                              f"weight only the tasks it names ({', '.join(WEIGHT_KNOBS[:len(tasks)])})")


def task_classes(task: str, config: TrialConfig) -> int:
    """Classes of an auxiliary task: four quarter turns, or the auxiliary dataset's classes."""
    if task == AUX_ROTATION:
        return ROTATIONS
    return load_dataset(task, split_seed=config.split_seed).num_classes


def build(config: TrialConfig, backbone: StagedBackbone, num_classes: int, input_size: int) -> Classifier:
    """The backbone with the target head and one head per auxiliary task."""
    from harness.methods.training.multibranch import MultiBranchClassifier

    model = MultiBranchClassifier(backbone, num_classes, [task_classes(t, config) for t in task_list(config)],
                                  config.dropout, [w > 0 for w in task_weights(config)])
    model.facts = {"aux_tasks": task_list(config)}
    return model


def rotate(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Image i turned by turns[i] quarter turns (square images)."""
    import torch

    out = x
    for r in range(1, ROTATIONS):
        out = torch.where((turns == r).view(-1, 1, 1, 1), torch.rot90(x, r, dims=(2, 3)), out)
    return out


class AuxBatches:
    """An endless stream of transformed batches of an auxiliary dataset's training split, reshuffled each pass."""

    def __init__(self, split: AnySplit, batch_size: int, transform: BatchTransform, ctx: MethodContext,
                 seed: int) -> None:
        import torch
        from torch.utils.data import DataLoader

        generator = torch.Generator().manual_seed(seed)
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


@dataclass
class Branch:
    """One auxiliary task during training: its weight, its data (None: rotation of the target batch) and the
    running sum of its loss."""

    task: str
    weight: float
    bundle: Any = None
    transform: BatchTransform | None = None
    stream: AuxBatches | None = None
    loss: float = 0.0
    steps: int = 0


class MultiBranchObjective(Objective):
    """main cross-entropy (on the mixed batch when MixUp/CutMix is on) + sum_k weight_k * cross-entropy of task k."""

    def __init__(self, ctx: MethodContext) -> None:
        import torch

        from harness.data.augment import batch_transform

        super().__init__(ctx)
        c = ctx.config
        self.branches = [Branch(t, w) for t, w in zip(task_list(c), task_weights(c))]
        for k, b in enumerate(self.branches):
            if b.task != AUX_ROTATION and b.weight > 0:
                b.bundle = load_dataset(b.task, split_seed=c.split_seed, image_size=ctx.prep.image_size)
                b.transform = batch_transform(c, ctx.prep, b.bundle.flip, ctx.transform.channels_last).to(ctx.device)
                b.stream = AuxBatches(b.bundle.train, c.batch_size, b.transform, ctx, c.seed + 1 + k)
        self.aux_losses = torch.zeros(len(self.branches), device=ctx.device)

    def __call__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        if all(b.weight == 0 for b in self.branches):
            return super().__call__(net, x, y)
        batches: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for b in self.branches:
            if b.weight == 0:
                batches.append(None)
            elif b.stream is None:
                turns = torch.randint(0, ROTATIONS, (len(x),), device=x.device)
                batches.append((rotate(x, turns), turns))
            else:
                batches.append(b.stream.next())
        xm, ym = self.mixed(x, y)
        main, aux = net(xm, *(None if batch is None else batch[0] for batch in batches))
        loss = self.criterion(main, ym)
        for k, (b, batch, logits) in enumerate(zip(self.branches, batches, aux)):
            if batch is None:
                continue
            aux_loss = F.cross_entropy(logits, batch[1])
            self.aux_losses[k] += aux_loss.detach().float()
            b.steps += 1
            loss = loss + b.weight * aux_loss
        return loss

    def accuracy(self, k: int) -> float:
        """Validation accuracy of branch k's head: on its dataset's validation split, or on the target's
        validation images each turned by (index mod 4) quarter turns."""
        import torch

        from harness.methods.training.multibranch import AuxView

        with torch.no_grad():
            ctx, model, b = self.ctx, self.ctx.model, self.branches[k]
            if b.bundle is not None:
                logits = ctx.predict(AuxView(model, k), b.bundle.val, b.transform)
                return float((logits.argmax(1) == b.bundle.val.labels).float().mean())
            was_training = model.training
            model.eval()
            correct, seen = 0, 0
            for x in ctx.bundle.val.batches(256):
                x = ctx.transform(x.to(ctx.device), train=False)
                turns = torch.arange(seen, seen + len(x), device=ctx.device) % ROTATIONS
                with torch.autocast(ctx.device.type, dtype=ctx.amp, enabled=ctx.amp is not None):
                    pred = model.aux_logits(k, rotate(x, turns)).argmax(1)
                correct += int((pred == turns).sum())
                seen += len(x)
            model.train(was_training)
            return correct / max(1, seen)

    def extras(self, status: str) -> dict[str, dict[str, Any]]:
        """Each branch's task, weight, classes and mean training loss (model facts) and, for a trained branch of a
        run that finished and is scored on validation, its validation accuracy (`aux<k>_accuracy`, k from 1)."""
        heads = self.ctx.model.aux_heads
        branches = [{"branch": k + 1, "task": b.task, "weight": b.weight, "classes": heads[k][-1].out_features,
                     "train_loss": float(self.aux_losses[k]) / b.steps if b.steps else None}
                    for k, b in enumerate(self.branches)]
        out: dict[str, dict[str, Any]] = {"model": {"aux_branches": branches}}
        if status == "ok" and not self.ctx.config.train_on_val:
            out["val"] = {f"aux{k + 1}_accuracy": self.accuracy(k) if b.weight > 0 else None
                          for k, b in enumerate(self.branches)}
        return out


register(Method("multibranch", f"multi-task fine-tuning: shared trunk, the target head and one head per auxiliary "
                f"task (aux_tasks: datasets, class subsets or rotation, joined by '{SEPARATOR}'); loss = main + "
                f"sum of aux_weight_k x aux_k", args=MultiBranchArgs, validate=check, build=build,
                objective=MultiBranchObjective))
