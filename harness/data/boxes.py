"""Detection splits: images with boxes. A `DetectionSplit` holds its images in memory (one uint8 tensor, generated
scenes) or as files decoded on demand (VOC, COCO), and one target per image: `boxes` (float32 N x 4, xyxy in
pixels of the image as stored), `labels` (int64 N, 0-based classes) and `difficult` (bool N: kept for
evaluation and ignored there, as the VOC protocol says; COCO's crowd regions too). Batches are lists of
images of any size and lists of targets (`ImageBatch`, `TargetBatch`), which the loop moves to the device
like tensors. The detector resizes and normalises its inputs itself, so `resized` keeps the images."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image

from harness.data.files import STATS_SAMPLE

Target = dict[str, torch.Tensor]


class ImageBatch(list):
    """A batch of uint8 3 x H x W images (sizes may differ)."""

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ImageBatch:
        return ImageBatch(x.to(device, non_blocking=non_blocking) for x in self)


class TargetBatch(list):
    """The targets of a batch, one dict of tensors per image."""

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TargetBatch:
        return TargetBatch({k: v.to(device, non_blocking=non_blocking) for k, v in t.items()} for t in self)


def collate_detection(batch: list[tuple[torch.Tensor, Target]]) -> tuple[ImageBatch, TargetBatch]:
    """A DataLoader batch of (image, target) pairs as (images, targets) lists."""
    return ImageBatch(x for x, _ in batch), TargetBatch(t for _, t in batch)


def target(boxes: Any, labels: Any, difficult: Any = None) -> Target:
    """A target from box coordinates (xyxy), labels and optional difficult flags."""
    boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    labels = torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1))
    flags = torch.zeros(len(labels), dtype=torch.bool) if difficult is None else torch.as_tensor(
        np.asarray(difficult, dtype=bool).reshape(-1))
    return {"boxes": boxes, "labels": labels, "difficult": flags}


class _Images(Dataset):
    def __init__(self, split: DetectionSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        return self.split.image(i), self.split.targets[i]


@dataclass(frozen=True)
class DetectionSplit:
    """Images (a uint8 N x 3 x H x W tensor, or image files) and one target per image."""

    targets: tuple[Target, ...]
    images: torch.Tensor | None = None
    paths: tuple[str, ...] | None = None
    nominal_size: int = 0  # the side a file-backed split's images are about (for the input size)
    in_memory: ClassVar[bool] = True  # file-backed splits decode one batch at a time; nothing is resized eagerly

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def channels(self) -> int:
        return 3

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1]) if self.images is not None else self.nominal_size

    @property
    def labels(self) -> torch.Tensor:
        """Every object's label, image by image (what a split holds, for counting)."""
        return torch.cat([t["labels"] for t in self.targets]) if self.targets else torch.empty(0, dtype=torch.long)

    def image(self, i: int) -> torch.Tensor:
        """Image `i` as uint8 3 x H x W."""
        if self.images is not None:
            return self.images[i]
        return decode_image(self.paths[i], mode=ImageReadMode.RGB)

    def take(self, idx: Sequence[int] | np.ndarray, labels: Any = None) -> DetectionSplit:
        idx = [int(i) for i in idx]
        return DetectionSplit(tuple(self.targets[i] for i in idx),
                              None if self.images is None else self.images[torch.as_tensor(idx, dtype=torch.long)],
                              None if self.paths is None else tuple(self.paths[i] for i in idx), self.nominal_size)

    def concat(self, other: DetectionSplit) -> DetectionSplit:
        images = None if self.images is None else torch.cat([self.images, other.images])
        paths = None if self.paths is None else self.paths + other.paths
        return DetectionSplit(self.targets + other.targets, images, paths, self.nominal_size)

    def resized(self, size: int, resize_size: int = 0) -> DetectionSplit:
        return self

    def resize_bytes(self, size: int) -> int:
        return 0

    def dataset(self) -> Dataset:
        return _Images(self)

    def loader_kwargs(self) -> dict[str, Any]:
        return {}

    def batches(self, batch_size: int) -> Iterator[ImageBatch]:
        for i in range(0, len(self), batch_size):
            yield ImageBatch(self.image(j) for j in range(i, min(i + batch_size, len(self))))

    def pixel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std in [0, 1] of the images (of at most STATS_SAMPLE evenly spaced ones)."""
        picks = np.unique(np.linspace(0, len(self) - 1, min(len(self), STATS_SAMPLE)).round().astype(int))
        pixels = torch.cat([self.image(int(i)).float().div_(255).flatten(1) for i in picks], dim=1)
        return pixels.mean(dim=1).tolist(), pixels.std(dim=1).clamp_min(1e-3).tolist()
