"""The run configuration: `TrialConfig` (what every run has) plus `method_args`, the method's own knobs.

Every field is declared with `param` (default, one-line help, allowed range or choices), and that metadata
drives the one coercer (`coerce`), the one validator (`validate_fields`), the CLI flags, the search-space
checks, `harness list` and the README's method table. Methods register their knobs dataclass here
(`register_method_args`), so a flat mapping such as `{"method": "partial", "freeze_depth": 2}` (the same
words in YAML, CLI flags, records and leaderboard columns) becomes a typed config.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from harness.core.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
AUGMENT_POLICIES = ("none", "basic", "randaugment")
SCALAR_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


@dataclass(frozen=True)
class Param:
    """What a field allows and how it is documented. `low`/`high` may name another field (a bound that
    depends on the config); `check` and `allowed` replace the generated test and message."""

    help: str
    low: float | str | None = None
    high: float | str | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    note: str = ""
    check: Callable[[Any], bool] | None = None
    allowed: str | None = None
    searchable: bool = True  # False: set by the suite (dataset, method, seed, ...), never in a search space
    stage_relative: bool = False  # counted in backbone stages; negative search-space values count from the end
    end_relative: bool = False  # negative values count from the end of the network the trial builds
    hashed_at_default: bool = True  # False: left out of the identity at its default (added later)

    def describe(self, values: Any = None) -> str:
        """What is allowed, e.g. `must be in [0, 1)` or `choose from: sgd, adamw`."""
        if self.allowed is not None:
            return self.allowed
        if self.choices is not None:
            return f"choose from: {', '.join(map(str, self.choices))}"
        low, high = (self._bound(b, values) for b in (self.low, self.high))
        note = f" ({self.note})" if self.note else ""
        if low is not None and high is not None:
            return f"must be in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}{note}"
        if low is not None:
            return f"must be {'>' if self.low_open else '>='} {low}{note}"
        if high is not None:
            return f"must be {'<' if self.high_open else '<='} {high}{note}"
        return note.strip(" ()")

    def ok(self, value: Any, values: Any = None) -> bool:
        """Whether `value` (already of the field's type) is allowed; bounds naming a field are read from `values`."""
        if self.check is not None:
            return bool(self.check(value))
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True
        if not math.isfinite(value):
            return False
        low, high = (self._value(b, values) for b in (self.low, self.high))
        if low is not None and (value <= low if self.low_open else value < low):
            return False
        return high is None or (value < high if self.high_open else value <= high)

    @staticmethod
    def _value(bound: float | str | None, values: Any) -> float | None:
        if isinstance(bound, str):
            return getattr(values, bound, None) if values is not None else None
        return bound

    @staticmethod
    def _bound(bound: float | str | None, values: Any) -> Any:
        if isinstance(bound, str):
            return f"{bound}={getattr(values, bound)}" if values is not None else bound
        return bound


def param(default: Any, help: str, **allowed: Any) -> Any:
    """A dataclass field with its default, one-line help and what it allows (see `Param`)."""
    return field(default=default, metadata={"param": Param(help, **allowed)})


def param_of(f: dataclasses.Field) -> Param:
    """A field's `Param` (a bare one for fields declared without `param`)."""
    return f.metadata.get("param") or Param("")


def scalar_type(f: dataclasses.Field) -> type | None:
    """int, float, str or bool for a scalar field (annotations may be strings), None for anything else."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    return SCALAR_TYPES.get(kind)


def coerce(name: str, kind: type | None, value: Any) -> Any:
    """A YAML or CLI value as `kind` ("0.1" -> 0.1, 2.0 -> 2 for an int, "yes" -> True); otherwise the
    one-line error `name=value: must be an int`."""
    if kind is None:
        return value
    try:
        if isinstance(value, bool) and kind is not bool:
            raise ValueError
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if not isinstance(value, (int, float, str)):
                raise ValueError
            return int(value)
        if kind is float:
            if not isinstance(value, (int, float, str)):
                raise ValueError
            return float(value)
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, bool) or value in (0, 1):
                return bool(value)
            raise ValueError
        if not isinstance(value, (str, int, float)):
            raise ValueError
        return str(value)
    except (TypeError, ValueError):
        article = "an" if kind is int else "a"
        raise ConfigError(f"{name}={value!r}: must be {article} {kind.__name__}") from None


def validate_fields(obj: Any, prefix: str = "") -> None:
    """Check every `param` field of a dataclass instance; the error names the field, the value and what is allowed."""
    for f in fields(obj):
        p, value = param_of(f), getattr(obj, f.name)
        if not p.ok(value, obj):
            raise ConfigError(f"{prefix}{f.name}={value!r}: {p.describe(obj)}")


def check_value(f: dataclasses.Field, value: Any) -> Any:
    """One value for field `f`, coerced and checked on its own (bounds that name another field are skipped)."""
    value = coerce(f.name, scalar_type(f), value)
    p = param_of(f)
    if not p.ok(value):
        raise ConfigError(f"{f.name}={value!r}: {p.describe()}")
    return value


@dataclass(frozen=True)
class MethodArgs:
    """A method's own knobs: subclass it as a frozen dataclass of `param` fields. The base has none.

    A knob at its default is left out of the config's identity, so adding a knob keeps earlier hashes.
    """

    def __post_init__(self) -> None:
        validate_fields(self)


_METHOD_ARGS: dict[str, type[MethodArgs]] = {}


def register_method_args(method: str, args: type[MethodArgs]) -> None:
    """Declare the knobs of `method` (called when a method plugin registers)."""
    if not (isinstance(args, type) and issubclass(args, MethodArgs) and dataclasses.is_dataclass(args)):
        raise TypeError(f"method '{method}': args must be a MethodArgs dataclass, got {args!r}")
    for f in fields(args):
        if f.default is dataclasses.MISSING or scalar_type(f) is None:
            raise TypeError(f"method '{method}': knob '{f.name}' needs a default and an int, float, str or bool type")
    _METHOD_ARGS[method] = args


def method_args_class(method: str) -> type[MethodArgs] | None:
    """The knobs dataclass of a registered method; None for a method not registered."""
    return _METHOD_ARGS.get(method)


def knob_users(name: str) -> list[str]:
    """The registered methods that declare knob `name`, in registration order."""
    return [m for m, args in _METHOD_ARGS.items() if name in {f.name for f in fields(args)}]


def knob_fields() -> dict[str, dataclasses.Field]:
    """Every knob of every registered method, by name (the first method declaring a name defines its flag)."""
    out: dict[str, dataclasses.Field] = {}
    for args in _METHOD_ARGS.values():
        for f in fields(args):
            out.setdefault(f.name, f)
    return out


@dataclass(frozen=True)
class TrialConfig:
    """One training run: data, network, transfer method, the hyperparameters every run has, and
    `method_args`, the method's own knobs (an instance of its `MethodArgs` dataclass).

    Build it from a flat mapping with `from_dict` and read it back flat with `to_dict`.
    """

    dataset: str = param("digits", "dataset spec: name[:classes][?option=value&...]", check=bool,
                         allowed="must not be empty", searchable=False)
    backbone: str = param("resnet20", "backbone name; harness list shows them", searchable=False)
    weights: str = param("none", "none, imagenet or checkpoint:PATH", searchable=False)
    method: str = param("finetune", "transfer method; harness list shows them", searchable=False)
    lr: float = param(0.05, "peak learning rate", low=0, low_open=True)
    optimizer: str = param("sgd", "optimiser", choices=OPTIMIZERS)
    momentum: float = param(0.9, "SGD momentum, Nesterov when above 0", low=0, high=1, high_open=True)
    weight_decay: float = param(5e-4, "weight decay of the weight matrices (biases and norms get none)", low=0)
    dropout: float = param(0.0, "dropout before the new head", low=0, high=1, high_open=True)
    batch_size: int = param(64, "training batch size", low=1)
    epochs: int = param(10, "training epochs", low=1)
    warmup_epochs: float = param(0.5, "linear warm-up before the cosine schedule, in epochs", low=0,
                                 high="epochs")
    label_smoothing: float = param(0.0, "label smoothing of the cross-entropy", low=0, high=1, high_open=True)
    augment: str = param("none", "training augmentation policy", choices=AUGMENT_POLICIES)
    samples_per_class: int = param(0, "few-shot training subset: images per class", low=0, note="0 means all",
                                   searchable=False)
    image_size: int = param(0, "input side in pixels", check=lambda v: v == 0 or v >= 8,
                            allowed="must be 0 (the dataset's own size) or >= 8")
    seed: int = param(0, "seed of initialisation and data order (batches, augmentation, distributed sampler)", low=0,
                      searchable=False)
    split_seed: int = param(0, "seed of the train/validation/test split", low=0, searchable=False)
    evaluate_test: bool = param(False, "score the final model on the test split", searchable=False)
    train_on_val: bool = param(False, "train on train + validation, as the final runs of the VTAB-1k protocol do",
                               searchable=False, hashed_at_default=False)
    l1: float = param(0.0, "L1 penalty on the trained weight matrices; 0 is off", low=0, hashed_at_default=False)
    subset_seed: int = param(0, "seed of the few-shot draw (training and validation subsets)", low=0,
                             searchable=False, hashed_at_default=False)
    val_per_class: int = param(0, "few-shot validation: images per class drawn from the validation split",
                               check=lambda v: v >= -1, searchable=False, hashed_at_default=False,
                               allowed="must be -1 (the whole validation split), 0 (as many as samples_per_class) "
                                       "or a positive count")
    mixup: float = param(0.0, "alpha of MixUp's Beta(alpha, alpha); 0 is off", low=0, hashed_at_default=False)
    cutmix: float = param(0.0, "alpha of CutMix's Beta(alpha, alpha); 0 is off", low=0, hashed_at_default=False)
    compile: bool = param(False, "wrap the trained network in torch.compile (its compile time is recorded apart "
                          "from training time)", hashed_at_default=False)
    decode_on_device: bool = param(False, "decode file-backed JPEG images on the run's device (torchvision.io."
                                   "decode_jpeg; nvJPEG on a GPU) instead of in loader workers",
                                   hashed_at_default=False)
    method_args: MethodArgs = field(default_factory=MethodArgs)

    def __post_init__(self) -> None:
        validate_fields(self)
        own = method_args_class(self.method)
        if own is None or type(self.method_args) is own:
            return
        if type(self.method_args) is not MethodArgs:
            raise ConfigError(f"method_args: {type(self.method_args).__name__} given to method '{self.method}', "
                              f"which takes {own.__name__}")
        object.__setattr__(self, "method_args", own())

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialConfig":
        """Build from a flat mapping (common fields and the method's knobs), casting values to the field types.

        Unknown keys are refused; a knob of another method is refused unless it is at its default (flat
        configs written before methods had their own arguments carry every knob).
        """
        common = {f.name: f for f in fields(cls) if f.name != "method_args"}
        method = coerce("method", str, values.get("method", common["method"].default))
        own_class = method_args_class(method)
        own = {f.name: f for f in fields(own_class)} if own_class is not None else {}
        top: dict[str, Any] = {}
        knobs: dict[str, Any] = {}
        for key, value in values.items():
            if key in common:
                top[key] = coerce(key, scalar_type(common[key]), value)
            elif key in own:
                knobs[key] = coerce(key, scalar_type(own[key]), value)
            else:
                _check_foreign_knob(key, value, method)
        args = own_class(**knobs) if own_class is not None else MethodArgs()
        return cls(**top, method_args=args)

    def to_dict(self) -> dict[str, Any]:
        """The flat mapping: common fields, then this method's knobs."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "method_args"}
        out.update(dataclasses.asdict(self.method_args))
        return out

    def replace(self, **changes: Any) -> "TrialConfig":
        """A copy with flat changes; changing the method keeps only the knobs the new method declares."""
        values = self.to_dict()
        if changes.get("method", self.method) != self.method:
            new = method_args_class(changes["method"])
            keep = {f.name for f in fields(new)} if new is not None else set()
            for f in fields(self.method_args):
                if f.name not in keep:
                    values.pop(f.name)
        return TrialConfig.from_dict({**values, **changes})

    def identity(self) -> str:
        """Hash of the flat config without the test switch: the same run never needs to happen twice.

        Fields added after the first release and knobs are left out at their defaults, and `freeze_depth`
        (a common field before methods had their own arguments) counts as 0 when the method has none, so
        file names and cell ids made before either change still match.
        """
        values = {f.name: getattr(self, f.name) for f in fields(self)
                  if f.name not in ("method_args", "evaluate_test")
                  and (param_of(f).hashed_at_default or getattr(self, f.name) != f.default)}
        values.update({f.name: getattr(self.method_args, f.name) for f in fields(self.method_args)
                       if getattr(self.method_args, f.name) != f.default})
        values.setdefault("freeze_depth", 0)
        return config_hash(values)


def _check_foreign_knob(key: str, value: Any, method: str) -> None:
    """A key that is neither a common field nor a knob of `method`: unknown, or another method's knob (allowed
    only at its default)."""
    users = knob_users(key)
    if not users:
        names = list(hyperparameters())
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
        rest = [n for n in names if n not in close]
        raise ConfigError(f"unknown hyperparameter '{key}'; choose from: {', '.join(close + rest)}")
    f = knob_fields()[key]
    value = check_value(f, value)
    defaults = [{g.name: g.default for g in fields(method_args_class(m))}[key] for m in users]
    if value not in defaults:
        raise ConfigError(f"{key}={value!r}: not used by method '{method}' (used by: {', '.join(users)})")


def common_fields() -> list[dataclasses.Field]:
    """The fields every run has (TrialConfig without method_args)."""
    return [f for f in fields(TrialConfig) if f.name != "method_args"]


def hyperparameters() -> dict[str, dataclasses.Field]:
    """Every hyperparameter by name: the common fields, then every registered method's knobs."""
    out = {f.name: f for f in common_fields()}
    for name, f in knob_fields().items():
        out.setdefault(name, f)
    return out


def config_hash(values: dict[str, Any]) -> str:
    """Stable 12-hex-digit hash of a JSON-serialisable mapping."""
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
