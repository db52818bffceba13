"""Distillation from a large network into a small one (Hinton et al., 2015).

The teacher is either a larger backbone fine-tuned on the target first (`teacher: resnet20`, starting from
`teacher_weights`, in a suite typically `source:KEY`, a network the suite pretrains; for `teacher_epochs` epochs
with the fixed recipe of `teacher_config`) or a given teacher file (`teacher: checkpoint:PATH`). A teacher whose
backbone has no more parameters than the student's is refused before anything trains. A fine-tuned teacher is a preparation job (`preparation`): trained once,
before the runs that need it, and written as a teacher file under the teachers folder
(harness.data.root.teachers_dir) named by its configuration's hash, so every trial of a search and every final
run with the same data reuses it. The student (`backbone`, `weights`) minimises
kd_alpha * T^2 * KL(teacher_T || student_T) + (1 - kd_alpha) * cross-entropy, with T = kd_temperature.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.config import MethodArgs, TrialConfig, param
from harness.core.errors import ConfigError
from harness.data.preprocessing import Preprocessing
from harness.data.root import teachers_dir
from harness.models.backbones import BACKBONES, backbone_parameters
from harness.models.checkpoints import TEACHER_FORMAT, network_path, read_file, write_file
from harness.methods.base import Method, Preparation, register
from harness.methods.objective import MethodContext, Objective

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from harness.models.staged import Classifier

CHECKPOINT = "checkpoint:"
SOURCE = "source:"


@dataclass(frozen=True)
class DistillArgs(MethodArgs):
    """The teacher and the distillation loss."""

    teacher: str = param("resnet20", "a backbone fine-tuned on the target first, or checkpoint:PATH "
                         "of a teacher file", check=bool, allowed="give a backbone name or checkpoint:PATH")
    teacher_weights: str = param("none", "weights the teacher backbone starts from (in a suite: source:KEY, a "
                                 "network the suite pretrains)",
                                 check=lambda v: v in ("none", "imagenet") or v.startswith((CHECKPOINT, SOURCE)),
                                 allowed="choose from: none, imagenet, checkpoint:PATH, source:KEY (in a suite)")
    teacher_epochs: int = param(10, "epochs of the teacher's fine-tuning", low=1)
    kd_temperature: float = param(4.0, "softmax temperature T of the distillation loss", low=0, low_open=True)
    kd_alpha: float = param(0.5, "weight of the distillation loss; the labels get 1 - kd_alpha", low=0, high=1)


def check(config: TrialConfig) -> None:
    """Fail fast on an unknown teacher backbone, a missing teacher file, or a teacher no larger than the student."""
    teacher = config.method_args.teacher
    if teacher.startswith(CHECKPOINT):
        path = Path(teacher[len(CHECKPOINT):]).expanduser()
        if not path.is_file():
            raise ConfigError(f"teacher='{teacher}': no such file")
        network = _file_network(str(path.resolve()), path.stat().st_mtime_ns)
    elif teacher not in BACKBONES:
        raise ConfigError(f"teacher='{teacher}': give a backbone or checkpoint:PATH; "
                          f"{BACKBONES.unknown_message(teacher)}")
    else:
        network = teacher
    if config.method_args.teacher_weights.startswith(SOURCE):
        raise ConfigError(f"teacher_weights='{config.method_args.teacher_weights}': a suite's source network, "
                          f"resolved by `harness run`; outside a suite give checkpoint:PATH")
    if config.backbone in BACKBONES and network in BACKBONES:
        big, small = backbone_parameters(network), backbone_parameters(config.backbone)
        if big <= small:
            raise ConfigError(f"teacher='{teacher}': a {network} teacher ({big:,} parameters) is not larger than the "
                              f"{config.backbone} student ({small:,} parameters); give a larger teacher")


@functools.lru_cache(maxsize=64)
def _file_network(path: str, mtime_ns: int) -> str:
    """The backbone a teacher file holds (read once per file version)."""
    return read_file(Path(path), TEACHER_FORMAT, f"teacher='checkpoint:{path}'",
                     "give a file written by write_teacher or by the plan")["backbone"]


def teacher_config(config: TrialConfig) -> TrialConfig:
    """How a teacher backbone is fine-tuned on the student's training data: full fine-tuning with crop + flip,
    SGD at lr 0.05 from random initialisation or 0.01 from pretrained weights, batches of 64. Nothing the
    student's search varies enters it, so one teacher serves every trial."""
    args = config.method_args
    return TrialConfig(dataset=config.dataset, backbone=args.teacher, weights=args.teacher_weights,
                       method="finetune", epochs=args.teacher_epochs,
                       lr=0.05 if args.teacher_weights == "none" else 0.01, batch_size=64, augment="basic",
                       samples_per_class=config.samples_per_class, seed=config.seed, split_seed=config.split_seed,
                       subset_seed=config.subset_seed, val_per_class=config.val_per_class,
                       image_size=config.image_size, train_on_val=config.train_on_val)


def teacher_path(tc: TrialConfig) -> Path:
    """The file of the teacher fine-tuned with `tc`, in the teachers folder."""
    return network_path(tc, teachers_dir())


def preparation(config: TrialConfig) -> Preparation | None:
    """The teacher to fine-tune before this run (None for a given teacher file)."""
    if config.method_args.teacher.startswith(CHECKPOINT):
        return None
    tc = teacher_config(config)
    return Preparation(tc, teacher_path(tc), "teacher")


