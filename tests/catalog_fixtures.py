"""Tiny datasets written in each dataset's real on-disk format, for torchvision's own classes to read.

In-memory datasets encode the image's index in two pixels (so overlaps between splits are detectable) and
the label in a whole channel; photo datasets are small JPEGs whose solid colour encodes the class.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from torchvision import datasets as tvd


def no_md5(monkeypatch) -> None:
    """Fixtures cannot match the published MD5 sums: torchvision's integrity checks test existence only."""
    exists = lambda fpath, md5=None: os.path.isfile(fpath)  # noqa: E731
    for module in (tvd.cifar, tvd.svhn, tvd.stl10, tvd.flowers102):
        monkeypatch.setattr(module, "check_integrity", exists)


# ---------------------------------------------------------------- in-memory formats

def coded_images(n: int, labels: np.ndarray, channels: int, size: int, offset: int = 0) -> np.ndarray:
    """N x C x size x size uint8: pixel (0, 0) and (0, 1) of channel 0 hold the index, the last channel the label."""
    x = np.random.default_rng(offset).integers(0, 40, (n, channels, size, size), dtype=np.uint8)
    idx = np.arange(n) + offset
    x[:, 0, 0, 0] = idx % 256
    x[:, 0, 0, 1] = idx // 256
    x[:, -1, size // 2:, :] = (labels[:, None, None] * 20 + 40).astype(np.uint8)
    return x


def image_ids(x: np.ndarray) -> set[int]:
    return set((x[:, 0, 0, 0].astype(int) + 256 * x[:, 0, 0, 1].astype(int)).tolist())


def balanced_labels(n: int, classes: int) -> np.ndarray:
    return np.arange(n) % classes


def write_idx(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack(">I", 0x0800 | array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 300, n_test: int = 100) -> None:
    """MNIST's IDX files, uncompressed, in ROOT/<folder>/raw/ (where torchvision looks after extracting)."""
    for prefix, n, offset in (("train", n_train, 0), ("t10k", n_test, 10_000)):
        labels = balanced_labels(n, 10)
        images = coded_images(n, labels, 1, 28, offset)[:, 0]
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))


def _pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, per_batch: int = 220, n_test: int = 100) -> None:
    """CIFAR-10's python pickle batches: data_batch_1..5, test_batch, batches.meta."""
    base = root / "cifar-10-batches-py"
    for b in range(5):
        labels = balanced_labels(per_batch, 10)
        x = coded_images(per_batch, labels, 3, 32, b * per_batch)
        _pickle(base / f"data_batch_{b + 1}", {"data": x.reshape(per_batch, -1), "labels": labels.tolist()})
    labels = balanced_labels(n_test, 10)
    _pickle(base / "test_batch", {"data": coded_images(n_test, labels, 3, 32, 10_000).reshape(n_test, -1),
                                  "labels": labels.tolist()})
    _pickle(base / "batches.meta", {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                    "horse", "ship", "truck"]})


