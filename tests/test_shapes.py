"""Tests for the procedural shapes source domain."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier

from harness.core.errors import ConfigError
from harness.data.shapes import SHAPE_CLASSES, generate_shapes

NUM_CLASSES = len(SHAPE_CLASSES)


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    return generate_shapes(per_class=5, size=32, seed=0)


def _features(images: np.ndarray) -> np.ndarray:
    """16x16 grayscale, as distance from the image's median so light-on-dark and dark-on-light shapes look alike."""
    gray = np.tensordot(images.astype(np.float32), np.array([0.299, 0.587, 0.114], np.float32), axes=([1], [0]))
    n, size = len(gray), gray.shape[1]
    small = gray.reshape(n, 16, size // 16, 16, size // 16).mean(axis=(2, 4))
    median = np.median(small.reshape(n, -1), axis=1)
    return np.abs(small - median[:, None, None]).reshape(n, -1)


def test_classes_are_distinct_and_enough() -> None:
    assert NUM_CLASSES >= 10
    assert len(set(SHAPE_CLASSES)) == NUM_CLASSES


@pytest.mark.parametrize("size", [8, 32, 48])
def test_shapes_and_dtypes(size: int) -> None:
    images, labels = generate_shapes(per_class=2, size=size, seed=1)
    assert images.shape == (2 * NUM_CLASSES, 3, size, size)
    assert images.dtype == np.uint8
    assert labels.shape == (2 * NUM_CLASSES,)
    assert labels.dtype == np.int64


def test_classes_are_exactly_balanced_and_shuffled(sample: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = sample
    assert np.bincount(labels, minlength=NUM_CLASSES).tolist() == [5] * NUM_CLASSES
    assert labels.min() == 0 and labels.max() == NUM_CLASSES - 1
    assert not np.array_equal(labels, np.sort(labels))


def test_same_seed_is_bit_identical(sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = generate_shapes(per_class=5, size=32, seed=0)
    assert np.array_equal(images, sample[0])
    assert np.array_equal(labels, sample[1])


def test_different_seed_differs(sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = generate_shapes(per_class=5, size=32, seed=1)
    assert not np.array_equal(images, sample[0])
    assert not np.array_equal(labels, sample[1])


def test_images_vary_within_and_between(sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = sample
    per_image_std = images.reshape(len(images), -1).std(axis=1)
    assert (per_image_std > 5).all()
    assert len({img.tobytes() for img in images}) == len(images)


def test_shape_stands_out_from_background(sample: tuple[np.ndarray, np.ndarray]) -> None:
    """Every image has a clear patch of pixels far in luminance from its (background) border, but not the whole frame."""
    images, _ = sample
    gray = np.tensordot(images.astype(np.float32), np.array([0.299, 0.587, 0.114], np.float32), axes=([1], [0]))
    for img in gray:
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        far = np.abs(img - np.median(border)) > 50
        assert far.sum() >= 10, "too few pixels differ clearly from the background"
        assert far.mean() < 0.9


def test_learnable_above_chance() -> None:
    x_train, y_train = generate_shapes(per_class=100, size=32, seed=100)
    x_test, y_test = generate_shapes(per_class=50, size=32, seed=101)
    model = ExtraTreesClassifier(n_estimators=200, random_state=0, n_jobs=1).fit(_features(x_train), y_train)
    accuracy = model.score(_features(x_test), y_test)
    assert accuracy > 2.4 / NUM_CLASSES, f"accuracy {accuracy:.3f} is not clearly above chance {1 / NUM_CLASSES:.3f}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_class": 0}, "per_class=0: must be an integer >= 1"),
        ({"per_class": -3}, "per_class=-3: must be an integer >= 1"),
        ({"per_class": 2.5}, "per_class=2.5: must be an integer >= 1"),
        ({"per_class": 1, "size": 7}, "size=7: must be an integer >= 8"),
        ({"per_class": 1, "size": 0}, "size=0: must be an integer >= 8"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        generate_shapes(**kwargs)  # type: ignore[arg-type]
    assert str(excinfo.value) == message
    assert "\n" not in str(excinfo.value)
