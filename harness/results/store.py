"""The results store: one folder per `harness run` with schema-versioned JSON-lines records, written atomically."""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, TypeVar

from harness.core.errors import ConfigError
from harness.core.files import atomic_write
from harness.core.jsonio import dumps
from harness.results.records import READABLE_SCHEMAS, Record, from_json

RECORDS = "records.jsonl"
R = TypeVar("R", bound=Record)


class RunStore:
    """records.jsonl (one JSON object per line), the resolved suite and the environment of one run."""

    def __init__(self, run_dir: Path | str) -> None:
        self.dir = Path(run_dir)
        self.run_id = self.dir.name

    @classmethod
    def create(cls, root: Path | str, suite_name: str) -> "RunStore":
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = Path(root) / f"{suite_name}-{stamp}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        path.mkdir(parents=True)
        return cls(path)

    @property
    def records_path(self) -> Path:
        return self.dir / RECORDS

    def append(self, records: Iterable[R]) -> list[R]:
        """Add records, stamped with this run's id where they have none; returns them as written.
        The file is rewritten through a rename, so a kill never leaves a half-written line."""
        stamped = [r if r.run_id else dataclasses.replace(r, run_id=self.run_id) for r in records]
        lines = "".join(dumps(r.to_json()) + "\n" for r in stamped)
        old = self.records_path.read_bytes() if self.records_path.exists() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        atomic_write(self.records_path, old + lines.encode())
        return stamped

    def records(self, of: type[R] = Record) -> list[R]:  # type: ignore[assignment]
        """The typed records of this run (those of one kind, e.g. `records(CellRecord)`), in the order written."""
        if not self.records_path.exists():
            return []
        return [r for r in read_records(self.records_path) if isinstance(r, of)]

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write(self.dir / name, (dumps(obj, indent=2) + "\n").encode())

    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.dir / name, text.encode())


def read_records(path: Path) -> list[Record]:
    """Every valid record, typed (version-1 lines upgraded); a corrupt line is skipped with a warning naming
    file and line; a line of a schema version this harness cannot read is refused."""
    if not path.exists():
        raise ConfigError(f"{path.parent}: no {RECORDS} here; is it a run folder written by `harness run`?")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError as e:
            warnings.warn(f"{path}:{n}: skipped a corrupt record ({e})", stacklevel=2)
            continue
        if data.get("schema") not in READABLE_SCHEMAS:
            raise ConfigError(f"{path}:{n}: records of schema version {data.get('schema')!r}; this harness "
                              f"reads versions {' and '.join(map(str, READABLE_SCHEMAS))}")
        try:
            out.append(from_json(data))
        except (TypeError, ValueError) as e:
            warnings.warn(f"{path}:{n}: skipped a corrupt record ({e})", stacklevel=2)
    return out
