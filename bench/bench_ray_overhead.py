"""Ray's cost per trial and the gain of running trials concurrently.

(a) digits / resnet20 / finetune / 5 epochs run directly through the engine, then as a 1-trial
`harness run` search (fixed hyperparameters, FIFO): prints both wall times, the ratio and the
overhead of that 1-trial search (target <= 3 s). (b) 8 trials of the quick suite's finetune cell on
digits, 2 at a time (1 CPU each) against 1 at a time (1 CPU, and 2 CPUs): prints the search times and
speed-ups (target >= 1.6x on 2 cores). From the 1-at-a-time search it splits Ray's overhead into the
Tuner's one-off start (trial actor start-up, which imports torch) and the cost per further trial.
(d) 1 and then N one-epoch linear-probe cells (1 trial and 1 final each) as the default runs them (2 cells at a
time): prints the harness's start-up per cell beyond the first, the extra (wall - trial-seconds) of N cells over
one cell's, divided by N - 1 (target <= 1 s), and the once-per-run part; then the same cells one at a time in this process with the start-up split into its parts: Tuner set-up,
first trial actor start + imports, later trials, Tuner end (experiment and result syncing), records; the
CellSearcher actor's start is timed on its own.
Usage: python bench/bench_ray_overhead.py [--skip-concurrency] [--cells N] [--only-cells] [--no-breakdown]
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

from harness.core.config import TrialConfig
from harness.train.loop import train_loop

FIXED = {"lr": 0.05, "dropout": 0.0, "batch_size": 64, "epochs": 5, "weight_decay": 5.0e-4,
         "label_smoothing": 0.0, "optimizer": "sgd", "warmup_epochs": 0.5}


def harness_run(tmp: Path, *flags: str) -> tuple[float, dict]:
    """Run `harness run` in a fresh process; return its wall time and the cell record it wrote."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--results-dir", str(tmp), *flags],
                         check=False, capture_output=True, text=True)
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
    print("(a) digits/resnet20/finetune/5 epochs, 1 thread")
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


CELL_SUBSETS = ("0-4", "5-9", "0-2", "3-5", "6-9", "0-6", "1-8", "2-9", "0-9", "1-3", "4-7", "5-8")


def cells_suite(tmp: Path, n: int, parallel: int) -> Path:
    """A suite of `n` one-epoch linear-probe cells (digits class subsets), 1 search trial and 1 final each."""
    if n > len(CELL_SUBSETS):
        raise SystemExit(f"--cells={n}: at most {len(CELL_SUBSETS)}")
    path = tmp / f"cells{n}-{parallel}.yaml"
    path.write_text(json.dumps({
        "name": f"cells{n}", "datasets": [f"digits:{c}" for c in CELL_SUBSETS[:n]], "methods": ["linear_probe"],
        "backbones": [{"name": "resnet8", "weights": "none"}],
        "search": {"num_samples": 1, "scheduler": "fifo", "max_concurrent_trials": 1,
                   "max_concurrent_cells": parallel},
        "resources": {"cpus_per_trial": 1}, "final_seeds": 1, "overrides": {**FIXED, "epochs": 1}}))
    return path


def trial_seconds(run_dir: Path) -> float:
    """Seconds spent inside search trials and final runs, from the run's records."""
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    return sum(r.get("trial_seconds") or 0.0 for r in records if r["kind"] in ("trial", "final"))


def cells_run(tmp: Path, n: int, parallel: int = 2) -> tuple[float, float, str]:
    """`harness run` of `n` one-epoch linear-probe cells in a fresh process: its wall time, the seconds spent
    inside trials and finals, and its summary line."""
    out = tmp / f"d{n}"
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--results-dir", str(out), "--suite",
                           str(cells_suite(tmp, n, parallel))], check=False, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"harness run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    run_dir = next(d for d in out.iterdir() if (d / "records.jsonl").exists())
    finished = next(line for line in done.stdout.splitlines() if line.startswith("finished in"))
    return wall, trial_seconds(run_dir), finished


def many_cells(tmp: Path, n: int, detail: bool = True) -> None:
    """(d): one cell, then `n`, as the default runs them (2 cells at a time, a `harness run` process each): the
    start-up of each cell beyond the first is the extra wall time less the extra trial-seconds, over n - 1; then
    (`detail`) the breakdown of the n cells one at a time in this process."""
    wall1, inside1, _ = cells_run(tmp, 1)
    wall, inside, finished = cells_run(tmp, n)
    print(f"(d) {n} one-epoch linear-probe cells, 2 at a time, {2 * n} trials with finals: `harness run` "
          f"{wall:.1f}s wall, {inside:.1f} trial-seconds; 1 cell: {wall1:.1f}s wall, {inside1:.1f} trial-seconds")
    print(f"  start-up per cell beyond the first: ((wall - trial-seconds) - (the same for 1 cell)) / {n - 1} = "
          f"{((wall - inside) - (wall1 - inside1)) / (n - 1):.2f}s  (target <= 1 s)")
    print(f"  once per run (process start, Ray start-up, report; with the first cell): {wall1 - inside1:.1f}s; "
          f"all {n} cells: (wall - trial-seconds) / cells = {(wall - inside) / n:.2f}s")
    print(f"  its summary: {finished}")
    if detail:
        breakdown(tmp, n)


class Clock:
    """Times of a Tuner's events in this process (cells searched one at a time run their Tuners here)."""

    events: ClassVar[list[tuple[float, str, str, float]]] = []  # (time, experiment, event, trial seconds so far)


