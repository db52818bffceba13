from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.data.registry import load_dataset
from harness.core.errors import ConfigError


def test_digits_split_is_stratified_deterministic_and_disjoint():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert (len(a.train), len(a.val), len(a.test)) == (1077, 360, 360)
    assert a.num_classes == 10 and a.channels == 1 and a.image_size == 32 and not a.flip
    assert torch.equal(a.test.images, b.test.images)
    share = a.test.labels.bincount().float() / (a.train.labels.bincount() + a.val.labels.bincount()
                                                + a.test.labels.bincount())
    assert torch.all((share - 0.2).abs() < 0.01)
    train_rows = {bytes(x.numpy()) for x in a.train.images}
    assert not any(bytes(x.numpy()) in train_rows for x in a.test.images[:50])


def test_class_subset_reindexes_labels():
    sub = load_dataset("digits:5-9")
    assert sub.class_names == ("5", "6", "7", "8", "9")
    assert sorted(sub.train.labels.unique().tolist()) == [0, 1, 2, 3, 4]
    full = load_dataset("digits")
    assert len(sub.test) == int((full.test.labels >= 5).sum())
    assert load_dataset("shapes:circle,star?per_class=20").num_classes == 2


def test_few_shot_draws_k_per_class_from_train_and_val_by_its_seed_and_leaves_test():
    full = load_dataset("digits:5-9")
    a = load_dataset("digits:5-9", samples_per_class=3, seed=1)
    b = load_dataset("digits:5-9", samples_per_class=3, seed=1)
    c = load_dataset("digits:5-9", samples_per_class=3, seed=2)
    assert a.train.labels.bincount().tolist() == [3] * 5 and a.val.labels.bincount().tolist() == [3] * 5
    assert torch.equal(a.train.images, b.train.images) and not torch.equal(a.train.images, c.train.images)
    assert torch.equal(a.val.images, b.val.images) and not torch.equal(a.val.images, c.val.images)
    assert torch.equal(a.test.images, full.test.images)
    val_images = {bytes(x.numpy()) for x in full.val.images}
    assert all(bytes(x.numpy()) in val_images for x in a.val.images)  # drawn from validation, never from train


@pytest.mark.parametrize("val_per_class, expected", [(5, [5] * 5), (-1, None)])
def test_val_per_class_sets_the_few_shot_validation_size(val_per_class, expected):
    full = load_dataset("digits:5-9")
    d = load_dataset("digits:5-9", samples_per_class=3, seed=1, val_per_class=val_per_class)
    counts = d.val.labels.bincount().tolist()
    assert counts == (expected or full.val.labels.bincount().tolist())


def test_shapes_options_and_resize():
    s = load_dataset("shapes?per_class=20&size=16", image_size=24)
    assert s.num_classes >= 10 and s.channels == 3 and s.image_size == 24
    assert len(s.train) + len(s.val) + len(s.test) == 20 * s.num_classes


@pytest.mark.parametrize("spec,message", [
    ("digts", "unknown dataset 'digts'; choose from: digits"),
    ("shapes?colour=red", "unknown option 'colour'; allowed: per_class, size, seed"),
    ("shapes?per_class=many", "option per_class='many' must be int"),
    ("digits:3", "needs at least 2 distinct classes"),
    ("digits:0-12", "index 10 out of range 0-9"),
    ("folder", "needs a path"),
])
def test_bad_dataset_specs(spec, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        load_dataset(spec)


def write_tree(root: Path, classes: dict[str, int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for k, (name, n) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 60, (20, 24, 3), dtype=np.uint8) + np.uint8(k * 90)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_folder_with_one_tree_is_split(tmp_path):
    write_tree(tmp_path, {"cat": 20, "dog": 20, "owl": 20})
    b = load_dataset(f"folder:{tmp_path}?size=16")
    assert b.class_names == ("cat", "dog", "owl") and b.image_size == 16 and b.channels == 3
    assert (len(b.train), len(b.val), len(b.test)) == (42, 9, 9)


def test_folder_with_train_and_test_carves_validation_from_train(tmp_path):
    write_tree(tmp_path / "train", {"a": 20, "b": 20})
    write_tree(tmp_path / "test", {"a": 5, "b": 5}, seed=1)
    b = load_dataset(f"folder:{tmp_path}")
    assert len(b.test) == 10 and len(b.train) + len(b.val) == 40 and len(b.val) == 6


@pytest.mark.parametrize("classes,message", [({}, "holds no images"), ({"only": 5}, "1 class folder")])
def test_folder_errors(tmp_path, classes, message):
    write_tree(tmp_path, classes)
    with pytest.raises(ConfigError, match=message):
        load_dataset(f"folder:{tmp_path}")


def test_folder_missing_path():
    with pytest.raises(ConfigError, match="no such folder"):
        load_dataset("folder:/nonexistent/images")
