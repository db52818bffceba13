"""`harness status RUN_DIR`: where a run stands, from its folder alone (no Ray), so a run on another machine can
be followed through shared storage: cells finished, searching or waiting, trials done and errored, the best
value so far per cell, elapsed time and an estimate of the time left."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import ConfigError
from harness.core.yamlio import read_yaml
from harness.results.records import (
    FINAL_DONE,
    TRIAL_DONE,
    CellRecord,
    FinalRecord,
    Record,
    TrialRecord,
    target_label,
)
from harness.results.store import RunStore
from harness.study.suite import Cell, cells, suite_from_dict


@dataclass(frozen=True)
class CellStatus:
    """One cell of a run as its records show it."""

    label: str
    state: str  # finished, no winner, finals, searching, waiting
    trials_done: int
    trials: int
    errored: int
    finals_done: int
    finals: int
    best: float | None
    metric: str


@dataclass(frozen=True)
class RunStatus:
    """A run as its folder shows it: every cell, the sessions, and the time spent and left."""

    run_dir: Path
    suite: str
    cells: list[CellStatus]
    started: float | None
    ended: float | None
    exit_code: int | None
    now: float

    @property
    def done(self) -> int:
        return sum(c.trials_done + c.finals_done for c in self.cells)

    @property
    def total(self) -> int:
        return sum(c.trials + c.finals for c in self.cells)

    @property
    def elapsed(self) -> float:
        return ((self.ended or self.now) - self.started) if self.started else 0.0

    @property
    def left(self) -> float | None:
        """Seconds left at the pace so far (trials and finals done per second); None before the first is done
        or once the run has ended."""
        if self.ended is not None or not self.done or self.done >= self.total:
            return None
        return self.elapsed / self.done * (self.total - self.done)


def _cells(run_dir: Path) -> list[Cell]:
    """The run's cells from its frozen suite and search spaces (what `harness run --resume` would plan)."""
    from harness.study.runner import RESOLVED_SUITE, frozen_spaces

    path = run_dir / RESOLVED_SUITE
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no {RESOLVED_SUITE}; not a run folder written by `harness run`")
    suite = suite_from_dict(read_yaml(path) or {}, str(path))
    with frozen_spaces(RunStore(run_dir)):
        return cells(suite, _source_weights(run_dir))


def _source_weights(run_dir: Path) -> dict[str, str]:
    """The `source:KEY` weights of a run resolved as it resolved them (its source records)."""
    from harness.results.records import SourceRecord

    return {r.key: f"checkpoint:{r.path}" for r in RunStore(run_dir).records(SourceRecord) if r.role == "source"}


def run_status(run_dir: Path | str, now: float | None = None) -> RunStatus:
    """The status of the run in `run_dir`, read from its records and sessions."""
    from harness.study.runner import SESSIONS

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run folder")
    store = RunStore(run_dir)
    planned = _cells(run_dir)
    of_cell: dict[str, list[Record]] = {}
    for r in store.records():  # grouped once: the status of a run stays linear in its records
        of_cell.setdefault(getattr(r, "cell_id", ""), []).append(r)
    out = []
    for cell in planned:
        mine = of_cell.get(cell.cell_id, [])
        trials = [r for r in mine if isinstance(r, TrialRecord) and r.status in TRIAL_DONE]
        finals = {r.seed for r in mine if isinstance(r, FinalRecord) and r.status in FINAL_DONE}
        record = next((r for r in mine if isinstance(r, CellRecord)), None)
        values = [t.value for t in trials if t.status == "ok" and t.value is not None and math.isfinite(t.value)]
        best = (max if cell.search.mode == "max" else min)(values) if values else None
        if record is not None:
            state = "no winner" if record.status == "no_winner" else "finished"
            best = record.best_value if record.best_value is not None else best
        elif finals or len(trials) >= cell.num_trials:
            state = "finals"
        else:
            state = "searching" if trials else "waiting"
        out.append(CellStatus(f"{target_label(cell.dataset.name, cell.dataset.samples_per_class)} · {cell.method} · "
                              f"{cell.backbone.name}", state, len(trials), cell.num_trials,
                              sum(t.status in ("error", "lost") for t in trials), len(finals),
                              0 if state == "no winner" else cell.final_seeds, best, cell.search.metric))
    sessions = store.read_jsonl(SESSIONS)
    starts = [s["started"] for s in sessions if "started" in s]
    last = sessions[-1] if sessions else {}
    return RunStatus(run_dir, _suite_name(run_dir), out,
                     min(starts) if starts else None, last.get("ended"), last.get("exit_code"),
                     time.time() if now is None else now)


def _suite_name(run_dir: Path) -> str:
    from harness.study.runner import RESOLVED_SUITE

    return str((read_yaml(run_dir / RESOLVED_SUITE) or {}).get("name", "?"))


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    h, m = divmod(minutes, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def render(status: RunStatus) -> str:
    """The status as the lines `harness status` prints."""
    counts = {state: sum(c.state == state for c in status.cells)
              for state in ("finished", "no winner", "finals", "searching", "waiting")}
    if status.ended is not None:
        state = f"ended with exit code {status.exit_code} after {_clock(status.elapsed)}"
    elif status.started is not None:
        left = status.left
        state = f"running for {_clock(status.elapsed)}" + (f", about {_clock(left)} left" if left is not None else "")
    else:
        state = "not started"
    lines = [f"run {status.run_dir} (suite {status.suite}): {state}",
             f"cells: {len(status.cells)}; " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
             + f"; trials and finals: {status.done} of {status.total} done"]
    width = max((len(c.label) for c in status.cells), default=10)
    for c in status.cells:
        best = "-" if c.best is None else f"{c.best:.4f}"
        lines.append(f"  {c.label:<{width}}  {c.state:<9}  search {c.trials_done}/{c.trials}"
                     f"{f' ({c.errored} errored)' if c.errored else ''}  finals {c.finals_done}/{c.finals}  "
                     f"best {c.metric} {best}")
    return "\n".join(lines)
