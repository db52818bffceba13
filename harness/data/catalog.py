"""The dataset catalogue: torchvision's datasets with their standard splits, read from the data root.

The catalogue is data: `CATALOGUE` holds one `CatalogEntry` per dataset (its torchvision class, the files
that must exist under the data root, how its splits are made, how labels and class names are read, the
headline metric, memory or files, options with defaults and checks, how to obtain it), and a few loaders,
one per kind of split, read an entry. Adding a torchvision dataset is one entry here, plus a fixture writer
in tests/catalog_fixtures.py for its test; `harness list`, `harness fetch`, option parsing and the
missing-file errors all follow from the entry.

Datasets are opened with the real torchvision class on the files under the data root, never downloading
(`harness fetch` or `--download` does that). The official train / (validation) / test splits are kept; a
stratified, seed-deterministic validation split is carved from train where the dataset has none (never
from test). The metric is the one its literature reports: mean per-class accuracy (`balanced_accuracy`)
for FGVC Aircraft, Oxford-IIIT Pets, Caltech-101 and Flowers-102, top-1 `accuracy` elsewhere and on every
VTAB-1k task (VTAB's own metric).
MNIST-like sets, CIFAR, SVHN and STL-10 are held in memory as uint8 tensors; photo collections are
`FileSplit`s decoded on demand. Every entry takes `protocol=standard|vtab1k`: VTAB-1k keeps 800 training
and 200 validation examples (deterministic), and its final runs retrain on all 1,000 (`final_trains_on_val`).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, replace
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from harness.core.errors import ConfigError
from harness.data.registry import DATASETS, parse_spec
from harness.data.root import data_root

if TYPE_CHECKING:
    import torch

    from harness.data.bundle import AnySplit, DatasetBundle

PROTOCOLS = ("standard", "vtab1k")
VTAB_TRAIN, VTAB_VAL = 800, 200


def _option(name: str, key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"dataset '{name}': option {key}={value!r}: {allowed}")


@dataclass(frozen=True)
class Option:
    """A spec option (`?key=value`): its default (whose type a value is parsed to) and the check it must pass."""

    default: Any
    ok: Callable[[Any], bool] = lambda value: True
    allowed: str = ""

    def check(self, name: str, key: str, value: Any) -> None:
        """A one-line ConfigError naming the option, the value and what is allowed, unless the value passes."""
        _option(name, key, value, self.ok(value), self.allowed)


VAL = Option(0.1, lambda v: 0 < v < 1, "must be in (0, 1)")
PROTOCOL = Option("standard", lambda v: v in PROTOCOLS, f"choose from: {', '.join(PROTOCOLS)}")
SIZE = Option(224, lambda v: v >= 8, "must be >= 8 (the side length images are decoded to)")
CARVED = {"val": VAL, "protocol": PROTOCOL}  # no official validation split: `val` of train is carved off
OFFICIAL_VAL = {"protocol": PROTOCOL}


def at_least(low: int, default: int, note: str = "") -> Option:
    """An integer option that must be >= low."""
    return Option(default, lambda v: v >= low, f"must be >= {low}{note}")


@dataclass(frozen=True)
class CatalogEntry:
    """One torchvision dataset (`dataset`, the name of its class in torchvision.datasets or OWN_CLASSES):
    everything the catalogue knows about it.

    `files` must all exist under the data root. `splits` says how the splits are made (a key of SPLITS:
    train_test, official_train_val_test, stratified_60_20_20, per_class, imagenet_subset). `official` names
    the official splits, train first, test last (empty: one dataset holding every image), each picked by
    `split_arg`: `split="train"`, `train=True` (MNIST, CIFAR) or a sub-folder (`folder`). `folder` is where
    under the data root the class is pointed; `class_args` are options handed to it. `labels` and `classes`
    read a split's labels and class names. `storage="memory"` holds `.data` (laid out as `layout`: NHW, NHWC
    or NCHW) as uint8 tensors; `"files"` keeps references decoded on demand, in `order` where torchvision's
    is the file system's. `about` is the line `harness list` shows; `description`, formatted with the
    options, is the bundle's. `manual` (with {root}) says how to obtain it where torchvision cannot download
    it; else `harness fetch` opens every official split with download=True (or calls `fetch(root)`).
    """

    name: str
    dataset: str
    files: tuple[str, ...]
    splits: str
    about: str
    description: str
    options: Mapping[str, Option]
    official: tuple[str, ...] = ("train", "test")
    split_arg: str = "split"
    folder: str = ""
    class_args: tuple[str, ...] = ()
    storage: str = "files"
    layout: str = ""
    labels: Callable[[Any], Sequence[int]] = attrgetter("_labels")
    classes: Callable[[Any], Sequence[str]] = attrgetter("classes")
    order: Callable[[Any], np.ndarray] | None = None
    metric: str = "accuracy"
    flip: bool = True
    manual: str = ""
    fetch: Callable[[Path], Any] | None = None

    def headline(self, options: Mapping[str, Any]) -> str:
        """The metric the protocol reports: VTAB-1k scores every task by top-1 accuracy, else the entry's own."""
        return "accuracy" if options.get("protocol") == "vtab1k" else self.metric

    @property
    def defaults(self) -> dict[str, Any]:
        """The options and their defaults (what `harness list` shows and spec values are parsed to)."""
        return {key: option.default for key, option in self.options.items()}

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Every option with its default filled in, each checked (without reading any file)."""
        unknown = [key for key in options if key not in self.options]
        if unknown:
            raise ConfigError(f"dataset '{self.name}': unknown option '{unknown[0]}'; "
                              f"allowed: {', '.join(self.options)}")
        values = {**self.defaults, **options}
        for key, option in self.options.items():
            option.check(self.name, key, values[key])
        return values

    def __call__(self, root: str, split_seed: int = 0, **options: Any) -> DatasetBundle:
        """The bundle read from the data root `root`; options are checked before any file is read."""
        values = self.check_options(options)
        base = require(self.name, root)
        train, val, test, classes = SPLITS[self.splits](self, base, values, split_seed)
        return make_bundle(self, train, val, test, classes, split_seed, values)


# ---------------------------------------------------------------- files present, fetching, errors

def missing_files(name: str, root: Path | None = None) -> list[str]:
    """The entry's files that are not under the data root."""
    base = Path(root) if root else data_root()
    return [f for f in CATALOG[name].files if not (base / f).exists()]


