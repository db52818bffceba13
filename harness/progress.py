"""Progress a person can follow: one line per finished trial and per finished cell, with an estimate of time left."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Progress:
    """Counts trials across the whole run; `phase` and `label` say what the next finished trial belongs to."""

    total_trials: int = 0
    done_trials: int = 0
    cell_index: int = 0
    total_cells: int = 0
    cell_label: str = ""
    phase: str = "search"
    phase_total: int = 0
    phase_done: int = 0
    started: float = field(default_factory=time.time)
    out: Any = None

    def say(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def eta(self) -> str:
        if not self.done_trials:
            return "?"
        left = (time.time() - self.started) / self.done_trials * max(0, self.total_trials - self.done_trials)
        return f"{int(left // 60)}m{int(left % 60):02d}s"

    def prefix(self) -> str:
        return f"[cell {self.cell_index}/{self.total_cells}] {self.cell_label}"

    def trial_done(self, status: str, metric: str, value: float | None, seconds: float,
                   label: str | None = None) -> None:
        self.done_trials += 1
        self.phase_done += 1
        shown = "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
        where = label if label is not None else self.prefix()
        self.say(f"{where}  {self.phase} {self.phase_done}/{self.phase_total}  {status:<13} {metric} {shown}  "
                 f"({seconds:.1f}s)  trials {self.done_trials}/{self.total_trials}  about {self.eta()} left")


def progress_callback(progress: Progress, metric: str, label: Callable[[dict[str, Any]], str] | None = None):
    """A Tune callback that reports each finished or errored trial to `progress` (labelled from its config)."""
    from ray import tune

    def where(trial: Any) -> str | None:
        return label(trial.config) if label else None

    class ProgressCallback(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
            r = trial.last_result or {}
            status = r.get("status", "ok")
            if "summary" not in r and status != "diverged":
                status = "stopped_early"
            progress.trial_done(status, metric, r.get(metric), r.get("time_total_s", 0.0), where(trial))

        def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
            r = trial.last_result or {}
            progress.trial_done("error", metric, None, r.get("time_total_s", 0.0), where(trial))

    return ProgressCallback()
