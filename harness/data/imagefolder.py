"""Load a user's ImageFolder tree (torchvision's layout) into an in-memory DatasetBundle; the ImageFolder of chosen
class folders that the catalogue's ImageNet subset reads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision import datasets as tvd
from torchvision.transforms import v2

from harness.data.bundle import DatasetBundle, Split

from harness.data.splits import bundle_from_arrays, carve
from harness.core.errors import ConfigError

SPLIT_NAMES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


def _read(root: Path, size: int, spec: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    if not root.is_dir():
        raise ConfigError(f"dataset '{spec}': no such folder: {root}")
    transform = v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    try:
        ds = tvd.ImageFolder(str(root), transform=transform)
    except (FileNotFoundError, RuntimeError) as e:
        raise ConfigError(f"dataset '{spec}': {root} holds no images in class sub-folders ({e})") from None
    if len(ds.classes) < 2:
        raise ConfigError(f"dataset '{spec}': {root} has {len(ds.classes)} class folder(s); at least 2 are needed")
    images, labels = [], []
    for path, label in ds.samples:
        try:
            images.append(transform(ds.loader(path)))
        except OSError as e:
            raise ConfigError(f"dataset '{spec}': cannot read image {path}: {e}") from None
        labels.append(label)
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), list(ds.classes)


def _find(root: Path, split: str) -> Path | None:
    return next((root / n for n in SPLIT_NAMES[split] if (root / n).is_dir()), None)


def load_image_folder(path: str, size: int = 32, split_seed: int = 0) -> DatasetBundle:
    """With train/ (and optionally val/, test/) sub-folders use them, carving what is missing from train;
    otherwise split the one tree 70/15/15, stratified and deterministic."""
    root = Path(path).expanduser()
    spec = f"folder:{path}"
    train_dir = _find(root, "train")
    if train_dir is None:
        images, labels, classes = _read(root, size, spec)
        return bundle_from_arrays(spec, images, labels, tuple(classes), split_seed, val=0.15, test=0.15,
                                  description=f"ImageFolder {root}")
    images, labels, classes = _read(train_dir, size, spec)
    parts: dict[str, Split] = {}
    for split in ("val", "test"):
        d = _find(root, split)
        if d is None:
            continue
        x, y, names = _read(d, size, spec)
        if names != classes:
            raise ConfigError(f"dataset '{spec}': classes of {d} ({', '.join(names)}) differ from {train_dir} "
                              f"({', '.join(classes)})")
        parts[split] = Split(x, y)
    train = Split(images, labels)
    for split in ("val", "test"):
        if split not in parts:
            keep, carved = carve(train.labels.numpy(), 0.15, split_seed, spec)
            parts[split] = train.take(carved)
            train = train.take(keep)
    return DatasetBundle(spec, train, parts["val"], parts["test"], tuple(classes),
                         description=f"ImageFolder {root}")


class ChosenClassFolder(tvd.ImageFolder):
    """torchvision's ImageFolder restricted to the chosen class folders (the others are never scanned)."""

    def __init__(self, root: str, chosen: Sequence[str]) -> None:
        self.chosen = list(chosen)
        super().__init__(root)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        return self.chosen, {c: i for i, c in enumerate(self.chosen)}
