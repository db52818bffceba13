"""Detection datasets: generated shape scenes (offline), PASCAL VOC on its standard on-disk layout (read by
torchvision's VOCDetection), and a user's COCO-format annotations. Splits are deterministic by the split seed;
validation is carved from the training images, never from test."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.core.errors import ConfigError, NotHere
from harness.data.registry import DATASETS

if TYPE_CHECKING:
    import torch

    from harness.data.boxes import DetectionSplit
    from harness.data.bundle import DatasetBundle

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
VOC_SIZE = 500  # VOC photographs are at most 500 pixels on a side
VOC_YEARS = ("2007", "2007+2012")


def _carve(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, carved) indices of n images: a random `fraction` carved, deterministic for a seed, in order."""
    order = np.random.default_rng(seed).permutation(n)
    size = max(1, round(fraction * n))
    return np.sort(order[size:]), np.sort(order[:size])


def _task(factory):
    factory.task = "detection"
    factory.headline = lambda options: "map50"
    return factory


@DATASETS.register("shapes_det")
@_task
def shapes_det(split_seed: int = 0, images: int = 600, size: int = 64, seed: int = 0, classes: int = 12,
               max_objects: int = 3) -> DatasetBundle:
    """Generated detection scenes: 1 to max_objects shapes (of the first `classes` shape classes) per image on
    textured backgrounds, exact boxes; split 70/15/15 by the split seed."""
    import torch

    from harness.data.boxes import DetectionSplit, target
    from harness.data.bundle import DatasetBundle
    from harness.data.shapes import SHAPE_CLASSES, generate_scenes

    pixels, objects = generate_scenes(images, size=size, seed=seed, classes=classes, max_objects=max_objects)
    split = DetectionSplit(tuple(target(b, lab) for b, lab in objects), torch.from_numpy(pixels))
    rest, test = _carve(len(split), 0.15, split_seed)
    train, val = _carve(len(rest), 0.15 / 0.85, split_seed + 1)
    return DatasetBundle("shapes_det", split.take(rest[train]), split.take(rest[val]), split.take(test),
                         tuple(SHAPE_CLASSES[:classes]), flip=True, metric="map50", task="detection",
                         description=f"{images} generated scenes, {size}x{size} RGB, {classes} shape classes")


def voc_target(annotation: dict) -> tuple[dict[str, torch.Tensor], int]:
    """A VOCDetection annotation (its parse_voc_xml dict) as a target, and the image's longer side. VOC boxes
    are 1-based inclusive pixels; they become continuous xyxy (xmin - 1, ymin - 1, xmax, ymax), so areas and
    overlaps are the devkit's."""
    from harness.data.boxes import target

    ann = annotation["annotation"]
    objects = ann.get("object", [])
    objects = objects if isinstance(objects, list) else [objects]
    boxes = [[float(o["bndbox"][k]) - (1 if k in ("xmin", "ymin") else 0) for k in ("xmin", "ymin", "xmax", "ymax")]
             for o in objects]
    labels = [VOC_CLASSES.index(o["name"].strip()) for o in objects]
    difficult = [str(o.get("difficult", "0")).strip() == "1" for o in objects]
    size = ann.get("size", {})
    return target(boxes, labels, difficult), max(int(size.get("width", 0)), int(size.get("height", 0)))


def read_voc(root: str, year: str, image_set: str) -> DetectionSplit:
    """One VOC image set read by torchvision's VOCDetection (its file lists and XML parser; images decoded later)."""
    from torchvision.datasets import VOCDetection

    from harness.data.boxes import DetectionSplit

    try:
        ds = VOCDetection(root, year=year, image_set=image_set, download=False)
    except (RuntimeError, FileNotFoundError):
        raise NotHere(f"dataset 'voc': VOC{year} {image_set} not found under {Path(root) / 'VOCdevkit'}; "
                          f"run `harness fetch voc --data-root {root}` where there is internet") from None
    targets = tuple(voc_target(ds.parse_voc_xml(ET.parse(path).getroot()))[0] for path in ds.annotations)
    return DetectionSplit(targets, paths=tuple(ds.images), nominal_size=VOC_SIZE)


@DATASETS.register("voc")
@_task
def voc(root: str, split_seed: int = 0, years: str = "2007", val_fraction: float = 0.1) -> DatasetBundle:
    """PASCAL VOC under <data root>/VOCdevkit: VOC2007 trainval (or VOC2007+2012 trainval) -> VOC2007 test, the
    standard protocol; validation carved from trainval by the split seed. Difficult objects are kept and
    ignored in evaluation."""
    from harness.data.bundle import DatasetBundle

    if years not in VOC_YEARS:
        raise ConfigError(f"dataset 'voc': years={years!r}; choose from: {', '.join(VOC_YEARS)}")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"dataset 'voc': val_fraction={val_fraction}: must be in (0, 1)")
    trainval = read_voc(root, "2007", "trainval")
    if years == "2007+2012":
        trainval = trainval.concat(read_voc(root, "2012", "trainval"))
    test = read_voc(root, "2007", "test")
    train, val = _carve(len(trainval), val_fraction, split_seed)
    return DatasetBundle("voc", trainval.take(train), trainval.take(val), test, VOC_CLASSES, metric="map50",
                         task="detection", description=f"PASCAL VOC{years} trainval -> VOC2007 test")


def fetch_voc(root: Path) -> None:
    """Download VOC2007 trainval and test and VOC2012 trainval with torchvision (needs internet)."""
    from torchvision.datasets import VOCDetection

    for year, image_set in (("2007", "trainval"), ("2007", "test"), ("2012", "trainval")):
        VOCDetection(str(root), year=year, image_set=image_set, download=True)


voc.fetch = fetch_voc


@DATASETS.register("coco")
@_task
def coco(path: str, split_seed: int = 0, images: str = "images") -> DatasetBundle:
    """A user's COCO-format detection data: coco:ANNOTATIONS.json, images in the `images` folder beside it (or
    an absolute path); split 70/15/15 by the split seed; crowd regions are kept and ignored in evaluation."""
    from torchvision.datasets import CocoDetection

    from harness.data.boxes import DetectionSplit, target
    from harness.data.bundle import DatasetBundle

    ann = Path(path).expanduser()
    folder = Path(images) if Path(images).is_absolute() else ann.parent / images
    if not ann.is_file():
        raise ConfigError(f"dataset 'coco:{path}': no such annotation file")
    if not folder.is_dir():
        raise ConfigError(f"dataset 'coco:{path}': images folder {folder} not found; set ?images=FOLDER")
    ds = CocoDetection(str(folder), str(ann))
    categories = sorted(ds.coco.getCatIds())
    index = {c: i for i, c in enumerate(categories)}
    targets, paths = [], []
    for image_id in ds.ids:
        anns = ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=image_id))
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
        labels = [index[a["category_id"]] for a in anns]
        targets.append(target(boxes, labels, [bool(a.get("iscrowd", 0)) for a in anns]))
        paths.append(str(folder / ds.coco.loadImgs(image_id)[0]["file_name"]))
    split = DetectionSplit(tuple(targets), paths=tuple(paths),
                           nominal_size=max((max(i["width"], i["height"]) for i in ds.coco.imgs.values()), default=0))
    rest, test = _carve(len(split), 0.15, split_seed)
    train, val = _carve(len(rest), 0.15 / 0.85, split_seed + 1)
    names = tuple(ds.coco.cats[c]["name"] for c in categories)
    return DatasetBundle(f"coco:{path}", split.take(rest[train]), split.take(rest[val]), split.take(test), names,
                         metric="map50", task="detection", description=f"COCO-format annotations {ann.name}")