def _remedy(entry: CatalogEntry, base: Path) -> str:
    if entry.manual:
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


def _place(entry: CatalogEntry, base: Path, split: str | None) -> tuple[Path, dict[str, Any]]:
    """Where the torchvision class is pointed for one official split (None: the whole dataset), and the keyword
    argument that picks the split."""
    where = base / entry.folder
    if split is None:
        return where, {}
    if entry.split_arg == "folder":
        return where / split, {}
    return where, {entry.split_arg: split if entry.split_arg == "split" else split == "train"}


OWN_CLASSES = {"ChosenClassFolder": "harness.data.imagefolder"}  # class name: its module


def dataset_class(entry: CatalogEntry) -> type:
    """The class an entry names: one of torchvision.datasets, or one of OWN_CLASSES (imported when opened)."""
    module = importlib.import_module(OWN_CLASSES.get(entry.dataset, "torchvision.datasets"))
    return getattr(module, entry.dataset)


def _open(entry: CatalogEntry, base: Path, split: str | None, **kw: Any) -> Any:
    """One official split of the torchvision dataset, with its errors (corrupt or partial files) as one-line
    ConfigErrors."""
    where, args = _place(entry, base, split)
    try:
        return dataset_class(entry)(str(where), **args, **kw)
    except (RuntimeError, OSError, ValueError, KeyError, IndexError) as e:
        text = str(e).strip().splitlines()
        raise ConfigError(f"dataset '{entry.name}': torchvision's {entry.dataset} cannot read {where} "
                          f"({text[0] if text else type(e).__name__}); {_remedy(entry, data_root())}") from None


