"""Methods as plugins: each declares its knobs (type, range, help) once, and TrialConfig, the CLI flags,
`harness list`, search spaces, suites and the README's method table follow; identities do not change."""

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import build_parser, main, methods_markdown
from harness.core.config import MethodArgs, TrialConfig, common_fields, knob_fields, param, register_method_args
from harness.core.errors import ConfigError
from harness.core.yamlio import read_yaml
from harness.methods import METHODS
from harness.study.runner import _flags
from harness.study.spaces import Dist, method_space, read_space_file, spaces_dir, trial_count
from harness.study.suite import cells, load_suite, suite_from_dict
from harness.train.artifacts import source_config, source_path

README = Path(__file__).resolve().parent.parent / "README.md"
FEDERATED = ["clients", "alpha", "client_fraction", "local_epochs", "freeze_depth"]
KNOBS = {"partial": ["freeze_depth"],
         "multibranch": ["aux_tasks", "aux_weight", "aux_weight_2", "aux_weight_3", "aux_weight_4"],
         "distill": ["teacher", "teacher_weights", "teacher_epochs", "kd_temperature", "kd_alpha"],
         "feature_transfer": ["feature_layer", "target_depth", "target_width", "target_fc"],
         "l2sp": ["l2sp_alpha", "l2sp_beta"],
         "fedavg": FEDERATED, "fedprox": FEDERATED + ["mu"], "fedbn": FEDERATED, "fedadam": FEDERATED + ["server_lr"]}


# ---------------------------------------------------------------- the config: common fields + the method's knobs

def test_every_method_declares_its_knobs_and_nothing_else():
    assert list(METHODS) == ["scratch", "linear_probe", "finetune", "partial", "multibranch", "distill",
                             "feature_transfer", "label_mapping", "l2sp", "fedavg", "fedprox", "fedbn", "fedadam"]
    for name in METHODS:
        assert [f.name for f in dataclasses.fields(METHODS.get(name).args)] == KNOBS.get(name, [])
    assert not {f.name for f in common_fields()} & set(knob_fields())


@pytest.mark.parametrize("method", list(METHODS))
def test_flat_dict_round_trips_with_this_methods_knobs_only(method):
    config = TrialConfig.from_dict({"method": method, "weights": "imagenet"})
    flat = config.to_dict()
    assert list(flat) == [f.name for f in common_fields()] + KNOBS.get(method, [])
    assert TrialConfig.from_dict(flat) == config and type(config.method_args) is METHODS.get(method).args


def test_a_knob_of_another_method_is_refused_unless_at_its_default():
    with pytest.raises(ConfigError) as e:
        TrialConfig.from_dict({"method": "finetune", "freeze_depth": 2})
    assert str(e.value) == ("freeze_depth=2: not used by method 'finetune' (used by: partial, "
                            "fedavg, fedprox, fedbn, fedadam)")
    old_record = TrialConfig.from_dict({"method": "finetune", "freeze_depth": 0, "kd_alpha": 0.5})  # pre-plugin dicts
    assert old_record == TrialConfig(method="finetune") and "freeze_depth" not in old_record.to_dict()


def test_unknown_hyperparameter_lists_close_matches_first():
    with pytest.raises(ConfigError, match=r"^unknown hyperparameter 'freze_depth'; choose from: freeze_depth, "):
        TrialConfig.from_dict({"method": "partial", "freze_depth": 2})


