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
from typing import Callable

import yaml

from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.core.yamlio import read_yaml
from harness.results.records import CellRecord, FinalRecord, SourceRecord, TrialRecord
from harness.results.store import RunStore
from harness.data.root import teachers_dir_default
from harness.methods.base import Preparation
from harness.study.estimates import run_estimates
from harness.study.plan import Plan, PreparationJob, build_plan, describe, done_jobs
from harness.study.progress import Progress
from harness.study.suite import HEADLINE, Cell, Resources, SuiteSpec, apply_overrides, load_suite, suite_from_dict

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


def dry_run(plan: Plan, store: RunStore | None) -> int:
    """Print the plan: every job with its id, what it needs and whether it is done; train nothing."""
    suite, r = plan.suite, plan.suite.resources
    print(f"suite {suite.name}: {len(plan.cells)} cells; resources per trial: {r.workers_per_trial} worker(s) x "
          f"{r.cpus_per_trial:g} CPU, {r.gpus_per_trial:g} GPU; search {suite.search.algorithm}/"
          f"{suite.search.scheduler}, metric {_metric_words(suite.search.metric)} ({suite.search.mode}); "
          f"{suite.final_seeds} final seeds ({_seed_words(suite)})")
    for line in describe(plan, done_jobs(plan, store.records() if store else [])):
        print(line)
    total = sum(c.num_trials + c.final_seeds for c in plan.cells)
    print(f"total: {total} trials")
    return 0


def _metric_words(metric: str) -> str:
    return "val_ + each dataset's headline metric" if metric == HEADLINE else metric


def _seed_words(suite: SuiteSpec) -> str:
    """How the seed policy reads in the plan, e.g. `search seed 0; finals 1-3 vary init, subset`."""
    s, n = suite.seeds, suite.final_seeds
    return (f"search seed {s.search}, finals {s.search + 1}-{s.search + n} vary {', '.join(suite.final_vary)}; "
            f"subset seed {s.subset}, split seed {s.split}")


def run(args: argparse.Namespace, resolved: tuple[SuiteSpec, RunStore | None] | None = None) -> int:
    """Plan the suite of `args` (or the one `resolve(args)` already returned), then execute the plan:
    sources, teachers, every cell's search, then all finals."""
    suite, store = resolved or resolve(args)
    with teachers_dir_default(Path(args.results_dir) / "teachers"):
        plan = build_plan(suite, Path(args.results_dir) / "sources")
        return dry_run(plan, store) if args.dry_run else execute(plan, store, args)


def execute(plan: Plan, store: RunStore | None, args: argparse.Namespace) -> int:
    """Start or join Ray and run the plan's jobs in order; write the records and the leaderboard."""
    from harness.study import search
    from harness.study.environment import environment

    suite = plan.suite
    started = search.init_ray(args.address, args.verbose)
    try:
        t0 = time.time()
        for c in plan.cells:  # refuse what cannot fit or cannot be searched before anything starts
            search.max_concurrency(c.resources, c.search.max_concurrent_trials)
            search.search_parts(c)
        if store is None:
            store = RunStore.create(args.results_dir, suite.name)
            store.write_text(RESOLVED_SUITE, yaml.safe_dump(dataclasses.asdict(suite), sort_keys=False))
        store.write_json("environment.json", {**environment(), "address": args.address or "local",
                                              "storage_path": args.storage_path})
        print(f"run folder: {store.dir}")
        store.append(run_sources(plan, print))
        store.append(prepare_networks(plan.of_kind("teacher"), suite.resources, print))
        store.append(run_estimates(plan.of_kind("estimate"), store, print))
        run_suite(plan.cells, store, args.storage_path, args.verbose,
                  before_finals=lambda configs: store.append(prepare_networks(plan.preparations_for(configs),
                                                                              suite.resources, print)))
        print(f"finished in {time.time() - t0:.0f}s; records in {store.records_path}")
        from harness.results.leaderboard import write_run_outputs

        print(write_run_outputs(store.dir))
    finally:
        if started:
            import ray

            ray.shutdown()
    return 0


def run_sources(plan: Plan, log: Callable[[str], None]) -> list[SourceRecord]:
    """Pretrain (or reuse) every source network of the plan, in this process, before the cells."""
    from harness.train.artifacts import pretrain

    records = []
    for job in plan.of_kind("source"):
        t0 = time.time()
        path, reused = pretrain(job.config, out_dir=job.path.parent)
        seconds = time.time() - t0
        log(f"source '{job.key}': {'reused' if reused else 'pretrained'} {path} ({seconds:.1f}s)")
        records.append(SourceRecord.of(job.key, "source", job.config, path, job.job_id, seconds=seconds,
                                       reused=reused, val_accuracy=_val_accuracy(path)))
    return records


def _val_accuracy(path: Path) -> float | None:
    """The validation accuracy a network file records about its own training."""
    import torch

    meta = torch.load(path, map_location="cpu", weights_only=True).get("meta", {})
    return meta.get("val_accuracy")


