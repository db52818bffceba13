"""Strict JSON: NaN and infinities become null, so every file the harness writes is valid JSON."""

from __future__ import annotations

import json
import math
from typing import Any


def clean(obj: Any) -> Any:
    """A copy with non-finite floats replaced by None and tuples turned into lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return clean(obj.item())
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(clean(obj), allow_nan=False, **kw)
