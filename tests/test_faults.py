"""Fault injection on real processes and a real local Ray cluster: a run stopped by Ctrl-C or SIGTERM, a driver
killed during the search and during the finals, a planted Tune experiment, two resumes at once, a trial's worker
killed, a node removed, two processes appending at once, a torn last line. Run alone with `pytest -m faults`."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")

from harness.cli import main  # noqa: E402
from harness.results.records import FINAL_DONE, TRIAL_DONE, CellRecord, FinalRecord, TrialRecord, record_key  # noqa: E402
from harness.results.store import RunStore  # noqa: E402
from harness.study.spaces import spaces_dir  # noqa: E402

pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def suite_file(tmp_path: Path, **extra) -> Path:
    data = {"name": "tiny", "datasets": ["digits:0-4"], "methods": ["scratch"],
            "backbones": [{"name": "resnet8", "weights": "none"}],
            "search": {"num_samples": 2, "scheduler": "fifo", "max_concurrent_trials": 1},
            "final_seeds": 2, "overrides": {"epochs": 3, "lr": 0.05}}
    data.update(extra)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Driver:
    """`harness ARGS` in a process of its own (its own process group, like a command typed in a terminal)."""

    def __init__(self, *args: object, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *map(str, args)], cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"no line with {text!r} (exit {self.proc.poll()}):\n" + "\n".join(self.seen[-30:]))

    def send(self, sig: int, group: bool = False) -> None:
        (os.killpg if group else os.kill)(self.proc.pid, sig)

    def finish(self, timeout: float = 180) -> tuple[int, str]:
        rc = self.proc.wait(timeout)
        while (line := self.lines.get(timeout=10)) is not None:
            self.seen.append(line)
        return rc, "\n".join(self.seen)


def wait_for_files(root: Path, pattern: str, n: int = 1, timeout: float = 180) -> None:
    """Wait until `n` paths under `root` match `pattern` (e.g. the folders of trials that started)."""
    deadline = time.time() + timeout
    while len(list(root.glob(pattern))) < n:
        assert time.time() < deadline, f"no {n} x {pattern} under {root}"
        time.sleep(0.05)


def wait_for_reports(root: Path, pattern: str, timeout: float = 180) -> None:
    """Wait until the trials whose folders match `pattern` report once more (their result.json files grow)."""
    size = lambda: sum(p.stat().st_size for p in root.glob(f"{pattern}/result.json"))  # noqa: E731
    start, deadline = size(), time.time() + timeout
    while size() <= start:
        assert time.time() < deadline, f"no new report of {pattern} under {root}"
        time.sleep(0.05)


def kinds(run_dir: Path) -> list[tuple[str, str]]:
    """(kind, status) of every record ever appended, in order."""
    return [(r.kind, getattr(r, "status", "")) for r in RunStore(run_dir).all_records()]


def only_run_dir(root: Path) -> Path:
    (run_dir,) = [d for d in root.iterdir() if d.is_dir() and d.name not in ("sources", "teachers")]
    return run_dir


class Planted:
    """A pickle that leaves a file behind if anything ever unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_stopped_and_killed_runs_resume_to_what_an_uninterrupted_run_records(ray_cluster, tmp_path, capsys,
                                                                              monkeypatch):
    spaces = tmp_path / "spaces"
    shutil.copytree(spaces_dir(), spaces)
    env = {"HARNESS_SEARCH_SPACES": str(spaces), "HARNESS_CHECKPOINT_AFTER_S": "0"}
    suite = suite_file(tmp_path, overrides={"epochs": 6, "lr": 0.05})
    out, storage = tmp_path / "r", tmp_path / "storage"
    straight = Driver("run", "--suite", suite, "--results-dir", tmp_path / "u", "--address", ray_cluster, env=env)

    # Ctrl-C while the search's second trial runs: exit 130, the trial recorded as interrupted, nothing done
    d = Driver("run", "--suite", suite, "--results-dir", out, "--storage-path", storage, "--address", ray_cluster,
               env=env)
    wait_for_files(storage, "*/search-*/trial_*", 2)  # the second trial reported its first epoch
    d.send(signal.SIGINT, group=True)
    rc, text = d.finish()
    run_dir = only_run_dir(out)
    assert rc == 130 and "Traceback" not in text, text
    assert text.splitlines()[-1] == (f"harness: stopped by SIGINT; 1 trial(s) and 0 final run(s) recorded as "
                                     f"interrupted; resume with: harness run --resume {run_dir}")
    before = kinds(run_dir)
    assert before == [("trial", "ok"), ("trial", "interrupted")]
    environment = (run_dir / "environment.json").read_text()
    facts = json.loads((run_dir / "run.json").read_text())
    assert facts["storage_path"] == str(storage) and facts["data_root"]
    (spaces / "scratch.yaml").write_text("lr: {loguniform: [0.001, 0.002]}\n")  # must not change the run's cell

    # SIGKILL during the continued search: nothing half-written
    d = Driver("run", "--resume", run_dir, "--address", ray_cluster, env=env)
    d.wait_for("run folder")
    time.sleep(1)
    d.send(signal.SIGKILL, group=True)
    d.finish()
    assert kinds(run_dir) == before

    # a tuner.pkl planted where this run's finals will keep their experiment is refused, never unpickled
    (cell_id,) = {r.cell_id for r in RunStore(run_dir).records(TrialRecord)}
    finals = "final-" + hashlib.sha1(f"{cell_id}:1,{cell_id}:2".encode()).hexdigest()[:12] + f"-{facts['run_key']}"
    planted = storage / run_dir.name / finals
    planted.mkdir(parents=True)
    marker = tmp_path / "unpickled"
    (planted / "tuner.pkl").write_bytes(pickle.dumps(Planted(marker)))
    monkeypatch.setenv("HARNESS_CHECKPOINT_AFTER_S", "0")
    assert main(["run", "--resume", str(run_dir), "--address", ray_cluster]) == 2
    assert "a Tune experiment this run did not start; it is not restored" in capsys.readouterr().err
    assert not marker.exists()
    shutil.rmtree(planted)
    assert [t.status for t in RunStore(run_dir).records(TrialRecord)] == ["ok", "ok"]  # the search finished

    # SIGKILL during the finals, then SIGTERM during the finals: exit 143, both seeds recorded as interrupted
    d = Driver("run", "--resume", run_dir, "--address", ray_cluster, env=env)
    wait_for_files(storage, "*/final-*/trial_*", 2)  # both seeds reported (and checkpointed) an epoch
    d.send(signal.SIGKILL, group=True)
    d.finish()
    assert not RunStore(run_dir).records(FinalRecord)
    d = Driver("run", "--resume", run_dir, "--address", ray_cluster, env=env)
    d.wait_for("search done")
    wait_for_reports(storage, "*/final-*/trial_*")  # the finals' Tuner restored and running again
    d.send(signal.SIGTERM)
    rc, text = d.finish()
    assert rc == 143 and "Traceback" not in text, text
    assert text.splitlines()[-1].startswith("harness: stopped by SIGTERM; 0 trial(s) and 2 final run(s)")
    assert [r.status for r in RunStore(run_dir).records(FinalRecord)] == ["interrupted", "interrupted"]

    # two resumes at once: the second is refused with the first one's PID; the first finishes the run
    d = Driver("run", "--resume", run_dir, "--address", ray_cluster, env=env)
    d.wait_for("run folder")
    assert main(["run", "--resume", str(run_dir), "--address", ray_cluster]) == 2
    assert f"another harness run (PID {d.proc.pid}) is writing this run folder" in capsys.readouterr().err
    rc, text = d.finish()
    assert rc == 0, text

    # the same as an uninterrupted run of the suite (run alongside): cells, trials, finished finals; nothing twice
    rc, text = straight.finish()
    assert rc == 0, text
    resumed, straight = RunStore(run_dir), RunStore(only_run_dir(tmp_path / "u"))
    for store in (resumed, straight):
        (cell,) = store.records(CellRecord)
        assert cell.cell_id == cell_id and cell.status == "ok" and cell.trials == 2 and cell.finals == 2
        assert sorted(f.seed for f in store.records(FinalRecord) if f.status == "ok") == [1, 2]
    trials = lambda s: sorted((t.trial_id[-5:], t.value, json.dumps(t.config)) for t in s.records(TrialRecord))  # noqa: E731
    assert trials(resumed) == trials(straight)
    done = [record_key(r) for r in resumed.all_records()
            if (isinstance(r, TrialRecord) and r.status in TRIAL_DONE) or
            (isinstance(r, FinalRecord) and r.status in FINAL_DONE) or isinstance(r, CellRecord)]
    assert len(done) == len(set(done)) == 5
    sessions = resumed.read_jsonl("sessions.jsonl")
    assert [s["resumed"] for s in sessions if "started" in s] == [False, True, True, True, True, True]
    assert (run_dir / "environment.json").read_text() == environment
    assert sorted(p.name for p in (storage / run_dir.name).iterdir()) == sorted(
        e["name"] for e in resumed.read_jsonl("experiments.jsonl"))


