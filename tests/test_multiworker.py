"""Multi-worker (Ray Train DDP) trials inside Ray Tune searches, on a real local Ray instance with 2 CPUs."""

import time
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")

from harness.cli import main  # noqa: E402
from harness.results.records import FinalRecord, TrialRecord  # noqa: E402
from harness.results.store import read_records  # noqa: E402
from harness.study.trial import TRIAL_FUNCTION_CPU, worker_resources  # noqa: E402


@pytest.fixture(scope="module")
def ray_two_cpus():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def suite(tmp_path: Path, source: Path, **extra) -> Path:
    data = {"name": "ddp", "datasets": ["digits:0-4"], "methods": ["finetune"],
            "backbones": [{"name": "resnet8", "weights": f"checkpoint:{source}"}],
            "search": {"num_samples": 3, "scheduler": "asha", "max_concurrent_cells": 1},
            "resources": {"workers_per_trial": 2, "cpus_per_trial": 1}, "final_seeds": 2,
            "overrides": {"epochs": 2, "batch_size": 32}}
    data.update(extra)
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cpus_back(total: float = 2.0, wait_s: float = 20.0) -> float:
    deadline = time.time() + wait_s
    while time.time() < deadline:
        free = ray.available_resources().get("CPU", 0.0)
        if abs(free - total) < 1e-6:
            return free
        time.sleep(0.5)
    return ray.available_resources().get("CPU", 0.0)


def test_worker_share_adds_up_to_the_trials_cpus():
    r = worker_resources({"cpus": 1.0, "gpus": 0.0, "workers": 2})
    assert r == {"CPU": 1.0 - TRIAL_FUNCTION_CPU / 2}
    assert 2 * r["CPU"] + TRIAL_FUNCTION_CPU == pytest.approx(2.0)
    assert worker_resources({"cpus": 2.0, "gpus": 0.5, "workers": 4})["GPU"] == 0.5


def test_a_whole_suite_runs_with_two_workers_per_trial_and_frees_the_cluster(ray_two_cpus, source_checkpoint,
                                                                              tmp_path, capsys):
    """Every CPU of the machine goes to one trial's two workers: searches (ASHA stops some), then finals."""
    out = tmp_path / "r"
    t0 = time.time()
    path = suite(tmp_path, source_checkpoint, methods=["scratch"], search={"num_samples": 1, "scheduler": "asha"},
                 overrides={"epochs": 2, "batch_size": 32, "lr": {"grid": [0.05, 0.0002]}})  # the second is stopped
    assert main(["run", "--suite", str(path), "--results-dir", str(out)]) == 0
    elapsed = time.time() - t0
    run_dir = next(d for d in out.iterdir() if d.name.startswith("ddp-"))
    records = read_records(run_dir / "records.jsonl")
    trials = [r for r in records if isinstance(r, TrialRecord)]
    finals = [r for r in records if isinstance(r, FinalRecord)]
    assert len(trials) == 2 and all(t.status in ("ok", "stopped_early") for t in trials)
    assert any(t.status == "stopped_early" for t in trials)  # ASHA killed a trial mid-run; the next still ran
    assert [f.status for f in finals] == ["ok", "ok"] and all(f.cost["workers"] == 2 for f in finals)
    assert all(f.test["accuracy"] > 0.3 for f in finals)
    assert elapsed < 600
    assert cpus_back() == pytest.approx(2.0)  # no placement group left behind by a stopped or finished trial


def test_a_trial_whose_workers_cannot_be_scheduled_fails_with_a_message(ray_two_cpus, source_checkpoint, tmp_path,
                                                                        monkeypatch):
    """One CPU is held elsewhere, so the two 1-CPU workers can never start: the trial says so and the run ends."""
    monkeypatch.setenv("HARNESS_SCHEDULE_TIMEOUT_S", "3")

    @ray.remote(num_cpus=1)
    class Holder:
        def ping(self) -> int:
            return 1

    holder = Holder.remote()
    ray.get(holder.ping.remote())
    try:
        path = suite(tmp_path, source_checkpoint, search={"num_samples": 1, "scheduler": "fifo"}, final_seeds=1)
        out = tmp_path / "r"
        assert main(["run", "--suite", str(path), "--results-dir", str(out)]) == 1  # the cell has no winner
        run_dir = next(d for d in out.iterdir() if d.name.startswith("ddp-"))
        (trial,) = [r for r in read_records(run_dir / "records.jsonl") if isinstance(r, TrialRecord)]
        assert trial.status == "error"
        assert "could not be scheduled within 3 s" in trial.error and "the cluster has {'CPU': 2.0}" in trial.error
    finally:
        ray.kill(holder)
    assert cpus_back() == pytest.approx(2.0)
