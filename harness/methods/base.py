"""Transfer methods as plugins: a `Method` says which stages are frozen, whether pretrained weights are used,
which knobs it has (`args`, a `MethodArgs` dataclass), and optionally its own network (`build`), training
objective (`objective`) and preparation job (`preparation`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from harness.core.config import MethodArgs, TrialConfig, param_of, register_method_args
from harness.core.errors import ConfigError
from harness.core.registry import Registry
from harness.data.registry import dataset_task
from harness.methods.objective import MethodContext, Objective

if TYPE_CHECKING:
    from harness.data.bundle import AnySplit
    from harness.models.staged import Classifier


@dataclass(frozen=True)
class Preparation:
    """A network a run needs trained before it starts (e.g. a distillation teacher): how to train it, where
    its file goes, and in which format it is written (`teacher`: the whole classifier)."""

    config: TrialConfig
    path: Path
    kind: str = "teacher"


BOTH = ("classification", "detection")


def nothing_frozen(config: TrialConfig, num_stages: int) -> int:
    """Every stage trains."""
    return 0


def no_preparation(config: TrialConfig) -> Preparation | None:
    """Nothing to train before the run."""
    return None


@dataclass(frozen=True)
class Method:
    """A way of transferring a backbone to a target task.

    `frozen_stages(config, num_stages)`: how many leading stages stay fixed. `args`: the method's knobs
    (read as `config.method_args.<knob>`). `pretrained`: "forbidden", "optional" or "required".
    `any_source`: a checkpoint in `weights` may hold another network than `backbone`; that network is built.
    `source_classifier`: the network keeps the weights' own classifier over the source classes, which `build`
    receives as `classifier=` (weights without one are refused). `untrained_scores`: the network as built is
    already a predictor, so the run scores it before its first step too (`untrained_...` metrics).
    `tasks`: the tasks (harness.tasks) it makes sense for; others are refused.
    Hooks: `validate(config)` checks names before any data is loaded; `preparation(config)` names a network
    that must be trained first (a job of the study's plan, whose file reaches the objective);
    `build(config, backbone, num_classes, input_size)` makes the network (default: the backbone and the task's
    head); `initialise(ctx, train)` sets weights that depend on the training split (`train`: what `ctx.trained`
    sees, images or cached features) before the first step; `objective(ctx)` the training loss; `server(config)`,
    for a federated method, the server that aggregates its clients' updates every round (harness.methods.federated).
    """

    name: str
    description: str
    frozen_stages: Callable[[TrialConfig, int], int] = nothing_frozen
    args: type[MethodArgs] = MethodArgs
    pretrained: str = "optional"
    any_source: bool = False
    validate: Callable[[TrialConfig], None] | None = None
    preparation: Callable[[TrialConfig], Preparation | None] = no_preparation
    build: Callable[..., Classifier] | None = None  # (config, backbone, num_classes, input_size); None: the task's head
    source_classifier: bool = False
    initialise: Callable[[MethodContext, AnySplit], None] | None = None
    untrained_scores: bool = False
    objective: Callable[[MethodContext], Objective] = Objective
    server: Callable[[TrialConfig], Any] | None = None  # federated methods: the server aggregating client updates
    tasks: tuple[str, ...] = ("classification",)  # the tasks it makes sense for (harness.tasks)

    def check_weights(self, config: TrialConfig) -> None:
        """Refuse weights the method's definition forbids or needs."""
        if self.pretrained == "forbidden" and config.weights != "none":
            raise ConfigError(f"weights='{config.weights}': method '{self.name}' trains from random "
                              f"initialisation; use weights=none")
        if self.pretrained == "required" and config.weights == "none":
            raise ConfigError(f"weights='none': method '{self.name}' needs pretrained weights; "
                              f"give weights=imagenet or checkpoint:PATH")

    def check_config(self, config: TrialConfig) -> None:
        """What can be checked without the backbone: the knobs' class, the weights, the method's names."""
        if type(config.method_args) is not self.args:
            raise ConfigError(f"method_args: method '{self.name}' takes {self.args.__name__}, got "
                              f"{type(config.method_args).__name__}; build the config with TrialConfig.from_dict")
        self.check_weights(config)
        task = dataset_task(config.dataset)
        if task not in self.tasks:
            raise ConfigError(f"method '{self.name}': not for {task} (dataset '{config.dataset}'); it is for "
                              f"{', '.join(self.tasks)}")
        if self.validate is not None:
            self.validate(config)

    def check(self, config: TrialConfig, num_stages: int) -> int:
        """Validate the config for this method and backbone; return the number of frozen stages."""
        self.check_config(config)
        for f in fields(config.method_args):
            value = getattr(config.method_args, f.name)
            if param_of(f).stage_relative and value > num_stages:
                raise ConfigError(f"{f.name}={value}: backbone '{config.backbone}' has {num_stages} stages; "
                                  f"allowed 0-{num_stages}")
        return self.frozen_stages(config, num_stages)


METHODS: Registry[Method] = Registry("method")


def register(method: Method) -> Method:
    """Add a method to METHODS and declare its knobs, so configs, flags and search spaces know them."""
    if method.name in METHODS:
        raise ValueError(f"method '{method.name}' is registered twice")
    register_method_args(method.name, method.args)
    return METHODS.register(method.name, method.description)(method)