def write_cifar100(root: Path, n_train: int = 1000, n_test: int = 200) -> None:
    """CIFAR-100's python pickles: train, test (fine_labels) and meta (fine_label_names)."""
    base = root / "cifar-100-python"
    for name, n, offset in (("train", n_train, 0), ("test", n_test, 10_000)):
        labels = balanced_labels(n, 100)
        _pickle(base / name, {"data": coded_images(n, labels % 10, 3, 32, offset).reshape(n, -1),
                              "fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist()})
    _pickle(base / "meta", {"fine_label_names": [f"class{i}" for i in range(100)],
                            "coarse_label_names": [f"super{i}" for i in range(20)]})


def write_svhn(root: Path, n_train: int = 200, n_test: int = 60) -> None:
    """SVHN's .mat files: X is H x W x C x N, y is N x 1 with 10 standing for the digit 0."""
    for name, n, offset in (("train", n_train, 0), ("test", n_test, 10_000)):
        labels = balanced_labels(n, 10)
        x = coded_images(n, labels, 3, 32, offset)
        (root / "svhn").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / "svhn" / f"{name}_32x32.mat",
                         {"X": x.transpose(2, 3, 1, 0), "y": np.where(labels == 0, 10, labels).reshape(-1, 1)})


def write_stl10(root: Path, n_train: int = 100, n_test: int = 40) -> None:
    """STL-10's binary files: images column-major (3 x 96 x 96 each), labels 1-10 as bytes."""
    base = root / "stl10_binary"
    base.mkdir(parents=True, exist_ok=True)
    for name, n, offset in (("train", n_train, 0), ("test", n_test, 10_000)):
        labels = balanced_labels(n, 10)
        x = coded_images(n, labels, 3, 96, offset)
        (base / f"{name}_X.bin").write_bytes(np.ascontiguousarray(x.transpose(0, 1, 3, 2)).tobytes())
        (base / f"{name}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
    (base / "unlabeled_X.bin").write_bytes(np.zeros((2, 3, 96, 96), dtype=np.uint8).tobytes())
    (base / "class_names.txt").write_text("\n".join(["airplane", "bird", "car", "cat", "deer", "dog", "horse",
                                                     "monkey", "ship", "truck"]) + "\n")


# ---------------------------------------------------------------- photo datasets (JPEG files)

def colour(k: int) -> tuple[int, int, int]:
    return (30 + 40 * k, 220 - 40 * k, 120)


def class_of(red: float) -> int:
    """The fixture class index whose colour has this red value (robust to JPEG and resizing)."""
    return int(round((red - 30) / 40))


def jpeg(path: Path, k: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour(k))[None, None, :] + rng.integers(-4, 5, (20, 26, 3)), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=95)


FLOWER_IDS = {"train": [1, 2, 3, 4, 5, 6], "val": [7, 8, 9, 10, 11, 12], "test": [13, 14, 15, 16, 17, 18, 19, 20, 21]}


def write_flowers102(root: Path) -> list[str]:
    """flowers-102/jpg/image_NNNNN.jpg, imagelabels.mat (1-based labels), setid.mat (trnid, valid, tstid)."""
    base = root / "flowers-102"
    labels = [(i - 1) % 3 for i in range(1, 22)]
    for i, k in enumerate(labels, 1):
        jpeg(base / "jpg" / f"image_{i:05d}.jpg", k, i)
    scipy.io.savemat(base / "imagelabels.mat", {"labels": np.array([k + 1 for k in labels])})
    scipy.io.savemat(base / "setid.mat", {"trnid": np.array(FLOWER_IDS["train"]), "valid": np.array(FLOWER_IDS["val"]),
                                          "tstid": np.array(FLOWER_IDS["test"])})
    return list(tvd.Flowers102.classes[:3])


def write_oxford_pets(root: Path) -> list[str]:
    """oxford-iiit-pet/images/<Breed>_<n>.jpg and annotations/{trainval,test}.txt (id, class, species, breed)."""
    base = root / "oxford-iiit-pet"
    breeds = ["Abyssinian", "american_bulldog", "Bengal"]
    lines = {"trainval": [], "test": []}
    for k, breed in enumerate(breeds):
        for n in range(1, 15):
            split = "trainval" if n <= 10 else "test"
            jpeg(base / "images" / f"{breed}_{n}.jpg", k, 100 * k + n)
            lines[split].append(f"{breed}_{n} {k + 1} {1 if breed[0].isupper() else 2} {n}")
    (base / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    for split, rows in lines.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return ["Abyssinian", "American Bulldog", "Bengal"]


def write_dtd(root: Path) -> list[str]:
    """dtd/dtd/images/<class>/<class>_NNNN.jpg and labels/{train,val,test}1.txt."""
    base = root / "dtd" / "dtd"
    classes = ["banded", "blotchy", "braided"]
    lines = {"train": [], "val": [], "test": []}
    for k, c in enumerate(classes):
        for n in range(9):
            name = f"{c}_{n:04d}.jpg"
            jpeg(base / "images" / c / name, k, 10 * k + n)
            lines[("train", "val", "test")[n % 3]].append(f"{c}/{name}")
    (base / "labels").mkdir(parents=True, exist_ok=True)
    for split, rows in lines.items():
        (base / "labels" / f"{split}1.txt").write_text("\n".join(rows) + "\n")
    return classes


def write_eurosat(root: Path) -> list[str]:
    """eurosat/2750/<Class>/<Class>_N.jpg (an ImageFolder tree)."""
    classes = ["AnnualCrop", "Forest", "Highway"]
    for k, c in enumerate(classes):
        for n in range(1, 11):
            jpeg(root / "eurosat" / "2750" / c / f"{c}_{n}.jpg", k, 10 * k + n)
    return classes


def write_food101(root: Path) -> list[str]:
    """food-101/images/<class>/<id>.jpg and meta/{train,test}.json ({class: ["class/id", ...]})."""
    base = root / "food-101"
    classes = ["apple_pie", "baby_back_ribs", "baklava"]
    meta = {"train": {}, "test": {}}
    for k, c in enumerate(classes):
        for n in range(14):
            jpeg(base / "images" / c / f"{1000 + n}.jpg", k, 20 * k + n)
            meta["train" if n < 10 else "test"].setdefault(c, []).append(f"{c}/{1000 + n}")
    (base / "meta").mkdir(parents=True, exist_ok=True)
    for split, m in meta.items():
        (base / "meta" / f"{split}.json").write_text(json.dumps(m))
    return classes


def write_caltech101(root: Path) -> list[str]:
    """caltech101/101_ObjectCategories/<category>/image_NNNN.jpg, with the BACKGROUND_Google folder."""
    base = root / "caltech101" / "101_ObjectCategories"
    classes = ["accordion", "airplanes", "anchor"]
    for k, c in enumerate(classes):
        for n in range(1, 7):
            jpeg(base / c / f"image_{n:04d}.jpg", k, 10 * k + n)
    jpeg(base / "BACKGROUND_Google" / "image_0001.jpg", 0)
    return classes


def write_fgvc_aircraft(root: Path) -> list[str]:
    """fgvc-aircraft-2013b/data/images/<id>.jpg, variants.txt, images_variant_{train,val,test}.txt."""
    base = root / "fgvc-aircraft-2013b" / "data"
    classes = ["707-320", "A300B4", "Cessna 172"]
    lines = {"train": [], "val": [], "test": [], "trainval": []}
    for k, c in enumerate(classes):
        for n in range(6):
            image_id = f"{1000000 + 100 * k + n}"
            jpeg(base / "images" / f"{image_id}.jpg", k, 10 * k + n)
            split = ("train", "train", "val", "val", "test", "test")[n]
            lines[split].append(f"{image_id} {c}")
            if split != "test":
                lines["trainval"].append(f"{image_id} {c}")
    (base / "variants.txt").write_text("\n".join(classes) + "\n")
    for split, rows in lines.items():
        (base / f"images_variant_{split}.txt").write_text("\n".join(rows) + "\n")
    return classes


def _annotations(rows: list[tuple[str, int]]) -> np.ndarray:
    out = np.empty(len(rows), dtype=[("fname", object), ("class", object)])
    for i, (fname, cls) in enumerate(rows):
        out[i] = (fname, np.uint8(cls))
    return out


def write_stanford_cars(root: Path) -> list[str]:
    """stanford_cars/devkit/{cars_meta,cars_train_annos}.mat, cars_test_annos_withlabels.mat, cars_{train,test}/."""
    base = root / "stanford_cars"
    classes = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi TT Coupe 2011"]
    rows = {"train": [], "test": []}
    for k in range(3):
        for n in range(8):
            split = "train" if n < 6 else "test"
            fname = f"{k:02d}{n:03d}.jpg"
            jpeg(base / f"cars_{split}" / fname, k, 10 * k + n)
            rows[split].append((fname, k + 1))
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(classes, dtype=object)})
    scipy.io.savemat(base / "devkit" / "cars_train_annos.mat", {"annotations": _annotations(rows["train"])})
    scipy.io.savemat(base / "cars_test_annos_withlabels.mat", {"annotations": _annotations(rows["test"])})
    return classes


