"""`harness run` as a Ray Job submitted with `--working-dir`: the driver moves to a private copy of its code.

Ray 2.60 unpacks a job's working_dir again on a node each time it sets up another runtime environment there
(the job's driver, Ray Tune's trials and Ray Train's workers each have their own), deleting the folder first,
under the running driver: its working directory vanishes and a module imported at that moment is missing.
The driver therefore runs from a copy it owns (its code, the search spaces, its working directory); trial
processes keep the folder Ray gives them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from harness.study.spaces import SPACES_ENV

RAY_WORKING_DIRS = "working_dir_files"  # the folder under a Ray session's runtime_resources/ holding working_dirs


def in_job_working_dir(cwd: Path) -> bool:
    """Whether `cwd` is a job's working_dir unpacked by Ray (`.../runtime_resources/working_dir_files/_ray_pkg_*`)."""
    return RAY_WORKING_DIRS in cwd.parts


def leave_job_working_dir() -> Path | None:
    """Inside a Ray Job's unpacked working_dir: copy it to a private folder, import the rest of `harness` from
    there, read the search spaces there and work there; returns the copy (None elsewhere: nothing changes)."""
    cwd = Path.cwd()
    if not in_job_working_dir(cwd):
        return None
    copy = Path(tempfile.mkdtemp(prefix="harness-job-")) / cwd.name
    shutil.copytree(cwd, copy, symlinks=True)
    for name, module in list(sys.modules.items()):  # packages imported already find their other modules there
        if (name == "harness" or name.startswith("harness.")) and hasattr(module, "__path__"):
            module.__path__[:] = [str(copy.joinpath(*name.split(".")))]
    sys.path[:] = [str(copy) if p in ("", str(cwd)) else p for p in sys.path]
    os.environ.setdefault(SPACES_ENV, str(copy / "search_spaces"))
    os.chdir(copy)
    return copy
