"""Start-up time of the commands that only read declarations or records: `harness list`, `harness leaderboard DIR`
(a small synthetic run folder) and `harness run --dry-run` (the default quick suite), each the median wall time of
fresh processes, against the target; `import torch` alone is timed in the same way for reference (the machine's
load moves every figure; torch's says by how much).
Usage: python bench/bench_startup.py [--repeats 3] [--target 1.5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.results.records import CellRecord, FinalRecord
from harness.results.store import RunStore


def small_run(root: Path) -> Path:
    """A run folder with two methods on digits, three seeds each, as a run writes it."""
    store = RunStore(root / "quick-1")
    store.dir.mkdir(parents=True)
    cost = {"params_total": 78000, "params_trainable": 78000, "train_seconds": 10.0, "train_images_per_s": 1000.0,
            "peak_memory_mb": 500.0}
    for method, accs in (("finetune", [0.90, 0.92, 0.94]), ("scratch", [0.80, 0.82, 0.84])):
        fields = {"cell_id": f"digits-{method}", "dataset": "digits", "samples_per_class": 0, "method": method,
                  "backbone": "resnet8", "weights": "none"}
        store.append([FinalRecord(**fields, seed=seed, status="ok", test={"accuracy": acc}, cost=cost)
                      for seed, acc in enumerate(accs, 1)])
        store.append([CellRecord(**fields, status="ok", trials=2, trials_completed=2, best_value=0.8,
                                 best_trial_id="t1", best_config={"lr": 0.1})])
    return store.dir


def wall(argv: list[str], repeats: int) -> float:
    """Median wall time of `repeats` fresh processes running argv (each must succeed)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--target", type=float, default=1.5, help="seconds each command must answer in")
    args = p.parse_args()
    harness = [sys.executable, "-m", "harness.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "import torch (reference)": [sys.executable, "-c", "import torch"],
            "harness list": [*harness, "list"],
            "harness leaderboard DIR": [*harness, "leaderboard", str(small_run(Path(tmp)))],
            "harness run --dry-run": [*harness, "run", "--dry-run", "--results-dir", str(Path(tmp) / "results")],
        }
        print(f"median wall time of {args.repeats} fresh processes (target: {args.target:g}s)")
        for name, argv in commands.items():
            seconds = wall(argv, args.repeats)
            verdict = "" if name.startswith("import") else ("  ok" if seconds <= args.target else "  OVER")
            print(f"  {name:<26} {seconds:6.2f}s{verdict}")


if __name__ == "__main__":
    main()
