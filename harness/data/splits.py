"""Deterministic splits: stratified train/val/test, validation carved from train, class subsets, few-shot subsets."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from harness.core.errors import ConfigError
from harness.data.bundle import AnySplit, DatasetBundle, Split
from harness.data.classes import check_few_shot_size


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



def class_subset(bundle: DatasetBundle, chosen: Sequence[int]) -> DatasetBundle:
    """Keep only the chosen classes (indices, see harness.data.classes.subset_classes) in every split,
    re-indexing labels 0..k-1 in the order given."""
    lookup = torch.full((bundle.num_classes,), -1, dtype=torch.long)
    lookup[torch.tensor(list(chosen))] = torch.arange(len(chosen))

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
    counts = np.bincount(bundle.train.labels.numpy(), minlength=bundle.num_classes)
    check_few_shot_size(bundle.name, bundle.class_names, counts, samples_per_class)
    rng = np.random.default_rng(seed)
    train = _per_class(bundle.train, bundle.num_classes, samples_per_class, rng)
    k = samples_per_class if val_per_class == 0 else val_per_class
    val = bundle.val if k < 0 else _per_class(bundle.val, bundle.num_classes, k, rng)
    return replace(bundle, train=train, val=val)


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
