"""What a cell's search is refused for, checked from the suite's declarations without Ray: a search algorithm's
optional package and the distributions it takes, ASHA's grace period against the cell's epochs. `search_parts`
(harness/study/search.py) checks a cell here before it builds Tune's objects, so the pre-flight, which never
imports Ray, and a real run refuse the same searches in the same words."""

from __future__ import annotations

import importlib.util
from typing import Callable

from harness.core.errors import ConfigError
from harness.study.spaces import Dist
from harness.study.suite import Cell

OPTIONAL_PACKAGES = {"optuna": ("optuna", "optuna")}  # search algorithm: (the module it needs, its pip extra)


def as_grid(key: str, d: Dist) -> Dist:
    """Under search.algorithm=grid every value is enumerated: choice and int ranges become grids."""
    if d.kind in ("grid", "choice"):
        return Dist("grid", d.args)
    if d.kind == "int":
        return Dist("grid", tuple(range(d.args[0], d.args[1] + 1)))
    raise ConfigError(f"search.algorithm='grid': key '{key}' is {d.kind}, which cannot be enumerated; "
                      f"give it grid or choice values")


def _installed(cell: Cell) -> None:
    """The algorithm's optional package is importable (looked up, not imported)."""
    module, extra = OPTIONAL_PACKAGES.get(cell.search.algorithm, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        raise ConfigError(f"search.algorithm='{cell.search.algorithm}': No module named '{module}'; "
                          f"install with pip install -e '.[{extra}]'")


def _optuna(cell: Cell) -> None:
    """Optuna samples each key; it cannot enumerate a grid."""
    if any(isinstance(v, Dist) and v.kind == "grid" for v in cell.space.values()):
        raise ConfigError("search.algorithm='optuna': grid distributions are not supported; use choice")


def _grid(cell: Cell) -> None:
    """Every searched key can be enumerated."""
    for key, value in cell.space.items():
        if isinstance(value, Dist):
            as_grid(key, value)


def _asha(cell: Cell) -> None:
    """ASHA's first rung comes no later than the cell's last epoch (Tune asserts grace_period <= max_t)."""
    if cell.search.grace_period > cell.max_epochs:
        raise ConfigError(f"search.grace_period={cell.search.grace_period}: beyond the {cell.max_epochs} epochs "
                          f"a trial of {cell.label} runs at most; ASHA needs grace_period <= epochs")


ALGORITHM_RULES: dict[str, Callable[[Cell], None]] = {"grid": _grid, "optuna": _optuna}
SCHEDULER_RULES: dict[str, Callable[[Cell], None]] = {"asha": _asha}


def check_search(cell: Cell) -> None:
    """Raise the ConfigError that building the cell's Tune search would meet, without importing Ray."""
    _installed(cell)
    for rule in (ALGORITHM_RULES.get(cell.search.algorithm), SCHEDULER_RULES.get(cell.search.scheduler)):
        if rule is not None:
            rule(cell)