def _processes_under(parent: int, name: str) -> list[int]:
    """PIDs of the processes whose parent is `parent` and whose command line holds `name`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and name in cmd:
            out.append(int(entry.name))
    return out


def test_a_killed_trial_worker_is_retried_and_continues_from_its_checkpoint(ray_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CHECKPOINT_AFTER_S", "0")  # checkpoint after every epoch
    suite = suite_file(tmp_path, search={"num_samples": 1, "scheduler": "fifo"}, final_seeds=1,
                       overrides={"epochs": 3, "lr": 0.05})
    out = tmp_path / "r"
    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    killed = []

    def kill_after_first_epoch() -> None:
        deadline = time.time() + 180
        while time.time() < deadline and not killed:
            reported = [p for p in out.glob("*/tune/search-*/trial_*/result.json") if p.read_text().strip()]
            workers = _processes_under(raylet, "ImplicitFunc")
            if reported and workers:
                for pid in workers:
                    os.kill(pid, signal.SIGKILL)
                killed.extend(workers)
            time.sleep(0.1)

    killer = threading.Thread(target=kill_after_first_epoch)
    killer.start()
    try:
        assert main(["run", "--suite", str(suite), "--results-dir", str(out)]) == 0
    finally:
        killer.join()
    assert killed
    (trial,) = RunStore(only_run_dir(out)).records(TrialRecord)
    assert trial.status == "ok" and trial.failures == 1 and trial.epochs_completed == 3
    assert [row["epoch"] for row in trial.history] == [1, 2, 3]  # the retry went on from epoch 1's checkpoint
    (final,) = RunStore(only_run_dir(out)).records(FinalRecord)
    assert final.status == "ok"


def test_a_dead_cell_search_process_is_a_one_line_error_that_says_how_to_resume(tmp_path):
    """In a driver of its own (its own local Ray: the Tune placement groups of the dead search go with it). Cells
    with multi-worker trials get a Tuner each, and two Tuners at once run in CellSearcher actors."""
    suite = suite_file(tmp_path, methods=["scratch", "finetune"], final_seeds=1,
                       search={"num_samples": 1, "scheduler": "fifo", "max_concurrent_cells": 2},
                       resources={"workers_per_trial": 2, "cpus_per_trial": 1},
                       overrides={"epochs": 30, "lr": 0.05})
    out = tmp_path / "r"
    driver = Driver("run", "--suite", suite, "--results-dir", out)
    killed = []
    deadline = time.time() + 180
    while time.time() < deadline and not killed and driver.proc.poll() is None:
        searchers = _all_processes("CellSearcher.search")
        if searchers and _all_processes("ImplicitFunc"):
            os.kill(searchers[0], signal.SIGKILL)
            killed.append(searchers[0])
        time.sleep(0.1)
    code, output = driver.finish()
    assert killed and code == 2, output[-2000:]
    errors = [line for line in output.splitlines() if line.startswith("harness: error")]
    assert len(errors) == 1 and "the process searching it died" in errors[0], output[-2000:]
    assert f"harness run --resume {only_run_dir(out)}" in errors[0] and "Traceback" not in output


def _all_processes(name: str) -> list[int]:
    """PIDs of every process whose command line holds `name`."""
    out = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and name in (entry / "cmdline").read_bytes().decode(errors="replace"):
                out.append(int(entry.name))
        except OSError:
            continue
    return out


def test_a_search_on_nll_whose_every_trial_diverges_ends_without_a_winner_and_exits_1(ray_cluster, tmp_path,
                                                                                        capsys):
    suite = suite_file(tmp_path, search={"num_samples": 1, "metric": "val_nll", "mode": "min"}, final_seeds=1,
                       overrides={"epochs": 1, "lr": 1.0e+12, "momentum": 0.0, "warmup_epochs": 0.0})
    assert main(["run", "--suite", str(suite), "--results-dir", str(tmp_path / "r")]) == 1
    (cell,) = RunStore(only_run_dir(tmp_path / "r")).records(CellRecord)
    assert cell.status == "no_winner" and cell.trials_diverged == 1  # the search ran to its end
    assert f"harness: cell digits:0-4 · scratch · resnet8 ({cell.cell_id}): no winner" in capsys.readouterr().err


def test_a_run_survives_the_loss_of_a_node(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        cluster.wait_for_nodes()
        suite = suite_file(tmp_path, search={"num_samples": 2, "scheduler": "fifo", "max_concurrent_trials": 2},
                           final_seeds=1, overrides={"epochs": 4, "lr": 0.05})
        out = tmp_path / "r"
        d = Driver("run", "--suite", suite, "--results-dir", out, "--address", cluster.address,
                   env={"HARNESS_CHECKPOINT_AFTER_S": "0"})
        deadline = time.time() + 180
        while time.time() < deadline and len([p for p in out.glob("*/tune/search-*/trial_*/result.json")
                                              if p.read_text().strip()]) < 2:
            time.sleep(0.2)
        cluster.remove_node(nodes[0])
        rc, text = d.finish(300)
        assert rc == 0, text
        store = RunStore(only_run_dir(out))
        trials = store.records(TrialRecord)
        assert [t.status for t in trials] == ["ok", "ok"] and sum(t.failures for t in trials) >= 1
        assert [f.status for f in store.records(FinalRecord)] == ["ok"]
    finally:
        cluster.shutdown()


APPENDER = """
import sys
from harness.results.records import TrialRecord
from harness.results.store import RunStore

