"""Reporting at scale: `harness leaderboard --out board.csv` and the HTML report on synthetic run folders.

Builds a run folder of N cells with 8 records each, as a real run writes them (4 search trials with their
curves, 3 seeded finals with test metrics, per-class accuracy and a confusion matrix, 1 cell record), through
the real record types and RunStore, then times both commands in a fresh process (start-up included) at each
size and prints the time per cell, so growth beyond linear shows. Targets at 1,000 cells: leaderboard 3 s,
HTML report 15 s.
Usage: python bench/bench_scale.py [--cells 250 1000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.results.records import CellRecord, FinalRecord, TrialRecord
from harness.results.store import RunStore

METHODS = ("scratch", "linear_probe", "finetune", "partial", "multibranch", "distill", "feature_transfer", "l2sp",
           "federated", "finetune_bn")
BACKBONES = ("resnet8", "resnet20", "resnet18", "mobilenet_v3_small", "resnet50")
CLASSES = 10
EPOCHS = 10


def cell_keys(n: int) -> list[tuple[str, str, str]]:
    """n (dataset, method, backbone) cells: every method x backbone on as many datasets as it takes."""
    keys = []
    d = 0
    while len(keys) < n:
        keys += [(f"shapes?seed={d}", m, b) for m in METHODS for b in BACKBONES][:n - len(keys)]
        d += 1
    return keys


def test_metrics(rng: random.Random, acc: float) -> dict[str, object]:
    confusion = [[rng.randint(0, 30) for _ in range(CLASSES)] for _ in range(CLASSES)]
    return {"accuracy": acc, "balanced_accuracy": acc - 0.01, "macro_f1": acc - 0.02, "roc_auc": 0.95, "nll": 0.4,
            "ece": 0.03, "per_class_accuracy": [round(rng.random(), 4) for _ in range(CLASSES)],
            "confusion_matrix": confusion}


def cell_records(key: tuple[str, str, str], n: int, rng: random.Random) -> list:
    """The 8 records of one finished cell: 4 trials, 3 finals, the cell."""
    dataset, method, backbone = key
    fields = {"cell_id": f"c{n:06d}", "dataset": dataset, "samples_per_class": 10 if n % 3 == 0 else 0,
              "method": method, "backbone": backbone, "weights": "none" if method == "scratch" else "imagenet"}
    quality = rng.uniform(0.5, 0.9)
    out = []
    for t in range(4):
        config = {"lr": 10 ** rng.uniform(-3, -1), "batch_size": rng.choice([32, 64, 128]), "epochs": EPOCHS,
                  "dropout": rng.uniform(0, 0.5), "freeze_depth": rng.randint(0, 4), "dataset": dataset,
                  "method": method, "backbone": backbone, "seed": 0, "split_seed": 0}
        history = [{"epoch": e, "train_loss": 2.0 / e, "val_accuracy": quality * e / EPOCHS, "val_macro_f1": 0.5,
                    "val_nll": 1.0 / e, "val_ece": 0.05, "seconds": 1.5} for e in range(1, EPOCHS + 1)]
        out.append(TrialRecord(**fields, trial_id=f"t{n}_{t}", status="ok", config=config, epochs_completed=EPOCHS,
                               metric="val_accuracy", value=quality - 0.01 * t, val={"accuracy": quality},
                               history=history, trial_seconds=15.0, cost={"train_seconds": 15.0},
                               finished_at=time.time(), node={"accelerator": "cpu", "devices": 2}))
    best = out[0].config
    for seed in (1, 2, 3):
        acc = min(1.0, quality + rng.gauss(0, 0.02))
        out.append(FinalRecord(**fields, seed=seed, status="ok", trial_seconds=15.0, config={**best, "seed": seed},
                               config_hash=f"h{n}", val={"accuracy": quality}, test=test_metrics(rng, acc),
                               cost={"params_total": 270_000, "params_trainable": 270_000, "train_seconds": 15.0,
                                     "train_images_per_s": 900.0, "peak_memory_mb": 300.0},
                               model={"backbone": backbone}, data={"metric": "accuracy"}, epochs_completed=EPOCHS,
                               node={"accelerator": "cpu", "devices": 2}))
    out.append(CellRecord(**fields, status="ok", metric="val_accuracy", trials=4, trials_completed=4,
                          trial_seconds=60.0, space={"lr": {"loguniform": [0.001, 0.1]}, "epochs": EPOCHS},
                          search={"num_samples": 4}, resources={"cpus_per_trial": 1}, final_seeds=3,
                          best_value=quality, best_config=best, best_trial_id=f"t{n}_0", finals=3))
    return out


def build_run(root: Path, cells: int) -> Path:
    """A run folder of `cells` finished cells, appended a cell at a time as a run appends them."""
    store = RunStore(root / f"scale-{cells}")
    store.dir.mkdir(parents=True)
    rng = random.Random(cells)
    for n, key in enumerate(cell_keys(cells)):
        store.append(cell_records(key, n, rng))
    return store.dir


def timed(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of a `harness` command in a fresh process (start-up included); on a shared machine
    the CPU seconds are the steadier figure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli", *args], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t0, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, nargs="+", default=[250, 1000])
    p.add_argument("--keep", help="build the run folders here and keep them (default: a temporary folder)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        for cells in args.cells:
            t0 = time.perf_counter()
            run = build_run(root, cells)
            built = time.perf_counter() - t0
            size = (run / "records.jsonl").stat().st_size / 2**20
            board, board_cpu = timed(["leaderboard", str(run), "--out", str(root / f"board-{cells}.csv")])
            report, report_cpu = timed(["leaderboard", str(run), "--out", str(root / f"report-{cells}.html")])
            print(f"{cells:>5} cells ({cells * 8} records, {size:.1f} MB, built in {built:.1f}s): "
                  f"leaderboard csv {board:.2f}s wall, {board_cpu:.2f}s CPU ({1000 * board / cells:.1f} ms/cell); "
                  f"html report {report:.2f}s wall, {report_cpu:.2f}s CPU ({1000 * report / cells:.1f} ms/cell); "
                  f"load average now {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
