"""Full fine-tuning: the pretrained backbone and a new head, all trained."""

from __future__ import annotations

from harness.methods.base import BOTH, Method, register

register(Method("finetune", "full fine-tuning: pretrained backbone and new head all trained", tasks=BOTH))
