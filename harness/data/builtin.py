"""Datasets the harness builds itself, offline: scikit-learn's digits, generated shapes, a user's image folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.data.registry import DATASETS

if TYPE_CHECKING:
    from harness.data.bundle import DatasetBundle


@DATASETS.register("digits")
def digits(split_seed: int = 0) -> DatasetBundle:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images) upscaled to 32x32 grayscale, 10 classes."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    from harness.data.splits import bundle_from_arrays

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.as_tensor(d.target, dtype=torch.long)
    return bundle_from_arrays("digits", images, labels, tuple(str(i) for i in range(10)), split_seed, flip=False,
                              description="sklearn digits, 32x32 grayscale")


@DATASETS.register("shapes")
def shapes(split_seed: int = 0, per_class: int = 200, size: int = 32, seed: int = 0) -> DatasetBundle:
    """Procedurally generated geometric shapes on textured backgrounds (the offline source domain)."""
    import torch

    from harness.data.shapes import SHAPE_CLASSES, generate_shapes
    from harness.data.splits import bundle_from_arrays

    images, labels = generate_shapes(per_class=per_class, size=size, seed=seed)
    return bundle_from_arrays("shapes", torch.from_numpy(images), torch.from_numpy(labels).long(),
                              tuple(SHAPE_CLASSES), split_seed, val=0.15, test=0.15, flip=True,
                              description=f"{per_class} per class, {size}x{size} RGB")


@DATASETS.register("folder")
def folder(path: str, split_seed: int = 0, size: int = 32) -> DatasetBundle:
    """A user's ImageFolder tree: with train/ val/ test/ sub-folders, or one folder split 70/15/15."""
    from harness.data.imagefolder import load_image_folder

    return load_image_folder(path, size=size, split_seed=split_seed)
