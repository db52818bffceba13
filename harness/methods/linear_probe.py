"""Fixed feature extractor (linear probe): the pretrained backbone frozen, only a new linear head trained; for
detection the head-only method (the whole backbone frozen, the detector's neck and heads trained)."""

from __future__ import annotations

from harness.methods.base import BOTH, Method, register

register(Method("linear_probe", "fixed feature extractor: backbone frozen (BatchNorm in eval mode), only the "
                "new head trained", lambda c, n: n, tasks=BOTH))
