"""`harness run`: resolve the suite, start or join Ray, pretrain sources, run the cells, write the leaderboard.

A run has two phases: every cell's search (validation only; cells with one-worker trials share a Tuner), then the final runs of all
cells together (harness/finals.py). A cell's record is written once its finals are in.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import yaml

from harness.core.config import TrialConfig
from harness.core.errors import ConfigError, RunFailure
from harness.core.yamlio import read_yaml
from harness.results.records import (FINAL_DONE, TRIAL_DONE, CellRecord, FinalRecord, SourceRecord, TrialRecord,
                                     record_key, target_label)
from harness.results.store import RunStore
from harness.data.registry import headline_metric
from harness.data.root import data_root, runtime_env_vars, teachers_dir_default, use_data_root
from harness.methods.base import Preparation
from harness.study import SUITE_FLAGS, interrupt
from harness.study.estimates import run_estimates
from harness.study.paths import absolute_paths
from harness.study.preflight import LOCAL, local_resources, needs_gpus, preflight
from harness.study.plan import Plan, PreparationJob, build_plan, describe, done_jobs, search_complete
from harness.study.progress import Progress
from harness.study.spaces import SPACES_ENV, spaces_dir
from harness.study.suite import HEADLINE, Cell, Resources, SuiteSpec, apply_overrides, load_suite, suite_from_dict

if TYPE_CHECKING:
    from harness.study.tracking import Tracking


def eprint(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


RESOLVED_SUITE = "suite.yaml"
RUN_FACTS = "run.json"  # what a resume needs besides the suite: storage path, sources and teachers, data root
FROZEN_SPACES = "search_spaces"  # the search-space files as the run started
SESSIONS = "sessions.jsonl"  # one line per session (`harness run`, each --resume) as it starts and as it ends
EXPERIMENTS = "experiments.jsonl"  # the Tune experiments this run started: the only ones it restores


def _flags(args: argparse.Namespace) -> dict[str, object]:
    """The suite-override flags given on the command line (those the parser put in its "suite overrides" group)."""
    return {k: getattr(args, k) for k in getattr(args, SUITE_FLAGS, ()) if getattr(args, k, None) is not None}


def resolve(args: argparse.Namespace) -> tuple[SuiteSpec, RunStore | None]:
    """The suite to run: from --resume's folder (flags may not change it) or the named suite plus flags, with
    relative paths made absolute. A resumed run takes its data root from its folder unless --data-root is given."""
    if args.resume:
        run_dir = Path(args.resume)
        path = run_dir / RESOLVED_SUITE
        if not path.is_file():
            raise ConfigError(f"--resume={args.resume}: no {RESOLVED_SUITE} there; not a run folder")
        if _flags(args):
            raise ConfigError(f"--resume: suite flags ({', '.join(_flags(args))}) cannot change a run; "
                              f"start a new run instead")
        store = RunStore(run_dir)
        data_root = (store.read_json(RUN_FACTS) or {}).get("data_root")
        if data_root and not getattr(args, "data_root", None):
            use_data_root(data_root)
        return suite_from_dict(read_yaml(path) or {}, str(path)), store
    return absolute_paths(apply_overrides(load_suite(args.suite), **_flags(args))), None


def run_facts(args: argparse.Namespace, store: RunStore | None) -> dict[str, str | None]:
    """Where this run keeps and finds things: frozen in a resumed run's folder (a different --storage-path is
    refused), else from the flags, as absolute paths."""
    frozen = store.read_json(RUN_FACTS) if store else None
    storage = args.storage_path
    if storage and "://" not in storage:
        storage = str(Path(storage).expanduser().absolute())
    if frozen is None:
        results = Path(store.dir.parent if store else args.results_dir).absolute()
        return {"storage_path": storage, "sources_dir": str(results / "sources"),
                "teachers_dir": str(teachers_dir_default_path(results)), "data_root": str(data_root()),
                "run_key": secrets.token_hex(4)}
    if storage and storage != frozen.get("storage_path"):
        raise ConfigError(f"--storage-path={args.storage_path}: this run keeps its Tune experiments in "
                          f"{frozen.get('storage_path') or store.dir / 'tune'}; leave the flag out to resume it")
    return frozen


def teachers_dir_default_path(results: Path) -> Path:
    """The teachers folder of a study writing under `results`: HARNESS_TEACHERS, else results/teachers."""
    with teachers_dir_default(results / "teachers") as path:
        return path


@contextlib.contextmanager
def frozen_spaces(store: RunStore | None) -> Iterator[None]:
    """Within the block search spaces are read from the run's own copy (so that editing search_spaces/ does not
    change a resumed run's cells), where it has one."""
    frozen = store.dir / FROZEN_SPACES if store else None
    if frozen is None or not frozen.is_dir():
        yield
        return
    before = os.environ.get(SPACES_ENV)
    os.environ[SPACES_ENV] = str(frozen.absolute())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SPACES_ENV, None)
        else:
            os.environ[SPACES_ENV] = before


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
    if args.address:  # an address that is no Ray head is refused before anything else
        from harness.study.search import check_reachable

        check_reachable(args.address)
    facts = run_facts(args, store)
    with teachers_dir_default(facts["teachers_dir"]):
        with frozen_spaces(store):
            plan = build_plan(suite, facts["sources_dir"])
        problems = preflight(plan, *_cluster(args, needs_gpus(plan)))
        if args.dry_run:  # what is valid but missing here is listed; a plan for a bigger machine is fine
            dry_run(plan, store)
            for p in problems:
                if p.here:
                    print(f"  not here: {p.text}")
            problems = [p for p in problems if not p.here]
        for p in problems:
            eprint(f"harness: error: {p.text}")
        if problems or args.dry_run:
            return 2 if problems else 0
        return execute(plan, store, args, facts)


