"""The evaluation protocol without Ray: seed policy, selection metric, few-shot validation (issue 13)."""

import pytest

from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.study.finals import FinalJob, final_config
from harness.study.suite import cells, suite_from_dict


def suite(**extra):
    data = {"datasets": ["digits:5-9"], "methods": ["finetune"], "backbones": ["resnet8"], "final_seeds": 3}
    return suite_from_dict({**data, **extra}, "test")


def finals_of(s):
    (cell,) = cells(s)
    return cell, [final_config(FinalJob(cell, cell.constants, seed, 0.0)) for seed in cell.final_seed_list]


def test_search_trials_use_the_search_seed_and_finals_seeds_disjoint_from_it():
    cell, finals = finals_of(suite(seeds={"search": 7, "subset": 3, "split": 5}))
    assert (cell.constants["seed"], cell.constants["subset_seed"], cell.constants["split_seed"]) == (7, 3, 5)
    assert [f.seed for f in finals] == [8, 9, 10]
    assert all(f.subset_seed == 3 and f.split_seed == 5 for f in finals)  # by default finals keep the subset
    assert all(f.evaluate_test for f in finals)


@pytest.mark.parametrize("vary, subsets, splits", [
    (["init"], [0, 0], [0, 0]),
    (["init", "subset"], [1, 2], [0, 0]),
    (["init", "subset", "split"], [1, 2], [1, 2]),
])
def test_final_vary_redraws_the_named_seeds_per_final_run(vary, subsets, splits):
    _, finals = finals_of(suite(final_seeds=2, final_vary=vary))
    assert [f.seed for f in finals] == [1, 2]
    assert [f.subset_seed for f in finals] == subsets and [f.split_seed for f in finals] == splits
    assert len({f.identity() for f in finals}) == 2


def test_the_seed_policy_is_part_of_the_cells_identity():
    ids = {cells(s)[0].cell_id for s in (suite(), suite(final_vary=["init", "subset"]), suite(seeds={"search": 1}),
                                         suite(datasets=[{"name": "digits:5-9", "val_per_class": 5}]))}
    assert len(ids) == 4


@pytest.mark.parametrize("extra, message", [
    ({"final_vary": ["init", "bogus"]}, "final_vary: 'bogus' is not a seed; choose from: init, subset, split"),
    ({"final_vary": ["subset"]}, "final_vary=['subset']: must include init"),
    ({"final_vary": 3}, "final_vary=3: must be a list"),
    ({"seeds": {"search": -1}}, "seeds.search=-1: must be >= 0"),
    ({"seeds": {"init": 1}}, "seeds: unknown key 'init'; choose from: search, subset, split"),
    ({"datasets": [{"name": "digits", "val_per_class": -2}]}, "val_per_class=-2: must be -1"),
])
def test_bad_seed_settings_are_refused_with_one_line(extra, message):
    with pytest.raises(ConfigError, match="^test: " + message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")):
        suite(**extra)


@pytest.mark.parametrize("dataset, metric", [
    ("digits", "val_accuracy"),
    ("oxford_pets", "val_balanced_accuracy"),  # mean per-class accuracy, as the Pets literature reports
    ("oxford_pets?protocol=vtab1k", "val_accuracy"),  # VTAB scores every task by top-1
])
def test_search_selects_on_the_headline_metric_by_default(dataset, metric):
    (cell,) = cells(suite(datasets=[dataset]))
    assert cell.search.metric == metric


def test_the_suite_can_choose_another_selection_metric():
    (cell,) = cells(suite(datasets=["oxford_pets"], search={"metric": "val_nll", "mode": "min"}))
    assert (cell.search.metric, cell.search.mode) == ("val_nll", "min")


def test_few_shot_validation_size_follows_samples_per_class_unless_set():
    s = suite(datasets=[{"name": "digits:5-9", "samples_per_class": 10},
                        {"name": "digits:0-4", "samples_per_class": 10, "val_per_class": -1}])
    a, b = cells(s)
    assert a.constants["val_per_class"] == 0 and b.constants["val_per_class"] == -1
    assert TrialConfig.from_dict(a.constants).val_per_class == 0
