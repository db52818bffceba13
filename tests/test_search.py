"""End to end on a real local Ray instance (2 CPUs): search, ASHA, errors and divergence, Ray Train, resume."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ray = pytest.importorskip("ray")

from harness.cli import main  # noqa: E402
from harness.results.records import CellRecord, FinalRecord, TrialRecord  # noqa: E402
from harness.results.store import read_records  # noqa: E402
from harness.study.search import TrialCallback, best_trial, outcome, trial_callback, trial_status  # noqa: E402
from harness.study.trial import best_of  # noqa: E402


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def suite_file(tmp_path: Path, source: Path, **extra) -> Path:
    data = {
        "name": "tiny",
        "datasets": ["digits:0-4"],
        "methods": ["scratch", "linear_probe"],
        "backbones": [{"name": "resnet8", "weights": f"checkpoint:{source}"}],
        "search": {"num_samples": 2, "scheduler": "fifo", "max_concurrent_trials": 2},
        "final_seeds": 2,
        "overrides": {"epochs": 2},
    }
    for key, value in extra.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def only_run_dir(root: Path) -> Path:
    dirs = [d for d in root.iterdir() if d.is_dir() and d.name != "sources"]
    assert len(dirs) == 1
    return dirs[0]


def test_tiny_suite_end_to_end_writes_records_and_leaderboard(ray_local, source_checkpoint, tmp_path, capsys):
    out = tmp_path / "results"
    shared = tmp_path / "shared"
    path = suite_file(tmp_path, source_checkpoint, overrides={"lr": 0.05})  # 2 epochs from scratch need a tame lr
    assert main(["run", "--suite", str(path), "--results-dir", str(out), "--storage-path", str(shared)]) == 0
    run_dir = only_run_dir(out)
    # Tune's artefacts, in a folder of the run's own: one Tuner shared by both cells (its trial processes stay
    # warm from cell to cell), each cell's finals following its search in it: no Tuner of finals
    assert len(list(shared.glob(f"{run_dir.name}/search-*"))) == 1 and not list(shared.glob("*/final-*"))
    lines = (run_dir / "records.jsonl").read_text().splitlines()
    raw = [json.loads(line) for line in lines]  # every line is strict JSON
    assert all(r["schema"] == 3 and r["run_id"] == run_dir.name and r["kind"] for r in raw)
    assert all("test" not in r for r in raw if r["kind"] == "trial")  # the search never sees test
    records = read_records(run_dir / "records.jsonl")
    cells = [r for r in records if isinstance(r, CellRecord)]
    assert [c.method for c in cells] == ["scratch", "linear_probe"]
    for cell in cells:
        trials = [r for r in records if isinstance(r, TrialRecord) and r.cell_id == cell.cell_id]
        finals = [r for r in records if isinstance(r, FinalRecord) and r.cell_id == cell.cell_id]
        assert cell.status == "ok" and cell.trials == len(trials) == 2
        assert cell.best_value == max(t.value for t in trials if t.status == "ok")
        assert sorted(f.seed for f in finals) == [1, 2]  # never the search's seed 0
        seeds = ("seed", "subset_seed", "split_seed", "evaluate_test", "train_on_val")
        assert all(f.config[k] == v for f in finals for k, v in cell.best_config.items() if k not in seeds)
        assert all(f.test["accuracy"] > 0.3 and f.config["evaluate_test"] for f in finals)
        assert all(t.val for t in trials)
        assert cell.trial_seconds > 0
    assert all(r.run_id == run_dir.name for r in records)
    assert (run_dir / "suite.yaml").is_file()
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["torch"] and env["ray"] == ray.__version__
    assert not (run_dir / "tune").exists()
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "report.html"):
        assert (run_dir / name).is_file()
    printed = capsys.readouterr().out
    assert printed.count("search ") >= 4 and "done: best val_accuracy" in printed and "about" in printed


def test_finals_never_replay_the_search_and_few_shot_validates_on_k_per_class(ray_local, source_checkpoint,
                                                                                  tmp_path):
    """Seed policy end to end: search trials on seed 0, finals on 1 and 2 with their own few-shot subsets
    (final_vary), every seed recorded, validation drawn at 10 per class, the search on the headline metric."""
    path = suite_file(tmp_path, source_checkpoint, datasets=[{"name": "digits:5-9", "samples_per_class": 10}],
                      methods=["linear_probe"], search={"num_samples": 1}, final_vary=["init", "subset"])
    assert main(["run", "--suite", str(path), "--results-dir", str(tmp_path / "r")]) == 0
    records = read_records(only_run_dir(tmp_path / "r") / "records.jsonl")
    (cell,) = [r for r in records if isinstance(r, CellRecord)]
    (winner,) = [r for r in records if isinstance(r, TrialRecord)]
    finals = sorted((r for r in records if isinstance(r, FinalRecord)), key=lambda r: r.seed)
    assert cell.metric == "val_accuracy" and winner.metric == "val_accuracy"  # digits' headline metric
    assert winner.seeds == {"seed": 0, "subset_seed": 0, "split_seed": 0}
    assert [f.seeds for f in finals] == [{"seed": 1, "subset_seed": 1, "split_seed": 0},
                                         {"seed": 2, "subset_seed": 2, "split_seed": 0}]
    for f in finals:
        assert f.status == "ok" and f.data["train"] == 50 and f.data["val"] == 50  # 10 per class, both splits
        assert f.val != winner.val and f.val["nll"] != winner.val["nll"]  # no final replays the winner
        same = [k for k in winner.config if k not in ("seed", "subset_seed")]
        assert {k: f.config[k] for k in same} == {k: winner.config[k] for k in same}  # the winner's configuration


def test_asha_stops_bad_trials_early(ray_local, source_checkpoint, tmp_path):
    path = suite_file(tmp_path, source_checkpoint, methods=["finetune"], final_seeds=1,
                      search={"num_samples": 1, "scheduler": "asha", "algorithm": "grid", "max_concurrent_trials": 1},
                      overrides={"epochs": 4, "lr": {"grid": [0.05, 0.03, 1.0e-6, 2.0e-6]}, "batch_size": 32,
                                 "dropout": 0.0, "weight_decay": 0.0005, "label_smoothing": 0.0})
    assert main(["run", "--suite", str(path), "--results-dir", str(tmp_path / "r")]) == 0
    records = read_records(only_run_dir(tmp_path / "r") / "records.jsonl")
    cell = next(r for r in records if isinstance(r, CellRecord))
    stopped = [r for r in records if isinstance(r, TrialRecord) and r.status == "stopped_early"]
    assert cell.trials_stopped_early == len(stopped) >= 1
    assert all(r.epochs_completed < 4 for r in stopped)
    assert cell.best_config["lr"] in (0.05, 0.03)
    # max_concurrent_trials=1 holds: each trial started after the previous one's last report
    spans = sorted((r.finished_at - r.trial_seconds, r.finished_at) for r in records if isinstance(r, TrialRecord))
    assert all(start >= prev_end - 1.0 for (_, prev_end), (start, _) in zip(spans, spans[1:])), spans


def test_errored_and_diverged_trials_are_recorded_and_never_win(ray_local, source_checkpoint, tmp_path):
    path = suite_file(tmp_path, source_checkpoint, methods=["finetune"], final_seeds=1,
                      search={"num_samples": 1, "algorithm": "grid"},
                      overrides={"epochs": 2, "lr": {"grid": [0.05, 1.0e+12]}, "momentum": 0.0,
                                 "warmup_epochs": {"grid": [0.0, 50]}, "dropout": 0.0, "weight_decay": 0.0005,
                                 "batch_size": 64, "label_smoothing": 0.0})
    # `harness run` refuses the space before Ray starts (warmup_epochs=50 > epochs=2 at its bounds) ...
    assert main(["run", "--suite", str(path), "--results-dir", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()
    # ... so the search machinery is driven directly, as a space whose trials fail at run time would drive it
    from harness.results.store import RunStore
    from harness.study.runner import run_suite
    from harness.study.suite import cells, load_suite

    store = RunStore.create(tmp_path / "r", "tiny")
    run_suite(cells(load_suite(str(path))), store)
    records = read_records(store.records_path)
    cell = next(r for r in records if isinstance(r, CellRecord))
    trials = [r for r in records if isinstance(r, TrialRecord)]
    assert cell.trials_errored == 2 and cell.trials_diverged == 1 and cell.status == "ok"
    errored = [t for t in trials if t.status == "error"]
    assert all("warmup_epochs=50" in t.error for t in errored)
    assert cell.best_config["lr"] == 0.05 and cell.best_config["warmup_epochs"] == 0.0


def tune_state_intact(run_dir: Path) -> bool:
    """Whether every experiment state Tune left in the run folder can be read. Tune writes it to a staging folder
    and copies it over in the background, not atomically: a kill during that copy leaves a truncated file, and the
    resumed run then redoes the experiment's trials (still recording each once), a window of Tune's own."""
    for state in run_dir.glob("tune/*/experiment_state-*.json"):
        try:
            json.loads(state.read_text())
        except ValueError:
            return False
    return True


def test_resume_after_a_killed_run_does_not_redo_finished_work(ray_local, source_checkpoint, tmp_path, capsys):
    path = suite_file(tmp_path, source_checkpoint, search={"num_samples": 2, "max_concurrent_trials": 1},
                      overrides={"epochs": 3})
    out = tmp_path / "r"
    # Tune saves its experiment's state at every step (by default at most every 10 s: a crash loses that much)
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--suite", str(path), "--results-dir",
                             str(out), "--address", ray_local], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, env=env)
    seen = []
    for line in proc.stdout:  # killed once a cell's first final run has ended (and Tune saved that)
        seen.append(line)
        if line.startswith("[final]"):
            time.sleep(2)
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = next((line.split(" · ")[1] for line in seen if line.startswith("[final]")), None)
    assert first in ("scratch", "linear_probe"), "".join(seen[-20:])
    (run_dir,) = out.glob("tiny-*")
    # the cells share one Tuner, whose trials are recorded when it ends: Tune's experiment holds what ended
    assert not any(isinstance(r, (TrialRecord, FinalRecord, CellRecord)) for r in read_records(run_dir /
                                                                                                "records.jsonl"))
    capsys.readouterr()

    assert main(["run", "--resume", str(run_dir)]) == 0
    resumed = capsys.readouterr().out
    after = read_records(run_dir / "records.jsonl")
    cells = [r for r in after if isinstance(r, CellRecord)]
    assert [c.method for c in cells] == ["scratch", "linear_probe"] and all(c.status == "ok" for c in cells)
    trials = [r for r in after if isinstance(r, TrialRecord)]
    assert len(trials) == 4 and {r.method for r in trials if r.status == "ok"} == {"scratch", "linear_probe"}
    assert sorted((r.method, r.seed) for r in after if isinstance(r, FinalRecord)) == [
        ("linear_probe", 1), ("linear_probe", 2), ("scratch", 1), ("scratch", 2)]
    ran_again = [line for line in resumed.splitlines() if f" · {first} · " in line and re.search(r"  search \d", line)]
    if tune_state_intact(run_dir):  # its search ended before the kill: not searched again
        assert not ran_again, ran_again

    assert main(["run", "--resume", str(run_dir)]) == 0  # a finished run: nothing is run again
    assert read_records(run_dir / "records.jsonl") == after


def test_the_winner_is_the_best_trial_that_ended_ok_and_the_earliest_of_equals():
    """One rule, `best_of`, picks a cell's winner both in the shared Tuner (which starts its finals) and in the
    records: stopped-early, diverged and non-finite trials never win, ties go to the earliest trial."""
    trials = [("ab_00002", "ok", 0.9), ("ab_00001", "ok", 0.9), ("ab_00003", "stopped_early", 0.95),
              ("ab_00004", "ok", float("nan")), ("ab_00005", "diverged", 0.99), ("ab_00006", "error", None)]
    assert best_of(trials, "max") == "ab_00001"
    assert best_of([*trials, ("ab_00007", "ok", 0.2)], "min") == "ab_00007"
    assert best_of(trials[2:], "max") is None
    records = [SimpleNamespace(trial_id=i, status=st, value=v) for i, st, v in trials]
    assert best_trial(records, "max") is records[1]


def test_one_function_says_how_a_trial_ended():
    summary = '{"status": "ok", "val": {"accuracy": 0.9}}'
    assert trial_status({"status": "ok", "summary": summary}) == "ok"
    assert trial_status({"status": "running", "val_accuracy": 0.5}) == "stopped_early"
    assert trial_status({"status": "diverged", "summary": summary}) == "diverged"
    assert trial_status({"status": "diverged"}) == "diverged"
    assert trial_status(None) == "stopped_early" and trial_status({"summary": summary}, failed=True) == "error"
    done = SimpleNamespace(metrics={"status": "ok", "summary": summary}, error=None)
    assert outcome(done) == ("ok", {"status": "ok", "val": {"accuracy": 0.9}}, None)
    failed = SimpleNamespace(metrics={}, error=RuntimeError("boom\nwarmup_epochs=50: too long"))
    assert outcome(failed) == ("error", None, "RuntimeError: warmup_epochs=50: too long")
    sent = []  # the progress callback derives the same status from the trial's last result
    callback = trial_callback("status-test", lambda *a: sent.append(a), "val_accuracy")
    assert isinstance(callback, TrialCallback)
    callback.on_trial_complete(0, [], SimpleNamespace(trial_id="t1", config={}, last_result={"status": "running",
                                                                                             "val_accuracy": 0.5}))
    callback.on_trial_error(0, [], SimpleNamespace(trial_id="t2", config={}, last_result={"val_accuracy": 0.5}))
    assert [(s[1], s[2]) for s in sent] == [("stopped_early", 0.5), ("error", None)]


def test_unreachable_address_fails_fast(tmp_path, capsys):
    t0 = time.time()
    assert main(["run", "--address", "127.0.0.1:9", "--results-dir", str(tmp_path)]) == 2
    assert time.time() - t0 < 30
    assert "--address=127.0.0.1:9: no Ray cluster reachable" in capsys.readouterr().err


def test_more_gpus_than_the_cluster_has_is_refused_before_anything_starts(ray_local, source_checkpoint, tmp_path,
                                                                           capsys):
    path = suite_file(tmp_path, source_checkpoint)
    out = tmp_path / "r"
    assert main(["run", "--suite", str(path), "--results-dir", str(out), "--gpus-per-trial", "1"]) == 2
    assert "a trial needs 1 GPUs (workers_per_trial=1 x gpus_per_trial=1) but the cluster has 0" in \
        capsys.readouterr().err
    assert not out.exists() or not [d for d in out.iterdir() if d.name != "sources"]
    assert main(["run", "--suite", str(path), "--results-dir", str(out), "--workers-per-trial", "3"]) == 2


def test_several_aux_tasks_and_label_mapping_run_through_the_pipeline(ray_local, source_checkpoint, tmp_path):
    """A suite entry with two auxiliary tasks (the second's weight searched) beside a label-mapping cell: every
    trial and final record carries each branch's validation accuracy, or the untrained score; the leaderboard and
    the report show them."""
    import pandas as pd

    entry = {"name": "digits:5-9", "samples_per_class": 10,
             "overrides": {"aux_tasks": "digits:0-4+rotation", "aux_weight_2": {"loguniform": [0.05, 1.0]},
                           "batch_size": 16}}
    path = suite_file(tmp_path, source_checkpoint, datasets=[entry], methods=["multibranch", "label_mapping"])
    assert main(["run", "--suite", str(path), "--results-dir", str(tmp_path / "r")]) == 0
    run_dir = only_run_dir(tmp_path / "r")
    records = read_records(run_dir / "records.jsonl")
    cells = {r.method: r for r in records if isinstance(r, CellRecord)}
    assert "aux_weight_2" in cells["multibranch"].space and "aux_weight_2" not in cells["label_mapping"].space
    runs = {m: [r for r in records if isinstance(r, (TrialRecord, FinalRecord)) and r.method == m and r.status == "ok"]
            for m in cells}
    assert len(runs["multibranch"]) == len(runs["label_mapping"]) == 4  # 2 trials and 2 finals each
    for r in runs["multibranch"]:
        assert 0 <= r.val["aux1_accuracy"] <= 1 and 0 <= r.val["aux2_accuracy"] <= 1
    finals = [r for r in runs["multibranch"] if isinstance(r, FinalRecord)]
    assert all([b["task"] for b in f.model["aux_branches"]] == ["digits:0-4", "rotation"] for f in finals)
    for r in runs["label_mapping"]:
        assert 0 <= r.val["untrained_accuracy"] <= 1
        assert isinstance(r, TrialRecord) or 0 <= r.test["untrained_accuracy"] <= 1
    board = pd.read_csv(run_dir / "leaderboard.csv").set_index("method")
    untrained = [r.test["untrained_accuracy"] for r in runs["label_mapping"] if isinstance(r, FinalRecord)]
    assert board.loc["label_mapping", "test_untrained_score"] == pytest.approx(sum(untrained) / 2)
    assert pd.isna(board.loc["multibranch", "test_untrained_score"])
    report = (run_dir / "report.html").read_text()
    assert "Auxiliary branches of multi-branch cells" in report and "untrained score" in report
    assert "test_untrained_score" in (run_dir / "leaderboard.md").read_text()