def prepare_networks(jobs: list[PreparationJob], resources: Resources,
                     log: Callable[[str], None]) -> list[SourceRecord]:
    """Train the networks methods need first (teachers) that are not on disk yet, as Ray tasks with a trial's
    resources, side by side; each writes its file where every trial of the plan reads it."""
    todo = [j for j in jobs if not j.preparation.path.is_file()]
    if not todo:
        return []
    import ray

    cpus = resources.cpus_per_trial * resources.workers_per_trial
    task = ray.remote(num_cpus=cpus, num_gpus=resources.gpus_per_trial * resources.workers_per_trial)(_prepare)
    t0 = time.time()
    refs = {task.remote(job.preparation, max(1, int(cpus))): job for job in todo}
    records = []
    for ref, job in refs.items():
        try:
            seconds = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            raise e.as_instanceof_cause() from None
        log(f"{job.label}: trained -> {job.preparation.path} ({seconds:.1f}s; {time.time() - t0:.1f}s since the "
            f"first started)")
        records.append(SourceRecord.of(job.preparation.config.backbone, job.preparation.kind, job.preparation.config,
                                       job.preparation.path, job.job_id, seconds=seconds,
                                       val_accuracy=_val_accuracy(job.preparation.path)))
    return records


def _prepare(preparation: Preparation, threads: int) -> float:
    """Train one preparation in a Ray task with `threads` torch threads; returns the seconds it took."""
    import torch

    from harness.train.artifacts import run_preparation

    t0 = time.time()
    torch.set_num_threads(threads)
    run_preparation(preparation)
    return time.time() - t0


def run_suite(cs: list[Cell], store: RunStore, storage: str | None = None, verbose: bool = False,
              progress: Progress | None = None,
              before_finals: Callable[[list[TrialConfig]], None] | None = None) -> list[CellRecord]:
    """Search every cell not finished in `store` (recognised by its hash), then run all their finals together;
    `before_finals` gets the finals' configurations first (to train what they need, e.g. their teachers)."""
    from harness.study.finals import final_config, pending_jobs, run_finals
    from harness.study.search import best_trial, cell_record, describe, search_cells, storage_path

    progress = progress or Progress()
    where = storage_path(store, storage)
    done: dict[str, CellRecord] = {}
    earlier_trials: dict[str, list[TrialRecord]] = {}
    finals: dict[str, list[FinalRecord]] = {}
    for r in store.records():  # read once: an earlier run's cells, trials and finals
        if isinstance(r, CellRecord):
            done[r.cell_id] = r
        elif isinstance(r, TrialRecord):
            earlier_trials.setdefault(r.cell_id, []).append(r)
        elif isinstance(r, FinalRecord):
            finals.setdefault(r.cell_id, []).append(r)
    progress.total_cells = len(cs)
    progress.total_trials = sum(c.final_seeds + (0 if c.cell_id in earlier_trials else c.num_trials)
                                for c in cs if c.cell_id not in done)
    records: dict[str, CellRecord] = {}
    searched: list[tuple[int, Cell, list[TrialRecord], TrialRecord]] = []

    def searched_cell(i: int, cell: Cell, trials: list[TrialRecord]) -> None:
        best = best_trial(trials, cell.search.mode)
        if best is None:
            records[cell.cell_id] = store.append([cell_record(cell, trials, None, [])])[0]
            progress.say(f"{progress.cell(i, cell.label)}  NO WINNER: {records[cell.cell_id].reason}")
            return
        progress.say(f"{progress.cell(i, cell.label)}  search done: best {cell.search.metric} {best.value:.4f} "
                     f"({describe(best.config, cell)})")
        searched.append((i, cell, trials, best))

    todo = []
    for i, cell in enumerate(cs, 1):
        if cell.cell_id in done:
            progress.say(f"{progress.cell(i, cell.label)}  already finished in {store.dir}; skipped")
            records[cell.cell_id] = done[cell.cell_id]
        elif cell.cell_id in earlier_trials:
            searched_cell(i, cell, earlier_trials[cell.cell_id])
        else:
            todo.append((i, cell))
    parallel = min((c.search.max_concurrent_cells for _, c in todo), default=1)
    for i, cell, trials in search_cells(todo, where, progress, verbose, parallel):
        store.append(trials)
        searched_cell(i, cell, trials)

    searched.sort(key=lambda s: s[0])
    jobs = [job for _, cell, _, best in searched
            for job in pending_jobs(cell, best, {r.seed for r in finals.get(cell.cell_id, [])})]
    if jobs and before_finals is not None:
        before_finals([final_config(job) for job in jobs])
    for r in run_finals(jobs, store, where, progress, verbose) if jobs else []:
        finals.setdefault(r.cell_id, []).append(r)
    for i, cell, trials, best in searched:
        runs = sorted(finals.get(cell.cell_id, []), key=lambda r: r.seed)
        records[cell.cell_id] = store.append([cell_record(cell, trials, best, runs)])[0]
        progress.say(f"{progress.cell(i, cell.label)}  done: {_summary(records[cell.cell_id], cell, runs)}")
    return [records[c.cell_id] for c in cs]


def _summary(record: CellRecord, cell: Cell, runs: list[FinalRecord]) -> str:
    from harness.results.stats import mean_confidence_interval
    from harness.study.search import describe

    headline = next((f.data["metric"] for f in runs if f.test and (f.data or {}).get("metric")), "accuracy")
    tests = [f.test[headline] for f in runs if f.test]
    mean, half = mean_confidence_interval(tests)
    ci = "" if math.isnan(half) else f" ± {half:.4f}"
    return (f"best {record.metric} {record.best_value:.4f} ({describe(record.best_config or {}, cell)}); "
            f"{record.trials} trials ({record.trials_stopped_early} stopped early, "
            f"{record.trials_errored} errored, {record.trials_diverged} diverged); "
            f"test {headline} {mean:.4f}{ci} over {len(tests)} seeds")
