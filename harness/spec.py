"""TrialConfig: everything one training run needs, flat, validated in one place and hashed for identity."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from harness.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
AUGMENT_POLICIES = ("none", "basic")


@dataclass(frozen=True)
class TrialConfig:
    """One training run: data, network, transfer method and hyperparameters.

    The same names are used in YAML, CLI flags (`--freeze-depth`), records and leaderboard columns.
    """

    dataset: str = "digits"
    backbone: str = "resnet20"
    weights: str = "none"
    method: str = "finetune"
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dropout: float = 0.0
    batch_size: int = 64
    epochs: int = 10
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.0
    freeze_depth: int = 0
    augment: str = "none"
    samples_per_class: int = 0
    image_size: int = 0
    seed: int = 0
    split_seed: int = 0
    evaluate_test: bool = False

    def __post_init__(self) -> None:
        validate_ranges(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialConfig":
        """Build from a mapping, rejecting unknown keys and casting numbers to the field types."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown hyperparameter '{unknown[0]}'; choose from: {', '.join(known)}")
        return cls(**{k: _cast(known[k], v) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrialConfig":
        return TrialConfig.from_dict({**self.to_dict(), **changes})

    def identity(self) -> str:
        """Hash of the config without the test switch: the same run never needs to happen twice."""
        values = self.to_dict()
        values.pop("evaluate_test")
        return config_hash(values)


def config_hash(values: dict[str, Any]) -> str:
    """Stable 12-hex-digit hash of a JSON-serialisable mapping."""
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _cast(f: dataclasses.Field, value: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    try:
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
                raise ValueError
            return bool(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{f.name}={value!r}: must be {'an' if kind == 'int' else 'a'} {kind}") from None


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r}: {allowed}")


def validate_ranges(c: TrialConfig) -> None:
    """Range checks that need no registry: each failure names the field, the value and what is allowed."""
    finite = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
    _check(finite(c.lr) and c.lr > 0, "lr", c.lr, "must be > 0")
    _check(c.optimizer in OPTIMIZERS, "optimizer", c.optimizer, f"choose from: {', '.join(OPTIMIZERS)}")
    _check(finite(c.momentum) and 0 <= c.momentum < 1, "momentum", c.momentum, "must be in [0, 1)")
    _check(finite(c.weight_decay) and c.weight_decay >= 0, "weight_decay", c.weight_decay, "must be >= 0")
    _check(finite(c.dropout) and 0 <= c.dropout < 1, "dropout", c.dropout, "must be in [0, 1)")
    _check(c.batch_size >= 1, "batch_size", c.batch_size, "must be >= 1")
    _check(c.epochs >= 1, "epochs", c.epochs, "must be >= 1")
    _check(finite(c.warmup_epochs) and 0 <= c.warmup_epochs <= c.epochs, "warmup_epochs", c.warmup_epochs,
           f"must be in [0, epochs={c.epochs}]")
    _check(finite(c.label_smoothing) and 0 <= c.label_smoothing < 1, "label_smoothing", c.label_smoothing,
           "must be in [0, 1)")
    _check(c.freeze_depth >= 0, "freeze_depth", c.freeze_depth, "must be >= 0")
    _check(c.augment in AUGMENT_POLICIES, "augment", c.augment, f"choose from: {', '.join(AUGMENT_POLICIES)}")
    _check(c.samples_per_class >= 0, "samples_per_class", c.samples_per_class, "must be >= 0 (0 means all)")
    _check(c.image_size == 0 or c.image_size >= 8, "image_size", c.image_size,
           "must be 0 (the dataset's own size) or >= 8")
    _check(c.seed >= 0, "seed", c.seed, "must be >= 0")
    _check(c.split_seed >= 0, "split_seed", c.split_seed, "must be >= 0")
    _check(bool(c.dataset), "dataset", c.dataset, "must not be empty")


HYPERPARAMETERS = tuple(f.name for f in fields(TrialConfig))
