"""Stopping a run cleanly: the first Ctrl-C (SIGINT) or SIGTERM ends the running Tuners at their next step, so
that their trials are recorded as interrupted and the run exits 130 (143); a second one stops at once.

Ray Tune catches Ctrl-C itself and returns from `Tuner.fit` as if the search had ended, and Ray's own SIGTERM
handler exits from inside whatever runs. Within `stopping()` both signals come here instead: where a Tuner is
running (`tune_running()`) it is asked to stop through Tune's SIGUSR1 handler, as are the Tuners of the cell
searchers in other processes (`forward_to`); elsewhere the signal raises `Interrupted` at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"


class Interrupted(KeyboardInterrupt):
    """The run was stopped by signal `signum` before it finished."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class _State:
    signum: int | None = None
    tune_depth: int = 0
    pids: set[int] = field(default_factory=set)


STATE = _State()


def requested() -> int | None:
    """The signal that asked this run to stop, or None."""
    return STATE.signum


def check() -> None:
    """Raise `Interrupted` if a stop was asked for (called before work that would start something new)."""
    if STATE.signum is not None:
        raise Interrupted(STATE.signum)


def _handle(signum: int, frame: Any) -> None:
    if STATE.signum is not None:
        raise Interrupted(STATE.signum)  # the second signal: at once
    STATE.signum = signum
    if not STATE.tune_depth:
        raise Interrupted(signum)
    print(f"harness: {signal.Signals(signum).name}: stopping; running trials will be recorded as interrupted "
          f"(send it again to stop at once)", file=sys.stderr, flush=True)
    tune_handler = signal.getsignal(signal.SIGUSR1)
    if callable(tune_handler) and tune_handler is not _handle:
        tune_handler(signum, frame)
    for pid in list(STATE.pids):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGUSR1)


@contextlib.contextmanager
def stopping() -> Iterator[_State]:
    """Within the block, SIGINT and SIGTERM stop the run cleanly (see the module); the handlers before it
    come back after it."""
    before = {s: signal.getsignal(s) for s in SIGNALS}
    tune_env = os.environ.get(TUNE_SIGINT_ENV)
    os.environ[TUNE_SIGINT_ENV] = "1"
    STATE.signum, STATE.tune_depth, STATE.pids = None, 0, set()
    for s in SIGNALS:
        signal.signal(s, _handle)
    try:
        yield STATE
    finally:
        for s, h in before.items():
            signal.signal(s, h)
        if tune_env is None:
            os.environ.pop(TUNE_SIGINT_ENV, None)
        else:
            os.environ[TUNE_SIGINT_ENV] = tune_env


@contextlib.contextmanager
def tune_running() -> Iterator[None]:
    """Within the block a Tuner runs here or in a cell searcher: a signal asks it to stop instead of raising."""
    check()
    STATE.tune_depth += 1
    try:
        yield
    finally:
        STATE.tune_depth -= 1


@contextlib.contextmanager
def forward_to(pid: int) -> Iterator[None]:
    """Within the block a stop is passed on to the process `pid` (a cell searcher on this node) as SIGUSR1."""
    STATE.pids.add(pid)
    try:
        yield
    finally:
        STATE.pids.discard(pid)


def ignore_stop_requests() -> None:
    """In a cell searcher: a SIGUSR1 that comes before its Tuner starts (or after it ends) must not kill it."""
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)
