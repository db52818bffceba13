"""Transfer methods: which stages are frozen, whether pretrained weights are used, which knobs they read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from harness.errors import ConfigError
from harness.registry import Registry
from harness.spec import TrialConfig


@dataclass(frozen=True)
class Method:
    """A way of transferring a backbone to a target task.

    `frozen_stages(config, num_stages)` says how many leading stages stay fixed; `uses` lists the
    method-specific hyperparameters it reads (any other method-specific one set away from its default is
    an error, so a search space cannot tune a knob that does nothing).
    """

    name: str
    description: str
    frozen_stages: Callable[[TrialConfig, int], int]
    pretrained: str = "optional"  # "forbidden" | "optional"
    uses: tuple[str, ...] = ()

    def check_weights(self, config: TrialConfig) -> None:
        if self.pretrained == "forbidden" and config.weights != "none":
            raise ConfigError(f"weights='{config.weights}': method '{self.name}' trains from random "
                              f"initialisation; use weights=none")

    def check(self, config: TrialConfig, num_stages: int) -> int:
        """Validate the config for this method and backbone; return the number of frozen stages."""
        self.check_weights(config)
        for knob, default in METHOD_KNOBS.items():
            value = getattr(config, knob)
            if knob not in self.uses and value != default:
                users = [m for m in METHODS if knob in METHODS.get(m).uses]
                raise ConfigError(f"{knob}={value!r}: not used by method '{self.name}' (used by: {', '.join(users)})")
        if config.freeze_depth > num_stages:
            raise ConfigError(f"freeze_depth={config.freeze_depth}: backbone '{config.backbone}' has "
                              f"{num_stages} stages; allowed 0-{num_stages}")
        return self.frozen_stages(config, num_stages)


METHOD_KNOBS: dict[str, object] = {"freeze_depth": 0}
METHODS: Registry[Method] = Registry("method")


def register(method: Method) -> Method:
    return METHODS.register(method.name, method.description)(method)


register(Method("scratch", "random initialisation, every layer trained (the no-transfer baseline)",
                lambda c, n: 0, pretrained="forbidden"))
register(Method("linear_probe", "fixed feature extractor: backbone frozen (BatchNorm in eval mode), only the "
                "new head trained", lambda c, n: n))
register(Method("finetune", "full fine-tuning: pretrained backbone and new head all trained", lambda c, n: 0))
register(Method("partial", "partial fine-tuning: the first freeze_depth stages frozen, the rest and the head "
                "trained", lambda c, n: c.freeze_depth, uses=("freeze_depth",)))
