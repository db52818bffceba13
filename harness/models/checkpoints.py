"""Network files the harness writes and reads: source networks (a backbone) and teachers (a whole classifier).

Both are a dict {format, backbone, state_dict, meta, ...} written with torch.save through the one atomic
writer and read back with weights_only=True; a wrong or unreadable file is a one-line error.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.core.files import atomic_write

if TYPE_CHECKING:
    import torch

SOURCE_FORMAT = "harness-source/1"
TEACHER_FORMAT = "harness-teacher/1"


def network_path(config: TrialConfig, out_dir: Path | str) -> Path:
    """`<dataset>-<backbone>-<config hash>.pt` in `out_dir`: the file of a network trained with `config`."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.dataset).strip("_")
    return Path(out_dir) / f"{slug}-{config.backbone}-{config.identity()}.pt"


NETWORK_NAME = re.compile(r".+-[0-9a-f]{12}\.pt")


def checkpoint_identity(path: str) -> str:
    """What identifies the weights in a checkpoint file: its content hash; a network file the harness writes is
    named after the hash of the configuration that trains it, and that name is its identity (the same before
    the file exists and after). Two files at different paths with different contents never share one."""
    p = Path(path)
    if NETWORK_NAME.fullmatch(p.name) or not p.is_file():
        return p.name
    stat = p.stat()
    return "sha256:" + _digest(str(p.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def write_file(path: Path, fmt: str, backbone: str, state_dict: dict[str, torch.Tensor], meta: dict[str, Any],
               **extra: Any) -> None:
    """torch.save the network file into memory, then write it atomically (fsynced, renamed)."""
    import torch

    buffer = io.BytesIO()
    torch.save({"format": fmt, "backbone": backbone, **extra,
                "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "meta": meta}, buffer)
    atomic_write(Path(path), buffer.getvalue())


def read_file(path: Path, fmt: str, where: str, remedy: str) -> dict[str, Any]:
    """A network file of format `fmt`; `where` names the setting that pointed at it, `remedy` how to get one."""
    import torch

    if not path.is_file():
        raise ConfigError(f"{where}: no such file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise ConfigError(f"{where}: not a readable checkpoint ({type(e).__name__}); {remedy}") from None
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise ConfigError(f"{where}: not a {fmt} file; {remedy}")
    missing = [k for k in ("backbone", "state_dict", "meta") if k not in blob]
    if missing:
        raise ConfigError(f"{where}: the file lacks '{missing[0]}'; {remedy}")
    return blob
