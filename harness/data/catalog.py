"""The dataset catalogue: torchvision's datasets with their standard splits, read from the data root.

Each dataset is one registered function that opens the real torchvision class on the files under the
data root (never downloading: `harness fetch` or `--download` does that), takes the official train /
(validation) / test splits, carves a stratified, seed-deterministic validation split from train where
the dataset has none (never from test), and records the metric its literature reports: mean per-class
accuracy (`balanced_accuracy`) for FGVC Aircraft, Oxford-IIIT Pets, Caltech-101 and Flowers-102, top-1
`accuracy` elsewhere.

MNIST-like sets, CIFAR, SVHN and STL-10 are held in memory as uint8 tensors; photo collections are
`FileSplit`s decoded on demand (harness.lazy). Every catalogue dataset takes `protocol=standard|vtab1k`:
VTAB-1k keeps 800 training and 200 validation examples (deterministic), and its final runs retrain on
all 1,000 (`final_trains_on_val`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torchvision import datasets as tvd

from harness.data.root import data_root
from harness.data.bundle import AnySplit, DatasetBundle, Split
from harness.data.registry import DATASETS, parse_spec
from harness.data.splits import carve, stratified_splits
from harness.core.errors import ConfigError
from harness.data.files import FileSplit

PROTOCOLS = ("standard", "vtab1k")
VTAB_TRAIN, VTAB_VAL = 800, 200


@dataclass(frozen=True)
class CatalogEntry:
    """What the catalogue knows about a dataset besides how to load it."""

    name: str
    files: tuple[str, ...]  # relative to the data root; every one must exist
    metric: str = "accuracy"
    fetch: Callable[[Path], Any] | None = None  # downloads with torchvision (download=True)
    manual: str = ""  # how to obtain it where torchvision cannot download it; {root} is the data root


CATALOG: dict[str, CatalogEntry] = {}


def catalogued(name: str, files: Sequence[str], metric: str = "accuracy", fetch: Callable[[Path], Any] | None = None,
               manual: str = "") -> Callable[[Callable[..., DatasetBundle]], Callable[..., DatasetBundle]]:
    """Register a loader in DATASETS and its files, metric and fetcher in CATALOG."""

    def add(factory: Callable[..., DatasetBundle]) -> Callable[..., DatasetBundle]:
        CATALOG[name] = CatalogEntry(name, tuple(files), metric, fetch, manual)
        return DATASETS.register(name)(factory)

    return add


# ---------------------------------------------------------------- files present, fetching, errors

def missing_files(name: str, root: Path | None = None) -> list[str]:
    """The entry's files that are not under the data root."""
    base = Path(root) if root else data_root()
    return [f for f in CATALOG[name].files if not (base / f).exists()]


def _remedy(entry: CatalogEntry, base: Path) -> str:
    if entry.fetch is None:
        return f"torchvision cannot download it: {entry.manual.format(root=base)}"
    return (f"fetch it with `harness fetch {entry.name} --data-root {base}` where there is internet "
            f"(or copy the files there, or point --data-root / HARNESS_DATA at a folder that has them)")


def require(name: str, root: str | Path) -> Path:
    """The data root, checked to hold every file the dataset needs; else a one-line error saying what to do."""
    base, entry = Path(root), CATALOG[name]
    missing = missing_files(name, base)
    if missing:
        shown = ", ".join(missing[:3]) + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else "")
        raise ConfigError(f"dataset '{name}' not found: {base} lacks {shown}; {_remedy(entry, base)}")
    return base


def _open(name: str, cls: type, root: Path, **kw: Any) -> Any:
    """The torchvision dataset, with its errors (corrupt or partial files) as one-line ConfigErrors."""
    try:
        return cls(str(root), **kw)
    except (RuntimeError, OSError, ValueError, KeyError, IndexError) as e:
        text = str(e).strip().splitlines()
        raise ConfigError(f"dataset '{name}': torchvision's {cls.__name__} cannot read {root} "
                          f"({text[0] if text else type(e).__name__}); "
                          f"{_remedy(CATALOG[name], data_root())}") from None


