"""What a network's inputs must look like: side length, resize before the crop, per-channel normalisation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preprocessing:
    """What the inputs must look like for these weights: side length and per-channel normalisation."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    resize_size: int = 0  # shorter side before the centre crop to image_size (0: image_size / 0.875)
