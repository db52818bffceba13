"""The input pipeline on the device: uint8 batch -> normalised float batch, with the augmentation policy
(`none`, `basic` crop + flip, `randaugment` = torchvision's RandAugment + crop + flip) and optional MixUp /
CutMix of whole batches (torchvision.transforms.v2), which turns integer labels into soft ones."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.transforms import v2

from harness.data.preprocessing import Preprocessing
from harness.core.config import TrialConfig

Mix = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class RandAugmentEach(nn.Module):
    """torchvision's RandAugment drawn independently for every image of a uint8 batch (v2 transforms draw one
    operation per call, which on a whole batch would give every image the same one)."""

    def __init__(self, num_ops: int = 2, magnitude: int = 9) -> None:
        super().__init__()
        self.op = v2.RandAugment(num_ops=num_ops, magnitude=magnitude)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.op(image) for image in x])


class BatchTransform(nn.Module):
    """uint8 batch -> float, resized to the input size if it is not, three channels, optional crop-with-padding
    and flip (and RandAugment before them), normalised; runs on the device."""

    def __init__(self, prep: Preprocessing, augment: bool, flip: bool, channels_last: bool,
                 randaugment: bool = False) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(prep.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(prep.std).view(1, -1, 1, 1))
        self.augment, self.flip, self.channels_last, self.size = augment, flip, channels_last, prep.image_size
        self.randaugment = RandAugmentEach() if randaugment else None

    def forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        if train and self.randaugment is not None:
            x = self.randaugment(x)
        x = x.float().div_(255)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if train and self.augment:
            x = random_crop(x, pad=max(1, x.shape[-1] // 8))
            if self.flip:
                mask = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
                x = torch.where(mask, x.flip(3), x)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def batch_transform(config: TrialConfig, prep: Preprocessing, flip: bool, channels_last: bool) -> BatchTransform:
    """The transform of a run's augmentation policy."""
    return BatchTransform(prep, config.augment != "none", flip, channels_last,
                          randaugment=config.augment == "randaugment")


def random_crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Per-image random crop of the zero-padded batch back to its size (batched, no Python loop)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return padded[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None],
                  rows, cols]


def batch_mix(config: TrialConfig, num_classes: int) -> Mix | None:
    """MixUp and/or CutMix of a transformed batch (one of them at random per batch when both are on);
    None when both are off. The labels come back as class probabilities."""
    ops: list[nn.Module] = []
    if config.mixup > 0:
        ops.append(v2.MixUp(alpha=config.mixup, num_classes=num_classes))
    if config.cutmix > 0:
        ops.append(v2.CutMix(alpha=config.cutmix, num_classes=num_classes))
    if not ops:
        return None
    return ops[0] if len(ops) == 1 else v2.RandomChoice(ops)
