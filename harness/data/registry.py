"""Dataset registry: offline datasets as in-memory uint8 tensors with deterministic splits and few-shot subsets.

A dataset is named by a spec string `name[:arg][?key=value&...]`: `digits`, `digits:5-9` (a class
subset, labels re-indexed), `shapes?per_class=100&size=48`, `folder:/data/flowers`, `cifar100?protocol=vtab1k`.
Small datasets are `Split`s of in-memory uint8 tensors; large photo collections (harness.data.catalog) are
`FileSplit`s decoded on demand (harness.data.files). Both offer the same interface, used by the engine.
"""


from __future__ import annotations

import functools
import inspect
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from harness.core.errors import ConfigError
from harness.core.registry import Registry
from harness.data.classes import check_few_shot_task, subset_classes
from harness.data.root import data_root

if TYPE_CHECKING:
    from harness.data.bundle import DatasetBundle

DATASETS: Registry[Callable[..., DatasetBundle]] = Registry("dataset")
PATH_DATASETS = {"folder", "coco"}


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


def dataset_options(name: str) -> dict[str, Any]:
    """The options a dataset's spec may set (`?key=value`) with their defaults, in the order `harness list` shows
    them: what its factory declares as `defaults` (a catalogue entry), else the factory's keyword parameters."""
    factory = DATASETS.get(name)
    declared = getattr(factory, "defaults", None)
    if declared is not None:
        return dict(declared)
    params = inspect.signature(factory).parameters
    return {key: p.default for key, p in params.items() if key not in INTERNAL_PARAMS}


def spec_options(spec: str) -> dict[str, object]:
    """The options of a dataset spec, each known to its dataset and parsed to its default's type, and the path
    of a path dataset: everything about a spec that can be checked without reading any data."""
    name, arg, options = parse_spec(spec)
    defaults = dataset_options(name)
    kwargs: dict[str, object] = {}
    for key, value in options.items():
        if key not in defaults:
            raise ConfigError(f"dataset '{spec}': unknown option '{key}'; allowed: {', '.join(defaults) or 'none'}")
        try:
            kwargs[key] = type(defaults[key])(value)
        except ValueError:
            raise ConfigError(f"dataset '{spec}': option {key}={value!r} must be "
                              f"{type(defaults[key]).__name__}") from None
    check = getattr(DATASETS.get(name), "check_options", None)
    if check is not None:
        check(kwargs)
    if name in PATH_DATASETS:
        if not arg:
            raise ConfigError(f"dataset '{spec}': needs a path, e.g. folder:/data/my_images")
        kwargs["path"] = arg
    return kwargs


def _call_with_options(spec: str, name: str, split_seed: int, root: str) -> DatasetBundle:
    """The dataset's factory called with the spec's options."""
    factory = DATASETS.get(name)
    kwargs: dict[str, object] = {"split_seed": split_seed, **spec_options(spec)}
    if "root" in inspect.signature(factory).parameters:
        kwargs["root"] = root
    return factory(**kwargs)


@functools.lru_cache(maxsize=8)
def _base(spec: str, split_seed: int, root: str) -> DatasetBundle:
    from harness.data.splits import class_subset

    name, arg, _ = parse_spec(spec)
    bundle = _call_with_options(spec, name, split_seed, root)
    if name not in PATH_DATASETS and arg is not None:
        bundle = class_subset(bundle, subset_classes(spec, arg, bundle.task, bundle.class_names))
    return replace(bundle, name=spec)


def load_dataset(spec: str, samples_per_class: int = 0, seed: int = 0, split_seed: int = 0,
                 image_size: int = 0, resize_size: int = 0, val_per_class: int = 0) -> DatasetBundle:
    """The bundle for a spec string, optionally resized and with a few-shot subset (drawn by `seed`).

    `resize_size` is the shorter side file-backed images are resized to before the centre crop to
    `image_size` (0: image_size / 0.875); in-memory images are resized straight to image_size."""
    return derive(_base(spec, split_seed, str(data_root())), samples_per_class, seed, image_size, resize_size,
                  val_per_class)


def derive(bundle: DatasetBundle, samples_per_class: int = 0, seed: int = 0, image_size: int = 0,
           resize_size: int = 0, val_per_class: int = 0) -> DatasetBundle:
    """A loaded bundle with a few-shot subset of training and validation drawn by `seed` (see `few_shot`),
    then resized to `image_size` (see load_dataset); nothing is loaded again."""
    from harness.data.splits import few_shot, resize

    if samples_per_class:
        check_few_shot_task(bundle.name, bundle.task, samples_per_class)
        bundle = few_shot(bundle, samples_per_class, seed, val_per_class)
    if image_size and (image_size != bundle.image_size or not bundle.in_memory):
        bundle = resize(bundle, image_size, resize_size)
    return bundle


def headline_metric(spec: str) -> str:
    """The metric a dataset's literature reports (what the leaderboard ranks by), known without loading it."""
    name, _, options = parse_spec(spec)
    factory = DATASETS.get(name)
    return factory.headline(options) if hasattr(factory, "headline") else "accuracy"


def dataset_task(spec: str) -> str:
    """The task a dataset names (what its images are labelled with), known without loading it."""
    return getattr(DATASETS.get(parse_spec(spec)[0]), "task", "classification")
