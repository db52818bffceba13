"""Search spaces: YAML files (default, per method, per dataset) merged and validated into distributions.

A value is either fixed (`epochs: 6`) or one distribution: `{loguniform: [lo, hi]}`, `{uniform: [lo, hi]}`,
`{int: [lo, hi]}` (both ends included), `{choice: [a, b, ...]}` (sampled) or `{grid: [a, b, ...]}` (every value).
`freeze_depth` bounds may be negative, counting from the backbone's number of stages (-1 = all but the last);
`feature_layer` values may be negative too, and the trial counts them from the end of the network it builds.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.core.errors import ConfigError
from harness.methods import METHODS
from harness.methods.base import METHOD_KNOBS
from harness.core.config import HYPERPARAMETERS

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice", "grid")
NOT_SEARCHABLE = ("dataset", "backbone", "weights", "method", "seed", "split_seed", "evaluate_test",
                  "samples_per_class", "train_on_val")
SEARCHABLE = tuple(h for h in HYPERPARAMETERS if h not in NOT_SEARCHABLE)
STAGE_RELATIVE = ("freeze_depth",)  # negative values resolved here, against the cell's backbone
END_RELATIVE = ("feature_layer",)  # negative values kept: the trial resolves them against the network it builds


def spaces_dir() -> Path:
    """The search_spaces/ folder: $HARNESS_SEARCH_SPACES, else the one beside the package."""
    env = os.environ.get("HARNESS_SEARCH_SPACES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "search_spaces"


@dataclass(frozen=True)
class Dist:
    """One searched hyperparameter: a distribution name and its arguments."""

    kind: str
    args: tuple[Any, ...]

    def to_tune(self) -> Any:
        from ray import tune

        lo, hi = (self.args + (None, None))[:2]
        return {"loguniform": lambda: tune.loguniform(lo, hi), "uniform": lambda: tune.uniform(lo, hi),
                "int": lambda: tune.randint(lo, hi + 1), "choice": lambda: tune.choice(list(self.args)),
                "grid": lambda: tune.grid_search(list(self.args))}[self.kind]()

    def to_data(self) -> dict[str, list[Any]]:
        return {self.kind: list(self.args)}


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not a number")
    try:
        x = float(value)  # YAML 1.1 reads 1e-3 as a string
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise ConfigError(f"{where}: {value!r} is not finite")
    return x


def parse_value(value: Any, where: str) -> Any:
    """A fixed value or a Dist, checked for a known distribution and a non-empty range."""
    if not isinstance(value, dict):
        return _plain(value)
    if len(value) != 1:
        raise ConfigError(f"{where}: give one distribution ({', '.join(DISTRIBUTIONS)}), got {list(value)}")
    kind, args = next(iter(value.items()))
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution '{kind}'; choose from: {', '.join(DISTRIBUTIONS)}")
    if not isinstance(args, list) or not args:
        raise ConfigError(f"{where}: {kind} needs a non-empty list, got {args!r}")
    if kind in ("choice", "grid"):
        return Dist(kind, tuple(_plain(a) for a in args))
    if len(args) != 2:
        raise ConfigError(f"{where}: {kind} needs [low, high], got {args!r}")
    lo, hi = (_number(a, where) for a in args)
    if kind == "int":
        if not (lo.is_integer() and hi.is_integer()):
            raise ConfigError(f"{where}: int bounds must be whole numbers, got {args!r}")
        if (lo >= 0) == (hi >= 0) and lo > hi:
            raise ConfigError(f"{where}: empty range [{int(lo)}, {int(hi)}]")
        return Dist(kind, (int(lo), int(hi)))
    if lo >= hi:
        raise ConfigError(f"{where}: empty range [{lo:g}, {hi:g}]; low must be below high")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"{where}: loguniform needs low > 0, got {lo:g}")
    return Dist(kind, (lo, hi))


def _plain(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return float(v) if any(c in v for c in ".eE") and not v.isalpha() else int(v)
        except ValueError:
            return v
    return v


def read_space_file(path: Path) -> dict[str, Any]:
    """One YAML file of hyperparameter -> value or distribution, keys checked against TrialConfig."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of hyperparameter: value")
    return parse_space(data, str(path))


