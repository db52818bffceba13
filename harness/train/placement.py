"""Where a run's data lives: in-memory splits on the GPU as uint8 for the whole run when they fit (augmentation
and normalisation already run there, in harness.data.augment), file-backed splits decoded by loader workers into
pinned memory. On the CPU nothing moves."""

from __future__ import annotations

import torch

from harness.data.bundle import AnySplit, Split

DEVICE_DATA_FRACTION = 0.25  # at most this share of a GPU's memory holds a run's images; the rest is the network's
SYNC_EVERY = {"cuda": 32}  # training steps between reads of the divergence flag, by device type (CPUs: every step)


def device_memory(device: torch.device) -> int:
    """Bytes of memory of a GPU (0 for the CPU: nothing is moved there)."""
    if device.type != "cuda":
        return 0
    return int(torch.cuda.get_device_properties(device).total_memory)


def split_bytes(splits: dict[str, AnySplit]) -> int:
    """Bytes of the in-memory images of `splits` (file-backed and sealed splits hold none)."""
    return sum(s.images.numel() * s.images.element_size() for s in splits.values() if isinstance(s, Split))


def keeps_on_device(nbytes: int, device_bytes: int, fraction: float = DEVICE_DATA_FRACTION) -> bool:
    """Whether `nbytes` of images go to a device of `device_bytes` for the whole run: only to a GPU, and only
    when they take at most `fraction` of it."""
    return device_bytes > 0 and nbytes <= fraction * device_bytes


def place_splits(splits: dict[str, AnySplit], device: torch.device, device_bytes: int | None = None
                 ) -> dict[str, AnySplit]:
    """The in-memory splits with their uint8 images moved to `device` when `keeps_on_device` says so; labels
    stay on the CPU (metrics, shards and few-shot draws read them there). Others are returned as they are."""
    total = device_memory(device) if device_bytes is None else device_bytes
    if not keeps_on_device(split_bytes(splits), total):
        return splits
    return {k: Split(s.images.to(device), s.labels) if isinstance(s, Split) else s for k, s in splits.items()}


def sync_every(device: torch.device) -> int:
    """How many training steps run between reads of the loss's divergence flag on `device`: a read waits for
    the GPU to finish, so on a GPU it happens every SYNC_EVERY steps; on the CPU it costs nothing (every step)."""
    return SYNC_EVERY.get(device.type, 1)