def _download(entry: CatalogEntry, base: Path) -> None:
    """Every official split opened with download=True: torchvision fetches what is missing."""
    for split in entry.official or (None,):
        where, args = _place(entry, base, split)
        dataset_class(entry)(str(where), **args, download=True)


def fetch_dataset(spec: str, root: Path | None = None) -> Path:
    """Download a catalogue dataset into the data root with torchvision (needs internet); a no-op when present."""
    name = parse_spec(spec)[0]
    if name not in CATALOG:
        raise ConfigError(f"fetch: '{name}' is not a downloadable dataset; choose from: {', '.join(CATALOG)}")
    entry, base = CATALOG[name], Path(root) if root else data_root()
    if not missing_files(name, base):
        return base
    if entry.manual:
        raise ConfigError(f"fetch {name}: torchvision cannot download it; {entry.manual.format(root=base)}")
    base.mkdir(parents=True, exist_ok=True)
    try:
        entry.fetch(base) if entry.fetch else _download(entry, base)
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
        if not missing_files(name, base):
            lines.append(f"  data {name}: found in {base}")
        elif CATALOG[name].manual:
            lines.append(f"  data {name}: MISSING in {base} ({CATALOG[name].manual.format(root=base)})")
        else:
            lines.append(f"  data {name}: MISSING in {base} (harness fetch {name} --data-root {base})")
    return lines


def final_trains_on_val(spec: str) -> bool:
    """Whether the final runs of this dataset retrain on train + validation (the VTAB-1k protocol)."""
    return parse_spec(spec)[2].get("protocol") == "vtab1k"


# ---------------------------------------------------------------- reading an entry

def _images(data: Any, layout: str) -> torch.Tensor:
    """A torchvision dataset's `.data` as uint8 N x C x H x W."""
    import torch

    x = torch.as_tensor(data)
    if layout == "NHW":
        x = x.unsqueeze(1)
    elif layout == "NHWC":
        x = x.permute(0, 3, 1, 2)
    return x.contiguous()


def _as_split(entry: CatalogEntry, dataset: Any, values: Mapping[str, Any]) -> AnySplit:
    import torch

    from harness.data.bundle import Split
    from harness.data.files import FileSplit

    labels = entry.labels(dataset)
    if entry.storage == "memory":
        return Split(_images(dataset.data, entry.layout), torch.as_tensor(np.asarray(labels), dtype=torch.long))
    order = entry.order(dataset) if entry.order else None
    return FileSplit.of(dataset, labels, values["size"], order=order)


def _read(entry: CatalogEntry, base: Path, values: Mapping[str, Any], **kw: Any) -> tuple[list[AnySplit], list[str]]:
    """Each official split (or the whole dataset) as a split, and the class names they share."""
    kw.update({key: values[key] for key in entry.class_args})
    parts = {split or "whole": _open(entry, base, split, **kw) for split in entry.official or (None,)}
    classes = {split: list(entry.classes(d)) for split, d in parts.items()}
    first = next(iter(classes.values()))
    for split, names in classes.items():
        if names != first:
            raise ConfigError(f"dataset '{entry.name}': the {split} split has {len(names)} classes, the others "
                              f"{len(first)}; the annotation files under {data_root()} are inconsistent")
    return [_as_split(entry, d, values) for d in parts.values()], first


Splits = tuple["AnySplit", "AnySplit | None", "AnySplit", Sequence[str]]


def _train_test(entry: CatalogEntry, base: Path, values: Mapping[str, Any], seed: int) -> Splits:
    """The official train and test splits; validation is carved from train."""
    (train, test), classes = _read(entry, base, values)
    return train, None, test, classes


def _train_val_test(entry: CatalogEntry, base: Path, values: Mapping[str, Any], seed: int) -> Splits:
    """The official train, validation and test splits."""
    (train, val, test), classes = _read(entry, base, values)
    return train, val, test, classes


