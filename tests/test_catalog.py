"""The dataset catalogue on tiny fixtures written in each dataset's real format, read through torchvision's classes."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from catalog_fixtures import WRITERS, class_of, image_ids, no_md5, write_all, write_cifar10, write_mnist
from harness.data.preprocessing import Preprocessing
from harness.models.weights import LoadedWeights
from harness.cli import main
from harness.data.catalog import CATALOG, CATALOGUE, fetch_dataset, final_trains_on_val
from harness.data.root import DATA_ENV, runtime_env_vars, use_data_root
from harness.data.bundle import Split
from harness.data.registry import DATASETS, dataset_options, load_dataset
from harness.data.augment import BatchTransform
from harness.train.inputs import resolve_preprocessing
from harness.train.loop import fit, train_loop
from harness.core.errors import ConfigError
from harness.data.files import FileSplit
from harness.core.config import TrialConfig


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return root, write_all(root)


@pytest.fixture
def data(fixture_root, monkeypatch):
    root, names = fixture_root
    monkeypatch.setenv(DATA_ENV, str(root))
    monkeypatch.setenv("HARNESS_LOADER_WORKERS", "0")
    no_md5(monkeypatch)
    return root, names


IN_MEMORY = {  # name: (official train, official test, channels, side, classes, validation carved from train)
    "mnist": (300, 100, 1, 28, 10, 30),
    "fashion_mnist": (300, 100, 1, 28, 10, 30),
    "kmnist": (300, 100, 1, 28, 10, 30),
    "cifar10": (1100, 100, 3, 32, 10, 110),
    "cifar100": (1000, 200, 3, 32, 100, 100),
    "svhn": (200, 60, 3, 32, 10, 20),
    "stl10": (100, 40, 3, 96, 10, 10),
}


@pytest.mark.parametrize("name", IN_MEMORY)
def test_in_memory_loader_reads_the_real_format_and_carves_validation_from_train(data, name):
    n_train, n_test, channels, side, classes, n_val = IN_MEMORY[name]
    b = load_dataset(name)
    assert isinstance(b.train, Split) and b.train.images.dtype == torch.uint8
    assert (len(b.train), len(b.val), len(b.test)) == (n_train - n_val, n_val, n_test)
    assert (b.channels, b.image_size, b.num_classes) == (channels, side, classes)
    assert b.metric == "accuracy" and b.summary()["metric"] == "accuracy" and b.summary()["storage"] == "memory"
    for split in (b.train, b.val, b.test):  # the label channel the fixture wrote matches the label read
        coded = split.images[:, -1, side - 1, 0].long()
        assert torch.equal(coded, (split.labels % 10) * 20 + 40)
    ids = {k: image_ids(s.images.numpy()) for k, s in (("train", b.train), ("val", b.val), ("test", b.test))}
    assert ids["val"].isdisjoint(ids["train"]) and max(ids["val"]) < 10_000 <= min(ids["test"])
    if classes == 10:
        assert b.val.labels.bincount().tolist() == [n_val // 10] * 10  # stratified


def test_in_memory_splits_are_deterministic_per_split_seed(data):
    root = str(data[0])
    a, b = DATASETS.get("cifar10")(root=root), DATASETS.get("cifar10")(root=root)
    c = DATASETS.get("cifar10")(root=root, split_seed=1)
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.train.labels, b.train.labels)
    assert not torch.equal(a.val.images, c.val.images) and torch.equal(a.test.images, c.test.images)


PHOTOS = {  # spec: (train, val, test, metric)
    "flowers102?size=16": (6, 6, 9, "balanced_accuracy"),
    "oxford_pets?size=16&val=0.2": (24, 6, 12, "balanced_accuracy"),
    "dtd?size=16": (9, 9, 9, "accuracy"),
    "eurosat?size=16": (18, 6, 6, "accuracy"),
    "food101?size=16": (27, 3, 12, "accuracy"),
    "caltech101?size=16&train_per_class=4&val=0.25": (9, 3, 6, "balanced_accuracy"),
    "fgvc_aircraft?size=16": (6, 6, 6, "balanced_accuracy"),
    "stanford_cars?size=16&val=0.2": (14, 4, 6, "accuracy"),
    "sun397?size=16&train_per_class=4&test_per_class=2&val=0.25": (9, 3, 6, "accuracy"),
    "imagenet_subset?size=16&classes=3&val=0.25": (13, 5, 6, "accuracy"),
}


def keys(split: FileSplit) -> set[tuple[int, int]]:
    return {(id(split.sources[s]), int(i)) for s, i in split.refs}


@pytest.mark.parametrize("spec", PHOTOS)
def test_photo_loader_reads_the_real_format_from_disk_on_demand(data, spec):
    names = data[1][spec.split("?")[0]]
    b = load_dataset(spec)
    assert all(isinstance(s, FileSplit) for s in (b.train, b.val, b.test))
    assert (len(b.train), len(b.val), len(b.test)) == PHOTOS[spec][:3]
    assert b.metric == PHOTOS[spec][3] and b.summary()["metric"] == PHOTOS[spec][3]
    assert b.summary()["storage"] == "files" and (b.channels, b.image_size) == (3, 16)
    for split in (b.train, b.val, b.test):
        x, y = next(iter(DataLoader(split.dataset(), batch_size=len(split))))
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 16, 16)
        decoded = [class_of(r) for r in x[:, 0].float().mean(dim=(1, 2)).tolist()]
        assert decoded == [names.index(b.class_names[label]) for label in y.tolist()]
    assert keys(b.val).isdisjoint(keys(b.train)) and keys(b.val).isdisjoint(keys(b.test))
    assert keys(b.train).isdisjoint(keys(b.test))


@pytest.mark.parametrize("name,spec,same_source", [("food101", "food101?size=16", True),
                                                    ("dtd", "dtd?size=16", False)])
def test_validation_comes_from_train_or_the_official_validation_split(data, name, spec, same_source):
    b = load_dataset(spec)
    val_sources = {id(s) for s in b.val.sources}
    assert (val_sources <= {id(s) for s in b.train.sources}) == same_source
    assert val_sources.isdisjoint({id(s) for s in b.test.sources})


def test_photo_splits_are_deterministic(data):
    root = str(data[0])
    make = lambda **kw: DATASETS.get("sun397")(root=root, size=16, train_per_class=4, test_per_class=2,  # noqa: E731
                                               val=0.25, **kw)
    a, b, c = make(), make(), make(split_seed=3)
    paths = lambda s: [str(s.sources[i]._image_files[j]) for i, j in s.refs]  # noqa: E731
    assert paths(a.val) == paths(b.val) and paths(a.test) == paths(b.test)
    assert paths(a.test) != paths(c.test) or paths(a.val) != paths(c.val)


def test_imagenet_subset_draws_classes_deterministically_and_disjoint_sources(data):
    target = load_dataset("imagenet_subset?size=16&classes=3")
    source = load_dataset("imagenet_subset?size=16&classes=3&first=3")
    assert len(set(target.class_names) | set(source.class_names)) == 6
    assert load_dataset("imagenet_subset?size=16&classes=3&class_seed=0").class_names == target.class_names
    with pytest.raises(ConfigError, match=r"first \+ classes must be <= the 6 class folders"):
        load_dataset("imagenet_subset?classes=5&first=2")


def test_class_subset_and_few_shot_work_on_file_backed_splits(data):
    b = load_dataset("food101:0,2?size=16", samples_per_class=2, seed=1)
    assert b.class_names == ("apple_pie", "baklava") and b.train.labels.bincount().tolist() == [2, 2]
    assert set(b.test.labels.tolist()) == {0, 1} and len(b.test) == 8
    x, y = next(iter(DataLoader(b.test.dataset(), batch_size=8)))
    assert [class_of(r) for r in x[:, 0].float().mean(dim=(1, 2)).tolist()] == [2 * label for label in y.tolist()]
    other = load_dataset("food101:0,2?size=16", samples_per_class=2, seed=2)
    assert b.train.refs.tolist() != other.train.refs.tolist() and b.val.refs.tolist() == other.val.refs.tolist()


def test_vtab1k_takes_800_train_and_200_validation_examples(data):
    b = load_dataset("cifar10?protocol=vtab1k")
    assert (len(b.train), len(b.val), len(b.test)) == (800, 200, 100)
    train, val = image_ids(b.train.images.numpy()), image_ids(b.val.images.numpy())
    assert train.isdisjoint(val) and max(train | val) < 10_000
    again = DATASETS.get("cifar10")(root=str(data[0]), protocol="vtab1k")
    assert torch.equal(again.train.images, b.train.images) and torch.equal(again.val.images, b.val.images)
    assert final_trains_on_val("cifar10?protocol=vtab1k") and not final_trains_on_val("cifar10")


@pytest.mark.parametrize("spec,message", [
    ("mnist?protocol=vtab1k", "needs 1000 training examples, the dataset has 300"),
    ("flowers102?protocol=vtab1k", "needs 800 training and 200 validation examples, the dataset has 6 and 6"),
    ("cifar10?protocol=vtab10k", "option protocol='vtab10k': choose from: standard, vtab1k"),
    ("food101?size=4", "option size=4: must be >= 8"),
    ("cifar10?val=1.5", "option val=1.5: must be in (0, 1)"),
    ("fgvc_aircraft?annotation_level=model", "choose from: variant, family, manufacturer"),
])
def test_bad_catalogue_options_are_one_line_errors(data, spec, message):
    with pytest.raises(ConfigError) as e:
        load_dataset(spec)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_vtab1k_final_run_retrains_on_all_1000(data):
    summary = train_loop(TrialConfig(dataset="cifar10?protocol=vtab1k", backbone="resnet8", method="scratch",
                                     epochs=1, batch_size=200, train_on_val=True, evaluate_test=True))
    assert summary["status"] == "ok" and summary["data"]["train"] == 1000 and summary["test"]["accuracy"] >= 0


def test_train_on_val_changes_the_identity_only_when_on():
    off, on = TrialConfig(), TrialConfig(train_on_val=True)
    assert off.identity() == "517fa4e81bb5" and on.identity() != off.identity()  # the hash before train_on_val


def test_missing_dataset_names_files_folder_and_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(ConfigError) as e:
        load_dataset("cifar10")
    msg = str(e.value)
    assert "\n" not in msg and "cifar-10-batches-py/data_batch_1" in msg and str(tmp_path) in msg
    assert f"harness fetch cifar10 --data-root {tmp_path}" in msg
    with pytest.raises(ConfigError, match="torchvision cannot download it: its original URL is gone"):
        load_dataset("stanford_cars")
    with pytest.raises(ConfigError, match=f"under {tmp_path}/imagenet"):
        load_dataset("imagenet_subset")


def test_corrupt_files_are_a_one_line_error(tmp_path, monkeypatch):
    write_cifar10(tmp_path, per_batch=10, n_test=10)  # real MD5 checks on: fixture files do not match
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(ConfigError) as e:
        load_dataset("cifar10")
    assert "torchvision's CIFAR10 cannot read" in str(e.value) and "corrupted" in str(e.value)
    assert "\n" not in str(e.value)


def test_fetch_downloads_into_the_data_root_once(tmp_path, monkeypatch):
    calls = []

    def download(root):
        calls.append(root)
        write_mnist(root, "MNIST", 20, 10)

    monkeypatch.setitem(CATALOG, "mnist", replace(CATALOG["mnist"], fetch=download))
    assert fetch_dataset("mnist", tmp_path) == tmp_path and fetch_dataset("mnist?val=0.2", tmp_path) == tmp_path
    assert calls == [tmp_path]
    with pytest.raises(ConfigError, match="fetch stanford_cars: torchvision cannot download it"):
        fetch_dataset("stanford_cars", tmp_path)


def test_preprocessing_follows_imagenet_weights_resize_and_crop(data):
    prep = Preprocessing(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "imagenet:X", 232)
    weights = LoadedWeights("imagenet", preprocessing=prep)
    got = resolve_preprocessing(TrialConfig(backbone="resnet50", weights="imagenet"), 16, lambda: None, weights)
    assert (got.image_size, got.resize_size, got.mean) == (224, 232, prep.mean)
    half = resolve_preprocessing(TrialConfig(backbone="resnet50", weights="imagenet", image_size=112), 16,
                                 lambda: None, weights)
    assert (half.image_size, half.resize_size) == (112, 116)
    b = load_dataset("food101?size=16", image_size=40, resize_size=46)
    assert b.test.dataset()[0][0].shape == (3, 40, 40) and b.test.effective_resize == 46


def test_grayscale_batches_become_three_channels_at_the_input_size(data):
    b = load_dataset("mnist")
    prep = Preprocessing(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "test")
    x = BatchTransform(prep, augment=True, flip=False, channels_last=False)(b.train.images[:4], train=True)
    assert x.shape == (4, 3, 32, 32) and torch.equal(x[:, 0], x[:, 2])


def test_training_on_a_file_backed_dataset_with_loader_workers(data, monkeypatch):
    monkeypatch.setenv("HARNESS_LOADER_WORKERS", "1")
    scratch = fit(TrialConfig(dataset="dtd?size=16", backbone="resnet8", method="scratch", epochs=1, batch_size=4,
                              evaluate_test=True)).summary
    assert scratch["status"] == "ok" and scratch["data"]["storage"] == "files" and scratch["test"] is not None
    probe = fit(TrialConfig(dataset="dtd?size=16", backbone="resnet8", method="linear_probe", lr=0.5, epochs=2,
                            batch_size=4)).summary
    assert probe["model"]["cached_features"] and probe["model"]["input_size"] == 16


def test_data_root_is_absolute_and_handed_to_ray(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, "placeholder")  # recorded, so the value set below is undone after the test
    monkeypatch.delenv(DATA_ENV)
    assert runtime_env_vars() == {}
    monkeypatch.chdir(tmp_path)
    root = use_data_root("rel/data")
    assert root == tmp_path / "rel" / "data" and runtime_env_vars() == {DATA_ENV: str(root)}


def test_catalogue_descriptions_are_one_line():
    for name in CATALOG:
        assert name in DATASETS and "\n" not in DATASETS.describe(name) and len(DATASETS.describe(name)) < 120
    assert np.all([CATALOG[n].metric == "balanced_accuracy" for n in
                   ("fgvc_aircraft", "oxford_pets", "caltech101", "flowers102")])


FIXTURE_OPTIONS = {"caltech101": {"train_per_class": 4}, "sun397": {"train_per_class": 4, "test_per_class": 2},
                   "imagenet_subset": {"classes": 3}}  # the fixtures hold 6 images per class, 6 ImageNet classes


def test_every_catalogue_entry_has_a_fixture():
    assert list(WRITERS) == list(CATALOG) == [entry.name for entry in CATALOGUE]


@pytest.mark.parametrize("entry", CATALOGUE, ids=lambda entry: entry.name)
def test_every_catalogue_entry_loads_from_its_fixture(data, entry):
    options = {**({"size": 16} if "size" in entry.options else {}), **FIXTURE_OPTIONS.get(entry.name, {})}
    b = load_dataset(entry.name + "?" + "&".join(f"{k}={v}" for k, v in options.items()))
    assert (b.metric, b.flip, b.summary()["storage"]) == (entry.metric, entry.flip, entry.storage)
    assert b.description == entry.description.format(**{**entry.defaults, **options})
    assert DATASETS.get(entry.name) is entry and DATASETS.describe(entry.name) == entry.about
    for split in (b.train, b.val, b.test):
        assert len(split) > 0 and set(split.labels.tolist()) <= set(range(b.num_classes))


def test_harness_list_shows_the_catalogue_table(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    datasets = out.split("datasets", 1)[1].split("\nbackbones:", 1)[0].splitlines()[1:]
    shown = [line for line in datasets if line.split()[0] in CATALOG]
    assert shown == [f"  {e.name:<22} {e.about}  [{', '.join(f'{k}={o.default}' for k, o in e.options.items())}]"
                     for e in CATALOGUE]
    assert all(dataset_options(e.name) == e.defaults for e in CATALOGUE)
    assert dataset_options("shapes") == {"per_class": 200, "size": 32, "seed": 0} and dataset_options("digits") == {}
    assert any(line.startswith("  folder:PATH ") and line.endswith("[size=32]") for line in datasets)


def test_catalogue_options_are_checked_before_files_are_read(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=r"option partition=11: must be in 1-10$"):
        load_dataset("dtd?partition=11")
    with pytest.raises(ConfigError, match=r"unknown option 'size'; allowed: val, protocol$"):
        DATASETS.get("mnist")(root=str(tmp_path), size=16)
