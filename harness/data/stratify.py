"""Per-class sizes of a stratified train/validation/test split, from the class sizes alone: the arithmetic of
scikit-learn's `train_test_split(..., stratify=labels, random_state=seed)` as `harness.data.splits.stratified_splits`
calls it, without scikit-learn or the images, so the pre-flight knows a split's class counts at no cost
(tests/test_data_facts.py checks them against the loaded splits)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Labelled:
    """A labelled set as `bundle_from_arrays` receives it, before it is split: class names, images per class
    (in label order) and the validation and test fractions it is split by."""

    class_names: tuple[str, ...]
    counts: tuple[int, ...]
    val: float = 0.2
    test: float = 0.2

    def train_counts(self, split_seed: int) -> tuple[int, ...] | None:
        """Training images per class for a split seed; None where the split would be refused."""
        return train_counts(self.counts, self.val, self.test, split_seed)


def approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Images per class in a stratified draw of `draws` of them, ties broken by `rng` (scikit-learn's
    `sklearn.utils.extmath._approximate_mode`, step for step, so the random stream is the same)."""
    continuous = counts / counts.sum() * draws
    floored = np.floor(continuous)
    need_to_add = int(draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def kept_counts(counts: np.ndarray, test_size: float, seed: int) -> np.ndarray | None:
    """Per class, the images `train_test_split(idx, test_size=test_size, stratify=labels, random_state=seed)`
    keeps on its train side; None where it would refuse (a class of fewer than 2, fewer images than classes on
    either side)."""
    if not 0 < test_size < 1:
        return None
    n_test = math.ceil(test_size * int(counts.sum()))
    n_train = int(counts.sum()) - n_test
    if counts.min() < 2 or min(n_train, n_test) < len(counts):
        return None
    return approximate_mode(counts, n_train, np.random.RandomState(seed))


def train_counts(counts: Sequence[int], val: float, test: float, seed: int) -> tuple[int, ...] | None:
    """Per class, the training split of `stratified_splits(labels, val, test, seed)` for labels 0..k-1 with these
    counts: test is split off first, then validation from the rest; None where either split would be refused."""
    rest = kept_counts(np.asarray(counts, dtype=np.int64), test, seed)
    train = None if rest is None else kept_counts(rest, val / (1 - test), seed)
    return None if train is None else tuple(int(c) for c in train)