def _cluster(args: argparse.Namespace, count_gpus: bool = True) -> tuple[tuple[float, float] | None, str]:
    """The (CPUs, GPUs) the pre-flight checks trials against: this machine's for a local cluster (its GPUs
    counted where `count_gpus`, see `local_resources`); a joined cluster's for `--dry-run --address` (a real run
    checks them once it has joined, before writing anything)."""
    ray = sys.modules.get("ray")
    if not args.address and ray is not None and ray.is_initialized():  # a cluster this process joined already
        from harness.study.search import joined_resources

        return joined_resources(), "the cluster"
    if not args.address:
        return local_resources(count_gpus), LOCAL
    if not args.dry_run:
        return None, ""
    from harness.study.search import cluster_resources

    return cluster_resources(args.address), f"the cluster at {args.address}"


def execute(plan: Plan, store: RunStore | None, args: argparse.Namespace, facts: dict[str, str | None]) -> int:
    """Start or join Ray and run the plan's jobs in order; write the records and the leaderboard. The first
    SIGINT or SIGTERM stops the run cleanly (exit 128 + the signal's number); a run with a cell that has no
    winner or fewer finished final seeds than asked exits 1."""
    from harness.study import search

    if store is not None:
        store.lock()  # before Ray starts: a second writer of the folder is refused at once
    started, code = False, 1
    try:
        started = search.init_ray(args.address, args.verbose)
        with interrupt.stopping():
            store = _start(plan, store, args, facts)
            code = _execute(plan, store, args, facts)
    except interrupt.Interrupted as e:
        code = e.exit_code
        if store is not None:
            eprint(stopped_message(store, e.signum))
    except RunFailure as e:
        code = 2
        raise RunFailure(f"{e}; resume with: harness run --resume {store.dir}" if store is not None else str(e)) from None
    except ConfigError:
        code = 2
        raise
    finally:
        if store is not None and store.locked:
            store.append_json(SESSIONS, {"ended": time.time(), "pid": os.getpid(), "exit_code": code})
            store.unlock()
        if started:
            import ray

            ray.shutdown()
    return code


