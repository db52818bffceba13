"""Search spaces: YAML files (default, per method, per dataset) merged and validated into distributions.

A value is either fixed (`epochs: 6`) or one distribution: `{loguniform: [lo, hi]}`, `{uniform: [lo, hi]}`,
`{int: [lo, hi]}` (both ends included), `{choice: [a, b, ...]}` (sampled) or `{grid: [a, b, ...]}` (every value).
`freeze_depth` bounds may be negative, counting from the backbone's number of stages (-1 = all but the last);
`feature_layer` values may be negative too, and the trial counts them from the end of the network it builds.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.config import coerce, hyperparameters, knob_users, param_of, scalar_type
from harness.core.errors import ConfigError
from harness.core.yamlio import read_yaml
from harness.data.registry import dataset_task
from harness.methods import METHODS
from harness.tasks import task_named

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice", "grid")


def searchable() -> list[str]:
    """Hyperparameters a search space may hold: every field not set by the suite, every method's knobs."""
    return [k for k, f in hyperparameters().items() if param_of(f).searchable]


def stage_relative() -> list[str]:
    """Keys counted in backbone stages whose negative values are resolved here, against the cell's backbone."""
    return [k for k, f in hyperparameters().items() if param_of(f).stage_relative]


def end_relative() -> list[str]:
    """Keys whose negative values are kept: the trial counts them from the end of the network it builds."""
    return [k for k, f in hyperparameters().items() if param_of(f).end_relative]


SPACES_ENV = "HARNESS_SEARCH_SPACES"


def spaces_dir() -> Path:
    """The search_spaces/ folder: $HARNESS_SEARCH_SPACES, else the one beside the package."""
    env = os.environ.get(SPACES_ENV)
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
    """A distribution bound as a finite float (YAML 1.1 reads 1e-3 as a string)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise ConfigError(f"{where}: {value!r} is not finite")
    return x


def parse_value(f: dataclasses.Field, value: Any, where: str) -> Any:
    """A fixed value or a Dist for hyperparameter `f`: a known distribution, a non-empty range, values of the
    field's type inside its allowed range (stage- and end-relative keys are checked against the backbone later)."""
    if not isinstance(value, dict):
        return _typed(f, value, where)
    if len(value) != 1:
        raise ConfigError(f"{where}: give one distribution ({', '.join(DISTRIBUTIONS)}), got {list(value)}")
    kind, args = next(iter(value.items()))
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution '{kind}'; choose from: {', '.join(DISTRIBUTIONS)}")
    if not isinstance(args, list) or not args:
        raise ConfigError(f"{where}: {kind} needs a non-empty list, got {args!r}")
    if kind in ("choice", "grid"):
        return Dist(kind, tuple(_typed(f, a, where) for a in args))
    if len(args) != 2:
        raise ConfigError(f"{where}: {kind} needs [low, high], got {args!r}")
    field_type = scalar_type(f)
    if field_type not in (int, float) or (field_type is int and kind != "int"):
        raise ConfigError(f"{where}: {kind} draws {'integers' if kind == 'int' else 'fractions'}, but {f.name} is "
                          f"{'an' if field_type is int else 'a'} {getattr(field_type, '__name__', f.type)}; "
                          f"use {'int or ' if field_type is int else ''}choice")
    lo, hi = (_number(a, where) for a in args)
    if kind == "int":
        if not (lo.is_integer() and hi.is_integer()):
            raise ConfigError(f"{where}: int bounds must be whole numbers, got {args!r}")
        if (lo >= 0) == (hi >= 0) and lo > hi:
            raise ConfigError(f"{where}: empty range [{int(lo)}, {int(hi)}]")
        for bound in (lo, hi):
            _typed(f, int(bound), where)
        return Dist(kind, (int(lo), int(hi)))
    if lo >= hi:
        raise ConfigError(f"{where}: empty range [{lo:g}, {hi:g}]; low must be below high")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"{where}: loguniform needs low > 0, got {lo:g}")
    _typed(f, lo, where)
    p = param_of(f)
    if not (p.high_open and hi == p.high):  # draws stay below high, so an open upper end may be the bound
        _typed(f, hi, where)
    return Dist(kind, (lo, hi))


