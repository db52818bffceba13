"""The results store: one folder per `harness run` with schema-versioned JSON-lines records, written atomically."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

from harness.core.errors import ConfigError
from harness.core.files import atomic_write
from harness.core.jsonio import dumps

SCHEMA_VERSION = 1
RECORDS = "records.jsonl"


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

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Add records: the file is rewritten through a rename, so a kill never leaves a half-written line."""
        lines = "".join(dumps({"schema": SCHEMA_VERSION, "run_id": self.run_id, **r}) + "\n" for r in records)
        old = self.records_path.read_bytes() if self.records_path.exists() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        atomic_write(self.records_path, old + lines.encode())

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.records_path.exists():
            return []
        return [r for r in read_records(self.records_path) if kind is None or r.get("kind") == kind]

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write(self.dir / name, (dumps(obj, indent=2) + "\n").encode())

    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.dir / name, text.encode())


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every valid record; a corrupt line is skipped with a warning naming file and line; unknown schema refused."""
    if not path.exists():
        raise ConfigError(f"{path.parent}: no {RECORDS} here; is it a run folder written by `harness run`?")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError as e:
            warnings.warn(f"{path}:{n}: skipped a corrupt record ({e})", stacklevel=2)
            continue
        if record.get("schema") != SCHEMA_VERSION:
            raise ConfigError(f"{path}:{n}: records of schema version {record.get('schema')!r}; this harness "
                              f"reads version {SCHEMA_VERSION}")
        out.append(record)
    return out
