"""The distillation loss and the teacher adapted to the student's inputs (harness.methods.distill)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.data.preprocessing import Preprocessing


class AdaptedTeacher(nn.Module):
    """The teacher fed the student's normalised batch, re-normalised and resized to the teacher's inputs."""

    def __init__(self, teacher: nn.Module, student: Preprocessing, own: Preprocessing) -> None:
        super().__init__()
        s_mean, s_std = torch.tensor(student.mean), torch.tensor(student.std)
        t_mean, t_std = torch.tensor(own.mean), torch.tensor(own.std)
        self.register_buffer("scale", (s_std / t_std).view(1, -1, 1, 1))
        self.register_buffer("shift", ((s_mean - t_mean) / t_std).view(1, -1, 1, 1))
        self.renormalise = not (torch.equal(s_mean, t_mean) and torch.equal(s_std, t_std))
        self.teacher, self.size = teacher, own.image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.renormalise:
            x = x * self.scale + self.shift
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.teacher(x)


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student.float() / t, dim=1), F.log_softmax(teacher.float() / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