def write_sun397(root: Path) -> list[str]:
    """SUN397/ClassName.txt (/a/abbey, ...) and SUN397/<letter>/<class>/sun_<id>.jpg."""
    base = root / "SUN397"
    classes = ["abbey", "beach", "canyon"]
    for k, c in enumerate(classes):
        for n in range(6):
            jpeg(base / c[0] / c / f"sun_{k}{n:04d}.jpg", k, 10 * k + n)
    (base / "ClassName.txt").write_text("".join(f"/{c[0]}/{c}\n" for c in classes))
    return classes


WNIDS = [f"n0{k:07d}" for k in range(6)]


def write_imagenet(root: Path) -> list[str]:
    """imagenet/train/<wnid>/<wnid>_N.JPEG and imagenet/val/<wnid>/ILSVRC2012_val_N.JPEG (val sorted into classes)."""
    for k, wnid in enumerate(WNIDS):
        for n in range(6):
            jpeg(root / "imagenet" / "train" / wnid / f"{wnid}_{n}.JPEG", k, 10 * k + n)
        for n in range(2):
            jpeg(root / "imagenet" / "val" / wnid / f"ILSVRC2012_val_{10 * k + n:08d}.JPEG", k, 500 + 10 * k + n)
    return WNIDS


PHOTO_WRITERS = {"flowers102": write_flowers102, "oxford_pets": write_oxford_pets, "dtd": write_dtd,
                 "eurosat": write_eurosat, "food101": write_food101, "caltech101": write_caltech101,
                 "fgvc_aircraft": write_fgvc_aircraft, "stanford_cars": write_stanford_cars, "sun397": write_sun397,
                 "imagenet_subset": write_imagenet}
MEMORY_WRITERS = {"mnist": lambda root: write_mnist(root, "MNIST"),
                  "fashion_mnist": lambda root: write_mnist(root, "FashionMNIST"),
                  "kmnist": lambda root: write_mnist(root, "KMNIST"), "cifar10": write_cifar10,
                  "cifar100": write_cifar100, "svhn": write_svhn, "stl10": write_stl10}
WRITERS = {**MEMORY_WRITERS, **PHOTO_WRITERS}  # one per catalogue entry


def write_all(root: Path) -> dict[str, list[str]]:
    """Every fixture under one data root; returns each photo dataset's class names in fixture colour order."""
    for writer in MEMORY_WRITERS.values():
        writer(root)
    return {name: writer(root) for name, writer in PHOTO_WRITERS.items()}
