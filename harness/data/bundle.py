"""Splits and bundles: the images and labels of one split (in memory or file-backed) and a dataset's three splits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from harness.data.files import FileSplit

STATS_EXACT_ELEMENTS = 2**27


@dataclass(frozen=True)
class Split:
    """Images (uint8, N x C x H x W) and integer labels of one split, held in memory."""

    images: torch.Tensor
    labels: torch.Tensor
    in_memory: ClassVar[bool] = True

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def take(self, idx: np.ndarray, labels: torch.Tensor | None = None) -> "Split":
        """The images at `idx` (optionally relabelled)."""
        t = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return Split(self.images[t].contiguous(), (self.labels[t] if labels is None else labels).contiguous())

    def concat(self, other: "Split") -> "Split":
        """This split followed by `other` (e.g. train + validation for a final run)."""
        return Split(torch.cat([self.images, other.images]), torch.cat([self.labels, other.labels]))

    def resized(self, size: int, resize_size: int = 0) -> "Split":
        """Every image resized to size x size (bilinear with antialiasing); `resize_size` is for file splits."""
        chunks = [F.interpolate(self.images[i:i + 512].float(), size=(size, size), mode="bilinear",
                                antialias=True, align_corners=False)
                  for i in range(0, len(self), 512)]
        return Split(torch.cat(chunks).clamp_(0, 255).round_().to(torch.uint8), self.labels)

    def resize_bytes(self, size: int) -> int:
        """Memory an eager resize to `size` would allocate."""
        return 0 if size == self.image_size else len(self) * self.channels * size * size

    def dataset(self) -> Dataset:
        return TensorDataset(self.images, self.labels)

    def loader_kwargs(self) -> dict[str, Any]:
        return {}

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The images in order, `batch_size` at a time (slices, no copies)."""
        for i in range(0, len(self), batch_size):
            yield self.images[i:i + batch_size]

    def pixel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the images in [0, 1] (chunked in float64 for large splits)."""
        if self.images.numel() <= STATS_EXACT_ELEMENTS:
            x = self.images.float().div_(255)
            return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
        total = torch.zeros(self.channels, dtype=torch.float64)
        squares = torch.zeros(self.channels, dtype=torch.float64)
        for x in self.batches(4096):
            x = x.double().div_(255)
            total += x.sum(dim=(0, 2, 3))
            squares += x.pow(2).sum(dim=(0, 2, 3))
        n = self.images.numel() // self.channels
        mean = total / n
        std = ((squares - n * mean.pow(2)) / (n - 1)).clamp_min(0).sqrt().clamp_min(1e-3)
        return mean.tolist(), std.tolist()


class SealedSplitError(RuntimeError):
    """Something tried to read the images or labels of a test split outside a final run."""


class SealedSplit:
    """The test split of a run that is not scored on test (a search trial): its size is known, its images and
    labels are not; reading them raises SealedSplitError. Resizing is recorded, never done, and memory sizes
    are those of the split it stands for, so a search trial prepares its data exactly as its final run does."""

    def __init__(self, inner: Split | FileSplit) -> None:
        self._inner = inner

    def __len__(self) -> int:
        return len(self._inner)

    @property
    def in_memory(self) -> bool:
        return self._inner.in_memory

    @property
    def channels(self) -> int:
        return self._inner.channels

    @property
    def image_size(self) -> int:
        return self._inner.image_size

    def resized(self, size: int, resize_size: int = 0) -> "SealedSplit":
        return self

    def resize_bytes(self, size: int) -> int:
        return self._inner.resize_bytes(size)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy and pickle protocols look for these
            raise AttributeError(name)
        raise SealedSplitError(f"the test split is sealed: only a final run (evaluate_test) reads its images or "
                               f"labels (asked for '{name}')")


AnySplit = Union[Split, FileSplit, SealedSplit]


@dataclass(frozen=True)
class DatasetBundle:
    """Train / validation / test splits with what a model needs to know about them; `task` names what is
    predicted (harness.tasks: head, loss, metrics) and `metric` the headline metric its literature reports."""

    name: str
    train: AnySplit
    val: AnySplit
    test: AnySplit
    class_names: tuple[str, ...]
    flip: bool = True
    metric: str = "accuracy"
    description: str = ""
    task: str = "classification"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.train.channels

    @property
    def image_size(self) -> int:
        return self.train.image_size

    @property
    def in_memory(self) -> bool:
        return all(s.in_memory for s in (self.train, self.val, self.test))

    def stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images in [0, 1] (for normalisation)."""
        return self.train.pixel_stats()

    def resize_bytes(self, size: int) -> int:
        """Memory an eager resize of every split to `size` would allocate (0 for file-backed splits)."""
        return sum(s.resize_bytes(size) for s in (self.train, self.val, self.test))

    def summary(self) -> dict[str, object]:
        """Facts recorded with every run; `metric` is the headline metric the dataset's literature reports."""
        return {"dataset": self.name, "num_classes": self.num_classes, "channels": self.channels,
                "image_size": self.image_size, "train": len(self.train), "val": len(self.val),
                "test": len(self.test), "metric": self.metric,
                "storage": "memory" if self.in_memory else "files", "class_names": list(self.class_names)}
