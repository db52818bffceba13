"""Transfer methods: which stages are frozen, whether pretrained weights are used, which knobs they read, and
for some their own network (`build`), training objective (`objective`) and preparation (`preparation`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from harness.models.backbones import Classifier, StagedBackbone
from harness.core.errors import ConfigError
from harness.methods.objective import MethodContext, Objective
from harness.core.registry import Registry
from harness.core.config import TrialConfig


@dataclass(frozen=True)
class Preparation:
    """A network a run needs trained before it starts (e.g. a distillation teacher): how to train it, where
    its file goes, and in which format it is written (`teacher`: the whole classifier)."""

    config: TrialConfig
    path: Path
    kind: str = "teacher"


@dataclass(frozen=True)
class Method:
    """A way of transferring a backbone to a target task.

    `frozen_stages(config, num_stages)` says how many leading stages stay fixed; `uses` lists the
    method-specific hyperparameters it reads (any other method-specific one set away from its default is
    an error, so a search space cannot tune a knob that does nothing). Optional hooks: `validate(config)`
    checks names before any data is loaded; `preparation(config)` names a network that must be trained first
    (a teacher), a job of the study's plan whose file path reaches the objective; `build(config, backbone, num_classes, input_size)`
    makes the network instead of backbone + linear head; `objective(ctx)` makes the training loss.
    `any_source`: a checkpoint in `weights` may hold another network than `backbone`; that network is built.
    """

    name: str
    description: str
    frozen_stages: Callable[[TrialConfig, int], int]
    pretrained: str = "optional"  # "forbidden" | "optional" | "required"
    uses: tuple[str, ...] = ()
    any_source: bool = False
    validate: Callable[[TrialConfig], None] | None = None
    preparation: Callable[[TrialConfig], "Preparation | None"] | None = None
    build: Callable[[TrialConfig, StagedBackbone, int, int], Classifier] | None = None
    objective: Callable[[MethodContext], Objective] = Objective

    def check_weights(self, config: TrialConfig) -> None:
        if self.pretrained == "forbidden" and config.weights != "none":
            raise ConfigError(f"weights='{config.weights}': method '{self.name}' trains from random "
                              f"initialisation; use weights=none")
        if self.pretrained == "required" and config.weights == "none":
            raise ConfigError(f"weights='none': method '{self.name}' needs pretrained weights; "
                              f"give weights=imagenet or checkpoint:PATH")

    def check_config(self, config: TrialConfig) -> None:
        """What can be checked without the backbone: weights, knobs of other methods, the method's names."""
        self.check_weights(config)
        for knob, default in METHOD_KNOBS.items():
            value = getattr(config, knob)
            if knob not in self.uses and value != default:
                users = [m for m in METHODS if knob in METHODS.get(m).uses]
                raise ConfigError(f"{knob}={value!r}: not used by method '{self.name}' (used by: {', '.join(users)})")
        if self.validate is not None:
            self.validate(config)

    def check(self, config: TrialConfig, num_stages: int) -> int:
        """Validate the config for this method and backbone; return the number of frozen stages."""
        self.check_config(config)
        if config.freeze_depth > num_stages:
            raise ConfigError(f"freeze_depth={config.freeze_depth}: backbone '{config.backbone}' has "
                              f"{num_stages} stages; allowed 0-{num_stages}")
        return self.frozen_stages(config, num_stages)


_KNOB_NAMES = ("freeze_depth", "aux_dataset", "aux_weight", "teacher", "teacher_weights", "teacher_epochs",
               "kd_temperature", "kd_alpha", "feature_layer", "target_depth", "target_width", "l2sp_alpha", "l2sp_beta")
METHOD_KNOBS: dict[str, object] = {f.name: f.default for f in fields(TrialConfig) if f.name in _KNOB_NAMES}
METHODS: Registry[Method] = Registry("method")


def register(method: Method) -> Method:
    return METHODS.register(method.name, method.description)(method)
