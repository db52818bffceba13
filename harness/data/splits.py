"""Deterministic splits: stratified train/val/test, validation carved from train, class subsets, few-shot subsets."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from harness.core.errors import ConfigError
from harness.data.bundle import AnySplit, DatasetBundle, Split

def stratified_splits(labels: np.ndarray, val: float, test: float, seed: int) -> tuple[np.ndarray, ...]:
    """Indices of train / val / test, stratified by label and deterministic for a seed."""
    idx = np.arange(len(labels))
    try:
        rest, test_idx = train_test_split(idx, test_size=test, stratify=labels, random_state=seed)
        train_idx, val_idx = train_test_split(rest, test_size=val / (1 - test), stratify=labels[rest],
                                              random_state=seed)
    except ValueError as e:
        raise ConfigError(f"cannot split {len(labels)} images of {len(np.unique(labels))} classes "
                          f"into train/val/test stratified by class: {e}") from None
    return np.sort(train_idx), np.sort(val_idx), np.sort(test_idx)


def carve(labels: np.ndarray, fraction: float, seed: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (keep, carved) indices, deterministic for a seed: a validation split carved from train."""
    idx = np.arange(len(labels))
    classes = len(np.unique(labels))
    size = max(classes, math.ceil(fraction * len(labels)))  # at least one image of every class (tiny datasets)
    try:
        keep, carved = train_test_split(idx, test_size=size, stratify=labels, random_state=seed)
    except ValueError as e:
        raise ConfigError(f"dataset '{where}': too few images per class to carve a split: {e}") from None
    return np.sort(keep), np.sort(carved)


def _split(images: torch.Tensor, labels: torch.Tensor, idx: np.ndarray) -> Split:
    t = torch.as_tensor(idx, dtype=torch.long)
    return Split(images[t].contiguous(), labels[t].contiguous())


def bundle_from_arrays(name: str, images: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...],
                       split_seed: int, val: float = 0.2, test: float = 0.2, **kw: object) -> DatasetBundle:
    """Split one labelled tensor set into a bundle, stratified and deterministic."""
    tr, va, te = stratified_splits(labels.numpy(), val, test, split_seed)
    return DatasetBundle(name, _split(images, labels, tr), _split(images, labels, va), _split(images, labels, te),
                         class_names, **kw)



def parse_classes(arg: str, class_names: tuple[str, ...]) -> list[int]:
    """Class indices from `0-4`, `1,3,5`, `2-4,7` or class names such as `circle,star`."""
    chosen: list[int] = []
    for part in filter(None, arg.split(",")):
        if part in class_names:
            chosen.append(class_names.index(part))
            continue
        lo, dash, hi = part.partition("-")
        try:
            rng = range(int(lo), int(hi) + 1) if dash else [int(part)]
        except ValueError:
            raise ConfigError(f"class subset '{arg}': '{part}' is neither a class name nor an index range; "
                              f"classes: {', '.join(class_names)}") from None
        for i in rng:
            if not 0 <= i < len(class_names):
                raise ConfigError(f"class subset '{arg}': index {i} out of range 0-{len(class_names) - 1}")
            chosen.append(i)
    if len(set(chosen)) < 2:
        raise ConfigError(f"class subset '{arg}': needs at least 2 distinct classes")
    return list(dict.fromkeys(chosen))


def class_subset(bundle: DatasetBundle, arg: str) -> DatasetBundle:
    """Keep only the chosen classes in every split, re-indexing labels 0..k-1 in the order given."""
    chosen = parse_classes(arg, bundle.class_names)
    lookup = torch.full((bundle.num_classes,), -1, dtype=torch.long)
    lookup[torch.tensor(chosen)] = torch.arange(len(chosen))

    def keep(s: AnySplit) -> AnySplit:
        new = lookup[s.labels]
        mask = new >= 0
        return s.take(torch.nonzero(mask).flatten().numpy(), new[mask])

    return replace(bundle, train=keep(bundle.train), val=keep(bundle.val), test=keep(bundle.test),
                   class_names=tuple(bundle.class_names[i] for i in chosen))


def few_shot(bundle: DatasetBundle, samples_per_class: int, seed: int, val_per_class: int = 0) -> DatasetBundle:
    """A stratified, seed-deterministic few-shot draw: `samples_per_class` training images per class and
    `val_per_class` validation images per class (0: as many as training, -1: the whole validation split), so
    that hyperparameters are tuned on as little labelled data as the target offers. Test is untouched."""
    smallest = smallest_class(bundle.train, bundle.num_classes)
    if samples_per_class > smallest[1]:
        raise ConfigError(f"samples_per_class={samples_per_class}: dataset '{bundle.name}' has {smallest[1]} training "
                          f"images in its smallest class ('{bundle.class_names[smallest[0]]}'); allowed 0-"
                          f"{smallest[1]} (0: all)")
    rng = np.random.default_rng(seed)
    train = _per_class(bundle.train, bundle.num_classes, samples_per_class, rng)
    k = samples_per_class if val_per_class == 0 else val_per_class
    val = bundle.val if k < 0 else _per_class(bundle.val, bundle.num_classes, k, rng)
    return replace(bundle, train=train, val=val)


def smallest_class(split: AnySplit, num_classes: int) -> tuple[int, int]:
    """(class index, image count) of the class with the fewest images in `split`."""
    counts = np.bincount(split.labels.numpy(), minlength=num_classes)
    return int(counts.argmin()), int(counts.min())


def _per_class(split: AnySplit, num_classes: int, k: int, rng: np.random.Generator) -> AnySplit:
    """Up to `k` images of every class of `split`, drawn by `rng`, in their original order."""
    labels = split.labels.numpy()
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c in range(num_classes)]
    return split.take(np.sort(np.concatenate(picked)))


def resize(bundle: DatasetBundle, size: int, resize_size: int = 0) -> DatasetBundle:
    """Every split resized to size x size: in memory at once (bilinear with antialiasing), or for
    file-backed splits from then on at decoding (shorter side to `resize_size`, then a centre crop)."""
    return replace(bundle, train=bundle.train.resized(size, resize_size), val=bundle.val.resized(size, resize_size),
                   test=bundle.test.resized(size, resize_size))