def _start(plan: Plan, store: RunStore | None, args: argparse.Namespace, facts: dict[str, str | None]) -> RunStore:
    """Check that every cell fits the cluster, then create the run folder (a new run: the resolved suite, the
    facts a resume needs, the search spaces, the environment) or take a resumed one; log the session."""
    from harness.study import search
    from harness.study.environment import environment

    for c in plan.cells:  # refuse what cannot fit or cannot be searched before anything starts
        search.max_concurrency(c.resources, c.search.max_concurrent_trials)
        search.search_parts(c)
    env = {**environment(), "address": args.address or "local", "storage_path": facts["storage_path"]}
    if store is None:
        store = RunStore.create(args.results_dir, plan.suite.name)
        store.lock()
        store.write_text(RESOLVED_SUITE, yaml.safe_dump(dataclasses.asdict(plan.suite), sort_keys=False))
        store.write_json(RUN_FACTS, facts)
        shutil.copytree(spaces_dir(), store.dir / FROZEN_SPACES, ignore=shutil.ignore_patterns("suites"))
        store.write_json("environment.json", env)
    store.append_json(SESSIONS, {"started": time.time(), "pid": os.getpid(), "resumed": args.resume is not None,
                                 **env})
    print(f"run folder: {store.dir}", flush=True)
    return store


def _execute(plan: Plan, store: RunStore, args: argparse.Namespace, facts: dict[str, str | None]) -> int:
    suite = plan.suite
    t0, before = time.time(), len(store.all_records())
    store.append(run_sources(plan, print))
    store.append(prepare_networks(plan.of_kind("teacher"), suite.resources, print))
    store.append(run_estimates(plan.of_kind("estimate"), store, print))
    tracking = mlflow_tracking(args, store, suite)
    cells = run_suite(plan.cells, store, facts["storage_path"], args.verbose,
                      before_finals=lambda configs: store.append(prepare_networks(plan.preparations_for(configs),
                                                                                  suite.resources, print)),
                      tracking=tracking)
    interrupt.check()
    print(f"finished in {time.time() - t0:.0f}s; {_efficiency(plan, store.all_records()[before:], time.time() - t0)}; "
          f"records in {store.records_path}")
    from harness.results.leaderboard import write_run_outputs

    print(write_run_outputs(store.dir))
    if tracking is not None:
        added = tracking.finish(store.dir)
        print(f"mlflow: {tracking.uri}, experiment '{tracking.experiment}', run {tracking.run_id} "
              f"({added['cell']} cells, {added['trial']} trials and {added['final']} finals added after the run)")
    problems = unfinished_cells(cells, store)
    for line in problems:
        eprint(f"harness: {line}")
    return 1 if problems else 0


def _efficiency(plan: Plan, records: list, wall: float) -> str:
    """This session's trial-seconds (CPU-seconds its trainings held) against the cluster's cores x `wall`."""
    import torch

    from harness.study.search import joined_resources
    from harness.study.utilisation import busy_seconds, efficiency

    r = plan.suite.resources
    cpus = {c.cell_id: c.resources.cpus_per_trial * c.resources.workers_per_trial for c in plan.cells}
    busy = busy_seconds(records, cpus, torch.get_num_threads(), r.cpus_per_trial * r.workers_per_trial)
    return efficiency(busy, joined_resources()[0], wall)


def mlflow_tracking(args: argparse.Namespace, store: RunStore, suite: SuiteSpec) -> "Tracking | None":
    """Where `--mlflow URI` logs this run (the experiment is the suite's name), checked before any trial starts."""
    uri = getattr(args, "mlflow", None)
    if not uri:
        return None
    from harness.study.tracking import Tracking

    tracking = Tracking(uri, suite.name, store.run_id)
    tracking.start()
    return tracking


def stopped_message(store: RunStore, signum: int) -> str:
    """What an interrupted run says last: what it recorded as interrupted and the command that resumes it."""
    records = store.records()
    trials = sum(isinstance(r, TrialRecord) and r.status == "interrupted" for r in records)
    finals = sum(isinstance(r, FinalRecord) and r.status == "interrupted" for r in records)
    return (f"harness: stopped by {signal.Signals(signum).name}; {trials} trial(s) and {finals} final run(s) "
            f"recorded as interrupted; resume with: harness run --resume {store.dir}")


