"""The plan: content-hashed jobs built before anything runs; teachers are jobs, never trained inside a trial."""

from pathlib import Path

import pytest
import yaml

from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.results.records import FinalRecord, SourceRecord, TrialRecord
from harness.results.store import RunStore
from harness.study.plan import FinalJob, PreparationJob, SearchJob, SourceJob, build_plan, describe, done_jobs
from harness.study.suite import suite_from_dict
from harness.train.loop import fit

ray = pytest.importorskip("ray")


def suite(**extra):
    data = {"name": "p", "datasets": ["digits:0-4"], "methods": ["scratch", "finetune", "distill"],
            "backbones": [{"name": "resnet8", "weights": "none"}, {"name": "resnet8", "weights": "source:src"}],
            "sources": {"src": {"dataset": "digits:5-9", "backbone": "resnet8", "epochs": 1}},
            "search": {"num_samples": 1}, "final_seeds": 2,
            "overrides": {"epochs": 1, "teacher": "resnet20", "teacher_epochs": 1}}
    data.update(extra)
    return suite_from_dict(data, "test")


def test_a_cell_the_suite_names_twice_is_planned_once(tmp_path):
    plan = build_plan(suite(), tmp_path / "sources")
    labels = [(c.method, c.weights.split("/")[-1]) for c in plan.cells]
    assert [m for m, _ in labels].count("scratch") == 1  # scratch forces weights none: one cell, not two
    assert len(plan.cells) == 5 and len({c.cell_id for c in plan.cells}) == 5
    assert len(plan.of_kind("search")) == 5 and len(plan.of_kind("final")) == 10


def test_jobs_run_in_dependency_order_with_teachers_as_jobs(tmp_path):
    plan = build_plan(suite(), tmp_path / "sources")
    kinds = [j.kind for j in plan.jobs.values()]
    assert kinds == sorted(kinds, key=["source", "teacher", "search", "final"].index)
    (source,) = plan.of_kind("source")
    assert isinstance(source, SourceJob) and source.path.parent == (tmp_path / "sources").resolve()
    teachers = plan.of_kind("teacher")
    # one teacher for the search (seed 0) and one per final seed (1 and 2: never the search's)
    assert sorted(t.preparation.config.seed for t in teachers) == [0, 1, 2]
    assert all(isinstance(t, PreparationJob) and t.needs == () for t in teachers)
    for job in plan.jobs.values():
        assert all(plan.jobs.get(n) is not None for n in job.needs)  # every need is a job of the plan
        assert all(list(plan.jobs).index(n) < list(plan.jobs).index(job.job_id) for n in job.needs)
    distill = [j for j in plan.of_kind("search") if j.cell.method == "distill" and "checkpoint" in j.cell.weights]
    assert source.job_id in distill[0].needs and any(n in {t.job_id for t in teachers} for n in distill[0].needs)
    finals = [j for j in plan.of_kind("final") if isinstance(j, FinalJob) and j.cell.method == "distill"]
    assert all(len(j.needs) == 2 for j in finals)  # the search and the teacher of the final's seed


def test_job_ids_are_content_hashes(tmp_path):
    a, b = build_plan(suite(), tmp_path / "s"), build_plan(suite(), tmp_path / "s")
    assert list(a.jobs) == list(b.jobs)
    longer = build_plan(suite(overrides={"epochs": 2, "teacher": "resnet20", "teacher_epochs": 1}), tmp_path / "s")
    searches = lambda p: {j.job_id for j in p.of_kind("search")}  # noqa: E731
    assert searches(a).isdisjoint(searches(longer))
    teachers = lambda p: {j.job_id for j in p.of_kind("teacher")}  # noqa: E731
    assert teachers(a) == teachers(longer)  # the student's epochs do not decide the teacher


