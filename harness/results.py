"""The results store: one folder per `harness run` with schema-versioned JSON-lines records, written atomically."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

from harness.errors import ConfigError
from harness.jsonio import dumps

SCHEMA_VERSION = 1
RECORDS = "records.jsonl"


def atomic_write(path: Path, data: bytes) -> None:
    """Write a whole file through a temporary file and a rename: readers see the old or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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


def environment() -> dict[str, Any]:
    """Package versions, hardware and git commit, stored with every run."""
    import torch
    import torchvision

    import harness

    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                           "hostname": platform.node(), "cpus": os.cpu_count(), "harness": harness.__version__,
                           "torch": torch.__version__, "torchvision": torchvision.__version__,
                           "command": " ".join(sys.argv)}
    try:
        import ray

        env["ray"] = ray.__version__
    except ImportError:
        pass
    env["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                           cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env