def fetch_dataset(spec: str, root: Path | None = None) -> Path:
    """Download a catalogue dataset into the data root with torchvision (needs internet); a no-op when present."""
    name = parse_spec(spec)[0]
    if name not in CATALOG:
        raise ConfigError(f"fetch: '{name}' is not a downloadable dataset; choose from: {', '.join(CATALOG)}")
    entry, base = CATALOG[name], Path(root) if root else data_root()
    if not missing_files(name, base):
        return base
    if entry.fetch is None:
        raise ConfigError(f"fetch {name}: torchvision cannot download it; {entry.manual.format(root=base)}")
    base.mkdir(parents=True, exist_ok=True)
    try:
        entry.fetch(base)
    except Exception as e:  # noqa: BLE001 - any failed download is the same user-facing problem
        text = str(e).strip().splitlines()
        raise ConfigError(f"fetch {name}: download into {base} failed ({type(e).__name__}: "
                          f"{text[0][:200] if text else ''}); no internet here?") from None
    require(name, base)
    return base


def catalogue_names(specs: Iterable[str]) -> list[str]:
    """The distinct catalogue datasets among dataset specs (built-in and folder datasets need no files)."""
    return list(dict.fromkeys(n for n in (parse_spec(s)[0] for s in specs) if n in CATALOG))


def prepare_data(specs: Iterable[str], download: bool = False) -> list[str]:
    """Check (or with `download`, fetch) every catalogue dataset among `specs`; the first missing one is an
    error. Returns the names checked."""
    names = catalogue_names(specs)
    for name in names:
        if download:
            fetch_dataset(name)
        require(name, data_root())
    return names


def data_status(specs: Iterable[str]) -> list[str]:
    """One line per catalogue dataset among `specs`: found, or missing with the command that fetches it."""
    base = data_root()
    lines = []
    for name in catalogue_names(specs):
        missing = missing_files(name, base)
        if not missing:
            lines.append(f"  data {name}: found in {base}")
        elif CATALOG[name].fetch is None:
            lines.append(f"  data {name}: MISSING in {base} ({CATALOG[name].manual.format(root=base)})")
        else:
            lines.append(f"  data {name}: MISSING in {base} (harness fetch {name} --data-root {base})")
    return lines


def final_trains_on_val(spec: str) -> bool:
    """Whether the final runs of this dataset retrain on train + validation (the VTAB-1k protocol)."""
    return parse_spec(spec)[2].get("protocol") == "vtab1k"


# ---------------------------------------------------------------- splits

def _option(name: str, key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"dataset '{name}': option {key}={value!r}: {allowed}")


def _vtab1k(name: str, pool: AnySplit, official_val: AnySplit | None, seed: int) -> tuple[AnySplit, AnySplit]:
    """800 training and 200 validation examples, a seed-deterministic random draw (not stratified, as VTAB):
    validation from the official validation split where there is one, else from train."""
    rng = np.random.default_rng(seed)
    if official_val is None:
        _option(name, "protocol", "vtab1k", len(pool) >= VTAB_TRAIN + VTAB_VAL,
                f"needs {VTAB_TRAIN + VTAB_VAL} training examples, the dataset has {len(pool)}")
        order = rng.permutation(len(pool))
        return pool.take(np.sort(order[:VTAB_TRAIN])), pool.take(np.sort(order[VTAB_TRAIN:VTAB_TRAIN + VTAB_VAL]))
    _option(name, "protocol", "vtab1k", len(pool) >= VTAB_TRAIN and len(official_val) >= VTAB_VAL,
            f"needs {VTAB_TRAIN} training and {VTAB_VAL} validation examples, the dataset has "
            f"{len(pool)} and {len(official_val)}")
    train = pool.take(np.sort(rng.permutation(len(pool))[:VTAB_TRAIN]))
    return train, official_val.take(np.sort(rng.permutation(len(official_val))[:VTAB_VAL]))


