"""A task says what a network predicts and how it is scored: the head put on the backbone's features, the
training loss, how a batch is collated, how a split's outputs are gathered, its metrics and the headline
metrics a dataset may name. A dataset bundle names its task (`DatasetBundle.task`); the loop takes it from there,
so a second task (detection) is one more registered entry."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable

from harness.core.errors import ConfigError
from harness.core.registry import Registry
from harness.models.backbones import BACKBONES

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from harness.data.bundle import AnySplit, DatasetBundle
    from harness.data.facts import DataFacts

Predict = Callable[["AnySplit"], "torch.Tensor"]  # the network's outputs for a split's inputs, in order


def outputs_and_labels(predict: Predict, split: AnySplit) -> tuple[torch.Tensor, torch.Tensor]:
    """One output row per input and the split's labels (a task whose targets are per-input labels)."""
    return predict(split), split.labels


def logits_loss(net: nn.Module, x: Any, y: Any, criterion: nn.Module) -> torch.Tensor:
    """The criterion on the network's outputs for a batch (a task whose network returns predictions)."""
    return criterion(net(x), y)


@dataclass(frozen=True)
class Task:
    """What is predicted and how it is scored.

    `head(feature_dim, num_classes, dropout)` makes the new head on the backbone's features (built after the
    backbone, so the random stream is that of backbone then head); `criterion(label_smoothing)` the training
    loss; `collate` a DataLoader's batch collation (None: PyTorch's default); `gather(predict, split)` a
    split's (outputs, targets) for `metrics(outputs, targets, num_classes)`. `headlines` are the metrics a
    dataset may name as its headline (`DatasetBundle.metric`); `shown` are those on the per-epoch progress
    line; `scalars` every scalar metric `metrics` may return (a diverged epoch reports each as NaN, so a
    search on any of them sees a value).

    A task whose network is not a backbone plus a head on flat features (detection) says so: `build(config,
    weights, num_classes, prep)` makes its whole network (None: backbone and `head`); `loss(net, x, y,
    criterion)` is one batch's training loss; `batch_transform` whether the loop's batch pipeline
    (normalisation, crop, flip) applies, else the network takes uint8 images and normalises them itself;
    `caches_features` whether a fully frozen backbone's features may be cached; `unused` the hyperparameters
    that mean nothing for it (searches leave them out, configs must keep them at their defaults).
    """

    name: str
    description: str
    head: Callable[[int, int, float], nn.Module]
    criterion: Callable[[float], nn.Module]
    metrics: Callable[[Any, Any, int], dict[str, object]]
    headlines: tuple[str, ...]
    shown: tuple[str, ...]
    gather: Callable[[Predict, AnySplit], tuple[Any, Any]] = outputs_and_labels
    collate: Callable[[list[Any]], Any] | None = None
    scalars: tuple[str, ...] = ()
    build: Callable[..., nn.Module] | None = None
    loss: Callable[[nn.Module, Any, Any, nn.Module], torch.Tensor] = logits_loss
    batch_transform: bool = True
    caches_features: bool = True
    unused: tuple[str, ...] = ()

    def check_config(self, config: Any) -> None:
        """Refuse a network made for another task, and hyperparameters this task has no use for when set away
        from their defaults."""
        made_for = BACKBONES.get(config.backbone).task
        if made_for != self.name:
            names = [n for n in BACKBONES if BACKBONES.get(n).task == self.name]
            raise ConfigError(f"backbone '{config.backbone}' is a {made_for} network; dataset '{config.dataset}' is "
                              f"{self.name}: choose from: {', '.join(names)}")
        defaults = {f.name: f.default for f in fields(config)}
        for key in self.unused:
            if getattr(config, key) != defaults[key]:
                raise ConfigError(f"{key}={getattr(config, key)!r}: not used by {self.name} "
                                  f"(keep it at {defaults[key]!r})")

    def headline(self, bundle: DatasetBundle | DataFacts) -> str:
        """The bundle's headline metric, checked to be one this task computes."""
        if bundle.metric not in self.headlines:
            raise ConfigError(f"dataset '{bundle.name}': metric '{bundle.metric}' is not a {self.name} metric; "
                              f"choose from: {', '.join(self.headlines)}")
        return bundle.metric


TASKS: Registry[Task] = Registry("task")


def register(task: Task) -> Task:
    return TASKS.register(task.name, task.description)(task)


def task_named(name: str, where: str) -> Task:
    """A registered task by name; an unknown one is a one-line error naming `where` it was asked for."""
    if name not in TASKS:
        raise ConfigError(f"{where}: {TASKS.unknown_message(name)}")
    return TASKS.get(name)


def task_of(bundle: DatasetBundle | DataFacts) -> Task:
    """The task a bundle names; an unknown one is a one-line error naming the dataset."""
    if bundle.task not in TASKS:
        raise ConfigError(f"dataset '{bundle.name}': {TASKS.unknown_message(bundle.task)}")
    return TASKS.get(bundle.task)
