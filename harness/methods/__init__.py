"""Transfer methods, one plugin module each: importing the package imports every module in this folder, and
each registers its method in METHODS (the built-ins in this order, then any others alphabetically)."""

from __future__ import annotations

import importlib
import pkgutil

from harness.methods.base import METHODS, Method, register  # noqa: F401

BUILT_IN = ("scratch", "linear_probe", "finetune", "partial", "multibranch", "distill", "feature_transfer",
            "label_mapping", "l2sp")
NOT_PLUGINS = ("base", "objective")


def _plugin_modules() -> list[str]:
    """Module names of this folder's plugins: the built-ins first (the no-transfer baseline leads), then the rest."""
    found = {m.name for m in pkgutil.iter_modules(__path__)
             if not m.ispkg and not m.name.startswith("_") and m.name not in NOT_PLUGINS}
    return [name for name in BUILT_IN if name in found] + sorted(found - set(BUILT_IN))


for _name in _plugin_modules():
    importlib.import_module(f"{__name__}.{_name}")
