"""What a resume relies on, without a Ray cluster: mid-run state that continues a run exactly, a diverged epoch
that reports every metric, trial outcomes by status, status-aware completion, one writer per run folder,
checkpoint identity by content, absolute paths, frozen run facts and a clean stop on a signal."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml

from harness.cli import build_parser
from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.results.records import CellRecord, FinalRecord, TrialRecord
from harness.results.store import RunStore
from harness.study import interrupt
from harness.study.plan import build_plan, done_jobs
from harness.study.runner import resolve, run_facts
from harness.study.suite import cells, suite_from_dict
from harness.train.loop import fit

CONFIG = TrialConfig.from_dict({"dataset": "digits:0-4", "backbone": "resnet8", "method": "scratch", "epochs": 3,
                                "lr": 0.05, "augment": "basic", "samples_per_class": 20,
                                "evaluate_test": False})


class Saved:
    """Checkpoints kept in memory, saved after every epoch; `crash_after` makes the run die after that epoch."""

    def __init__(self, state: dict[str, Any] | None = None, crash_after: int = 0) -> None:
        self.state, self.crash_after, self.saved = state, crash_after, []

    def load(self) -> dict[str, Any] | None:
        return self.state

    def due(self, elapsed: float) -> bool:
        return True

    def save(self, state: dict[str, Any]) -> None:
        self.saved.append(state)

    def report(self, row: dict[str, Any]) -> None:
        if row["epoch"] == self.crash_after:
            raise RuntimeError("the trial's process died")


def test_a_run_continued_from_its_checkpoint_ends_as_if_never_stopped(tmp_path):
    straight = fit(CONFIG)
    first = Saved(crash_after=1)
    with pytest.raises(RuntimeError, match="process died"):
        fit(CONFIG, reporter=first.report, checkpoints=first)
    assert [s["epoch"] for s in first.saved] == [1]
    torch.save(first.saved[0], tmp_path / "state.pt")  # as a Tune checkpoint keeps it, read back as plain data
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    resumed = fit(CONFIG, checkpoints=Saved(state=state))
    assert resumed.summary["val"] == straight.summary["val"]
    assert [r["epoch"] for r in resumed.summary["history"]] == [1, 2, 3]
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_diverged_epoch_reports_every_metric_a_search_may_select_on():
    rows = []
    summary = fit(CONFIG.replace(lr=1e12, momentum=0.0, warmup_epochs=0.0), reporter=rows.append).summary
    assert summary["status"] == "diverged"
    (row,) = rows
    for metric in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "nll", "ece", "top5_accuracy"):
        assert math.isnan(row[f"val_{metric}"]), metric


def test_every_trial_row_carries_the_searched_metric_and_an_error_ends_the_trial_once():
    from harness.study.trial import _DeferLast

    sent = []
    reporter = _DeferLast(sent.append, "val_macro_f1")
    reporter({"epoch": 1, "status": "running", "train_loss": 0.5})
    reporter.fail(ValueError("warmup_epochs=50: more than the run's 2 epochs"))
    assert math.isnan(sent[0]["val_macro_f1"]) and sent[0]["train_loss"] == 0.5
    assert sent[1]["status"] == "error"
    assert sent[1]["error"] == "ValueError: warmup_epochs=50: more than the run's 2 epochs"


def test_a_trials_outcome_says_interrupted_lost_or_error():
    from ray.exceptions import ActorDiedError

    from harness.study.search import outcome
    from harness.study.trial import is_infrastructure_failure

    running = SimpleNamespace(metrics={"epoch": 1, "status": "running", "val_accuracy": 0.5}, error=None)
    assert outcome(running, ended=True)[0] == "stopped_early"  # the scheduler stopped it
    assert outcome(running, ended=False)[0] == "interrupted"  # the Tuner was stopped first
    assert outcome(SimpleNamespace(metrics={}, error=ActorDiedError()))[0] == "lost"
    assert outcome(SimpleNamespace(metrics={}, error=RuntimeError("KeyboardInterrupt")))[0] == "interrupted"
    reported = SimpleNamespace(metrics={"status": "error", "error": "ConfigError: lr=-1: must be > 0"}, error=None)
    assert outcome(reported) == ("error", None, "ConfigError: lr=-1: must be > 0")
    wrapped = RuntimeError("training failed")
    wrapped.worker_failures = {0: ActorDiedError()}
    assert is_infrastructure_failure(wrapped) and not is_infrastructure_failure(ValueError("bad"))


def tiny_suite(**extra: Any) -> dict[str, Any]:
    return {"name": "tiny", "datasets": ["digits:0-4"], "methods": ["scratch"],
            "backbones": [{"name": "resnet8", "weights": "none"}], "search": {"num_samples": 2},
            "final_seeds": 2, **extra}


def test_interrupted_trials_and_failed_finals_are_never_done(tmp_path):
    plan = build_plan(suite_from_dict(tiny_suite(), "test"), tmp_path / "sources")
    (cell,) = plan.cells
    ident = dict(cell_id=cell.cell_id, dataset="digits:0-4", samples_per_class=0, method="scratch",
                 backbone="resnet8", weights="none")
    finals = {j.seed: j.job_id for j in plan.of_kind("final")}
    s0, s1 = cell.final_seed_list
    store = RunStore(tmp_path / "run")
    store.append([TrialRecord(**ident, trial_id="t0", status="ok"),
                  TrialRecord(**ident, trial_id="t1", status="interrupted")])
    assert done_jobs(plan, store.records()) == set()  # a search with an interrupted trial is not done
    store.append([TrialRecord(**ident, trial_id="t1", status="error"),  # the resumed search: it ended
                  FinalRecord(**ident, seed=s0, status="interrupted"), FinalRecord(**ident, seed=s1, status="lost")])
    assert done_jobs(plan, store.records()) == {cell.cell_id}
    store.append([FinalRecord(**ident, seed=s0, status="ok"), FinalRecord(**ident, seed=s1, status="diverged"),
                  CellRecord(**ident, status="ok", finals=2)])
    assert done_jobs(plan, store.records()) == {cell.cell_id, finals[s0], finals[s1]}  # a diverged seed is not re-run
    assert [(r.kind, r.status) for r in store.records()] == [("trial", "ok"), ("trial", "error"), ("final", "ok"),
                                                              ("final", "diverged"), ("cell", "ok")]
    assert len(store.all_records()) == 8


def test_run_folders_are_unique_stay_under_the_results_folder_and_have_one_writer(tmp_path):
    stores = [RunStore.create(tmp_path, "../../etc/tiny") for _ in range(3)]
    assert len({s.dir for s in stores}) == 3 and all(s.dir.parent == tmp_path for s in stores)
    assert stores[0].dir.name.startswith("etc-tiny-") and stores[1].dir.name.endswith("-2")
    stores[0].lock()
    with pytest.raises(ConfigError, match=rf"another harness run \(PID {os.getpid()}\) is writing this run folder"):
        RunStore(stores[0].dir).lock()
    stores[0].unlock()
    RunStore(stores[0].dir).lock()


def test_a_checkpoint_is_identified_by_its_content_not_its_path(tmp_path):
    def cell_id(path: Path) -> str:
        data = tiny_suite(backbones=[{"name": "resnet8", "weights": f"checkpoint:{path}"}], methods=["finetune"])
        return cells(suite_from_dict(data, "test"))[0].cell_id

    a, b, c = tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt", tmp_path / "c" / "other.pt"
    for path, content in ((a, b"one network"), (b, b"another network"), (c, b"one network")):
        path.parent.mkdir()
        path.write_bytes(content)
    assert cell_id(a) != cell_id(b) and cell_id(a) == cell_id(c)


def test_relative_paths_in_suites_and_flags_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_suite(
        datasets=["folder:images?val_fraction=0.2"], backbones=[{"name": "resnet8", "weights": "checkpoint:m.pt"}])))
    args = build_parser().parse_args(["run", "--suite", "tiny.yaml"])
    suite, _ = resolve(args)
    assert suite.datasets[0].name == f"folder:{tmp_path}/images?val_fraction=0.2"
    assert suite.backbones[0].weights == f"checkpoint:{tmp_path}/m.pt"
    args = build_parser().parse_args(["run", "--suite", "tiny.yaml", "--weights", "checkpoint:sub/n.pt"])
    assert resolve(args)[0].backbones[0].weights == f"checkpoint:{tmp_path}/sub/n.pt"


def test_a_resumed_run_keeps_its_storage_path_sources_and_data_root(tmp_path):
    store = RunStore.create(tmp_path / "results", "tiny")
    store.write_json("run.json", {"storage_path": "/shared/tune", "sources_dir": "/r/sources",
                                  "teachers_dir": "/r/teachers", "data_root": "/data"})
    resume = build_parser().parse_args(["run", "--resume", str(store.dir)])
    assert run_facts(resume, store)["sources_dir"] == "/r/sources"
    other = build_parser().parse_args(["run", "--resume", str(store.dir), "--storage-path", "/elsewhere"])
    with pytest.raises(ConfigError, match="--storage-path=/elsewhere: this run keeps its Tune experiments in "
                                          "/shared/tune"):
        run_facts(other, store)


def test_a_signal_outside_a_running_tuner_stops_at_once_with_its_exit_code():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(interrupt.Interrupted) as stopped:
        with interrupt.stopping():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
            pytest.fail("not stopped")
    assert stopped.value.exit_code == 143 and signal.getsignal(signal.SIGTERM) is before
