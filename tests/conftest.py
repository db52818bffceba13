"""Shared fixtures: a source network pretrained once per test session on digits 0-4."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.train.artifacts import pretrain, source_config


@pytest.fixture(scope="session")
def source_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet8 trained from scratch on digits 0-4 (the source for transfer to digits 5-9)."""
    config = source_config("digits:0-4", "resnet8", epochs=15, augment="basic")
    path, _ = pretrain(config, out_dir=tmp_path_factory.mktemp("sources"))
    return path