def breakdown(tmp: Path, n: int) -> None:
    """The same cells one at a time in this process, each Tuner's events timed; prints where the time goes."""
    import ray
    from ray import tune

    from harness.cli import main as harness
    from harness.study import finals, search

    class Timing(tune.Callback):
        def __init__(self, name: str) -> None:
            self.name = name

        def _note(self, event: str, seconds: float = 0.0) -> None:
            Clock.events.append((time.time(), self.name, event, seconds))

        def setup(self, **info) -> None:
            self._note("setup")

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            self._note("trial_start")

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            self._note("result", result.get("time_total_s", 0.0))

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self._note("complete", (trial.last_result or {}).get("time_total_s", 0.0))

    spans: dict[str, list[float]] = {}

    def timed(module, name: str):
        original = getattr(module, name)

        def wrapper(*args, **kw):
            if name == "make_tuner":
                bound = inspect.signature(original).bind(*args, **kw)
                bound.apply_defaults()
                bound.arguments["more_callbacks"] = (*bound.arguments["more_callbacks"], Timing(args[0]))
                t0 = time.time()
                tuner = original(*bound.args, **bound.kwargs)
                Clock.events.append((t0, args[0], "make", time.time() - t0))
                fit = tuner.fit

                def timed_fit():
                    Clock.events.append((time.time(), args[0], "fit", 0.0))
                    grid = fit()
                    Clock.events.append((time.time(), args[0], "fit_end", 0.0))
                    return grid

                tuner.fit = timed_fit
                return tuner
            t0 = time.time()
            result = original(*args, **kw)
            spans.setdefault(name, []).append(time.time() - t0)
            return result

        setattr(module, name, wrapper)

    timed(search, "make_tuner")
    finals.make_tuner = search.make_tuner
    timed(search, "search_one")
    if hasattr(search, "search_shared"):
        timed(search, "search_shared")
    timed(finals, "_run_group")
    t0 = time.perf_counter()
    code = harness(["run", "--results-dir", str(tmp / "e"), "--suite", str(cells_suite(tmp, n, 1))])
    wall = time.perf_counter() - t0
    if code:
        raise SystemExit(f"harness run exited {code}")
    run_dir = next(d for d in (tmp / "e").iterdir() if (d / "records.jsonl").exists())
    parts = tuner_parts(Clock.events)
    searches = [v for k, v in parts.items() if k.startswith("search-")]
    finals_parts = [v for k, v in parts.items() if k.startswith("final-")]
    inside = trial_seconds(run_dir)
    print(f"  one at a time, in this process: {wall:.1f}s wall (Ray start-up included), {inside:.1f} "
          f"trial-seconds; per cell {(wall - inside) / n:.2f}s")
    for label, group, per in (("searches, per cell", searches, n), ("finals, per Tuner", finals_parts,
                                                                      len(finals_parts))):
        if not group:
            continue
        mean = {k: sum(g[k] for g in group) / per for k in group[0]}
        print(f"    {label:<20} {len(group)} Tuner(s): " + ", ".join(f"{k} {v:.2f}s" for k, v in mean.items()))
    records = (sum(spans.get("search_one", [])) + sum(spans.get("search_shared", []))
               - sum(g["whole Tuner"] for g in searches))
    print(f"    records and ResultGrid reading after the search Tuners: {records / max(1, n):.2f}s per cell")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        start = time.perf_counter()
        actor = ray.remote(num_cpus=0)(search.CellSearcher).remote(None, {})
        ray.get(actor.pid.remote())
        print(f"    CellSearcher actor start: {time.perf_counter() - start:.2f}s (once per searcher, reused by "
              f"its next cells)")
    finally:
        ray.shutdown()


def tuner_parts(events: list[tuple[float, str, str, float]]) -> dict[str, dict[str, float]]:
    """Per Tuner: set-up (built, fit until its first trial starts), the first trial's start (actor start and
    imports: until its first report, less the seconds the trial itself counted), later trials' starts, and the
    end (last trial done until fit returns)."""
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(e[1] for e in events):
        def at(kind: str, name: str = name) -> list[tuple[float, str, str, float]]:
            return [e for e in events if e[1] == name and e[2] == kind]

        made, fit, end = at("make")[0], at("fit")[0][0], at("fit_end")[-1][0]
        starts, results, completes = at("trial_start"), at("result"), at("complete")
        first_report = {}
        for s in starts:
            later = [r for r in results if r[0] >= s[0]]
            if later:
                first_report.setdefault(s[0], later[0][0] - s[0] - later[0][3])
        gaps = list(first_report.values())
        out[name] = {"set-up": made[3] + (starts[0][0] - fit if starts else 0.0),
                     "first trial start": gaps[0] if gaps else 0.0,
                     "later trial starts": sum(gaps[1:]),
                     "end": end - (completes[-1][0] if completes else fit),
                     "whole Tuner": made[3] + end - fit}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-concurrency", action="store_true")
    p.add_argument("--cells", type=int, default=8, help="cells in (d)")
    p.add_argument("--only-cells", action="store_true", help="run (d) only")
    p.add_argument("--no-breakdown", action="store_true", help="(d) without the one-at-a-time breakdown")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.only_cells:
            first = overhead(Path(tmp))
            if not args.skip_concurrency:
                print("(b) quick suite, digits/finetune/resnet8 from the digits 0-4 source, 8 trials of 4 epochs:")
                concurrency(Path(tmp), first)
        many_cells(Path(tmp), args.cells, not args.no_breakdown)


if __name__ == "__main__":
    main()