def test_a_searched_teacher_is_enumerated_and_the_finals_teachers_follow_the_search(tmp_path):
    plan = build_plan(suite(methods=["distill"], overrides={"epochs": 1, "teacher": {"choice": ["resnet8", "resnet14"]},
                                                             "teacher_epochs": {"int": [1, 2]},
                                                             "kd_alpha": {"uniform": [0.1, 0.9]}}), tmp_path / "s")
    teachers = sorted((t.preparation.config.backbone, t.preparation.config.epochs) for t in plan.of_kind("teacher"))
    # kd_alpha does not decide the teacher; teacher and teacher_epochs do: every combination, once per cell's data
    assert teachers == [("resnet14", 1), ("resnet14", 2), ("resnet8", 1), ("resnet8", 2)]
    assert "follow the search's choice of teacher, teacher_epochs" in "\n".join(describe(plan))


def test_done_jobs_come_from_files_and_records(tmp_path):
    plan = build_plan(suite(methods=["finetune"]), tmp_path / "sources")
    (source,) = plan.of_kind("source")
    assert done_jobs(plan, []) == set()
    source.path.parent.mkdir(parents=True)
    source.path.write_bytes(b"x")
    cell = plan.cells[0]
    store = RunStore(tmp_path / "run")
    ident = {"cell_id": cell.cell_id, "dataset": "digits:0-4", "samples_per_class": 0, "method": "finetune",
             "backbone": "resnet8", "weights": cell.weights}
    store.append([TrialRecord(**ident, trial_id="t0", status="ok"), FinalRecord(**ident, seed=1, status="ok")])
    done = done_jobs(plan, store.records())
    finals = {j.seed: j.job_id for j in plan.of_kind("final") if j.cell.cell_id == cell.cell_id}
    assert done == {source.job_id, cell.cell_id, finals[1]}
    text = "\n".join(describe(plan, done))
    assert "3 of 7 jobs done" in text and "[done] source src" in text


def test_a_trial_never_trains_its_teacher(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_TEACHERS", str(tmp_path))
    config = TrialConfig.from_dict({"dataset": "digits:0-4", "backbone": "resnet8", "method": "distill",
                                    "teacher": "resnet20", "teacher_epochs": 1, "epochs": 1})
    with pytest.raises(ConfigError, match="teacher file .* is missing"):
        fit(config)
    assert not list(tmp_path.iterdir())


def test_run_trains_teachers_first_and_resume_skips_every_job(tmp_path, capsys):
    from harness.cli import main

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        data = {"name": "d", "datasets": ["digits:0-4"], "methods": ["distill"],
                "backbones": [{"name": "resnet8", "weights": "none"}], "search": {"num_samples": 1},
                "final_seeds": 1, "overrides": {"epochs": 1, "teacher": "resnet20", "teacher_epochs": 1}}
        path = tmp_path / "d.yaml"
        path.write_text(yaml.safe_dump(data))
        out = tmp_path / "results"
        assert main(["run", "--suite", str(path), "--results-dir", str(out)]) == 0
        printed = capsys.readouterr().out
        teachers = list((out / "teachers").glob("*.pt"))
        assert len(teachers) == 2  # the search's (seed 0) and the final run's (seed 1)
        assert all(f"teacher resnet20 on digits:0-4 (1 epochs, seed {s}): trained" in printed for s in (0, 1))
        run_dir = next(d for d in out.iterdir() if d.name.startswith("d-"))
        records = RunStore(run_dir).records(SourceRecord)
        assert {r.path for r in records} == {str(t) for t in teachers}
        assert all(r.role == "teacher" and r.val_accuracy is not None for r in records)
        before = teachers[0].stat().st_mtime_ns
        assert main(["run", "--resume", str(run_dir), "--results-dir", str(out), "--dry-run"]) == 0
        assert "4 of 4 jobs done" in capsys.readouterr().out
        assert main(["run", "--resume", str(run_dir), "--results-dir", str(out)]) == 0
        assert "already finished" in capsys.readouterr().out
        assert teachers[0].stat().st_mtime_ns == before
    finally:
        ray.shutdown()


def test_plan_of_every_shipped_suite_builds(tmp_path):
    from harness.study.suite import load_suite, suites_dir

    for path in sorted(suites_dir().glob("*.yaml")):
        plan = build_plan(load_suite(str(path)), tmp_path / "sources")
        assert plan.cells and all(isinstance(j, SearchJob) for j in plan.of_kind("search")), path.name
        assert all(Path(j.path).name.endswith(".pt") for j in plan.of_kind("source"))
