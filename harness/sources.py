"""Source networks: pretrain a backbone on a source dataset once and cache the checkpoint for transfer."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

from harness.backbones import SOURCE_FORMAT, read_checkpoint, save_atomic
from harness.engine import fit
from harness.errors import ConfigError
from harness.spec import TrialConfig

DEFAULT_DIR = Path("results") / "sources"


def source_config(dataset: str, backbone: str, epochs: int, lr: float = 0.05, batch_size: int = 64,
                  augment: str = "basic", seed: int = 0, **extra: object) -> TrialConfig:
    """The training configuration of a source network (trained from scratch on the source dataset)."""
    return TrialConfig.from_dict({"dataset": dataset, "backbone": backbone, "method": "scratch",
                                  "weights": "none", "epochs": epochs, "lr": lr, "batch_size": batch_size,
                                  "augment": augment, "seed": seed, **extra})


def source_path(config: TrialConfig, out_dir: Path | str = DEFAULT_DIR) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.dataset).strip("_")
    return Path(out_dir) / f"{slug}-{config.backbone}-{config.identity()}.pt"


def pretrain(config: TrialConfig, out_dir: Path | str = DEFAULT_DIR,
             log: Callable[[str], None] | None = None) -> tuple[Path, bool]:
    """Train (or reuse) a source network; returns (checkpoint path, reused)."""
    path = source_path(config, out_dir)
    if path.is_file():
        read_checkpoint(str(path), config.backbone)
        return path, True
    result = fit(config, log=log)
    if result.summary["status"] != "ok":
        raise ConfigError(f"lr={config.lr}: the source network diverged (non-finite loss); "
                          f"choose a lower learning rate")
    model_info = result.summary["model"]
    blob = {
        "format": SOURCE_FORMAT,
        "backbone": config.backbone,
        "state_dict": {k: v.detach().cpu() for k, v in result.model.backbone.state_dict().items()},
        "meta": {"dataset": config.dataset, "classes": list(result.summary["data"].get("classes", [])),
                 "num_classes": result.summary["data"]["num_classes"], "image_size": model_info["input_size"],
                 "mean": model_info["mean"], "std": model_info["std"], "config": config.to_dict(),
                 "val_accuracy": result.summary["val"].get("accuracy"), "status": result.summary["status"],
                 "train_seconds": result.summary["cost"]["train_seconds"], "created": time.time()},
    }
    save_atomic(blob, path)
    return path, False
