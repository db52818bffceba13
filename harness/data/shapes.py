"""Procedural coloured shapes on textured backgrounds: an offline, seeded source domain for transfer experiments.

Each image holds one anti-aliased shape (random colour, size, rotation, position) that contrasts with its background.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from harness.core.errors import ConfigError

SUPERSAMPLE = 4
MIN_SIZE = 8
SIZE_RANGE = (0.35, 0.85)
MIN_LUMINANCE_GAP = 0.25
BACKGROUND_COLOUR_SPREAD = 0.25
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

Part = tuple[np.ndarray, bool]
"""A polygon centred near 0 (rescaled to circumradius 1 on registration) and whether it adds to or cuts the shape."""

_REGISTRY: dict[str, Callable[[], list[Part]]] = {}


def _shape(name: str) -> Callable[[Callable[[], list[Part]]], Callable[[], list[Part]]]:
    """Register a function returning the polygon parts of one class."""

    def register(fn: Callable[[], list[Part]]) -> Callable[[], list[Part]]:
        _REGISTRY[name] = fn
        return fn

    return register


def _regular(n: int, radius: float = 1.0, phase: float = -np.pi / 2, centre: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Vertices of a regular n-gon, first vertex pointing up by default."""
    a = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a)], axis=1)


@_shape("circle")
def _circle() -> list[Part]:
    return [(_regular(64), True)]


@_shape("square")
def _square() -> list[Part]:
    return [(_regular(4, phase=np.pi / 4), True)]


@_shape("triangle")
def _triangle() -> list[Part]:
    return [(_regular(3), True)]


@_shape("star")
def _star() -> list[Part]:
    radii = np.tile([1.0, 0.4], 5)
    a = -np.pi / 2 + np.pi * np.arange(10) / 5
    return [(np.stack([radii * np.cos(a), radii * np.sin(a)], axis=1), True)]


@_shape("cross")
def _cross() -> list[Part]:
    w = 0.3
    arm = [(w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1)]
    pts = arm + [(-x, -y) for x, y in arm]
    return [(np.array(pts, dtype=float), True)]


@_shape("ring")
def _ring() -> list[Part]:
    return [(_regular(64), True), (_regular(64, radius=0.55), False)]


@_shape("diamond")
def _diamond() -> list[Part]:
    return [(np.array([(0, -1), (0.55, 0), (0, 1), (-0.55, 0)], dtype=float), True)]


@_shape("arrow")
def _arrow() -> list[Part]:
    pts = [(-1, -0.2), (0.15, -0.2), (0.15, -0.6), (1, 0), (0.15, 0.6), (0.15, 0.2), (-1, 0.2)]
    return [(np.array(pts, dtype=float), True)]


@_shape("crescent")
def _crescent() -> list[Part]:
    return [(_regular(64), True), (_regular(64, radius=0.85, centre=(0.45, 0.0)), False)]


@_shape("heart")
def _heart() -> list[Part]:
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y + 2.5], axis=1) / 16.5
    return [(pts, True)]


@_shape("semicircle")
def _semicircle() -> list[Part]:
    a = np.linspace(0, np.pi, 33)
    return [(np.stack([np.cos(a), np.sin(a) - 0.42], axis=1), True)]


@_shape("hourglass")
def _hourglass() -> list[Part]:
    top = np.array([(-0.75, -1), (0.75, -1), (0, 0)], dtype=float)
    return [(top, True), (-top, True)]


SHAPE_CLASSES: tuple[str, ...] = tuple(_REGISTRY)


def _unit_scaled(parts: list[Part]) -> list[Part]:
    """Rescale parts so the shape's circumradius is exactly 1, making SIZE_RANGE mean the same for every class."""
    radius = max(float(np.linalg.norm(pts, axis=1).max()) for pts, solid in parts if solid)
    return [(pts / radius, solid) for pts, solid in parts]


_GEOMETRY: dict[str, list[Part]] = {name: _unit_scaled(fn()) for name, fn in _REGISTRY.items()}


