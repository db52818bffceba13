"""Search-space and suite files: merging, stage-relative freeze_depth, and one-line errors naming file and key."""

import pytest

from harness.core.errors import ConfigError
from harness.study.spaces import Dist, method_space, read_space_file, resolve_stages
from harness.study.suite import apply_overrides, cells, load_suite, suite_from_dict


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_files_merge_default_then_method_then_dataset(tmp_path):
    write(tmp_path, "default.yaml", "lr: {loguniform: [1e-3, 1e-1]}\nepochs: 5\ndropout: 0.1\n")
    write(tmp_path, "partial.yaml", "freeze_depth: {int: [1, -1]}\nepochs: 7\n")
    write(tmp_path, "datasets/digits.yaml", "dropout: {grid: [0.0, 0.2]}\n")
    space = method_space("partial", "digits:5-9", folder=tmp_path)
    assert space["lr"] == Dist("loguniform", (0.001, 0.1)) and space["epochs"] == 7
    assert space["dropout"] == Dist("grid", (0.0, 0.2))
    assert resolve_stages(space, 5, "x")["freeze_depth"] == Dist("int", (1, 4))
    assert resolve_stages(space, 4, "x")["freeze_depth"] == Dist("int", (1, 3))


@pytest.mark.parametrize("text,message", [
    ("learning_rate: 0.1\n", "key 'learning_rate'; choose from:"),
    ("lr: {normal: [0, 1]}\n", "key 'lr': unknown distribution 'normal'; choose from: loguniform"),
    ("lr: {uniform: [0.5, 0.1]}\n", "key 'lr': empty range [0.5, 0.1]"),
    ("lr: {choice: []}\n", "key 'lr': choice needs a non-empty list"),
    ("seed: 3\n", "key 'seed' is set by the suite, not searched"),
])
def test_bad_space_file_names_file_and_key(tmp_path, text, message):
    path = write(tmp_path, "default.yaml", text)
    with pytest.raises(ConfigError) as e:
        read_space_file(path)
    assert str(e.value).startswith(str(path)) and message in str(e.value)


def test_hyperparameter_the_method_does_not_use_is_refused(tmp_path):
    path = write(tmp_path, "finetune.yaml", "freeze_depth: {int: [1, 2]}\n")
    with pytest.raises(ConfigError, match=f"{path}: key 'freeze_depth' is not used by method 'finetune'"):
        method_space("finetune", "digits", folder=tmp_path)


def test_quick_suite_resolves_to_eight_cells_with_scratch_untransferred():
    suite = load_suite("quick")
    cs = cells(suite, {"digits0-4": "checkpoint:/src.pt"})
    assert len(cs) == 8 and len({c.cell_id for c in cs}) == 8
    assert {c.method for c in cs} >= {"scratch", "linear_probe", "finetune", "partial"}
    assert all(c.weights == ("none" if c.method == "scratch" else "checkpoint:/src.pt") for c in cs)
    assert any(c.dataset.samples_per_class == 10 for c in cs)


def test_cli_flags_override_a_suite():
    s = apply_overrides(load_suite("quick"), datasets=["digits"], methods=["finetune", "partial"],
                        backbones=["resnet8"], num_samples=12)
    cs = cells(s, {"digits0-4": "checkpoint:/src.pt"})
    assert [c.method for c in cs] == ["finetune", "partial"] and all(c.num_trials == 12 for c in cs)
    assert cs[0].weights == "checkpoint:/src.pt"


def test_epochs_flag_beats_per_dataset_overrides():
    cs = cells(apply_overrides(load_suite("quick"), epochs=2), {"digits0-4": "checkpoint:/src.pt"})
    assert {c.space["epochs"] for c in cs} == {2} and {c.dataset.name for c in cs} == {"digits", "digits:5-9"}
    few = [c.space["batch_size"] for c in cs if c.dataset.name == "digits:5-9"]  # the entry's own choice stays
    assert few and all(b.kind == "choice" and list(b.args) == [16, 32] for b in few)


def test_cell_identity_does_not_depend_on_where_the_source_checkpoint_lies():
    here = cells(load_suite("quick"), {"digits0-4": "checkpoint:/a/results/sources/d-resnet8-abc.pt"})
    there = cells(load_suite("quick"), {"digits0-4": "checkpoint:/b/sources/d-resnet8-abc.pt"})
    other = cells(load_suite("quick"), {"digits0-4": "checkpoint:/a/results/sources/d-resnet8-def.pt"})
    assert [c.cell_id for c in here] == [c.cell_id for c in there]
    assert [c.cell_id for c in here if c.method != "scratch"] != [c.cell_id for c in other if c.method != "scratch"]


@pytest.mark.parametrize("data,message", [
    ({"datasets": ["digits"], "methods": ["finetune"], "backbones": ["resnet8"], "budget": 3}, "unknown key 'budget'"),
    ({"datasets": ["digits"], "methods": ["finetun"], "backbones": ["resnet8"]}, "unknown method 'finetun'"),
    ({"datasets": ["digits"], "methods": ["finetune"], "backbones": [{"name": "resnet8", "weights": "source:x"}]},
     "no source 'x'"),
    ({"datasets": ["digits"], "methods": ["finetune"], "backbones": ["resnet8"], "search": {"algorithm": "bayes"}},
     "search.algorithm='bayes': choose from: random, grid, optuna"),
    ({"datasets": ["digits"], "methods": ["finetune"], "backbones": ["resnet8"], "resources": {"gpus_per_trial": 1.5}},
     "gpus_per_trial=1.5: must be in [0, 1]"),
])
def test_bad_suite(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        suite_from_dict(data, "s.yaml")
