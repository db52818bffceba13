"""`harness run`: resolve the suite, start or join Ray, pretrain sources, run the cells, write the leaderboard.

A run has two phases: every cell's search (one Tuner each, validation only), then the final runs of all
cells together (harness/finals.py). A cell's record is written once its finals are in.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from harness.core.errors import ConfigError
from harness.core.yamlio import read_yaml
from harness.study.progress import Progress
from harness.results.store import RunStore
from harness.study.suite import Cell, SuiteSpec, apply_overrides, cells, load_suite, suite_from_dict

RESOLVED_SUITE = "suite.yaml"
SUITE_FLAGS = "suite_flags"  # the argparse namespace entry listing the flags of the "suite overrides" group


def _flags(args: argparse.Namespace) -> dict[str, object]:
    """The suite-override flags given on the command line (those the parser put in its "suite overrides" group)."""
    return {k: getattr(args, k) for k in getattr(args, SUITE_FLAGS, ()) if getattr(args, k, None) is not None}


def resolve(args: argparse.Namespace) -> tuple[SuiteSpec, RunStore | None]:
    """The suite to run: from --resume's folder (flags may not change it) or the named suite plus flags."""
    if args.resume:
        run_dir = Path(args.resume)
        path = run_dir / RESOLVED_SUITE
        if not path.is_file():
            raise ConfigError(f"--resume={args.resume}: no {RESOLVED_SUITE} there; not a run folder")
        if _flags(args):
            raise ConfigError(f"--resume: suite flags ({', '.join(_flags(args))}) cannot change a run; "
                              f"start a new run instead")
        return suite_from_dict(read_yaml(path) or {}, str(path)), RunStore(run_dir)
    return apply_overrides(load_suite(args.suite), **_flags(args)), None


def dry_run(suite: SuiteSpec) -> int:
    cs = cells(suite)
    r = suite.resources
    print(f"suite {suite.name}: {len(cs)} cells; resources per trial: {r.workers_per_trial} worker(s) x "
          f"{r.cpus_per_trial:g} CPU, {r.gpus_per_trial:g} GPU; search {suite.search.algorithm}/"
          f"{suite.search.scheduler}, metric {suite.search.metric} ({suite.search.mode})")
    for key, s in suite.sources.items():
        print(f"  source {key}: {s.backbone} pretrained on {s.dataset} for {s.epochs} epochs")
    total = 0
    for c in cs:
        n = c.num_trials + c.final_seeds
        total += n
        print(f"  {c.label:<45} weights={c.weights:<20} trials {c.num_trials} + finals {c.final_seeds} "
              f"(max {c.max_epochs} epochs)  id {c.cell_id}")
    print(f"total: {total} trials")
    return 0


def run(args: argparse.Namespace, resolved: tuple[SuiteSpec, RunStore | None] | None = None) -> int:
    """Run the suite of `args` (or the one `resolve(args)` already returned)."""
    suite, store = resolved or resolve(args)
    if args.dry_run:
        return dry_run(suite)
    from harness.study import search
    from harness.study.environment import environment

    started = search.init_ray(args.address, args.verbose)
    try:
        t0 = time.time()
        sources_dir = str(Path(args.results_dir) / "sources")
        resolved = prepare_sources(suite, sources_dir, print)
        cs = cells(suite, resolved)
        for c in cs:  # refuse what cannot fit or cannot be searched before anything starts
            search.max_concurrency(c.resources, c.search.max_concurrent_trials)
            search.search_parts(c)
        if store is None:
            store = RunStore.create(args.results_dir, suite.name)
            store.write_text(RESOLVED_SUITE, yaml.safe_dump(_with_sources(suite, resolved), sort_keys=False))
        store.write_json("environment.json", {**environment(), "address": args.address or "local",
                                              "storage_path": args.storage_path})
        print(f"run folder: {store.dir}")
        run_suite(cs, store, args.storage_path, args.verbose)
        print(f"finished in {time.time() - t0:.0f}s; records in {store.records_path}")
        from harness.results.leaderboard import write_run_outputs

        print(write_run_outputs(store.dir))
    finally:
        if started:
            import ray

            ray.shutdown()
    return 0


def _with_sources(suite: SuiteSpec, resolved: dict[str, str]) -> dict[str, object]:
    """The suite as run: sources stay named (so a resume reuses the same cached checkpoints)."""
    return dataclasses.asdict(suite)


