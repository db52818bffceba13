"""Datasets the harness builds itself, offline: scikit-learn's digits, generated shapes, a user's image folder.

Digits and shapes also declare what they hold before their split (`labelled`: a `Labelled` from their options),
from which the pre-flight computes their splits' class counts without building them (harness.data.facts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.data.registry import DATASETS
from harness.data.stratify import Labelled

if TYPE_CHECKING:
    from harness.data.bundle import DatasetBundle

# scikit-learn's digits: images per digit 0-9 (tests/test_data_facts.py checks them against its data file)
DIGITS = Labelled(tuple(str(i) for i in range(10)), (178, 182, 177, 183, 181, 182, 181, 179, 174, 180))


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
    return bundle_from_arrays("digits", images, labels, DIGITS.class_names, split_seed, DIGITS.val, DIGITS.test,
                              flip=False, description="sklearn digits, 32x32 grayscale")


def shapes_labelled(per_class: int, size: int, seed: int) -> Labelled:
    """What `shapes` holds before its split: `per_class` images of every shape, split 70/15/15."""
    from harness.data.shapes import SHAPE_CLASSES, check_shapes_args

    check_shapes_args(per_class, size)
    return Labelled(SHAPE_CLASSES, (per_class,) * len(SHAPE_CLASSES), val=0.15, test=0.15)


@DATASETS.register("shapes")
def shapes(split_seed: int = 0, per_class: int = 200, size: int = 32, seed: int = 0) -> DatasetBundle:
    """Procedurally generated geometric shapes on textured backgrounds (the offline source domain)."""
    import torch

    from harness.data.shapes import generate_shapes
    from harness.data.splits import bundle_from_arrays

    declared = shapes_labelled(per_class, size, seed)
    images, labels = generate_shapes(per_class=per_class, size=size, seed=seed)
    return bundle_from_arrays("shapes", torch.from_numpy(images), torch.from_numpy(labels).long(),
                              declared.class_names, split_seed, val=declared.val, test=declared.test, flip=True,
                              description=f"{per_class} per class, {size}x{size} RGB")


digits.labelled = lambda: DIGITS
shapes.labelled = shapes_labelled


@DATASETS.register("folder")
def folder(path: str, split_seed: int = 0, size: int = 32) -> DatasetBundle:
    """A user's ImageFolder tree: with train/ val/ test/ sub-folders, or one folder split 70/15/15."""
    from harness.data.imagefolder import load_image_folder

    return load_image_folder(path, size=size, split_seed=split_seed)
