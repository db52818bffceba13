"""Dataset registry: offline datasets as in-memory uint8 tensors with deterministic splits and few-shot subsets.

A dataset is named by a spec string `name[:arg][?key=value&...]`: `digits`, `digits:5-9` (a class
subset, labels re-indexed), `shapes?per_class=100&size=48`, `folder:/data/flowers`, `cifar100?protocol=vtab1k`.
Small datasets are `Split`s of in-memory uint8 tensors; large photo collections (harness.catalog) are
`FileSplit`s decoded on demand (harness.lazy). Both offer the same interface, used by the engine.
"""

from __future__ import annotations

import functools
import math
import inspect
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Iterator, Union

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, TensorDataset

from harness.dataroot import data_root
from harness.errors import ConfigError
from harness.lazy import FileSplit
from harness.registry import Registry

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


AnySplit = Union[Split, FileSplit]


@dataclass(frozen=True)
class DatasetBundle:
    """Train / validation / test splits with what a model needs to know about them."""

    name: str
    train: AnySplit
    val: AnySplit
    test: AnySplit
    class_names: tuple[str, ...]
    flip: bool = True
    metric: str = "accuracy"
    description: str = ""

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
                "storage": "memory" if self.in_memory else "files"}


DATASETS: Registry[Callable[..., DatasetBundle]] = Registry("dataset")
PATH_DATASETS = {"folder"}


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


@DATASETS.register("digits")
def digits(split_seed: int = 0) -> DatasetBundle:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images) upscaled to 32x32 grayscale, 10 classes."""
    from sklearn.datasets import load_digits

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
    from harness.shapes import SHAPE_CLASSES, generate_shapes

    images, labels = generate_shapes(per_class=per_class, size=size, seed=seed)
    return bundle_from_arrays("shapes", torch.from_numpy(images), torch.from_numpy(labels).long(),
                              tuple(SHAPE_CLASSES), split_seed, val=0.15, test=0.15, flip=True,
                              description=f"{per_class} per class, {size}x{size} RGB")


@DATASETS.register("folder")
def folder(path: str, split_seed: int = 0, size: int = 32) -> DatasetBundle:
    """A user's ImageFolder tree: with train/ val/ test/ sub-folders, or one folder split 70/15/15."""
    from harness.imagefolder import load_image_folder

    return load_image_folder(path, size=size, split_seed=split_seed)


def parse_spec(spec: str) -> tuple[str, str | None, dict[str, str]]:
    """Split `name[:arg][?k=v&...]` into its parts."""
    head, _, query = spec.partition("?")
    name, sep, arg = head.partition(":")
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"dataset '{spec}': option '{item}' must be key=value")
        options[key] = value
    return name, (arg if sep else None), options


INTERNAL_PARAMS = ("path", "split_seed", "root")


def _call_with_options(spec: str, factory: Callable[..., DatasetBundle], arg: str | None,
                       options: dict[str, str], split_seed: int, needs_path: bool, root: str) -> DatasetBundle:
    params = inspect.signature(factory).parameters
    allowed = [p for p in params if p not in INTERNAL_PARAMS]
    kwargs: dict[str, object] = {"split_seed": split_seed}
    if "root" in params:
        kwargs["root"] = root
    for key, value in options.items():
        if key not in allowed:
            raise ConfigError(f"dataset '{spec}': unknown option '{key}'; allowed: {', '.join(allowed) or 'none'}")
        default = params[key].default
        try:
            kwargs[key] = type(default)(value)
        except ValueError:
            raise ConfigError(f"dataset '{spec}': option {key}={value!r} must be {type(default).__name__}") from None
    if needs_path:
        if not arg:
            raise ConfigError(f"dataset '{spec}': needs a path, e.g. folder:/data/my_images")
        kwargs["path"] = arg
    return factory(**kwargs)


@functools.lru_cache(maxsize=8)
def _base(spec: str, split_seed: int, root: str) -> DatasetBundle:
    name, arg, options = parse_spec(spec)
    factory = DATASETS.get(name)
    needs_path = name in PATH_DATASETS
    bundle = _call_with_options(spec, factory, arg if needs_path else None, options, split_seed, needs_path, root)
    if not needs_path and arg is not None:
        bundle = class_subset(bundle, arg)
    return replace(bundle, name=spec)


def load_dataset(spec: str, samples_per_class: int = 0, seed: int = 0, split_seed: int = 0,
                 image_size: int = 0, resize_size: int = 0) -> DatasetBundle:
    """The bundle for a spec string, optionally resized and with a few-shot training subset.

    `resize_size` is the shorter side file-backed images are resized to before the centre crop to
    `image_size` (0: image_size / 0.875); in-memory images are resized straight to image_size."""
    bundle = _base(spec, split_seed, str(data_root()))
    if image_size and (image_size != bundle.image_size or not bundle.in_memory):
        bundle = resize(bundle, image_size, resize_size)
    if samples_per_class:
        bundle = few_shot(bundle, samples_per_class, seed)
    return bundle


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


def few_shot(bundle: DatasetBundle, samples_per_class: int, seed: int) -> DatasetBundle:
    """A stratified, seed-deterministic subset of the training split; validation and test are untouched."""
    rng = np.random.default_rng(seed)
    labels = bundle.train.labels.numpy()
    picked = [rng.permutation(np.flatnonzero(labels == c))[:samples_per_class] for c in range(bundle.num_classes)]
    idx = np.sort(np.concatenate(picked))
    return replace(bundle, train=bundle.train.take(idx))


def resize(bundle: DatasetBundle, size: int, resize_size: int = 0) -> DatasetBundle:
    """Every split resized to size x size: in memory at once (bilinear with antialiasing), or for
    file-backed splits from then on at decoding (shorter side to `resize_size`, then a centre crop)."""
    return replace(bundle, train=bundle.train.resized(size, resize_size), val=bundle.val.resized(size, resize_size),
                   test=bundle.test.resized(size, resize_size))


from harness import catalog  # noqa: E402,F401  (registers the torchvision dataset catalogue)
