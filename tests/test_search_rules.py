"""The search checks the pre-flight makes without Ray (harness/study/search_rules.py) refuse exactly the searches
that building Tune's objects (search_parts) refuses, in the same words, and Tune's own asserts agree."""

from __future__ import annotations

import importlib.util
import sys
import subprocess

import pytest

from harness.core.errors import ConfigError
from harness.study.search import search_parts
from harness.study.search_rules import check_search
from harness.study.suite import cells, suite_from_dict

BASE = {"name": "sr", "datasets": ["digits:0-4"], "methods": ["finetune"],
        "backbones": [{"name": "resnet8", "weights": "none"}]}
CHOICES = {"lr": {"choice": [0.01, 0.1]}, "epochs": {"int": [2, 3]}, "dropout": {"grid": [0.0, 0.2]},
           "weight_decay": 0.0001}
OPTUNA_HERE = importlib.util.find_spec("optuna") is not None

# (search settings, overrides, refused?)
SETTINGS = {
    "random_asha": ({}, {}, False),
    "grid_of_choices": ({"algorithm": "grid"}, CHOICES, False),
    "grid_of_loguniform": ({"algorithm": "grid"}, {}, True),
    "grid_of_uniform": ({"algorithm": "grid"}, {**CHOICES, "dropout": {"uniform": [0.0, 0.5]}}, True),
    "optuna": ({"algorithm": "optuna"}, {}, not OPTUNA_HERE),
    "optuna_grid": ({"algorithm": "optuna"}, {"dropout": {"grid": [0.0, 0.2]}}, True),
    "asha_grace_at_epochs": ({"grace_period": 3}, {"epochs": {"choice": [2, 3]}}, False),
    "asha_grace_beyond_epochs": ({"grace_period": 4}, {"epochs": {"choice": [2, 3]}}, True),
    "fifo_grace_beyond_epochs": ({"grace_period": 4, "scheduler": "fifo"}, {"epochs": 3}, False),
}


def cell(search, overrides):
    return cells(suite_from_dict({**BASE, "search": {"num_samples": 1, **search}, "overrides": overrides}, "t"))[0]


def refusal(f, *args):
    try:
        f(*args)
    except ConfigError as e:
        return str(e)
    return None


@pytest.mark.parametrize("name", SETTINGS)
def test_the_light_check_and_search_parts_agree(name):
    search, overrides, refused = SETTINGS[name]
    c = cell(search, overrides)
    light = refusal(check_search, c)
    assert (light is not None) == refused, light
    assert refusal(search_parts, c) == light


def test_tunes_own_asserts_are_what_the_rules_refuse():
    from ray.tune.schedulers import ASHAScheduler

    ASHAScheduler(time_attr="epoch", max_t=3, grace_period=3)
    with pytest.raises(AssertionError):
        ASHAScheduler(time_attr="epoch", max_t=3, grace_period=4)
    if not OPTUNA_HERE:
        from ray.tune.search.optuna import OptunaSearch

        with pytest.raises(AssertionError):
            OptunaSearch(seed=0)


def test_the_light_check_imports_no_ray():
    code = ("import sys\nfrom harness.study.search_rules import check_search\n"
            "from harness.study.suite import cells, load_suite\n"
            "for c in cells(load_suite('quick')):\n    check_search(c)\n"
            "print('ray' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
