"""Partial fine-tuning (Yosinski et al., 2014): the first freeze_depth stages frozen, the rest trained."""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.config import MethodArgs, param
from harness.methods.base import BOTH, Method, register


@dataclass(frozen=True)
class PartialArgs(MethodArgs):
    """How many stages stay frozen."""

    freeze_depth: int = param(0, "leading backbone stages kept frozen", low=0, stage_relative=True)


register(Method("partial", "partial fine-tuning: the first freeze_depth stages frozen, the rest and the head "
                "trained", lambda c, n: c.method_args.freeze_depth, args=PartialArgs, tasks=BOTH))