@pytest.mark.parametrize("values,message", [
    ({"method": "partial", "freeze_depth": -1}, "freeze_depth=-1: must be >= 0"),
    ({"method": "partial", "freeze_depth": "two"}, "freeze_depth='two': must be an int"),
    ({"method": "multibranch", "aux_weight": -0.5}, "aux_weight=-0.5: must be >= 0"),
    ({"method": "multibranch", "aux_tasks": ""}, "aux_tasks='': give dataset specs or rotation, joined by '+'"),
    ({"method": "distill", "teacher_epochs": 0}, "teacher_epochs=0: must be >= 1"),
    ({"method": "distill", "kd_alpha": "nan"}, "kd_alpha=nan: must be in [0, 1]"),
    ({"method": "feature_transfer", "target_width": 0}, "target_width=0: must be >= 1"),
    ({"method": "l2sp", "l2sp_beta": -1}, "l2sp_beta=-1.0: must be >= 0"),
    ({"warmup_epochs": 3, "epochs": 2}, "warmup_epochs=3.0: must be in [0, epochs=2]"),
    ({"train_on_val": "maybe"}, "train_on_val='maybe': must be a bool"),
])
def test_knob_and_field_errors_name_the_value_and_what_is_allowed(values, message):
    with pytest.raises(ConfigError) as e:
        TrialConfig.from_dict(values)
    assert str(e.value) == message


def test_stage_relative_knob_is_checked_against_the_backbone():
    partial = METHODS.get("partial")
    assert partial.check(TrialConfig.from_dict({"method": "partial", "freeze_depth": 4, "backbone": "resnet8"}), 4) == 4
    with pytest.raises(ConfigError, match=r"^freeze_depth=5: backbone 'resnet8' has 4 stages; allowed 0-4$"):
        partial.check(TrialConfig.from_dict({"method": "partial", "freeze_depth": 5, "backbone": "resnet8"}), 4)


def test_replace_may_change_the_method_and_keeps_only_the_new_methods_knobs():
    partial = TrialConfig.from_dict({"method": "partial", "freeze_depth": 2, "lr": 0.01})
    assert partial.replace(freeze_depth=3).method_args.freeze_depth == 3
    distill = partial.replace(method="distill", kd_alpha=0.9)
    assert distill.lr == 0.01 and distill.method_args.kd_alpha == 0.9 and "freeze_depth" not in distill.to_dict()
    with pytest.raises(ConfigError, match="not used by method 'distill'"):
        partial.replace(method="distill", freeze_depth=3)


def test_a_knobs_dataclass_needs_defaults_and_scalar_types():
    @dataclasses.dataclass(frozen=True)
    class NoDefault(MethodArgs):
        depth: int

    with pytest.raises(TypeError, match="knob 'depth' needs a default"):
        register_method_args("nodefault", NoDefault)

    @dataclasses.dataclass(frozen=True)
    class Ranged(MethodArgs):
        rate: float = param(0.5, "a rate", low=0, high=1, high_open=True)

    assert Ranged().rate == 0.5
    with pytest.raises(ConfigError, match=r"^rate=1.0: must be in \[0, 1\)$"):
        Ranged(1.0)


# ---------------------------------------------------------------- identities do not move

def test_identities_source_files_and_cell_ids_do_not_move():
    ids = [TrialConfig.from_dict(d).identity() for d in (
        {}, {"method": "partial", "freeze_depth": 2, "backbone": "resnet8", "lr": 0.01}, {"method": "scratch"},
        {"method": "distill", "kd_alpha": 0.3}, {"method": "multibranch", "aux_tasks": "digits:0-4"},
        {"method": "feature_transfer", "feature_layer": -2, "target_width": 32},
        {"method": "l2sp", "l2sp_alpha": 0.5, "weights": "imagenet"}, {"l1": 1e-5, "train_on_val": True})]
    # multibranch's moved once, when aux_tasks (a list of tasks) replaced aux_dataset (issue 22)
    assert ids == ["517fa4e81bb5", "068c35e640e6", "0ea85124b35a", "ffcc726020c3", "c57b7a8a88a1", "c2047cd790e5",
                   "dd05f88f2a15", "cb17bdc2b894"]
    source = source_path(source_config("digits:0-4", "resnet8", 15))
    assert source.name == "digits_0-4-resnet8-79c87fccc0b1.pt"  # its file name enters every transfer cell's id
    weights = {"digits0-4": f"checkpoint:/x/{source.name}"}
    # cell ids moved on purpose when the seed policy entered them (issue 13: finals on new seeds, few-shot
    # validation), and when the quick suite's spaces began to search epochs and batch size (issue 22): a run
    # folder of an earlier protocol or space is not resumed into the new one
    assert [c.cell_id for c in cells(load_suite("quick"), weights)] == [
        "d15f9a27ead1", "e47f31a32206", "e12c428eb0f9", "d280d2a98cd9", "d5597468c12e", "fd1131dee55d",
        "196248b4113e", "15cdf2bb56d0"]
    assert [c.cell_id for c in cells(load_suite("methods"), weights)] == [  # all moved in issue 22 (spaces)
        "383eecacb293", "cf500c71cb29", "79fdd028f15c", "eb52c116e122", "69083b9159ee", "1d1eac4db3f3",
        "378495b3214d"]


