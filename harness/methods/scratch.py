"""Training from scratch: random initialisation, every layer trained; the no-transfer baseline."""

from __future__ import annotations

from harness.methods.base import BOTH, Method, register

register(Method("scratch", "random initialisation, every layer trained (the no-transfer baseline)",
                pretrained="forbidden", tasks=BOTH))