def _typed(f: dataclasses.Field, value: Any, where: str) -> Any:
    """A value checked against its field (type, and range unless stage- or end-relative); strings from YAML
    become the field's type (`"1e-3"` -> 0.001), other values stay as written, so merged spaces and cell ids
    do not depend on the check."""
    p = param_of(f)
    try:
        typed = coerce(f.name, scalar_type(f), value)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if not (p.stage_relative or p.end_relative) and not p.ok(typed):
        raise ConfigError(f"{where}: {f.name}={typed!r}: {p.describe()}")
    return typed if isinstance(value, str) else value


def read_space_file(path: Path) -> dict[str, Any]:
    """One YAML file of hyperparameter -> value or distribution, keys and values checked against their fields."""
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of hyperparameter: value")
    return parse_space(data, str(path))


def parse_space(data: dict[str, Any], where: str) -> dict[str, Any]:
    """A mapping of hyperparameter -> value or distribution, each key searchable and each value allowed."""
    known = hyperparameters()
    keys = searchable()
    out = {}
    for key, value in data.items():
        if key in known and key not in keys:
            raise ConfigError(f"{where}: key '{key}' is set by the suite, not searched")
        if key not in keys:
            raise ConfigError(f"{where}: unknown key '{key}'; choose from: {', '.join(keys)}")
        out[key] = parse_value(known[key], value, f"{where}: key '{key}'")
    return out


def method_space(method: str, dataset: str, overrides: dict[str, Any] | None = None,
                 folder: Path | None = None) -> dict[str, Any]:
    """default.yaml, then <method>.yaml, then datasets/<dataset>.yaml, then the suite's overrides; a knob
    reaches only the methods that declare it, and a hyperparameter the dataset's task does not use (a
    detector's dropout) none."""
    folder = folder or spaces_dir()
    own_knobs = {f.name for f in dataclasses.fields(METHODS.get(method).args)}
    merged: dict[str, Any] = {}
    default = folder / "default.yaml"
    if default.is_file():
        base = read_space_file(default)
        for key in base:
            users = knob_users(key)
            if users:
                raise ConfigError(f"{default}: key '{key}' is method-specific; put it in "
                                  f"{' or '.join(f'{m}.yaml' for m in users)}")
        merged.update(base)
    own = folder / f"{method}.yaml"
    if own.is_file():
        space = read_space_file(own)
        for key in space:
            users = knob_users(key)
            if users and key not in own_knobs:
                raise ConfigError(f"{own}: key '{key}' is not used by method '{method}' (used by: {', '.join(users)})")
        merged.update(space)
    per_dataset = folder / "datasets" / f"{dataset.split(':')[0].split('?')[0]}.yaml"
    extra = dict(read_space_file(per_dataset)) if per_dataset.is_file() else {}
    extra.update(overrides or {})
    for key, value in extra.items():
        if knob_users(key) and key not in own_knobs:
            continue
        merged[key] = value
    for key in task_named(dataset_task(dataset), f"dataset '{dataset}'").unused:  # e.g. no dropout in a detector
        merged.pop(key, None)
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
    """Turn negative bounds of stage-relative keys (freeze_depth) into stage counts of this backbone and check
    them; check that end-relative keys (feature_layer) count stages one way."""
    out = dict(space)
    for key in end_relative():
        if out.get(key) is not None:
            _check_end_relative(key, out[key], where)
    for key in stage_relative():
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
    """The space as plain data (what a cell's id hashes and its record holds)."""
    return {k: (v.to_data() if isinstance(v, Dist) else v) for k, v in space.items()}


def trial_count(space: dict[str, Any], num_samples: int, algorithm: str) -> int:
    """Trials a cell runs: num_samples times every grid combination (with algorithm=grid, every choice and
    int range is enumerated too)."""
    n = num_samples
    for v in space.values():
        if not isinstance(v, Dist):
            continue
        if v.kind == "grid" or (algorithm == "grid" and v.kind == "choice"):
            n *= len(v.args)
        elif algorithm == "grid" and v.kind == "int":
            n *= v.args[1] - v.args[0] + 1
    return n