# ---------------------------------------------------------------- generated: flags, list, README table

def test_train_flags_are_generated_for_every_field_and_knob(capsys):
    parser = build_parser()
    for name in [f.name for f in common_fields() if f.name != "evaluate_test"] + list(knob_fields()):
        assert getattr(parser.parse_args(["train", "--" + name.replace("_", "-"), "1"]), name) == "1"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert ("--freeze-depth FREEZE_DEPTH [partial, fedavg, fedprox, fedbn, fedadam] leading backbone stages kept "
            "frozen (int = 0; must be >= 0)" in help_text)
    assert "--optimizer OPTIMIZER optimiser (str = 'sgd'; choose from: sgd, adamw)" in help_text


def test_train_flags_reach_the_config():
    from harness.cli import trial_values

    args = build_parser().parse_args(["train", "--method", "partial", "--freeze-depth", "2", "--lr", "0.1"])
    config = TrialConfig.from_dict(trial_values(args))
    assert config.method_args.freeze_depth == 2 and config.lr == 0.1


def test_suite_override_flags_come_from_the_parsers_group():
    args = build_parser().parse_args(["run", "--num-samples", "3", "--epochs", "2", "--weights", "none",
                                      "--address", "auto", "--dry-run"])
    assert _flags(args) == {"num_samples": 3, "epochs": 2, "weights": "none"}


def test_readme_method_table_is_the_generated_one(capsys):
    assert main(["list", "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert out == methods_markdown() and out.count("\n") == len(METHODS) + 2
    text = README.read_text()
    start = text.index("<!-- methods table:")
    start = text.index("\n", start) + 1
    assert text[start:text.index("<!-- end of methods table -->")] == out


# ---------------------------------------------------------------- spaces and suites

def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,message", [
    ("dropout: 1.5\n", "key 'dropout': dropout=1.5: must be in [0, 1)"),
    ("dropout: {uniform: [0.0, 1.0]}\n", None),  # draws stay below an open upper end
    ("lr: {uniform: [0.0, 0.1]}\n", "key 'lr': lr=0.0: must be > 0"),
    ("batch_size: {loguniform: [16, 128]}\n", "key 'batch_size': loguniform draws fractions, but batch_size is an int"),
    ("optimizer: {choice: [sgd, adam]}\n", "key 'optimizer': optimizer='adam': choose from: sgd, adamw"),
    ("epochs: {choice: [2, 2.5]}\n", "key 'epochs': epochs=2.5: must be an int"),
    ("kd_alpha: {uniform: [0.5, 1.5]}\n", "key 'kd_alpha': kd_alpha=1.5: must be in [0, 1]"),
])
def test_space_values_are_checked_against_their_field(tmp_path, text, message):
    path = write(tmp_path, "x.yaml", text)
    if message is None:
        read_space_file(path)
        return
    with pytest.raises(ConfigError) as e:
        read_space_file(path)
    assert str(e.value) == f"{path}: {message}" or str(e.value).startswith(f"{path}: {message}")


