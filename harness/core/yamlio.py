"""The one way the harness reads a YAML file: `yaml.safe_load` (plain data, no Python tags), errors on one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.core.errors import ConfigError


def read_yaml(path: Path | str) -> Any:
    """The data of a YAML file (None when empty); unreadable or invalid YAML is a ConfigError naming the file."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from None
