"""Partial fine-tuning (Yosinski et al., 2014): the first freeze_depth stages frozen, the rest trained."""

from __future__ import annotations

from harness.methods.base import Method, register

register(Method("partial", "partial fine-tuning: the first freeze_depth stages frozen, the rest and the head "
                "trained", lambda c, n: c.freeze_depth, uses=("freeze_depth",)))