def _pattern_noise(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    return rng.random((size, size, 1), dtype=np.float32)


def _pattern_stripes(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    angle, cycles, phase = rng.uniform(0, np.pi), rng.uniform(2, 8), rng.uniform(0, 2 * np.pi)
    proj = (xx * np.cos(angle) + yy * np.sin(angle)) / size
    return (0.5 + 0.5 * np.sin(2 * np.pi * cycles * proj + phase))[..., None]


def _pattern_checker(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    cell = rng.uniform(2, max(3, size / 4))
    ox, oy = rng.uniform(0, 2 * cell, 2)
    return ((np.floor((xx + ox) / cell) + np.floor((yy + oy) / cell)) % 2)[..., None]


def _pattern_gradient(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    proj = xx * np.cos(angle) + yy * np.sin(angle)
    return ((proj - proj.min()) / np.ptp(proj))[..., None]


def _pattern_blotches(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    cells = int(rng.integers(3, 7))
    coarse = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    smooth = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    return np.asarray(smooth, dtype=np.float32) / 255


_BACKGROUNDS: dict[str, Callable[[np.random.Generator, int, np.ndarray, np.ndarray], np.ndarray]] = {
    "noise": _pattern_noise,
    "stripes": _pattern_stripes,
    "checker": _pattern_checker,
    "gradient": _pattern_gradient,
    "blotches": _pattern_blotches,
}
_BACKGROUND_KINDS = tuple(_BACKGROUNDS)


def _background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """(size, size, 3) float image blending two nearby colours by a random texture, so its luminance spread is small."""
    kind = _BACKGROUND_KINDS[rng.integers(len(_BACKGROUND_KINDS))]
    c1 = rng.random(3, dtype=np.float32)
    c2 = np.clip(c1 + rng.uniform(-BACKGROUND_COLOUR_SPREAD, BACKGROUND_COLOUR_SPREAD, 3), 0, 1).astype(np.float32)
    t = _BACKGROUNDS[kind](rng, size, yy, xx).astype(np.float32)
    return c1 + (c2 - c1) * t


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """Random RGB colour whose luminance is at least MIN_LUMINANCE_GAP away from every background pixel."""
    lum = background @ LUMA
    lo, hi = float(lum.min()) - MIN_LUMINANCE_GAP, float(lum.max()) + MIN_LUMINANCE_GAP
    below, above = max(lo, 0.0), max(1.0 - hi, 0.0)
    u = rng.uniform(0, below + above)
    target = min(u if u < below else hi + (u - below), 1.0)
    colour = rng.random(3, dtype=np.float32)
    current = float(colour @ LUMA)
    if target >= current:
        return colour + (1 - colour) * (target - current) / max(1 - current, 1e-6)
    return colour * target / max(current, 1e-6)


def _shape_alpha(rng: np.random.Generator, name: str, size: int) -> np.ndarray:
    """(size, size, 1) coverage of one randomly scaled, rotated and placed shape, drawn supersampled then box-filtered."""
    radius = rng.uniform(*SIZE_RANGE) * size / 2
    cx, cy = rng.uniform(0.9 * radius, size - 0.9 * radius, 2)
    angle = rng.uniform(0, 2 * np.pi)
    return draw_shape(name, size, radius, cx, cy, angle)[0]


def draw_shape(name: str, size: int, radius: float, cx: float, cy: float, angle: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """(coverage (size, size, 1), exact box xyxy of the shape's outline clipped to the image) of one shape of
    class `name` with circumradius `radius` centred at (cx, cy), rotated by `angle`."""
    rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    big = size * SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    outline = []
    for pts, solid in _GEOMETRY[name]:
        xy = pts @ rot * radius + (cx, cy)
        draw.polygon((xy * SUPERSAMPLE).ravel().tolist(), fill=255 if solid else 0)
        if solid:
            outline.append(xy)
    small = mask.resize((size, size), Image.BOX)
    corners = np.concatenate(outline)
    box = np.clip(np.concatenate([corners.min(axis=0), corners.max(axis=0)]), 0, size)
    return (np.asarray(small, dtype=np.float32) / 255)[..., None], box


def _render(rng: np.random.Generator, name: str, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """One (3, size, size) uint8 image of class `name`."""
    background = _background(rng, size, yy, xx)
    colour = _contrasting_colour(rng, background)
    alpha = _shape_alpha(rng, name, size)
    image = background * (1 - alpha) + colour * alpha
    return np.rint(image * 255).clip(0, 255).astype(np.uint8).transpose(2, 0, 1)


def check_shapes_args(per_class: int, size: int) -> None:
    """What `generate_shapes` refuses: fewer than one image per class, images smaller than MIN_SIZE."""
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ConfigError(f"per_class={per_class!r}: must be an integer >= 1")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ConfigError(f"size={size!r}: must be an integer >= {MIN_SIZE}")


def generate_shapes(per_class: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 array of shape (N, 3, size, size), labels int64 array of shape (N,)), N = per_class * len(SHAPE_CLASSES).

    Classes are balanced and shuffled by the seed; the output depends only on (per_class, size, seed).
    """
    check_shapes_args(per_class, size)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(SHAPE_CLASSES), dtype=np.int64), per_class))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.empty((len(labels), 3, size, size), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i] = _render(rng, SHAPE_CLASSES[label], size, yy, xx)
    return images, labels


def generate_scenes(images: int, size: int = 64, seed: int = 0, classes: int = len(SHAPE_CLASSES),
                    max_objects: int = 3, size_range: tuple[float, float] = (0.12, 0.3), max_iou: float = 0.3
                    ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Detection scenes: (images uint8 (N, 3, size, size), per image (boxes float32 (k, 4) xyxy, labels int64
    (k,))). Each image holds 1 to `max_objects` shapes of the first `classes` classes on one textured
    background, of circumradius `size_range` x size, overlapping each other's boxes by at most `max_iou`; the
    boxes are the shapes' exact outlines. Depends only on the arguments."""
    if isinstance(images, bool) or not isinstance(images, (int, np.integer)) or images < 1:
        raise ConfigError(f"images={images!r}: must be an integer >= 1")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2 * MIN_SIZE:
        raise ConfigError(f"size={size!r}: must be an integer >= {2 * MIN_SIZE}")
    if not 1 <= classes <= len(SHAPE_CLASSES):
        raise ConfigError(f"classes={classes!r}: must be in [1, {len(SHAPE_CLASSES)}]")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    out = np.empty((images, 3, size, size), dtype=np.uint8)
    targets = []
    for i in range(images):
        image = _background(rng, size, yy, xx)
        boxes, labels = [], []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            label = int(rng.integers(classes))
            for _attempt in range(10):
                radius = rng.uniform(*size_range) * size
                cx, cy = rng.uniform(0.7 * radius, size - 0.7 * radius, 2)
                alpha, box = draw_shape(SHAPE_CLASSES[label], size, radius, cx, cy, rng.uniform(0, 2 * np.pi))
                if all(_iou(box, b) <= max_iou for b in boxes):
                    break
            else:
                continue
            colour = _contrasting_colour(rng, image)
            image = image * (1 - alpha) + colour * alpha
            boxes.append(box)
            labels.append(label)
        out[i] = np.rint(image * 255).clip(0, 255).astype(np.uint8).transpose(2, 0, 1)
        targets.append((np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(labels, dtype=np.int64)))
    return out, targets


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