def prepare_sources(suite: SuiteSpec, out_dir: str, log: Callable[[str], None]) -> dict[str, str]:
    """Pretrain (or reuse) every source network the suite's backbones name; `source:KEY` -> `checkpoint:PATH`."""
    from harness.train.artifacts import pretrain, source_config

    used = {b.weights[7:] for b in suite.all_backbones() if b.weights.startswith("source:")}
    resolved = {}
    for key in sorted(used):
        s = suite.sources[key]
        config = source_config(s.dataset, s.backbone, s.epochs, s.lr, s.batch_size, s.augment, s.seed)
        t0 = time.time()
        path, reused = pretrain(config, out_dir=out_dir)
        log(f"source '{key}': {'reused' if reused else 'pretrained'} {path} ({time.time() - t0:.1f}s)")
        resolved[key] = f"checkpoint:{path.resolve()}"
    return resolved


def run_suite(cs: list[Cell], store: RunStore, storage: str | None = None, verbose: bool = False,
              progress: Progress | None = None) -> list[dict[str, Any]]:
    """Search every cell not finished in `store` (recognised by its hash), then run all their finals together."""
    from harness.study.finals import pending_jobs, run_finals
    from harness.study.search import best_trial, cell_record, describe, search_cells, storage_path

    progress = progress or Progress()
    where = storage_path(store, storage)
    earlier: dict[str, dict[str, list[dict[str, Any]]]] = {"cell": {}, "trial": {}, "final": {}}
    for r in store.records():  # read once: an earlier run's cells, trials and finals
        earlier.get(r["kind"], {}).setdefault(r["cell_id"], []).append(r)
    done = {cid: rs[-1] for cid, rs in earlier["cell"].items()}
    progress.total_cells = len(cs)
    progress.total_trials = sum(c.final_seeds + (0 if c.cell_id in earlier["trial"] else c.num_trials)
                                for c in cs if c.cell_id not in done)
    records: dict[str, dict[str, Any]] = {}
    searched = []

    def searched_cell(i: int, cell: Cell, trials: list[dict[str, Any]]) -> None:
        best = best_trial(trials, cell.search.mode)
        if best is None:
            records[cell.cell_id] = record = cell_record(cell, trials, None, [])
            store.append([record])
            progress.say(f"{progress.cell(i, cell.label)}  NO WINNER: {record['reason']}")
            return
        progress.say(f"{progress.cell(i, cell.label)}  search done: best {cell.search.metric} {best['value']:.4f} "
                     f"({describe(best['config'], cell)})")
        searched.append((i, cell, trials, best))

    todo = []
    for i, cell in enumerate(cs, 1):
        if cell.cell_id in done:
            progress.say(f"{progress.cell(i, cell.label)}  already finished in {store.dir}; skipped")
            records[cell.cell_id] = done[cell.cell_id]
        elif cell.cell_id in earlier["trial"]:
            searched_cell(i, cell, earlier["trial"][cell.cell_id])
        else:
            todo.append((i, cell))
    parallel = min((c.search.max_concurrent_cells for _, c in todo), default=1)
    for i, cell, trials in search_cells(todo, where, progress, verbose, parallel):
        store.append(trials)
        searched_cell(i, cell, trials)

    searched.sort(key=lambda s: s[0])
    finals = earlier["final"]
    jobs = [job for _, cell, _, best in searched
            for job in pending_jobs(cell, best, {r["seed"] for r in finals.get(cell.cell_id, [])})]
    for r in run_finals(jobs, store, where, progress, verbose) if jobs else []:
        finals.setdefault(r["cell_id"], []).append(r)
    for i, cell, trials, best in searched:
        runs = sorted(finals.get(cell.cell_id, []), key=lambda r: r["seed"])
        records[cell.cell_id] = record = cell_record(cell, trials, best, runs)
        store.append([record])
        progress.say(f"{progress.cell(i, cell.label)}  done: {_summary(record, cell, runs)}")
    return [records[c.cell_id] for c in cs]


def _summary(record: dict[str, Any], cell: Cell, runs: list[dict[str, Any]]) -> str:
    from harness.results.stats import mean_confidence_interval
    from harness.study.search import describe

    tests = [f["test"]["accuracy"] for f in runs if f.get("test")]
    mean, half = mean_confidence_interval(tests)
    ci = "" if math.isnan(half) else f" ± {half:.4f}"
    return (f"best {record['metric']} {record['best_value']:.4f} ({describe(record['best_config'], cell)}); "
            f"{record['trials']} trials ({record['trials_stopped_early']} stopped early, "
            f"{record['trials_errored']} errored, {record['trials_diverged']} diverged); "
            f"test accuracy {mean:.4f}{ci} over {len(tests)} seeds")