def unfinished_cells(cells: list[CellRecord], store: RunStore) -> list[str]:
    """One line per cell without a winner or with fewer finished final seeds than asked, saying which."""
    finals: dict[str, list[FinalRecord]] = {}
    for r in store.records(FinalRecord):
        finals.setdefault(r.cell_id, []).append(r)
    lines = []
    for c in cells:
        label = f"cell {target_label(c.dataset, c.samples_per_class)} · {c.method} · {c.backbone} ({c.cell_id})"
        if c.status == "no_winner":
            lines.append(f"{label}: no winner ({c.reason})")
            continue
        runs = finals.get(c.cell_id, [])
        ok = [r for r in runs if r.status == "ok"]
        if len(ok) < c.final_seeds:
            failed = ", ".join(f"seed {r.seed} {r.status}" for r in sorted(runs, key=lambda r: r.seed)
                               if r.status != "ok") or "none recorded"
            lines.append(f"{label}: {len(ok)} of {c.final_seeds} final seeds finished ({failed})")
    return lines


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
    refs = {task.remote(job.preparation, max(1, int(cpus)), runtime_env_vars()): job for job in todo}
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


def _prepare(preparation: Preparation, threads: int, env: dict[str, str]) -> float:
    """Train one preparation in a Ray task with `threads` torch threads and the driver's data root and teachers
    folder (`env`); returns the seconds it took."""
    import torch

    from harness.train.artifacts import run_preparation

    os.environ.update(env)
    t0 = time.time()
    torch.set_num_threads(threads)
    run_preparation(preparation)
    return time.time() - t0