def _stratified_60_20_20(entry: CatalogEntry, base: Path, values: Mapping[str, Any], seed: int) -> Splits:
    """One set of images split 60/20/20, stratified and seed-deterministic (as VTAB)."""
    from harness.data.splits import stratified_splits

    (every,), classes = _read(entry, base, values)
    train, val, test = stratified_splits(every.labels.numpy(), 0.2, 0.2, seed)
    return every.take(train), every.take(val), every.take(test), classes


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


def _per_class(entry: CatalogEntry, base: Path, values: Mapping[str, Any], seed: int) -> Splits:
    """`train_per_class` images of each class to train, `test_per_class` (0: the rest) to test, drawn at random;
    validation is carved from train."""
    (every,), classes = _read(entry, base, values)
    train, test = per_class_split(every.labels.numpy(), values["train_per_class"], values.get("test_per_class", 0),
                                  seed)
    return every.take(train), None, every.take(test), classes


def _imagenet_subset(entry: CatalogEntry, base: Path, values: Mapping[str, Any], seed: int) -> Splits:
    """`classes` class folders drawn by `class_seed` (from position `first`), official train and validation
    (the test split); validation is carved from train."""
    classes, first = values["classes"], values["first"]
    train_dir = base / entry.folder / entry.official[0]
    wnids = sorted(e.name for e in os.scandir(train_dir) if e.is_dir())
    _option(entry.name, "classes", classes, first + classes <= len(wnids),
            f"first + classes must be <= the {len(wnids)} class folders in {train_dir}")
    order = np.random.default_rng(values["class_seed"]).permutation(len(wnids))
    chosen = sorted(wnids[i] for i in order[first:first + classes])
    (train, test), names = _read(entry, base, values, chosen=chosen)
    return train, None, test, names


SPLITS: dict[str, Callable[[CatalogEntry, Path, Mapping[str, Any], int], Splits]] = {
    "train_test": _train_test,
    "official_train_val_test": _train_val_test,
    "stratified_60_20_20": _stratified_60_20_20,
    "per_class": _per_class,
    "imagenet_subset": _imagenet_subset,
}


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


def make_bundle(entry: CatalogEntry, train: AnySplit, val: AnySplit | None, test: AnySplit,
                class_names: Sequence[str], split_seed: int, values: Mapping[str, Any]) -> DatasetBundle:
    """The bundle from the splits: the official validation split (`val`), or `val` of train carved (stratified,
    seed-deterministic); under `protocol=vtab1k` 800 train + 200 validation examples."""
    from harness.data.bundle import DatasetBundle
    from harness.data.splits import carve

    if values["protocol"] == "vtab1k":
        train, val = _vtab1k(entry.name, train, val, split_seed)
    elif val is None:
        keep, carved = carve(train.labels.numpy(), values["val"], split_seed, entry.name)
        train, val = train.take(keep), train.take(carved)
    return DatasetBundle(entry.name, train, val, test, tuple(str(c) for c in class_names), flip=entry.flip,
                         metric=entry.headline(values), description=entry.description.format(**values))


# ---------------------------------------------------------------- the catalogue

MNIST_RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
AIRCRAFT_LEVELS = ("variant", "family", "manufacturer")
TRAIN_VAL_TEST = ("train", "val", "test")


def under(folder: str, *names: str) -> tuple[str, ...]:
    """Paths relative to the data root."""
    return tuple(f"{folder}/{n}" for n in names)


def in_memory(name: str, dataset: type, files: tuple[str, ...], about: str, description: str, layout: str,
              **kw: Any) -> CatalogEntry:
    """An entry held in memory as uint8 tensors, with official train and test splits (validation carved)."""
    return CatalogEntry(name, dataset, files, "train_test", about, description, CARVED, storage="memory",
                        layout=layout, **kw)


