"""Networks other runs start from, trained once and cached as files: source networks (pretrained from scratch
on a source dataset, for `weights: checkpoint:`) and a method's preparations (a distillation teacher).

The study's plan runs these as jobs before the trials that need them; `harness pretrain` and `harness train`
call them directly. A file that exists is reused: its name carries the hash of the configuration that made it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.methods import METHODS
from harness.methods.base import Preparation
from harness.models.classifiers import CLASSIFIER_KEY, classifier_state
from harness.models.checkpoints import SOURCE_FORMAT, TEACHER_FORMAT, network_path, write_file
from harness.models.weights import read_checkpoint

if TYPE_CHECKING:
    from harness.train.loop import FitResult

DEFAULT_DIR = Path("results") / "sources"
Log = Callable[[str], None]


def source_config(dataset: str, backbone: str, epochs: int, lr: float = 0.05, batch_size: int = 64,
                  augment: str = "basic", seed: int = 0, **extra: object) -> TrialConfig:
    """The training configuration of a source network (trained from scratch on the source dataset)."""
    return TrialConfig.from_dict({"dataset": dataset, "backbone": backbone, "method": "scratch",
                                  "weights": "none", "epochs": epochs, "lr": lr, "batch_size": batch_size,
                                  "augment": augment, "seed": seed, **extra})


def source_path(config: TrialConfig, out_dir: Path | str = DEFAULT_DIR) -> Path:
    return network_path(config, out_dir)


def _train(config: TrialConfig, what: str, log: Log | None) -> FitResult:
    from harness.train.loop import fit

    result = fit(config, log=log)
    if result.summary["status"] != "ok":
        raise ConfigError(f"lr={config.lr}: the {what} ({config.backbone} on {config.dataset}) diverged "
                          f"(non-finite loss); choose a lower learning rate")
    return result


def _meta(config: TrialConfig, result: FitResult) -> dict[str, object]:
    s, model = result.summary, result.summary["model"]
    return {"dataset": config.dataset, "classes": list(s["data"].get("classes", [])),
            "num_classes": s["data"]["num_classes"], "image_size": model["input_size"], "mean": model["mean"],
            "std": model["std"], "config": config.to_dict(), "val_accuracy": s["val"].get("accuracy"),
            "status": s["status"], "train_seconds": s["cost"]["train_seconds"], "created": time.time()}


def pretrain(config: TrialConfig, out_dir: Path | str = DEFAULT_DIR, log: Log | None = None) -> tuple[Path, bool]:
    """Train (or reuse) a source network; returns (checkpoint path, reused). The file keeps the backbone and,
    for estimators that read it (LEEP, NCE), the classifier over the source classes."""
    path = source_path(config, out_dir)
    if path.is_file():
        read_checkpoint(str(path), config.backbone)
        return path, True
    result = _train(config, "source network", log)
    write_file(path, SOURCE_FORMAT, config.backbone, result.model.backbone.state_dict(), _meta(config, result),
               **{CLASSIFIER_KEY: classifier_state(result.model.head)})
    return path, False


def train_teacher(tc: TrialConfig, path: Path, log: Log | None = None) -> None:
    """Fine-tune a teacher on the target and write it as a teacher file (the whole classifier)."""
    if log:
        log(f"teacher {tc.backbone}: fine-tuning on {tc.dataset} for {tc.epochs} epochs -> {path}")
    result = _train(tc, "teacher", log)
    write_file(path, TEACHER_FORMAT, tc.backbone, result.model.state_dict(), _meta(tc, result),
               num_classes=result.summary["data"]["num_classes"])


def run_preparation(job: Preparation, log: Log | None = None) -> tuple[Path, bool]:
    """Train a method's preparation (e.g. a teacher) unless its file exists; returns (path, reused)."""
    from filelock import FileLock

    if job.kind != "teacher":
        raise ValueError(f"unknown preparation kind {job.kind!r}")
    job.path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(job.path) + ".lock"):  # two processes asking at once train it once
        if job.path.is_file():
            return job.path, True
        train_teacher(job.config, job.path, log)
    return job.path, False


def prepare(config: TrialConfig, log: Log | None = None) -> None:
    """Everything `config`'s method needs trained before it runs (for one-off runs such as `harness train`),
    after the config's names are checked (a method refusing the dataset's task trains nothing first)."""
    from harness.train.checks import check_names

    check_names(config)
    job = METHODS.get(config.method).preparation(config)
    if job is not None:
        run_preparation(job, log)
