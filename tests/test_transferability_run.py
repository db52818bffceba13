"""Estimates in a run: `estimate: true` plans one job per target and candidate before the cells, records it, skips
it on resume, and the leaderboard, its files and the report carry the agreement with the real test scores."""

import json

import pytest
import yaml

from harness.cli import main
from harness.core.errors import ConfigError
from harness.results.records import EstimateRecord
from harness.results.store import RunStore
from harness.study.plan import build_plan, describe, done_jobs
from harness.study.suite import load_suite, suite_from_dict
from harness.train.artifacts import pretrain, source_config

ray = pytest.importorskip("ray")


def suite_data(**extra):
    data = {"name": "est", "estimate": True, "datasets": [{"name": "digits:5-9", "samples_per_class": 10}],
            "methods": ["linear_probe"],
            "backbones": [{"name": "resnet8", "weights": "source:src"}, {"name": "resnet8", "weights": "none"}],
            "sources": {"src": {"dataset": "digits:0-4", "backbone": "resnet8", "epochs": 1}},
            "search": {"num_samples": 1, "scheduler": "fifo"}, "final_seeds": 1, "overrides": {"epochs": 3, "lr": 0.1}}
    data.update(extra)
    return data


def test_estimate_jobs_are_one_per_target_and_candidate_after_their_source(tmp_path):
    plan = build_plan(suite_from_dict(suite_data(methods=["scratch", "linear_probe"]), "test"), tmp_path / "sources")
    jobs = plan.of_kind("estimate")  # scratch takes no pretrained weights: no candidate of its own
    assert [(j.candidate, j.weights.split("/")[-1][:10]) for j in jobs] == [("src", "digits_0-4"), ("none", "none")]
    assert jobs[0].needs == (plan.of_kind("source")[0].job_id,) and jobs[1].needs == ()
    kinds = [j.kind for j in plan.jobs.values()]
    assert kinds == sorted(kinds, key=["source", "teacher", "estimate", "search", "final"].index)
    assert "2 estimate(s)" in describe(plan)[0]
    record = EstimateRecord(job=jobs[1].job_id, label="none", dataset="digits:5-9", samples_per_class=10,
                            backbone="resnet8", weights="none", status="ok")
    assert done_jobs(plan, [record]) & {j.job_id for j in jobs} == {jobs[1].job_id}
    assert not build_plan(suite_from_dict(suite_data(estimate=False), "test"), tmp_path).of_kind("estimate")
    with pytest.raises(ConfigError, match="estimate='maybe': must be a bool"):
        suite_from_dict(suite_data(estimate="maybe"), "test")


def test_the_rank_quick_suite_ranks_four_pretrained_sources_and_a_random_floor(tmp_path):
    suite = load_suite("rank-quick")
    plan = build_plan(suite, tmp_path / "sources")
    sources = {s.dataset for s in suite.sources.values()}
    assert suite.estimate and len(sources) >= 4 and "digits:5-9" not in sources
    assert {j.candidate for j in plan.of_kind("estimate")} == {*suite.sources, "none"}
    assert {c.method for c in plan.cells} == {"finetune", "linear_probe"} and len(plan.cells) == 10


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_run_with_estimates_reports_their_agreement_with_test_scores(ray_local, tmp_path, capsys):
    out = tmp_path / "results"
    pretrain(source_config("digits:0-4", "resnet8", 1), out_dir=out / "sources")  # the suite's source, cached
    path = tmp_path / "est.yaml"
    path.write_text(yaml.safe_dump(suite_data()))
    assert main(["run", "--suite", str(path), "--results-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[estimate digits:5-9@10/class · resnet8 · src] ok: logme" in printed
    run_dir = next(d for d in out.iterdir() if d.name.startswith("est-"))
    estimates = RunStore(run_dir).records(EstimateRecord)
    assert [(e.label, e.images, e.status) for e in estimates] == [("src", 50, "ok"), ("none", 50, "ok")]
    assert set(estimates[1].refused) == {"leep", "nce"} and set(estimates[0].scores) == {
        "logme", "leep", "nce", "hscore", "gbc"}
    table = json.loads((run_dir / "transferability.json").read_text())
    assert {(r["method"], r["estimator"], r["candidates"]) for r in table} == {
        ("linear_probe", "logme", 2), ("linear_probe", "leep", 1), ("linear_probe", "nce", 1),
        ("linear_probe", "hscore", 2), ("linear_probe", "gbc", 2)}
    assert all(abs(r["weighted_tau"]) == 1 for r in table if r["candidates"] == 2)
    assert "Transferability: estimates against test scores" in printed
    assert "## Transferability" in (run_dir / "leaderboard.md").read_text()
    assert "Transferability estimates against real test scores" in (run_dir / "report.html").read_text()
    assert main(["run", "--resume", str(run_dir), "--results-dir", str(out), "--dry-run"]) == 0
    assert printed.count("[estimate ") == 2 and "[done] estimate digits:5-9@10/class" in capsys.readouterr().out
    assert main(["run", "--resume", str(run_dir), "--results-dir", str(out)]) == 0
    assert "[estimate " not in capsys.readouterr().out and len(RunStore(run_dir).records(EstimateRecord)) == 2