CATALOGUE: tuple[CatalogEntry, ...] = (
    in_memory("mnist", "MNIST", under("MNIST/raw", *MNIST_RAW),
              "MNIST handwritten digits: 60,000 train / 10,000 test, 28x28 grayscale, 10 classes (in memory).",
              "MNIST, 28x28 grayscale", "NHW", split_arg="train", labels=attrgetter("targets"), flip=False),
    in_memory("fashion_mnist", "FashionMNIST", under("FashionMNIST/raw", *MNIST_RAW),
              "Fashion-MNIST clothing: 60,000 train / 10,000 test, 28x28 grayscale, 10 classes (in memory).",
              "Fashion-MNIST, 28x28 grayscale", "NHW", split_arg="train", labels=attrgetter("targets")),
    in_memory("kmnist", "KMNIST", under("KMNIST/raw", *MNIST_RAW),
              "Kuzushiji-MNIST cursive Japanese: 60,000 train / 10,000 test, 28x28 grayscale, 10 classes "
              "(in memory).", "KMNIST, 28x28 grayscale", "NHW", split_arg="train", labels=attrgetter("targets"),
              flip=False),
    in_memory("cifar10", "CIFAR10", under("cifar-10-batches-py", *(f"data_batch_{i}" for i in range(1, 6)),
                                            "test_batch", "batches.meta"),
              "CIFAR-10: 50,000 train / 10,000 test, 32x32 RGB, 10 classes (in memory).", "CIFAR10, 32x32 RGB",
              "NHWC", split_arg="train", labels=attrgetter("targets")),
    in_memory("cifar100", "CIFAR100", under("cifar-100-python", "train", "test", "meta"),
              "CIFAR-100: 50,000 train / 10,000 test, 32x32 RGB, 100 classes (in memory).", "CIFAR100, 32x32 RGB",
              "NHWC", split_arg="train", labels=attrgetter("targets")),
    in_memory("svhn", "SVHN", under("svhn", "train_32x32.mat", "test_32x32.mat"),
              "SVHN house numbers (cropped digits): 73,257 train / 26,032 test, 32x32 RGB, 10 classes (in memory).",
              "SVHN cropped digits, 32x32 RGB", "NCHW", folder="svhn", labels=attrgetter("labels"),
              classes=lambda d: [str(i) for i in range(10)], flip=False),
    in_memory("stl10", "STL10", under("stl10_binary", "train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin",
                                        "unlabeled_X.bin"),
              "STL-10: 5,000 labelled train / 8,000 test, 96x96 RGB, 10 classes (in memory; unlabelled part unused).",
              "STL-10 labelled, 96x96 RGB", "NCHW", labels=attrgetter("labels"),
              classes=lambda d: getattr(d, "classes", STL10_CLASSES)),
    CatalogEntry("flowers102", "Flowers102", under("flowers-102", "jpg", "imagelabels.mat", "setid.mat"),
                 "official_train_val_test",
                 "Oxford 102 Flowers: official 1,020 train / 1,020 val / 6,149 test photos, 102 classes (from disk).",
                 "Oxford 102 Flowers photos", {**OFFICIAL_VAL, "size": SIZE}, official=TRAIN_VAL_TEST,
                 metric="balanced_accuracy"),
    CatalogEntry("oxford_pets", "OxfordIIITPet",
                 under("oxford-iiit-pet", "images", "annotations/trainval.txt", "annotations/test.txt"), "train_test",
                 "Oxford-IIIT Pets breeds: 3,680 trainval / 3,669 test photos, 37 classes (from disk).",
                 "Oxford-IIIT Pets photos", {**CARVED, "size": SIZE}, official=("trainval", "test"),
                 metric="balanced_accuracy"),
    CatalogEntry("dtd", "DTD", under("dtd/dtd", "images", "labels"), "official_train_val_test",
                 "Describable Textures: official train / val / test (1,880 each, partition 1-10), 47 classes "
                 "(from disk).", "DTD textures, partition {partition}",
                 {**OFFICIAL_VAL, "partition": Option(1, lambda v: 1 <= v <= 10, "must be in 1-10"), "size": SIZE},
                 official=TRAIN_VAL_TEST, class_args=("partition",)),
    CatalogEntry("eurosat", "EuroSAT", under("eurosat", "2750"), "stratified_60_20_20",
                 "EuroSAT RGB land use: 27,000 64x64 satellite images, 10 classes, split 60/20/20 as VTAB (from disk).",
                 "EuroSAT RGB satellite images", {**OFFICIAL_VAL, "size": replace(SIZE, default=64)},
                 official=(), labels=attrgetter("targets")),
    CatalogEntry("food101", "Food101", under("food-101", "images", "meta/train.json", "meta/test.json"),
                 "train_test", "Food-101 dishes: 75,750 train / 25,250 test photos, 101 classes (from disk).",
                 "Food-101 photos", {**CARVED, "size": SIZE}),
    CatalogEntry("caltech101", "Caltech101", under("caltech101", "101_ObjectCategories"), "per_class",
                 "Caltech-101 objects: 101 classes (background excluded); train_per_class per class to train, "
                 "rest test.", "Caltech-101, {train_per_class} training images per class",
                 {**CARVED, "size": SIZE, "train_per_class": at_least(2, 30)}, official=(),
                 labels=attrgetter("y"), classes=attrgetter("categories"), metric="balanced_accuracy"),
    CatalogEntry("fgvc_aircraft", "FGVCAircraft",
                 under("fgvc-aircraft-2013b/data", "images", "variants.txt", "images_variant_train.txt",
                       "images_variant_val.txt", "images_variant_test.txt"), "official_train_val_test",
                 "FGVC Aircraft: official 3,334 train / 3,333 val / 3,333 test photos, 100 variants (from disk).",
                 "FGVC Aircraft photos, {annotation_level} labels",
                 {**OFFICIAL_VAL, "annotation_level": Option("variant", lambda v: v in AIRCRAFT_LEVELS,
                                                             f"choose from: {', '.join(AIRCRAFT_LEVELS)}"),
                  "size": SIZE}, official=TRAIN_VAL_TEST, class_args=("annotation_level",),
                 metric="balanced_accuracy"),
    CatalogEntry("stanford_cars", "StanfordCars",
                 under("stanford_cars", "devkit/cars_meta.mat", "devkit/cars_train_annos.mat", "cars_train",
                       "cars_test", "cars_test_annos_withlabels.mat"), "train_test",
                 "Stanford Cars: 8,144 train / 8,041 test photos, 196 make-model-year classes (from disk).",
                 "Stanford Cars photos", {**CARVED, "size": SIZE},
                 labels=lambda d: [label for _, label in d._samples],
                 manual="its original URL is gone; put devkit/, cars_train/, cars_test/ and "
                        "cars_test_annos_withlabels.mat (e.g. from a Kaggle mirror) under {root}/stanford_cars"),
    CatalogEntry("sun397", "SUN397", ("SUN397/ClassName.txt",), "per_class",
                 "SUN397 scenes: 397 classes, 50 train + 50 test images per class drawn as the official partitions "
                 "(from disk).", "SUN397 scenes, {train_per_class}/{test_per_class} per class",
                 {**CARVED, "size": SIZE, "train_per_class": at_least(2, 50),
                  "test_per_class": at_least(0, 50, " (0: the rest)")}, official=(),
                 order=lambda d: np.argsort([str(p) for p in d._image_files], kind="stable")),
    CatalogEntry("imagenet_subset", "ChosenClassFolder", under("imagenet", "train", "val"), "imagenet_subset",
                 "ImageNet classes chosen at random by class_seed (classes from position first); test is the "
                 "official val.", "ImageNet, {classes} classes (class_seed {class_seed}, from {first})",
                 {"classes": at_least(2, 20), "first": at_least(0, 0), "class_seed": Option(0), **CARVED,
                  "size": SIZE}, official=("train", "val"), split_arg="folder", folder="imagenet",
                 labels=attrgetter("targets"),
                 manual="ImageNet is not downloadable without an account; put ILSVRC2012 train/ and val/ as one "
                        "folder per class (wnid, e.g. n01440764/) under {root}/imagenet"),
)

CATALOG: dict[str, CatalogEntry] = {entry.name: entry for entry in CATALOGUE}
for _entry in CATALOGUE:
    DATASETS.register(_entry.name, _entry.about)(_entry)
