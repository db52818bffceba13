"""Ray's cost per trial and the gain of running trials concurrently.

(a) digits / resnet20 / finetune / 5 epochs run directly through the engine, then as a 1-trial
`harness run` search (fixed hyperparameters, FIFO): prints both wall times, the ratio and the
overhead of that 1-trial search (target <= 3 s). (b) 8 trials of the quick suite's finetune cell on
digits, 2 at a time (1 CPU each) against 1 at a time (1 CPU, and 2 CPUs): prints the search times and
speed-ups (target >= 1.6x on 2 cores). From the 1-at-a-time search it splits Ray's overhead into the
Tuner's one-off start (trial actor start-up, which imports torch) and the cost per further trial.
Usage: python bench/bench_ray_overhead.py [--skip-concurrency]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.train.loop import train_loop
from harness.core.config import TrialConfig

FIXED = {"lr": 0.05, "dropout": 0.0, "batch_size": 64, "epochs": 5, "weight_decay": 5.0e-4,
         "label_smoothing": 0.0, "optimizer": "sgd", "warmup_epochs": 0.5}


def harness_run(tmp: Path, *flags: str) -> tuple[float, dict]:
    """Run `harness run` in a fresh process; return its wall time and the cell record it wrote."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--results-dir", str(tmp), *flags],
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"harness run failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    run_dir = next(d for d in sorted(tmp.iterdir(), key=lambda d: d.stat().st_mtime, reverse=True)
                   if (d / "records.jsonl").exists())
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    return wall, next(r for r in records if r["kind"] == "cell")


def overhead(tmp: Path) -> float:
    import torch

    torch.set_num_threads(1)  # as inside a 1-CPU trial
    config = TrialConfig(dataset="digits", backbone="resnet20", method="finetune", **FIXED)
    t0 = time.perf_counter()
    direct = train_loop(config)
    t_direct = time.perf_counter() - t0
    suite = tmp / "one.yaml"
    suite.write_text(json.dumps({
        "name": "one", "datasets": ["digits"], "methods": ["finetune"],
        "backbones": [{"name": "resnet20", "weights": "none"}],
        "search": {"num_samples": 1, "scheduler": "fifo", "max_concurrent_trials": 1},
        "resources": {"cpus_per_trial": 1}, "final_seeds": 1, "overrides": FIXED}))
    wall, cell = harness_run(tmp, "--suite", str(suite))
    search = cell["search_seconds"]
    print(f"(a) digits/resnet20/finetune/5 epochs, 1 thread")
    print(f"  engine directly:           {t_direct:6.1f}s (val accuracy {direct['val']['accuracy']:.4f})")
    print(f"  1-trial search (Tuner.fit): {search:6.1f}s  ratio {search / t_direct:.2f}  "
          f"overhead {search - t_direct:+.1f}s (target <= 3 s); inside the trial {cell['trial_seconds']:.1f}s")
    print(f"  whole `harness run` (Ray start-up, search, 1 final run, leaderboard): {wall:.1f}s")
    return search - cell["trial_seconds"]


def concurrency(tmp: Path, one_trial_overhead: float) -> None:
    common = ["--datasets", "digits", "--methods", "finetune", "--num-samples", "8", "--scheduler", "fifo",
              "--final-seeds", "1", "--epochs", "4"]
    times, cells = {}, {}
    for label, flags in (("2 at a time, 1 CPU each", ["--max-concurrent-trials", "2", "--cpus-per-trial", "1"]),
                         ("1 at a time, 1 CPU", ["--max-concurrent-trials", "1", "--cpus-per-trial", "1"]),
                         ("1 at a time, 2 CPUs", ["--max-concurrent-trials", "1", "--cpus-per-trial", "2"])):
        _, cell = harness_run(tmp, *common, *flags)
        times[label], cells[label] = cell["search_seconds"], cell
        print(f"  {label:<24} 8 trials in {times[label]:6.1f}s  (trial-seconds {cell['trial_seconds']:.0f})")
    both = times["2 at a time, 1 CPU each"]
    print(f"(b) speed-up of 2 at a time: {times['1 at a time, 1 CPU'] / both:.2f}x over 1 CPU, "
          f"{times['1 at a time, 2 CPUs'] / both:.2f}x over 2 CPUs per trial (target >= 1.6x)")
    serial = cells["1 at a time, 1 CPU"]
    outside = serial["search_seconds"] - serial["trial_seconds"]  # wall time not spent inside a trial
    per_trial = (outside - one_trial_overhead) / 7
    print(f"(c) Ray's overhead, from the 1-at-a-time search: {outside:.1f}s outside the 8 trials; "
          f"{per_trial:.1f}s per further trial, {one_trial_overhead - per_trial:.1f}s once per Tuner "
          f"(actor start-up and imports; from (a))")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-concurrency", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        first = overhead(Path(tmp))
        if not args.skip_concurrency:
            print("(b) quick suite, digits/finetune/resnet8 from the digits 0-4 source, 8 trials of 4 epochs:")
            concurrency(Path(tmp), first)


if __name__ == "__main__":
    main()
