"""Search spaces, suites and the CLI for the methods of issue 6: every new knob is searchable in YAML, a knob
of another method is refused, the methods suite resolves and dry-runs, and `harness list` shows the methods."""

import pytest

from harness.cli import main
from harness.core.errors import ConfigError
from harness.study.spaces import Dist, method_space, resolve_stages
from harness.study.suite import cells, load_suite

NEW_METHODS = {"multibranch": ("aux_tasks", "aux_weight"),
               "distill": ("teacher", "teacher_weights", "teacher_epochs", "kd_temperature", "kd_alpha"),
               "feature_transfer": ("feature_layer", "target_depth", "target_width", "target_fc"),
               "l2sp": ("l2sp_alpha", "l2sp_beta")}


@pytest.mark.parametrize("method,knobs", NEW_METHODS.items())
def test_each_new_method_has_a_search_space_over_its_own_knobs(method, knobs):
    space = resolve_stages(method_space(method, "digits"), 4, method)
    assert set(knobs) <= set(space) and "lr" in space
    searched = [k for k in knobs if isinstance(space[k], Dist)]
    assert searched, f"{method} searches none of its own knobs"


def test_feature_layer_counts_from_the_end_of_the_network_the_trial_builds(tmp_path):
    space = method_space("feature_transfer", "digits")
    assert resolve_stages(space, 4, "x")["feature_layer"] == Dist("int", (-2, -1))  # kept: the source decides
    (tmp_path / "feature_transfer.yaml").write_text("feature_layer: {int: [1, -1]}\n")
    with pytest.raises(ConfigError, match=r"^x: key 'feature_layer' \{'int': \[1, -1\]\}: give whole stage counts"):
        resolve_stages(method_space("feature_transfer", "digits", folder=tmp_path), 4, "x")


def test_a_knob_of_another_method_is_refused_in_a_method_file(tmp_path):
    path = tmp_path / "finetune.yaml"
    path.write_text("kd_alpha: {uniform: [0.1, 0.9]}\n")
    with pytest.raises(ConfigError, match=f"{path}: key 'kd_alpha' is not used by method 'finetune'"):
        method_space("finetune", "digits", folder=tmp_path)


def test_every_method_may_search_augment_mixing_and_l1(tmp_path):
    (tmp_path / "l2sp.yaml").write_text("augment: {choice: [none, basic, randaugment]}\nl1: {choice: [0.0, 1.0e-5]}\n"
                                        "mixup: {choice: [0.0, 0.2]}\ncutmix: {uniform: [0.0, 1.0]}\n")
    space = method_space("l2sp", "digits", folder=tmp_path)
    assert space["augment"] == Dist("choice", ("none", "basic", "randaugment"))
    assert space["l1"] == Dist("choice", (0.0, 1e-5)) and space["cutmix"] == Dist("uniform", (0.0, 1.0))


def test_methods_suite_cells_and_ray_tune_spaces():
    from harness.study.search import search_parts

    cs = cells(load_suite("methods"), {"digits0-4": "checkpoint:/src.pt"})
    assert sorted((c.dataset.name, c.method) for c in cs) == sorted(
        [("digits", m) for m in NEW_METHODS] + [("digits:5-9", m) for m in ("multibranch", "feature_transfer", "l2sp")])
    for c in cs:
        assert c.weights == "checkpoint:/src.pt"
        space, _, _ = search_parts(c)
        assert set(NEW_METHODS[c.method]) <= set(space)
        assert ("aux_tasks" in c.space) == (c.method == "multibranch")  # a dataset's override reaches its user only
        assert ("aux_weight_2" in c.space) == (c.method == "multibranch" and c.dataset.name == "digits")
    assert {c.dataset.name: c.space["aux_tasks"] for c in cs if c.method == "multibranch"} == {
        "digits": "digits:0-4+rotation", "digits:5-9": "digits:0-4"}


def test_method_needing_pretrained_weights_is_refused_before_running():
    from harness.study.suite import apply_overrides

    with pytest.raises(ConfigError, match="method 'l2sp' on backbone 'resnet8': needs pretrained weights"):
        cells(apply_overrides(load_suite("methods"), weights="none"))


@pytest.mark.parametrize("suite,count", [("quick", 8), ("methods", 7)])
def test_dry_run(suite, count, capsys):
    assert main(["run", "--suite", suite, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"suite {suite}: {count} cells" in out


def test_distill_teacher_pretrained_by_the_suite_and_refused_when_not_larger(tmp_path, capsys):
    """The methods suite's teacher starts from a source the suite pretrains (its job waits for it); a teacher no
    larger than the student is one pre-flight line naming both parameter counts."""
    from harness.study.plan import build_plan

    plan = build_plan(load_suite("methods"), tmp_path)
    sources = {j.key: j.job_id for j in plan.of_kind("source")}
    teachers = plan.of_kind("teacher")
    assert set(sources) == {"digits0-4", "digits0-4-resnet20"} and teachers
    assert all(j.needs == (sources["digits0-4-resnet20"],) for j in teachers)
    assert {j.preparation.config.weights for j in teachers} == {plan.source_weights["digits0-4-resnet20"]}
    suite = tmp_path / "small-teacher.yaml"
    suite.write_text("datasets: [digits]\nmethods: [distill]\nbackbones: [resnet20]\n"
                     "overrides: {teacher: resnet8}\n")
    assert main(["run", "--suite", str(suite), "--dry-run", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert ("teacher='resnet8': a resnet8 teacher (77,392 parameters) is not larger than the resnet20 student "
            "(271,824 parameters); give a larger teacher") in err


def test_list_shows_each_method_with_its_knobs_type_default_and_range(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for method, knobs in NEW_METHODS.items():
        at = next(i for i, line in enumerate(lines) if line.startswith(f"  {method} "))
        assert [line.split()[0] for line in lines[at + 1:at + 1 + len(knobs)]] == list(knobs)
    kd_alpha = next(line for line in lines if line.split()[:1] == ["kd_alpha"])
    assert kd_alpha.endswith("(float = 0.5; must be in [0, 1])") and "distillation loss" in kd_alpha


def test_random_search_draws_are_seeded_by_the_cell():
    """A cell draws the same configurations in any process and order (cells search side by side)."""
    from harness.study.search import search_parts
    from harness.study.trial import tune_trial

    def draws(cell, n=3):
        space, _, alg = search_parts(cell)
        alg.add_configurations({"x": {"run": tune_trial, "config": space, "num_samples": n}})
        trials = [alg.next_trial() for _ in range(n)]
        return [{k: t.config[k] for k in ("lr", "dropout")} for t in trials]

    cs = cells(load_suite("quick"), {"digits0-4": "checkpoint:/src.pt"})
    first = draws(cs[2])
    assert draws(cs[2]) == first and draws(cs[3]) != first
    assert len({d["lr"] for d in first}) == 3
