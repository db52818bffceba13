"""Tiny detection datasets in their real formats: a VOC tree (XML annotations, JPEG images, ImageSets split files)
that torchvision's VOCDetection reads, and a COCO JSON with its images folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# (image id, width, height, [(class, xmin, ymin, xmax, ymax, difficult)]) in VOC's 1-based inclusive pixels
VOC_TRAINVAL = [
    ("000005", 60, 40, [("dog", 5, 6, 30, 35, 0), ("person", 35, 2, 58, 39, 1)]),
    ("000007", 50, 50, [("car", 10, 10, 40, 30, 0)]),
    ("000009", 40, 60, [("cat", 3, 4, 38, 55, 0), ("dog", 20, 20, 30, 30, 0)]),
    ("000012", 48, 48, [("person", 1, 1, 48, 48, 0)]),
    ("000016", 64, 32, [("bird", 10, 5, 20, 15, 0)]),
]
VOC_TEST = [
    ("000001", 50, 40, [("dog", 2, 3, 20, 30, 0), ("cat", 25, 5, 48, 38, 1)]),
    ("000002", 40, 40, [("person", 5, 5, 35, 35, 0)]),
]


def _xml(image_id: str, width: int, height: int, objects: list) -> str:
    parts = [f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>",
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, x1, y1, x2, y2, difficult in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                     f"<difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                     f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>"


def write_voc(root: Path) -> Path:
    """A VOCdevkit/VOC2007 tree with trainval and test image sets under `root`; returns root."""
    base = root / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for image_set, items in (("trainval", VOC_TRAINVAL), ("test", VOC_TEST)):
        for image_id, w, h, objects in items:
            (base / "Annotations" / f"{image_id}.xml").write_text(_xml(image_id, w, h, objects))
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(base / "JPEGImages" / f"{image_id}.jpg")
        (base / "ImageSets" / "Main" / f"{image_set}.txt").write_text("".join(f"{i[0]}\n" for i in items))
    return root


def write_coco(folder: Path, images: int = 8) -> Path:
    """A COCO-format annotation file (two categories with ids 3 and 7, one crowd region) and its images folder."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    imgs, anns = [], []
    for i in range(images):
        name = f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(folder / "images" / name)
        imgs.append({"id": 100 + i, "file_name": name, "width": 48, "height": 32})
        anns.append({"id": 2 * i + 1, "image_id": 100 + i, "category_id": 3 if i % 2 else 7,
                     "bbox": [4, 5, 20, 10], "area": 200, "iscrowd": 0})
        anns.append({"id": 2 * i + 2, "image_id": 100 + i, "category_id": 7, "bbox": [30, 2, 10, 20], "area": 200,
                     "iscrowd": int(i == 0)})
    path = folder / "annotations.json"
    path.write_text(json.dumps({"images": imgs, "annotations": anns,
                                "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "truck"}]}))
    return path
