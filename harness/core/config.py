"""TrialConfig: everything one training run needs, flat, validated in one place and hashed for identity."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, fields
from typing import Any

from harness.core.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
AUGMENT_POLICIES = ("none", "basic", "randaugment")
AUX_ROTATION = "rotation"


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
    train_on_val: bool = False  # train on train + validation (final runs of the VTAB-1k protocol)
    # regularisation and batch mixing, for every method (0 = off)
    l1: float = 0.0
    mixup: float = 0.0  # MixUp's Beta(alpha, alpha)
    cutmix: float = 0.0  # CutMix's Beta(alpha, alpha)
    # multibranch: the auxiliary task (a dataset spec, or rotation prediction on the target images) and its weight
    aux_dataset: str = AUX_ROTATION
    aux_weight: float = 0.5
    # distill: the teacher (a backbone fine-tuned on the target first, or checkpoint:PATH of a teacher file)
    teacher: str = "resnet20"
    teacher_weights: str = "none"
    teacher_epochs: int = 10
    kd_temperature: float = 4.0
    kd_alpha: float = 0.5
    # feature_transfer: source stages feeding the target network (negative: counted from the end), its size
    feature_layer: int = -1
    target_depth: int = 2
    target_width: int = 64
    # l2sp: alpha * ||w - w0||^2 on the pretrained backbone, beta * ||w||^2 on the new head
    l2sp_alpha: float = 0.1
    l2sp_beta: float = 0.01

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
        for name in ADDED_FIELDS:  # absent at their defaults, so hashes from before they existed still match
            if values[name] == _DEFAULTS[name]:
                values.pop(name)
        return config_hash(values)


ADDED_FIELDS = ("train_on_val", "l1", "mixup", "cutmix", "aux_dataset", "aux_weight", "teacher", "teacher_weights",
                "teacher_epochs", "kd_temperature", "kd_alpha", "feature_layer", "target_depth", "target_width",
                "l2sp_alpha", "l2sp_beta")
_DEFAULTS = {f.name: f.default for f in fields(TrialConfig)}


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
    for name in ("l1", "mixup", "cutmix", "aux_weight", "l2sp_alpha", "l2sp_beta"):
        value = getattr(c, name)
        _check(finite(value) and value >= 0, name, value, "must be >= 0")
    _check(bool(c.aux_dataset), "aux_dataset", c.aux_dataset, f"give a dataset spec or {AUX_ROTATION}")
    _check(bool(c.teacher), "teacher", c.teacher, "give a backbone name or checkpoint:PATH")
    _check(c.teacher_weights in ("none", "imagenet") or c.teacher_weights.startswith("checkpoint:"),
           "teacher_weights", c.teacher_weights, "choose from: none, imagenet, checkpoint:PATH")
    _check(c.teacher_epochs >= 1, "teacher_epochs", c.teacher_epochs, "must be >= 1")
    _check(finite(c.kd_temperature) and c.kd_temperature > 0, "kd_temperature", c.kd_temperature, "must be > 0")
    _check(finite(c.kd_alpha) and 0 <= c.kd_alpha <= 1, "kd_alpha", c.kd_alpha, "must be in [0, 1]")
    _check(c.feature_layer != 0, "feature_layer", c.feature_layer,
           "must be a stage count >= 1, or negative to count from the last stage (-1 = all but the last)")
    _check(c.target_depth >= 0, "target_depth", c.target_depth, "must be >= 0 (0 = a linear classifier)")
    _check(c.target_width >= 1, "target_width", c.target_width, "must be >= 1")


HYPERPARAMETERS = tuple(f.name for f in fields(TrialConfig))
