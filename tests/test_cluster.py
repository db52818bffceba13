"""`harness run` submitted as a Ray Job to a real two-node cluster started with `ray start`, as users launch
benchmarks: every cell finishes and the trials run on both nodes. Only the processes this test started are
stopped. Needs Ray's job server (`pip install -e ".[cluster]"`, part of the test extra) and free local ports;
skipped with one line where they cannot be had. Alone: `pytest -m cluster`."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        out[int(entry.name)] = (ppid, cmd)
    return out


def stop_cluster(marks: list[str]) -> None:
    """Kill the processes whose command line names this cluster (its temp folder or GCS port) and their
    descendants: `ray stop` would stop every Ray cluster of the machine."""
    ps = processes()
    todo = [p for p, (_, cmd) in ps.items() if any(m in cmd for m in marks) and p != os.getpid()]
    found: set[int] = set()
    while todo:
        p = todo.pop()
        found.add(p)
        todo += [c for c, (parent, _) in ps.items() if parent == p and c not in found]
    for p in found:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def cluster():
    """A head (1 CPU, job server) and a second node (1 CPU, custom resource `second_node`) on this machine,
    with token authentication; yields (dashboard address, environment for Ray's CLI)."""
    if shutil.which("ray") is None:
        pytest.skip("the `ray` command is not installed")
    try:
        pytest.importorskip("aiohttp", reason="Ray's job server needs the cluster extra: pip install -e '.[cluster]'")
        gcs, dashboard = free_port(), free_port()
    except OSError as e:
        pytest.skip(f"cannot open local ports: {e}")
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")},
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    marks = [temp, f"127.0.0.1:{gcs}"]
    try:
        subprocess.run(["ray", "start", "--head", "--port", str(gcs), "--include-dashboard", "true",
                        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--temp-dir", temp,
                        "--dashboard-agent-listen-port", str(free_port()), "--ray-client-server-port",
                        str(free_port()), *common], env=env, check=True, capture_output=True, timeout=120)
        subprocess.run(["ray", "start", "--address", f"127.0.0.1:{gcs}", "--resources", '{"second_node": 1}',
                        "--dashboard-agent-listen-port", str(free_port()), *common], env=env, check=True,
                       capture_output=True, timeout=120)
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        stop_cluster(marks)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_suite_submitted_as_a_ray_job_runs_its_trials_on_both_nodes(cluster, tmp_path):
    address, env = cluster
    suite = tmp_path / "two-nodes.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "two-nodes", "datasets": ["digits:0-4"], "methods": ["scratch", "finetune"],
        "backbones": [{"name": "resnet8", "weights": "none"}],
        "search": {"num_samples": 2, "scheduler": "fifo", "max_concurrent_trials": 2, "max_concurrent_cells": 1},
        "final_seeds": 2, "overrides": {"epochs": 2, "lr": 0.05}}))
    results = tmp_path / "results"
    submit = ["ray", "job", "submit", "--address", address, "--working-dir", str(ROOT), "--",
              sys.executable, "-m", "harness.cli", "run", "--suite", str(suite), "--address", "auto",
              "--results-dir", str(results)]
    for _ in range(30):  # the head's job agent takes a few seconds to come up after `ray start`
        job = subprocess.run(submit, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
        if "No available agent" not in job.stderr + job.stdout:
            break
        time.sleep(2)
    assert job.returncode == 0 and "succeeded" in job.stdout, job.stdout[-3000:] + job.stderr[-3000:]
    (run_dir,) = [d for d in results.iterdir() if d.is_dir() and d.name != "sources"]
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    cells = [r for r in records if r["kind"] == "cell"]
    assert len(cells) == 2 and all(c["status"] == "ok" and c["finals"] == 2 for c in cells)
    runs = [r for r in records if r["kind"] in ("trial", "final")]
    assert len(runs) == 8 and all(r["status"] == "ok" for r in runs)
    nodes = {r["node"]["node_id"] for r in runs}
    assert len(nodes) == 2, "every trial ran on one node"
    assert {r["node"]["accelerator"] for r in runs} == {"cpu"} and all(r["node"]["node_ip"] for r in runs)
    leaderboard = (run_dir / "leaderboard.csv").read_text()
    assert "hardware" in leaderboard.splitlines()[0] and "cpu x1" in leaderboard
    sessions = [json.loads(line) for line in (run_dir / "sessions.jsonl").read_text().splitlines()]
    assert sessions[0]["address"] == "auto" and sessions[-1]["exit_code"] == 0
