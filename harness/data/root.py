"""Where datasets live on disk: `--data-root`, else the `HARNESS_DATA` environment variable, else a default.

The data root is an environment variable rather than a TrialConfig field because it says where the files
are, not what the experiment is: the same trial on two machines with data in different folders is the
same trial (same hash). The CLI writes the absolute path into `HARNESS_DATA` before Ray starts, and
`runtime_env_vars()` are the variables the driver hands to the processes it starts on every node (in a trial's
config, or as an actor's or task's argument).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

DATA_ENV = "HARNESS_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/harness/data")
TEACHERS_ENV = "HARNESS_TEACHERS"
DEFAULT_TEACHERS_DIR = Path("~/.cache/harness/teachers")


def data_root() -> Path:
    """The folder holding the datasets, in torchvision's own layout (e.g. ROOT/cifar-10-batches-py/)."""
    value = os.environ.get(DATA_ENV) or str(DEFAULT_DATA_ROOT)
    return Path(value).expanduser().absolute()


def use_data_root(value: str | None) -> Path:
    """Make `value` (or the current setting) the data root of this process and of the processes it starts."""
    root = Path(value).expanduser().absolute() if value else data_root()
    if value or DATA_ENV in os.environ:
        os.environ[DATA_ENV] = str(root)
    return root


def teachers_dir() -> Path:
    """Where distillation teachers fine-tuned on a target are cached: `HARNESS_TEACHERS`, else a default."""
    return Path(os.environ.get(TEACHERS_ENV) or str(DEFAULT_TEACHERS_DIR)).expanduser().absolute()


@contextlib.contextmanager
def teachers_dir_default(default: Path | str) -> Iterator[Path]:
    """Within the block, `default` is the teachers folder unless HARNESS_TEACHERS says otherwise (a study keeps
    its teachers beside its sources, where every node of a cluster can read them)."""
    before = os.environ.get(TEACHERS_ENV)
    if not before:
        os.environ[TEACHERS_ENV] = str(Path(default).expanduser().absolute())
    try:
        yield teachers_dir()
    finally:
        if not before:
            os.environ.pop(TEACHERS_ENV, None)


def use_teachers_dir(value: str | None) -> None:
    """Make `value` the teachers folder of this process (a trial is told its study's folder)."""
    if value:
        os.environ[TEACHERS_ENV] = value


def runtime_env_vars() -> dict[str, str]:
    """Environment variables the driver passes to the processes it starts (none of those left at their
    defaults, so that every node resolves its own home folder)."""
    out = {DATA_ENV: str(data_root())} if os.environ.get(DATA_ENV) else {}
    if os.environ.get(TEACHERS_ENV):
        out[TEACHERS_ENV] = str(teachers_dir())
    return out