def test_strings_from_yaml_become_the_fields_type_other_values_stay_as_written(tmp_path):
    space = read_space_file(write(tmp_path, "x.yaml", 'lr: "1e-3"\nwarmup_epochs: 1\naux_tasks: "5"\n'))
    assert space == {"lr": 0.001, "warmup_epochs": 1, "aux_tasks": "5"} and type(space["warmup_epochs"]) is int


def test_default_space_may_not_hold_a_methods_knob(tmp_path):
    write(tmp_path, "default.yaml", "kd_alpha: 0.5\n")
    with pytest.raises(ConfigError, match=r"default.yaml: key 'kd_alpha' is method-specific; put it in distill.yaml$"):
        method_space("finetune", "digits", folder=tmp_path)


def test_trial_count_counts_grids_and_under_the_grid_algorithm_choices_and_ints():
    space = {"lr": Dist("loguniform", (0.01, 0.1)), "augment": Dist("grid", ("none", "basic")),
             "batch_size": Dist("choice", (32, 64, 128)), "freeze_depth": Dist("int", (1, 3)), "epochs": 4}
    assert trial_count(space, 4, "random") == 8
    assert trial_count(space, 2, "grid") == 2 * 2 * 3 * 3


def test_suite_values_are_cast_by_the_one_coercer():
    suite = suite_from_dict({"datasets": ["digits"], "methods": ["finetune"], "backbones": ["resnet8"],
                             "search": {"num_samples": "3"}, "resources": {"cpus_per_trial": 2}}, "s.yaml")
    assert suite.search.num_samples == 3 and suite.resources.cpus_per_trial == 2.0
    with pytest.raises(ConfigError, match=r"^s.yaml: search: num_samples='many': must be an int$"):
        suite_from_dict({"datasets": ["digits"], "methods": ["finetune"], "backbones": ["resnet8"],
                         "search": {"num_samples": "many"}}, "s.yaml")


def test_yaml_is_read_safely_with_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML \(.*\)$"):
        read_yaml(write(tmp_path, "bad.yaml", "lr: [0.1\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(write(tmp_path, "tag.yaml", "x: !!python/object/apply:os.getcwd []\n"))


# ---------------------------------------------------------------- the README's worked example works

def readme_example() -> tuple[str, str]:
    section = README.read_text().split("## Adding a method", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    space = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    return code, space


def test_readme_example_is_complete_and_short():
    code, space = readme_example()
    assert len(code.splitlines()) + len(space.splitlines()) < 60
    assert "register(Method(" in code and "MethodArgs" in code


def test_readme_example_method_lists_searches_and_trains(tmp_path, source_checkpoint):
    code, space = readme_example()
    (tmp_path / "reinit_example.py").write_text(code)
    spaces = tmp_path / "search_spaces"
    shutil.copytree(spaces_dir(), spaces)
    (spaces / "reinit.yaml").write_text(space)
    script = f"""
import sys
sys.path.insert(0, {str(tmp_path)!r})
import reinit_example
from harness.cli import main
from harness.core.config import TrialConfig
from harness.study.spaces import Dist, method_space, resolve_stages
from harness.train.loop import fit

assert resolve_stages(method_space("reinit", "digits"), 4, "x")["reinit_depth"] == Dist("int", (1, 3))
try:
    main(["train", "--help"])
except SystemExit:
    pass
main(["list"])
config = TrialConfig.from_dict({{"dataset": "digits", "backbone": "resnet8", "method": "reinit", "reinit_depth": 2,
                                 "weights": "checkpoint:{source_checkpoint}", "epochs": 1}})
print("STATUS", fit(config).summary["status"])
"""
    env = {**__import__("os").environ, "HARNESS_SEARCH_SPACES": str(spaces)}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("  --reinit-depth") for line in lines)
    at = next(i for i, line in enumerate(lines) if line.startswith("  reinit "))
    assert lines[at + 1].split()[0] == "reinit_depth" and "(int = 1; must be >= 0)" in lines[at + 1]
    assert lines[-1] == "STATUS ok"