def teacher_file(config: TrialConfig) -> Path:
    """The teacher file a distill run reads: the given one, or the fine-tuned teacher the plan trains first."""
    teacher = config.method_args.teacher
    if teacher.startswith(CHECKPOINT):
        return Path(teacher[len(CHECKPOINT):]).expanduser()
    path = teacher_path(teacher_config(config))
    if not path.is_file():
        raise ConfigError(f"teacher='{teacher}': its fine-tuned teacher file {path} is missing; "
                          f"`harness run` and `harness train` train it first")
    return path


def write_teacher(model: Classifier, backbone: str, prep: Preprocessing, path: Path, **meta: Any) -> None:
    """Write any trained Classifier as a teacher file (for `teacher: checkpoint:PATH`)."""
    write_file(path, TEACHER_FORMAT, backbone, model.state_dict(),
               {"image_size": prep.image_size, "mean": list(prep.mean), "std": list(prep.std), **meta},
               num_classes=model.head[-1].out_features)


def load_teacher(path: Path, num_classes: int) -> tuple[Classifier, Preprocessing, dict[str, Any]]:
    """A teacher file as (network in eval mode, its input preprocessing, its metadata)."""
    import torch

    from harness.models.staged import Classifier, load_state_checked

    where = f"teacher='checkpoint:{path}'"
    blob = read_file(path, TEACHER_FORMAT, where, "give a file written by write_teacher or by the plan")
    if blob.get("num_classes") != num_classes:
        raise ConfigError(f"{where}: the teacher predicts {blob['num_classes']} classes, the target has {num_classes}")
    with torch.random.fork_rng(devices=[]):  # building the teacher leaves the student's random stream alone
        model = Classifier(BACKBONES.get(blob["backbone"]).build(None), num_classes)
    load_state_checked(model, blob["state_dict"], where)
    meta = blob["meta"]
    prep = Preprocessing(int(meta["image_size"]), tuple(meta["mean"]), tuple(meta["std"]), f"teacher:{path.name}")
    return model.eval().requires_grad_(False), prep, {**meta, "backbone": blob["backbone"]}


class DistillObjective(Objective):
    """kd_alpha * distillation loss + (1 - kd_alpha) * cross-entropy; the teacher sees the same (mixed) batch."""

    def __init__(self, ctx: MethodContext) -> None:
        import torch

        from harness.methods.training.distill import AdaptedTeacher

        super().__init__(ctx)
        self.path = teacher_file(ctx.config)
        teacher, prep, self.meta = load_teacher(self.path, ctx.bundle.num_classes)
        if ctx.transform is not None and ctx.transform.channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)
        self.teacher = AdaptedTeacher(teacher, ctx.prep, prep).to(ctx.device).eval()
        self.alpha, self.temperature = ctx.config.method_args.kd_alpha, ctx.config.method_args.kd_temperature

    def __call__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch

        from harness.methods.training.distill import kd_loss

        x, y = self.mixed(x, y)
        student = net(x)
        if self.alpha == 0:
            return self.criterion(student, y)
        with torch.no_grad():
            teacher = self.teacher(x)
        kd = kd_loss(student, teacher, self.temperature)
        if self.alpha == 1:
            return kd
        return self.alpha * kd + (1 - self.alpha) * self.criterion(student, y)

    def extras(self, status: str) -> dict[str, dict[str, Any]]:
        """Teacher and student: parameters, accuracy and agreement on the validation split (when not trained on),
        inference speed."""
        from harness.models.staged import count_parameters

        ctx, val = self.ctx, self.ctx.bundle.val
        t0 = time.perf_counter()
        student = ctx.predict(ctx.model, val, ctx.transform)
        t1 = time.perf_counter()
        teacher = ctx.predict(self.teacher, val, ctx.transform)
        t2 = time.perf_counter()
        accuracy = lambda logits, labels: float((logits.argmax(1) == labels).float().mean())  # noqa: E731
        facts = {"backbone": self.meta["backbone"], "file": str(self.path),
                 "params_total": count_parameters(self.teacher)[0],
                 "kd_alpha": self.alpha, "kd_temperature": self.temperature}
        if not ctx.config.train_on_val:  # validation images trained on say nothing about either network
            facts.update(val_accuracy=accuracy(teacher, val.labels), val_agreement=accuracy(student, teacher.argmax(1)))
        if "config" in self.meta:
            facts.update(weights=self.meta["config"]["weights"], epochs=self.meta["config"]["epochs"])
        if ctx.config.evaluate_test:
            facts["test_accuracy"] = accuracy(ctx.predict(self.teacher, ctx.bundle.test, ctx.transform),
                                              ctx.bundle.test.labels)
        cost = {"teacher_params_total": facts["params_total"],
                "student_inference_images_per_s": len(val) / max(t1 - t0, 1e-9),
                "teacher_inference_images_per_s": len(val) / max(t2 - t1, 1e-9),
                "teacher_train_seconds": self.meta.get("train_seconds")}
        return {"model": {"teacher": facts, "source_network": self.meta["backbone"]}, "cost": cost}


register(Method("distill", "distillation: a larger teacher fine-tuned on the target first (or a teacher file) "
                "trains this smaller student with the KD loss", args=DistillArgs, validate=check,
                preparation=preparation, objective=DistillObjective))
