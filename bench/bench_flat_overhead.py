"""Flat overhead at scale: what the harness itself costs per trial at 50 and at 200 trials.

(a) The harness's own bookkeeping per trial, in process, at several sizes: appending a trial's record to the
run store, its progress line, then `harness status` and the leaderboard over the whole store; printed in
microseconds per trial, so growth beyond linear shows as a rising figure. (b) With --ray, `harness run` of one
linear-probe cell of N one-epoch trials on few-shot digits (a resnet8 source pretrained first, 1 final seed):
trials per second, and the harness's time per trial excluding training, (wall - trial-seconds / slots) / trials,
at each N, and what each trial beyond the smaller run cost (the start-up common to both cancels out there).
Usage: python bench/bench_flat_overhead.py [--sizes 50 200 1000] [--ray --trials 50 200]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.results import leaderboard as lb
from harness.results.records import CellRecord, FinalRecord, TrialRecord
from harness.results.store import RunStore
from harness.study.progress import Progress

CELL = {"cell_id": "c0", "dataset": "digits:5-9", "samples_per_class": 10, "method": "linear_probe",
        "backbone": "resnet8", "weights": "checkpoint:src.pt"}


def trial(n: int, rng: random.Random) -> TrialRecord:
    value = rng.uniform(0.5, 0.9)
    return TrialRecord(**CELL, trial_id=f"t{n}", status="ok", config={"lr": 10 ** rng.uniform(-3, 0), "epochs": 1},
                       epochs_completed=1, metric="val_accuracy", value=value, val={"accuracy": value},
                       history=[{"epoch": 1, "train_loss": 1.0, "val_accuracy": value}], trial_seconds=1.0)


def bookkeeping(trials: int) -> dict[str, float]:
    """Seconds the harness spends on `trials` trials' records: appends with progress lines, then a leaderboard."""
    rng = random.Random(trials)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "run")
        store.dir.mkdir()
        progress = Progress(total_trials=trials, total_cells=1, out=io.StringIO())
        t0 = time.perf_counter()
        for n in range(trials):
            store.append([trial(n, rng)])
            progress.trial_done(progress.cell(1, "digits · linear_probe · resnet8"), f"search {n + 1}/{trials}", "ok",
                                "val_accuracy", 0.8, 1.0)
        append = time.perf_counter() - t0
        store.append([FinalRecord(**CELL, seed=1, status="ok", test={"accuracy": 0.8}, data={"metric": "accuracy"},
                                  cost={"params_total": 1, "params_trainable": 1, "train_seconds": 1.0,
                                        "train_images_per_s": 1.0, "peak_memory_mb": 1.0}),
                      CellRecord(**CELL, status="ok", trials=trials, best_value=0.9, best_trial_id="t0")])
        t0 = time.perf_counter()
        records = lb.load_records([store.dir])
        lb.frame(records)
        board = time.perf_counter() - t0
    return {"append": append, "leaderboard": board}


def harness_run(tmp: Path, trials: int) -> tuple[float, float, int]:
    """`harness run` of one cell of `trials` one-epoch linear-probe trials: wall seconds, trial-seconds, and the
    number of trials and finals recorded."""
    suite = tmp / f"flat-{trials}.yaml"
    suite.write_text(json.dumps({
        "name": f"flat-{trials}", "sources": {"src": {"dataset": "digits:0-4", "backbone": "resnet8", "epochs": 3}},
        "datasets": [{"name": "digits:5-9", "samples_per_class": 10}], "methods": ["linear_probe"],
        "backbones": [{"name": "resnet8", "weights": "source:src"}],
        "search": {"num_samples": trials, "scheduler": "fifo", "algorithm": "random"},
        "resources": {"cpus_per_trial": 1}, "final_seeds": 1, "overrides": {"epochs": 1}}))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--suite", str(suite), "--results-dir",
                          str(tmp)], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"harness run failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    run = max((d for d in tmp.iterdir() if d.name.startswith(f"flat-{trials}-")), key=lambda d: d.stat().st_mtime)
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    ran = [r for r in records if r["kind"] in ("trial", "final")]
    return wall, sum(r["trial_seconds"] for r in ran), len(ran)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000, 5000])
    p.add_argument("--ray", action="store_true", help="also time `harness run` with --trials trials")
    p.add_argument("--trials", type=int, nargs="+", default=[50, 200])
    args = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("(a) the harness's bookkeeping per trial (record appended and fsynced, progress line; the leaderboard)")
    for n in args.sizes:
        t = bookkeeping(n)
        print(f"  {n:>5} trials: append + progress {1e6 * t['append'] / n:7.0f} us/trial, "
              f"leaderboard {1e6 * t['leaderboard'] / n:7.0f} us/trial")
    if not args.ray:
        return
    print("(b) harness run: one linear-probe cell of one-epoch trials on digits:5-9@10/class")
    slots = max(1, os.cpu_count() or 1)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        harness_run(Path(tmp), 2)  # pretrains the source network the timed runs share, and warms the disk cache
        for n in args.trials:
            wall, trial_seconds, ran = harness_run(Path(tmp), n)
            own = (wall - trial_seconds / slots) / ran
            runs.append((wall, trial_seconds, ran))
            print(f"  {n:>4} trials (+1 final): {wall:6.1f}s wall, {ran / wall:.2f} trials/s, training "
                  f"{trial_seconds:.1f} trial-s, harness and Ray {own:.2f}s/trial beyond training", flush=True)
    for (w0, s0, n0), (w1, s1, n1) in zip(runs, runs[1:]):
        extra = (w1 - w0 - (s1 - s0) / slots) / (n1 - n0)
        print(f"  from {n0} to {n1} runs: each extra trial cost {(w1 - w0) / (n1 - n0):.2f}s wall, "
              f"{extra:.2f}s of it beyond training (the fixed start-up cancels out)")


if __name__ == "__main__":
    main()