def parse_space(data: dict[str, Any], where: str) -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if key in NOT_SEARCHABLE:
            raise ConfigError(f"{where}: key '{key}' is set by the suite, not searched")
        if key not in SEARCHABLE:
            raise ConfigError(f"{where}: unknown key '{key}'; choose from: {', '.join(SEARCHABLE)}")
        out[key] = parse_value(value, f"{where}: key '{key}'")
    return out


def method_space(method: str, dataset: str, overrides: dict[str, Any] | None = None,
                 folder: Path | None = None) -> dict[str, Any]:
    """default.yaml, then <method>.yaml, then datasets/<dataset>.yaml, then the suite's overrides."""
    folder = folder or spaces_dir()
    m = METHODS.get(method)
    merged: dict[str, Any] = {}
    default = folder / "default.yaml"
    if default.is_file():
        base = read_space_file(default)
        for knob in METHOD_KNOBS:
            if knob in base:
                raise ConfigError(f"{default}: key '{knob}' is method-specific; put it in {knob}'s method file")
        merged.update(base)
    own = folder / f"{method}.yaml"
    if own.is_file():
        space = read_space_file(own)
        for knob in METHOD_KNOBS:
            if knob in space and knob not in m.uses:
                raise ConfigError(f"{own}: key '{knob}' is not used by method '{method}'")
        merged.update(space)
    per_dataset = folder / "datasets" / f"{dataset.split(':')[0].split('?')[0]}.yaml"
    extra = dict(read_space_file(per_dataset)) if per_dataset.is_file() else {}
    extra.update(overrides or {})
    for key, value in extra.items():
        if key in METHOD_KNOBS and key not in m.uses:
            continue
        merged[key] = value
    return merged


def _check_end_relative(key: str, value: Any, where: str) -> None:
    """Stage counts from the start (>= 1) or from the end (< 0): never 0, and one kind per range."""
    values = value.args if isinstance(value, Dist) else (value,)
    mixed = isinstance(value, Dist) and value.kind == "int" and (values[0] < 0) != (values[1] < 0)
    if mixed or any(isinstance(v, bool) or not isinstance(v, int) or v == 0 for v in values):
        shown = value.to_data() if isinstance(value, Dist) else value
        raise ConfigError(f"{where}: key '{key}' {shown}: give whole stage counts >= 1, or negative ones counted "
                          f"from the end, not both in one range")


def resolve_stages(space: dict[str, Any], num_stages: int, where: str) -> dict[str, Any]:
    """Turn negative freeze_depth bounds into stage counts of this backbone and check them; check that
    feature_layer values count stages one way."""
    out = dict(space)
    for key in END_RELATIVE:
        if out.get(key) is not None:
            _check_end_relative(key, out[key], where)
    for key in STAGE_RELATIVE:
        value = out.get(key)
        if value is None:
            continue
        fix = lambda v: v + num_stages if isinstance(v, int) and v < 0 else v  # noqa: E731
        if isinstance(value, Dist):
            args = tuple(fix(a) for a in value.args)
            if value.kind == "int" and args[0] > args[1]:
                raise ConfigError(f"{where}: key '{key}' range {list(value.args)} is empty for {num_stages} stages")
            value = Dist(value.kind, args)
            bad = [a for a in value.args if not isinstance(a, int) or not 0 <= a <= num_stages]
        else:
            value = fix(value)
            bad = [] if isinstance(value, int) and 0 <= value <= num_stages else [value]
        if bad:
            raise ConfigError(f"{where}: key '{key}' value {bad[0]} is outside 0-{num_stages} stages")
        out[key] = value
    return out


def space_to_data(space: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.to_data() if isinstance(v, Dist) else v) for k, v in space.items()}


def grid_size(space: dict[str, Any]) -> int:
    n = 1
    for v in space.values():
        if isinstance(v, Dist) and v.kind == "grid":
            n *= len(v.args)
    return n
