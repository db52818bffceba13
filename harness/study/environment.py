"""The environment of a run (package versions, hardware, git commit), stored with its records."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


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
