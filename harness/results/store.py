"""The results store: one folder per `harness run` with schema-versioned JSON-lines records, appended under a lock.

One process writes a run folder at a time (`RunStore.lock`, an OS file lock released when the process ends,
however it ends). Records are appended, never rewritten: each batch is one write, flushed and fsynced, so a
kill leaves at most a torn last line, which the next writer closes and every reader skips with a warning.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, TypeVar

from harness.core.errors import ConfigError
from harness.core.files import atomic_write
from harness.core.jsonio import dumps
from harness.results.records import READABLE_SCHEMAS, Record, versions_text, from_json, standing

RECORDS = "records.jsonl"
LOCK = ".lock"
R = TypeVar("R", bound=Record)


class RunStore:
    """records.jsonl (one JSON object per line), the resolved suite and the environment of one run."""

    def __init__(self, run_dir: Path | str) -> None:
        self.dir = Path(run_dir)
        self.run_id = self.dir.name
        self._lock: int | None = None

    @classmethod
    def create(cls, root: Path | str, suite_name: str) -> "RunStore":
        """A new run folder `<suite>-<timestamp>[-n]` under `root`, with no records yet; two runs starting in the
        same second get two folders (mkdir is atomic), and a suite name cannot lead outside `root`."""
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", suite_name).strip(".-") or "suite"
        base = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            path = root / (base if n == 1 else f"{base}-{n}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            (path / RECORDS).touch()  # a run killed before its first record is still a run folder to resume
            fsync_dir(path)
            fsync_dir(root)
            return cls(path)
        raise ConfigError(f"{root}: cannot create a run folder {base}-N; too many runs this second")

    @property
    def records_path(self) -> Path:
        return self.dir / RECORDS

    def lock(self) -> None:
        """Become the one writer of this run folder, until `unlock` or the end of the process; a folder another
        process writes is refused with its PID."""
        if self._lock is not None:
            return
        fd = os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(f"{self.dir}: another harness run (PID {holder}) is writing this run folder; wait for "
                              f"it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock = fd

    @property
    def locked(self) -> bool:
        """Whether this process holds the folder's writer lock."""
        return self._lock is not None

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the lock
            self._lock = None

    def append(self, records: Iterable[R]) -> list[R]:
        """Add records, stamped with this run's id where they have none; returns them as written. One write
        under an exclusive lock of the file, then fsync: concurrent appenders never lose each other's lines."""
        stamped = [r if r.run_id else dataclasses.replace(r, run_id=self.run_id) for r in records]
        append_lines(self.records_path, [dumps(r.to_json()) for r in stamped])
        return stamped

    def records(self, of: type[R] = Record) -> list[R]:  # type: ignore[assignment]
        """The typed records of this run that stand (a re-run trial or final seed replaces its earlier record;
        `records.standing`), those of one kind with e.g. `records(CellRecord)`, in the order first written."""
        return [r for r in standing(self.all_records()) if isinstance(r, of)]

    def all_records(self) -> list[Record]:
        """Every record ever appended, superseded ones included."""
        return read_records(self.records_path) if self.records_path.exists() else []

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write(self.dir / name, (dumps(obj, indent=2) + "\n").encode())

    def read_json(self, name: str) -> Any:
        path = self.dir / name
        return json.loads(path.read_text()) if path.is_file() else None

    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.dir / name, text.encode())

    def append_json(self, name: str, obj: Any) -> None:
        """One JSON line appended to `name` (a log of the run, e.g. its sessions), fsynced."""
        append_lines(self.dir / name, [dumps(obj)])

    def read_jsonl(self, name: str) -> list[Any]:
        """The objects of a JSON-lines file of the run (a torn or corrupt line skipped with a warning)."""
        path = self.dir / name
        return [obj for _, obj in _json_lines(path)] if path.is_file() else []


def fsync_dir(path: Path) -> None:
    """Make a folder's new entries durable (a created file or folder survives a power loss)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_lines(path: Path, lines: list[str]) -> None:
    """Append `lines` to `path` in one write under an exclusive lock of the file, then fsync. A torn last line
    left by a killed writer is closed first, so it stays a line of its own that readers skip."""
    if not lines:
        return
    new = not path.exists()
    if new:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = "".join(line + "\n" for line in lines).encode()
        size = os.fstat(fd).st_size
        if size and _last_byte(path, size) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock
    if new:
        fsync_dir(path.parent)


def _last_byte(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1)


def _json_lines(path: Path) -> Iterable[tuple[int, Any]]:
    """(line number, object) of every JSON object line; a torn last line (no newline: a write cut short) or a
    corrupt line is skipped with a warning naming file and line."""
    text = path.read_text()
    lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if n == len(lines) and not text.endswith("\n"):
            warnings.warn(f"{path}:{n}: skipped a torn last line (a write cut short)", stacklevel=3)
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError as e:
            warnings.warn(f"{path}:{n}: skipped a corrupt record ({e})", stacklevel=3)
            continue
        yield n, data


def read_records(path: Path) -> list[Record]:
    """Every valid record, typed (version-1 and -2 lines upgraded), superseded ones included; a torn or corrupt
    line is skipped with a warning naming file and line; a line of a schema version this harness cannot read
    is refused."""
    if not path.exists():
        raise ConfigError(f"{path.parent}: no {RECORDS} here; is it a run folder written by `harness run`?")
    out = []
    for n, data in _json_lines(path):
        if data.get("schema") not in READABLE_SCHEMAS:
            raise ConfigError(f"{path}:{n}: records of schema version {data.get('schema')!r}; this harness "
                              f"reads versions {versions_text(READABLE_SCHEMAS)}")
        try:
            out.append(from_json(data))
        except (TypeError, ValueError) as e:
            warnings.warn(f"{path}:{n}: skipped a corrupt record ({e})", stacklevel=2)
    return out
