"""File-backed splits: images stay on disk and are decoded on demand, in DataLoader worker processes.

Large datasets of variable-size photographs (Food-101, Cars, Flowers, ImageNet, ...) cannot be decoded
into memory at once. A `FileSplit` holds only references into torchvision datasets (which return a PIL
image for an index) and the labels; each image is decoded, converted to RGB, resized (shorter side) and
centre-cropped to a square when a batch asks for it. It offers the same interface as the in-memory
`harness.data.bundle.Split` (len, labels, take, concat, resized, dataset, batches, pixel_stats), so the
engine has one code path for both.

With `decode_device` set (`decode_on_device: true`) the workers read the JPEG files' bytes only, and each batch
is decoded, resized and cropped on the run's device by torchvision.io.decode_jpeg (nvJPEG on a GPU), for the
datasets whose torchvision class lists its files (ImageFolder trees and most photo collections).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.io import ImageReadMode, decode_jpeg, read_file
from torchvision.transforms.v2 import functional as TF

WORKERS_ENV = "HARNESS_LOADER_WORKERS"
CROP_FRACTION = 0.875  # the classic 224 / 256: shorter side resized to size / 0.875, then a centre crop
STATS_SAMPLE = 256


def loader_workers() -> int:
    """DataLoader worker processes for decoding: `HARNESS_LOADER_WORKERS`, else this process's torch
    threads (a Ray trial's cpus_per_trial), at most 8."""
    value = os.environ.get(WORKERS_ENV)
    if value is not None and value.strip().isdigit():
        return int(value)
    return min(8, max(1, torch.get_num_threads()))


def decode(image: Any, size: int, resize_size: int) -> torch.Tensor:
    """A PIL image (or uint8 tensor) -> uint8 3 x size x size: RGB, shorter side resized, centre crop."""
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
    elif isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    image = TF.resize(image, [resize_size], antialias=True)
    image = TF.center_crop(image, [size, size])
    return TF.pil_to_tensor(image) if isinstance(image, Image.Image) else image.contiguous()


def image_path(source: Dataset, index: int) -> str | None:
    """The file of item `index` of a torchvision dataset, where the dataset lists its files (None elsewhere)."""
    for name in ("samples", "_samples"):
        items = getattr(source, name, None)
        if isinstance(items, list):
            return str(items[index][0])
    for name in ("_image_files", "_images"):
        items = getattr(source, name, None)
        if isinstance(items, list):
            return str(items[index])
    return None


def decode_batch(data: list[torch.Tensor], size: int, resize_size: int, device: torch.device) -> torch.Tensor:
    """JPEG files' bytes -> uint8 B x 3 x size x size on `device`: decoded there, RGB, shorter side resized,
    centre crop (as `decode` does for one PIL image)."""
    images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    return torch.stack([TF.center_crop(TF.resize(im, [resize_size], antialias=True), [size, size]) for im in images])


def collate_encoded(batch: list[tuple[torch.Tensor, int]]) -> tuple[list[torch.Tensor], torch.Tensor]:
    return [data for data, _ in batch], torch.tensor([label for _, label in batch], dtype=torch.long)


class EncodedImages(Dataset):
    """The torch Dataset of a FileSplit decoded on the device: (the file's bytes, label) per index."""

    def __init__(self, split: "FileSplit") -> None:
        self.paths = [image_path(split.sources[s], int(i)) for s, i in split.refs]
        self.labels = split.labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return read_file(self.paths[i]), self.labels[i]


class DeviceDecoding:
    """A DataLoader of EncodedImages whose batches come out decoded on `device` (same order, same draws)."""

    def __init__(self, loader: DataLoader, split: "FileSplit") -> None:
        self.loader, self.split = loader, split
        self.sampler, self.generator = loader.sampler, loader.generator

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        s = self.split
        for data, labels in self.loader:
            yield decode_batch(data, s.size, s.effective_resize, torch.device(s.decode_device)), labels


class DecodedImages(Dataset):
    """The torch Dataset of a FileSplit: (uint8 3 x size x size tensor, label) per index."""

    def __init__(self, split: "FileSplit") -> None:
        self.sources, self.refs = split.sources, split.refs
        self.labels = split.labels.tolist()
        self.size, self.resize_size = split.size, split.effective_resize

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        source, index = self.refs[i]
        image = self.sources[source][int(index)][0]
        return decode(image, self.size, self.resize_size), self.labels[i]


@dataclass(frozen=True, eq=False)
class FileSplit:
    """Images left on disk: `refs[i] = (source number, index in that torchvision dataset)`, harness labels."""

    sources: tuple[Dataset, ...]
    refs: np.ndarray
    labels: torch.Tensor
    size: int = 224
    resize_size: int = 0
    decode_device: str = ""  # where batches are decoded from the files' bytes ("": by PIL, in loader workers)
    in_memory: ClassVar[bool] = False

    @classmethod
    def of(cls, source: Dataset, labels: Sequence[int], size: int, order: np.ndarray | None = None) -> "FileSplit":
        """Every item of one torchvision dataset (in `order` when given) with its labels."""
        index = np.arange(len(labels)) if order is None else np.asarray(order)
        refs = np.stack([np.zeros(len(index), dtype=np.int64), index.astype(np.int64)], axis=1)
        return cls((source,), refs, torch.as_tensor(np.asarray(labels)[index], dtype=torch.long), size)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return 3

    @property
    def image_size(self) -> int:
        return self.size

    @property
    def effective_resize(self) -> int:
        return self.resize_size or max(self.size, round(self.size / CROP_FRACTION))

    def take(self, idx: np.ndarray, labels: torch.Tensor | None = None) -> "FileSplit":
        """The items at `idx` (optionally relabelled)."""
        idx = np.asarray(idx, dtype=np.int64)
        new = self.labels[torch.as_tensor(idx)] if labels is None else labels
        return replace(self, refs=self.refs[idx], labels=new.contiguous())

    def concat(self, other: "FileSplit") -> "FileSplit":
        """This split followed by `other` (e.g. train + validation for a final run)."""
        if not isinstance(other, FileSplit):
            raise TypeError("a file-backed split can only be joined with another file-backed split")
        sources = list(self.sources)
        refs = other.refs.copy()
        for k, source in enumerate(other.sources):
            at = next((n for n, s in enumerate(sources) if s is source), None)
            if at is None:
                sources.append(source)
                at = len(sources) - 1
            refs[other.refs[:, 0] == k, 0] = at
        return replace(self, sources=tuple(sources), refs=np.concatenate([self.refs, refs]),
                       labels=torch.cat([self.labels, other.labels]))

    def resized(self, size: int, resize_size: int = 0) -> "FileSplit":
        """Decode at `size` x `size` from now on (nothing is decoded here)."""
        return replace(self, size=size, resize_size=resize_size)

    def resize_bytes(self, size: int) -> int:
        return 0

    def decoding_on(self, device: torch.device) -> "FileSplit":
        """This split decoded batch by batch on `device` (where every source lists its files; else as it is)."""
        if any(image_path(s, 0) is None for s in self.sources):
            return self
        return replace(self, decode_device=str(device))

    def dataset(self) -> Dataset:
        return EncodedImages(self) if self.decode_device else DecodedImages(self)

    def loader_kwargs(self) -> dict[str, Any]:
        """Options for a DataLoader over `dataset()`: decoding (or reading, when decoded on the device) happens
        in persistent worker processes, into pinned memory where a GPU is present."""
        workers = loader_workers()
        return {"num_workers": workers, "persistent_workers": workers > 0, "pin_memory": torch.cuda.is_available(),
                **({"collate_fn": collate_encoded} if self.decode_device else {})}

    def wrap_loader(self, loader: DataLoader) -> DataLoader | DeviceDecoding:
        """A DataLoader over `dataset()` as the loop takes it: decoding its batches on the device if asked."""
        return DeviceDecoding(loader, self) if self.decode_device else loader

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The decoded images in order, `batch_size` at a time."""
        kw = self.loader_kwargs()
        kw["persistent_workers"] = False
        for x, _ in self.wrap_loader(DataLoader(self.dataset(), batch_size=batch_size, shuffle=False, **kw)):
            yield x

    @functools.cached_property
    def _stats(self) -> tuple[list[float], list[float]]:
        n = len(self)
        pick = np.sort(np.random.default_rng(0).permutation(n)[:STATS_SAMPLE])
        total = torch.zeros(3, dtype=torch.float64)
        squares = torch.zeros(3, dtype=torch.float64)
        count = 0
        kw = {**self.loader_kwargs(), "persistent_workers": False}
        for x, _ in DataLoader(Subset(self.dataset(), pick.tolist()), batch_size=64, **kw):
            x = x.double().div_(255)
            total += x.sum(dim=(0, 2, 3))
            squares += x.pow(2).sum(dim=(0, 2, 3))
            count += x.shape[0] * x.shape[2] * x.shape[3]
        mean = total / max(count, 1)
        std = (squares / max(count, 1) - mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-3)
        return mean.tolist(), std.tolist()

    def pixel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std in [0, 1] over a fixed sample of up to 256 decoded images."""
        return self._stats
