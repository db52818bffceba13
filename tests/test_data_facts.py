"""A dataset's facts (harness.data.facts), which the pre-flight checks without loading any image, agree with its
loaded splits: class names, training images per class, task and headline metric for class subsets and split
seeds, the few-shot sizes refused and the words they are refused in; the split arithmetic (harness.data.stratify)
is scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest

from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.data.builtin import DIGITS
from harness.data.facts import dataset_facts
from harness.data.registry import load_dataset
from harness.data.splits import stratified_splits
from harness.data.stratify import train_counts
from harness.train import checks

SPECS = ["digits", "digits:0-4", "digits:5-9", "digits:7,3,9", "digits:2-4,8", "shapes?per_class=20",
         "shapes:circle,star?per_class=20", "shapes:star,ring,cross?per_class=9&seed=3&size=16"]


def outcome(f, *args, **kwargs):
    """What a call gives: its value, or the message of the ConfigError it raises."""
    try:
        return f(*args, **kwargs)
    except ConfigError as e:
        return f"refused: {e}"


def test_declared_digit_counts_are_scikit_learns():
    from sklearn.datasets import load_digits

    assert DIGITS.counts == tuple(np.bincount(load_digits().target))


@pytest.mark.parametrize("split_seed", [0, 1, 7])
@pytest.mark.parametrize("spec", SPECS)
def test_facts_are_those_of_the_loaded_splits(spec, split_seed):
    facts = dataset_facts(spec, split_seed)
    bundle = load_dataset(spec, split_seed=split_seed)
    assert facts is not None
    assert facts.class_names == bundle.class_names and facts.name == bundle.name == spec
    assert facts.train_counts == tuple(np.bincount(bundle.train.labels.numpy(), minlength=bundle.num_classes))
    assert (facts.task, facts.metric) == (bundle.task, bundle.metric)


@pytest.mark.parametrize("spec,split_seed", [("digits:5-9", 0), ("digits:8,9", 5), ("digits", 3),
                                             ("shapes:circle,star?per_class=20", 0)])
def test_few_shot_sizes_are_refused_as_loading_refuses_them(spec, split_seed):
    facts = dataset_facts(spec, split_seed)
    fewest = min(facts.train_counts)
    for k in (1, fewest - 1, fewest, fewest + 1, 10 * fewest):
        for val_per_class in (0, -1, 3):
            loaded = outcome(load_dataset, spec, samples_per_class=k, seed=2, split_seed=split_seed,
                             val_per_class=val_per_class)
            light = outcome(facts.check_few_shot, k)
            assert (light is None) == (not isinstance(loaded, str)), (k, light, loaded)
            if isinstance(loaded, str):
                assert light == loaded


@pytest.mark.parametrize("spec", ["digits:5-15", "digits:3", "digits:a-b", "digits:4,4", "shapes:circle,blob",
                                  "shapes?per_class=0", "shapes?size=4", "digits?foo=1", "shapes?per_class=x"])
def test_a_bad_spec_is_refused_in_the_words_loading_refuses_it(spec):
    light, loaded = outcome(dataset_facts, spec), outcome(load_dataset, spec)
    assert isinstance(light, str) and light == loaded


@pytest.mark.parametrize("spec", ["shapes?per_class=1", "folder:/nonexistent", "shapes_det", "cifar10"])
def test_a_dataset_without_facts_is_left_to_its_loader(spec):
    assert dataset_facts(spec) is None


@pytest.mark.parametrize("config", [
    {"dataset": "digits:5-9", "samples_per_class": 10, "method": "finetune"},
    {"dataset": "digits:0-1", "samples_per_class": 200, "method": "partial", "freeze_depth": 2},
    {"dataset": "digits:8,9", "samples_per_class": 105, "split_seed": 5, "val_per_class": 3},
    {"dataset": "digits:1,1", "method": "scratch"},
    {"dataset": "shapes:circle,star?per_class=20", "samples_per_class": 15, "train_on_val": True},
    {"dataset": "shapes?per_class=1"},
])
def test_run_problems_are_the_same_from_facts_as_from_the_loaded_splits(config, monkeypatch):
    c = TrialConfig.from_dict({"backbone": "resnet8", **config})
    light = [str(e) for e in checks.run_problems(c)]
    monkeypatch.setattr(checks, "dataset_facts", lambda spec, split_seed: None)
    assert light == [str(e) for e in checks.run_problems(c)]


def test_split_counts_are_scikit_learns_for_any_class_sizes():
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(200):
        counts = rng.integers(1, 40, int(rng.integers(2, 9)))
        labels = rng.permutation(np.repeat(np.arange(len(counts)), counts))
        val, test = [(0.2, 0.2), (0.15, 0.15), (0.1, 0.3)][int(rng.integers(3))]
        seed = int(rng.integers(1000))
        try:
            train, _, _ = stratified_splits(labels, val, test, seed)
            expected = tuple(np.bincount(labels[train], minlength=len(counts)))
        except ConfigError:
            expected, refused = None, refused + 1
        assert train_counts(counts, val, test, seed) == expected, (counts, val, test, seed)
    assert 0 < refused < 200
