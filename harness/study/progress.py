"""Progress a person can follow: one line per finished trial and per finished cell, with an estimate of time left."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

# (trial config, status, value of the metric or None, trial seconds)
TrialSink = Callable[[dict[str, Any], str, "float | None", float], None]


@dataclass
class Progress:
    """Counts trials across the whole run and prints them with the time left at the current pace."""

    total_trials: int = 0
    done_trials: int = 0
    total_cells: int = 0
    started: float = field(default_factory=time.time)
    out: Any = None

    def say(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def eta(self) -> str:
        if not self.done_trials:
            return "?"
        left = (time.time() - self.started) / self.done_trials * max(0, self.total_trials - self.done_trials)
        return f"{int(left // 60)}m{int(left % 60):02d}s"

    def cell(self, index: int, label: str) -> str:
        """The prefix of a cell's lines: `[cell 3/8] digits · finetune · resnet8`."""
        return f"[cell {index}/{self.total_cells}] {label}"

    def trial_done(self, where: str, step: str, status: str, metric: str, value: float | None,
                   seconds: float) -> None:
        self.done_trials += 1
        shown = "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
        self.say(f"{where}  {step}  {status:<13} {metric} {shown}  ({seconds:.1f}s)  "
                 f"trials {self.done_trials}/{self.total_trials}  about {self.eta()} left")