def make_bundle(name: str, train: AnySplit, test: AnySplit, class_names: Sequence[str], split_seed: int,
                protocol: str = "standard", val: float = 0.1, official_val: AnySplit | None = None,
                flip: bool = True, description: str = "") -> DatasetBundle:
    """The bundle from official splits: the official validation split, or `val` of train carved
    (stratified, seed-deterministic); under `protocol=vtab1k` 800 train + 200 validation examples."""
    _option(name, "protocol", protocol, protocol in PROTOCOLS, f"choose from: {', '.join(PROTOCOLS)}")
    _option(name, "val", val, 0 < val < 1, "must be in (0, 1)")
    if protocol == "vtab1k":
        train, val_split = _vtab1k(name, train, official_val, split_seed)
    elif official_val is not None:
        val_split = official_val
    else:
        keep, carved = carve(train.labels.numpy(), val, split_seed, name)
        train, val_split = train.take(keep), train.take(carved)
    return DatasetBundle(name, train, val_split, test, tuple(str(c) for c in class_names), flip=flip,
                         metric=CATALOG[name].metric, description=description)


def per_class_split(labels: np.ndarray, train_per_class: int, test_per_class: int,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices with a fixed number per class drawn at random (test: the rest when 0)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        train.append(idx[:train_per_class])
        test.append(idx[train_per_class:train_per_class + test_per_class] if test_per_class else idx[train_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _tensor_split(images: np.ndarray | torch.Tensor, labels: Any) -> Split:
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    return Split(x.contiguous(), torch.as_tensor(np.asarray(labels), dtype=torch.long))


def _check_size(name: str, size: int) -> None:
    _option(name, "size", size, size >= 8, "must be >= 8 (the side length images are decoded to)")


def _same_classes(name: str, parts: dict[str, Any]) -> list[str]:
    classes = {k: list(d.classes) for k, d in parts.items()}
    first = next(iter(classes.values()))
    for k, c in classes.items():
        if c != first:
            raise ConfigError(f"dataset '{name}': the {k} split has {len(c)} classes, the others {len(first)}; "
                              f"the annotation files under {data_root()} are inconsistent")
    return first


def _official_splits(name: str, dataset: type, base: Path, splits: tuple[str, ...], size: int,
                     labels: Callable[[Any], Any] = lambda d: d._labels,
                     **kw: Any) -> tuple[dict[str, FileSplit], list[str]]:
    """Each official split of a torchvision dataset as a FileSplit, and the class names they share."""
    parts = {s: _open(name, dataset, base, split=s, **kw) for s in splits}
    classes = _same_classes(name, parts)
    return {s: FileSplit.of(d, labels(d), size) for s, d in parts.items()}, classes


# ---------------------------------------------------------------- in-memory datasets

MNIST_RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _train_test(cls: type) -> Callable[[Path], Any]:
    return lambda root: [cls(str(root), train=t, download=True) for t in (True, False)]


def _mnist_like(name: str, cls: type, root: str, split_seed: int, val: float, protocol: str, flip: bool,
                description: str) -> DatasetBundle:
    base = require(name, root)
    train, test = (_open(name, cls, base, train=t) for t in (True, False))
    as_split = lambda d: _tensor_split(d.data.unsqueeze(1), d.targets)  # noqa: E731
    return make_bundle(name, as_split(train), as_split(test), train.classes, split_seed, protocol, val,
                       flip=flip, description=description)


@catalogued("mnist", [f"MNIST/raw/{f}" for f in MNIST_RAW], fetch=_train_test(tvd.MNIST))
def mnist(root: str, split_seed: int = 0, val: float = 0.1, protocol: str = "standard") -> DatasetBundle:
    """MNIST handwritten digits: 60,000 train / 10,000 test, 28x28 grayscale, 10 classes (in memory)."""
    return _mnist_like("mnist", tvd.MNIST, root, split_seed, val, protocol, False, "MNIST, 28x28 grayscale")


@catalogued("fashion_mnist", [f"FashionMNIST/raw/{f}" for f in MNIST_RAW], fetch=_train_test(tvd.FashionMNIST))
def fashion_mnist(root: str, split_seed: int = 0, val: float = 0.1, protocol: str = "standard") -> DatasetBundle:
    """Fashion-MNIST clothing: 60,000 train / 10,000 test, 28x28 grayscale, 10 classes (in memory)."""
    return _mnist_like("fashion_mnist", tvd.FashionMNIST, root, split_seed, val, protocol, True,
                       "Fashion-MNIST, 28x28 grayscale")


@catalogued("kmnist", [f"KMNIST/raw/{f}" for f in MNIST_RAW], fetch=_train_test(tvd.KMNIST))
def kmnist(root: str, split_seed: int = 0, val: float = 0.1, protocol: str = "standard") -> DatasetBundle:
    """Kuzushiji-MNIST cursive Japanese: 60,000 train / 10,000 test, 28x28 grayscale, 10 classes (in memory)."""
    return _mnist_like("kmnist", tvd.KMNIST, root, split_seed, val, protocol, False, "KMNIST, 28x28 grayscale")


def _cifar(name: str, cls: type, root: str, split_seed: int, val: float, protocol: str) -> DatasetBundle:
    base = require(name, root)
    train, test = (_open(name, cls, base, train=t) for t in (True, False))
    as_split = lambda d: _tensor_split(torch.from_numpy(d.data).permute(0, 3, 1, 2), d.targets)  # noqa: E731
    return make_bundle(name, as_split(train), as_split(test), train.classes, split_seed, protocol, val,
                       description=f"{cls.__name__}, 32x32 RGB")


@catalogued("cifar10", [f"cifar-10-batches-py/{f}" for f in
                        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                         "batches.meta")], fetch=_train_test(tvd.CIFAR10))
def cifar10(root: str, split_seed: int = 0, val: float = 0.1, protocol: str = "standard") -> DatasetBundle:
    """CIFAR-10: 50,000 train / 10,000 test, 32x32 RGB, 10 classes (in memory)."""
    return _cifar("cifar10", tvd.CIFAR10, root, split_seed, val, protocol)


@catalogued("cifar100", [f"cifar-100-python/{f}" for f in ("train", "test", "meta")], fetch=_train_test(tvd.CIFAR100))
def cifar100(root: str, split_seed: int = 0, val: float = 0.1, protocol: str = "standard") -> DatasetBundle:
    """CIFAR-100: 50,000 train / 10,000 test, 32x32 RGB, 100 classes (in memory)."""
    return _cifar("cifar100", tvd.CIFAR100, root, split_seed, val, protocol)


@catalogued("svhn", ["svhn/train_32x32.mat", "svhn/test_32x32.mat"],
            fetch=lambda root: [tvd.SVHN(str(root / "svhn"), split=s, download=True) for s in ("train", "test")])
def svhn(root: str, split_seed: int = 0, val: float = 0.1, protocol: str = "standard") -> DatasetBundle:
    """SVHN house numbers (cropped digits): 73,257 train / 26,032 test, 32x32 RGB, 10 classes (in memory)."""
    base = require("svhn", root)
    train, test = (_open("svhn", tvd.SVHN, base / "svhn", split=s) for s in ("train", "test"))
    as_split = lambda d: _tensor_split(d.data, d.labels)  # noqa: E731
    return make_bundle("svhn", as_split(train), as_split(test), [str(i) for i in range(10)], split_seed, protocol,
                       val, flip=False, description="SVHN cropped digits, 32x32 RGB")


STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


@catalogued("stl10", [f"stl10_binary/{f}" for f in
                      ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin")],
            fetch=lambda root: tvd.STL10(str(root), split="train", download=True))
def stl10(root: str, split_seed: int = 0, val: float = 0.1, protocol: str = "standard") -> DatasetBundle:
    """STL-10: 5,000 labelled train / 8,000 test, 96x96 RGB, 10 classes (in memory; unlabelled part unused)."""
    base = require("stl10", root)
    train, test = (_open("stl10", tvd.STL10, base, split=s) for s in ("train", "test"))
    as_split = lambda d: _tensor_split(d.data, d.labels)  # noqa: E731
    return make_bundle("stl10", as_split(train), as_split(test), getattr(train, "classes", STL10_CLASSES),
                       split_seed, protocol, val, description="STL-10 labelled, 96x96 RGB")


# ---------------------------------------------------------------- file-backed datasets (decoded on demand)

FLOWERS = "flowers-102"


@catalogued("flowers102", [f"{FLOWERS}/jpg", f"{FLOWERS}/imagelabels.mat", f"{FLOWERS}/setid.mat"],
            metric="balanced_accuracy",
            fetch=lambda root: [tvd.Flowers102(str(root), split=s, download=True) for s in ("train", "val", "test")])
def flowers102(root: str, split_seed: int = 0, protocol: str = "standard", size: int = 224) -> DatasetBundle:
    """Oxford 102 Flowers: official 1,020 train / 1,020 val / 6,149 test photos, 102 classes (from disk)."""
    _check_size("flowers102", size)
    base = require("flowers102", root)
    parts = {s: _open("flowers102", tvd.Flowers102, base, split=s) for s in ("train", "val", "test")}
    files = {s: FileSplit.of(d, d._labels, size) for s, d in parts.items()}
    return make_bundle("flowers102", files["train"], files["test"], tvd.Flowers102.classes, split_seed, protocol,
                       official_val=files["val"], description="Oxford 102 Flowers photos")


PETS = "oxford-iiit-pet"


@catalogued("oxford_pets", [f"{PETS}/images", f"{PETS}/annotations/trainval.txt", f"{PETS}/annotations/test.txt"],
            metric="balanced_accuracy",
            fetch=lambda root: tvd.OxfordIIITPet(str(root), split="trainval", download=True))
def oxford_pets(root: str, split_seed: int = 0, val: float = 0.1, protocol: str = "standard",
                size: int = 224) -> DatasetBundle:
    """Oxford-IIIT Pets breeds: 3,680 trainval / 3,669 test photos, 37 classes (from disk)."""
    _check_size("oxford_pets", size)
    base = require("oxford_pets", root)
    files, classes = _official_splits("oxford_pets", tvd.OxfordIIITPet, base, ("trainval", "test"), size)
    return make_bundle("oxford_pets", files["trainval"], files["test"], classes, split_seed, protocol, val,
                       description="Oxford-IIIT Pets photos")


@catalogued("dtd", ["dtd/dtd/images", "dtd/dtd/labels"], fetch=lambda root: tvd.DTD(str(root), download=True))
def dtd(root: str, split_seed: int = 0, protocol: str = "standard", partition: int = 1,
        size: int = 224) -> DatasetBundle:
    """Describable Textures: official train / val / test (1,880 each, partition 1-10), 47 classes (from disk)."""
    _check_size("dtd", size)
    _option("dtd", "partition", partition, 1 <= partition <= 10, "must be in 1-10")
    base = require("dtd", root)
    files, classes = _official_splits("dtd", tvd.DTD, base, ("train", "val", "test"), size, partition=partition)
    return make_bundle("dtd", files["train"], files["test"], classes, split_seed, protocol,
                       official_val=files["val"], description=f"DTD textures, partition {partition}")


@catalogued("eurosat", ["eurosat/2750"], fetch=lambda root: tvd.EuroSAT(str(root), download=True))
def eurosat(root: str, split_seed: int = 0, protocol: str = "standard", size: int = 64) -> DatasetBundle:
    """EuroSAT RGB land use: 27,000 64x64 satellite images, 10 classes, split 60/20/20 as VTAB (from disk)."""
    _check_size("eurosat", size)
    base = require("eurosat", root)
    ds = _open("eurosat", tvd.EuroSAT, base)
    labels = np.asarray(ds.targets)
    tr, va, te = stratified_splits(labels, 0.2, 0.2, split_seed)
    every = FileSplit.of(ds, labels, size)
    return make_bundle("eurosat", every.take(tr), every.take(te), ds.classes, split_seed, protocol,
                       official_val=every.take(va), description="EuroSAT RGB satellite images")


FOOD = "food-101"


@catalogued("food101", [f"{FOOD}/images", f"{FOOD}/meta/train.json", f"{FOOD}/meta/test.json"],
            fetch=lambda root: tvd.Food101(str(root), download=True))
def food101(root: str, split_seed: int = 0, val: float = 0.1, protocol: str = "standard",
            size: int = 224) -> DatasetBundle:
    """Food-101 dishes: 75,750 train / 25,250 test photos, 101 classes (from disk)."""
    _check_size("food101", size)
    base = require("food101", root)
    files, classes = _official_splits("food101", tvd.Food101, base, ("train", "test"), size)
    return make_bundle("food101", files["train"], files["test"], classes, split_seed, protocol, val,
                       description="Food-101 photos")


@catalogued("caltech101", ["caltech101/101_ObjectCategories"], metric="balanced_accuracy",
            fetch=lambda root: tvd.Caltech101(str(root), download=True))
def caltech101(root: str, split_seed: int = 0, val: float = 0.1, protocol: str = "standard", size: int = 224,
               train_per_class: int = 30) -> DatasetBundle:
    """Caltech-101 objects: 101 classes (background excluded); train_per_class per class to train, rest test."""
    _check_size("caltech101", size)
    _option("caltech101", "train_per_class", train_per_class, train_per_class >= 2, "must be >= 2")
    base = require("caltech101", root)
    ds = _open("caltech101", tvd.Caltech101, base)
    labels = np.asarray(ds.y)
    tr, te = per_class_split(labels, train_per_class, 0, split_seed)
    every = FileSplit.of(ds, labels, size)
    return make_bundle("caltech101", every.take(tr), every.take(te), ds.categories, split_seed, protocol, val,
                       description=f"Caltech-101, {train_per_class} training images per class")


AIRCRAFT = "fgvc-aircraft-2013b/data"
AIRCRAFT_LEVELS = ("variant", "family", "manufacturer")


@catalogued("fgvc_aircraft", [f"{AIRCRAFT}/images", f"{AIRCRAFT}/variants.txt"] +
            [f"{AIRCRAFT}/images_variant_{s}.txt" for s in ("train", "val", "test")], metric="balanced_accuracy",
            fetch=lambda root: tvd.FGVCAircraft(str(root), download=True))
def fgvc_aircraft(root: str, split_seed: int = 0, protocol: str = "standard", annotation_level: str = "variant",
                  size: int = 224) -> DatasetBundle:
    """FGVC Aircraft: official 3,334 train / 3,333 val / 3,333 test photos, 100 variants (from disk)."""
    _check_size("fgvc_aircraft", size)
    _option("fgvc_aircraft", "annotation_level", annotation_level, annotation_level in AIRCRAFT_LEVELS,
            f"choose from: {', '.join(AIRCRAFT_LEVELS)}")
    base = require("fgvc_aircraft", root)
    parts = {s: _open("fgvc_aircraft", tvd.FGVCAircraft, base, split=s, annotation_level=annotation_level)
             for s in ("train", "val", "test")}
    files = {s: FileSplit.of(d, d._labels, size) for s, d in parts.items()}
    return make_bundle("fgvc_aircraft", files["train"], files["test"], parts["train"].classes, split_seed, protocol,
                       official_val=files["val"], description=f"FGVC Aircraft photos, {annotation_level} labels")


CARS = "stanford_cars"


@catalogued("stanford_cars", [f"{CARS}/devkit/cars_meta.mat", f"{CARS}/devkit/cars_train_annos.mat", f"{CARS}/cars_train",
                              f"{CARS}/cars_test", f"{CARS}/cars_test_annos_withlabels.mat"],
            manual="its original URL is gone; put devkit/, cars_train/, cars_test/ and "
                   "cars_test_annos_withlabels.mat (e.g. from a Kaggle mirror) under {root}/stanford_cars")
def stanford_cars(root: str, split_seed: int = 0, val: float = 0.1, protocol: str = "standard",
                  size: int = 224) -> DatasetBundle:
    """Stanford Cars: 8,144 train / 8,041 test photos, 196 make-model-year classes (from disk)."""
    _check_size("stanford_cars", size)
    base = require("stanford_cars", root)
    files, classes = _official_splits("stanford_cars", tvd.StanfordCars, base, ("train", "test"), size,
                                      labels=lambda d: [label for _, label in d._samples])
    return make_bundle("stanford_cars", files["train"], files["test"], classes, split_seed, protocol, val,
                       description="Stanford Cars photos")


@catalogued("sun397", ["SUN397/ClassName.txt"], fetch=lambda root: tvd.SUN397(str(root), download=True))
def sun397(root: str, split_seed: int = 0, val: float = 0.1, protocol: str = "standard", size: int = 224,
           train_per_class: int = 50, test_per_class: int = 50) -> DatasetBundle:
    """SUN397 scenes: 397 classes, 50 train + 50 test images per class drawn as the official partitions (from disk)."""
    _check_size("sun397", size)
    _option("sun397", "train_per_class", train_per_class, train_per_class >= 2, "must be >= 2")
    _option("sun397", "test_per_class", test_per_class, test_per_class >= 0, "must be >= 0 (0: the rest)")
    base = require("sun397", root)
    ds = _open("sun397", tvd.SUN397, base)
    order = np.argsort([str(p) for p in ds._image_files], kind="stable")  # rglob order is the file system's
    every = FileSplit.of(ds, ds._labels, size, order=order)
    tr, te = per_class_split(every.labels.numpy(), train_per_class, test_per_class, split_seed)
    return make_bundle("sun397", every.take(tr), every.take(te), ds.classes, split_seed, protocol, val,
                       description=f"SUN397 scenes, {train_per_class}/{test_per_class} per class")


class ChosenClassFolder(tvd.ImageFolder):
    """torchvision's ImageFolder restricted to the chosen class folders (the others are never scanned)."""

    def __init__(self, root: str, chosen: Sequence[str]) -> None:
        self.chosen = list(chosen)
        super().__init__(root)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        return self.chosen, {c: i for i, c in enumerate(self.chosen)}


@catalogued("imagenet_subset", ["imagenet/train", "imagenet/val"],
            manual="ImageNet is not downloadable without an account; put ILSVRC2012 train/ and val/ as one folder "
                   "per class (wnid, e.g. n01440764/) under {root}/imagenet")
def imagenet_subset(root: str, split_seed: int = 0, classes: int = 20, first: int = 0, class_seed: int = 0,
                    val: float = 0.1, protocol: str = "standard", size: int = 224) -> DatasetBundle:
    """ImageNet classes chosen at random by class_seed (classes from position first); test is the official val."""
    _check_size("imagenet_subset", size)
    _option("imagenet_subset", "classes", classes, classes >= 2, "must be >= 2")
    _option("imagenet_subset", "first", first, first >= 0, "must be >= 0")
    base = require("imagenet_subset", root)
    train_dir = base / "imagenet" / "train"
    wnids = sorted(e.name for e in os.scandir(train_dir) if e.is_dir())
    _option("imagenet_subset", "classes", classes, first + classes <= len(wnids),
            f"first + classes must be <= the {len(wnids)} class folders in {train_dir}")
    order = np.random.default_rng(class_seed).permutation(len(wnids))
    chosen = sorted(wnids[i] for i in order[first:first + classes])
    parts = {s: _open("imagenet_subset", ChosenClassFolder, base / "imagenet" / s, chosen=chosen)
             for s in ("train", "val")}
    files = {s: FileSplit.of(d, d.targets, size) for s, d in parts.items()}
    return make_bundle("imagenet_subset", files["train"], files["val"], chosen, split_seed, protocol, val,
                       description=f"ImageNet, {classes} classes (class_seed {class_seed}, from {first})")