store = RunStore(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.append([TrialRecord(cell_id="c", dataset="digits", samples_per_class=0, method="scratch",
                              backbone="resnet8", weights="none", trial_id=f"{sys.argv[2]}{i}", status="ok")])
"""


def _appender(run_dir: Path, tag: str, n: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", APPENDER, str(run_dir), tag, str(n)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_two_processes_appending_at_once_lose_nothing(tmp_path):
    (tmp_path / "run").mkdir()
    procs = [_appender(tmp_path / "run", tag, 150) for tag in "ab"]
    assert [p.wait(120) for p in procs] == [0, 0]
    records = RunStore(tmp_path / "run").all_records()
    assert len(records) == 300 and len({r.trial_id for r in records}) == 300


def test_a_torn_last_line_is_skipped_with_a_warning_and_closed_by_the_next_append(tmp_path):
    (tmp_path / "run").mkdir()
    assert _appender(tmp_path / "run", "t", 2).wait(60) == 0
    store = RunStore(tmp_path / "run")
    with open(store.records_path, "ab") as f:
        f.write(b'{"schema": 3, "run_id": "run", "kind": "trial", "cell_')  # a writer killed mid-line
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [r.trial_id for r in store.all_records()] == ["t0", "t1"]
    assert [str(w.message) for w in caught] == [f"{store.records_path}:3: skipped a torn last line (a write cut short)"]
    assert _appender(tmp_path / "run", "u", 1).wait(60) == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [r.trial_id for r in store.all_records()] == ["t0", "t1", "u0"]
    assert len(caught) == 1 and ":3: skipped a corrupt record" in str(caught[0].message)