def run_suite(cs: list[Cell], store: RunStore, storage: str | None = None, verbose: bool = False,
              progress: Progress | None = None,
              before_finals: Callable[[list[TrialConfig]], None] | None = None,
              tracking: "Tracking | None" = None) -> list[CellRecord]:
    """Search every cell whose search is not complete in `store` (recognised by its hash; an interrupted search
    continues), each cell's final seeds following its search in a Tuner shared by cells (on its warm trial
    processes, beside the other cells' searches), then run all the final seeds not yet done together;
    `before_finals` gets those finals' configurations first (to train what they need, e.g. their teachers). After a stop (`interrupt`) nothing
    new starts, what ran is recorded, and no cell is recorded as finished."""
    from harness.study.finals import TunerFinals, final_config, pending_jobs, run_finals
    from harness.study.search import best_trial, cell_record, describe, search_cells, storage_path

    progress = progress or Progress()
    where = storage_path(store, storage)
    done: dict[str, CellRecord] = {}
    earlier_trials: dict[str, list[TrialRecord]] = {}
    finals: dict[str, list[FinalRecord]] = {}
    standing = store.records()  # read once: an earlier session's cells, trials and finals, those that stand
    for r in standing:
        if isinstance(r, CellRecord):
            done[r.cell_id] = r
        elif isinstance(r, TrialRecord):
            earlier_trials.setdefault(r.cell_id, []).append(r)
        elif isinstance(r, FinalRecord):
            finals.setdefault(r.cell_id, []).append(r)
    finals_done = {c: {r.seed for r in runs if r.status in FINAL_DONE} for c, runs in finals.items()}

    def finished(cell: Cell) -> bool:
        record = done.get(cell.cell_id)
        return record is not None and (record.status == "no_winner" or
                                       len(finals_done.get(cell.cell_id, ())) >= cell.final_seeds)

    def searched_before(cell: Cell) -> bool:
        return cell.cell_id in done or search_complete(earlier_trials.get(cell.cell_id, []), cell.num_trials)

    progress.total_cells = len(cs)
    progress.total_trials = sum(cell.final_seeds - len(finals_done.get(cell.cell_id, ()))
                                + (0 if searched_before(cell) else cell.num_trials - sum(
                                    t.status in TRIAL_DONE for t in earlier_trials.get(cell.cell_id, [])))
                                for cell in cs if not finished(cell))
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

    key = (store.read_json(RUN_FACTS) or {}).get("run_key")
    started = list(store.read_jsonl(EXPERIMENTS))  # read once, not once per claim

    def claim(base: str, cells: tuple[str, ...] = ()) -> tuple[str, bool]:
        """This run's Tune experiment for `base` (named with the run's key: two runs on one cluster that start
        Tuners for the same cell in the same second would share Tune's staging folder), recorded as the
        run's; and whether an earlier session of the run started it (then it is restored). A Tuner shared by
        `cells` continues the earlier one that searched any of them (a resumed run searches fewer cells)."""
        name = f"{base}-{key}" if key else base
        for e in started:
            if e.get("name") == name or set(cells) & set(e.get("cells", ())):
                return e["name"], True
        entry = {"name": name, "path": f"{where.rstrip('/')}/{name}", "at": time.time(),
                 **({"cells": list(cells)} if cells else {})}
        store.append_json(EXPERIMENTS, entry)
        started.append(entry)
        return name, False

    todo = []
    for i, cell in enumerate(cs, 1):
        if finished(cell):
            progress.say(f"{progress.cell(i, cell.label)}  already finished in {store.dir}; skipped")
            records[cell.cell_id] = done[cell.cell_id]
        elif searched_before(cell):
            searched_cell(i, cell, earlier_trials.get(cell.cell_id, []))
        else:
            todo.append((i, cell))
    parallel = min((c.search.max_concurrent_cells for _, c in todo), default=1)
    in_tuner = TunerFinals({c.cell_id: c for _, c in todo}, where)
    for i, cell, trials, ran in search_cells(todo, where, progress, verbose, parallel, claim, tracking, in_tuner):
        if not interrupt.requested():  # the Tuner ran to its end: a trial not seen ending ended in a session before
            trials = [dataclasses.replace(t, status="stopped_early") if t.status == "interrupted" else t
                      for t in trials]
        stand = {record_key(t): t for t in earlier_trials.get(cell.cell_id, [])}
        new = [t for t in trials if record_key(t) not in stand or stand[record_key(t)].status not in TRIAL_DONE]
        store.append(new)  # a restored search returns the trials it had finished before too: recorded once
        trials = list({**stand, **{record_key(t): t for t in new}}.values())
        ran = [r for r in ran if r.seed not in finals_done.get(cell.cell_id, set())]  # a restored Tuner's again
        for r in store.append(ran):
            finals[r.cell_id] = [f for f in finals.get(r.cell_id, []) if f.seed != r.seed] + [r]
            if r.status in FINAL_DONE:
                finals_done.setdefault(r.cell_id, set()).add(r.seed)
        if not interrupt.requested() or search_complete(trials, cell.num_trials):
            searched_cell(i, cell, trials)

    searched.sort(key=lambda s: s[0])
    jobs = [job for _, cell, _, best in searched
            for job in pending_jobs(cell, best, finals_done.get(cell.cell_id, set()))]
    if jobs and before_finals is not None and not interrupt.requested():
        before_finals([final_config(job) for job in jobs])
    if jobs and not interrupt.requested():
        for r in run_finals(jobs, store, where, progress, verbose, claim, tracking):
            finals[r.cell_id] = [f for f in finals.get(r.cell_id, []) if f.seed != r.seed] + [r]
    if interrupt.requested():
        return [records[c.cell_id] for c in cs if c.cell_id in records]
    for i, cell, trials, best in searched:
        runs = sorted(finals.get(cell.cell_id, []), key=lambda r: r.seed)
        records[cell.cell_id] = store.append([cell_record(cell, trials, best, runs)])[0]
        progress.say(f"{progress.cell(i, cell.label)}  done: {_summary(records[cell.cell_id], cell, runs)}")
    return [records[c.cell_id] for c in cs]


def _summary(record: CellRecord, cell: Cell, runs: list[FinalRecord]) -> str:
    from harness.results.stats import mean_confidence_interval
    from harness.study.search import describe

    headline = headline_metric(cell.dataset.name)
    tests = [f.test[headline] for f in runs if f.test]
    mean, half = mean_confidence_interval(tests)
    ci = "" if math.isnan(half) else f" ± {half:.4f}"
    return (f"best {record.metric} {record.best_value:.4f} ({describe(record.best_config or {}, cell)}); "
            f"{record.trials} trials ({record.trials_stopped_early} stopped early, "
            f"{record.trials_errored} errored, {record.trials_diverged} diverged); "
            f"test {headline} {mean:.4f}{ci} over {len(tests)} seeds")
