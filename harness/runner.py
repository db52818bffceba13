"""`harness run`: resolve the suite, start or join Ray, pretrain sources, run the cells, write the leaderboard."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import yaml

from harness.errors import ConfigError
from harness.results import RunStore
from harness.suite import SuiteSpec, apply_overrides, cells, load_suite, suite_from_dict

RESOLVED_SUITE = "suite.yaml"


def _flags(args: argparse.Namespace) -> dict[str, object]:
    keys = ("datasets", "methods", "backbones", "weights", "samples_per_class", "num_samples", "algorithm",
            "scheduler", "metric", "max_concurrent_trials", "epochs", "final_seeds", "cpus_per_trial",
            "gpus_per_trial", "workers_per_trial")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


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
        return suite_from_dict(yaml.safe_load(path.read_text()), str(path)), RunStore(run_dir)
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
    from harness import search
    from harness.results import environment

    started = search.init_ray(args.address, args.verbose)
    try:
        t0 = time.time()
        sources_dir = str(Path(args.results_dir) / "sources")
        resolved = search.prepare_sources(suite, sources_dir, print)
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
        search.run_suite(cs, store, args.storage_path, args.verbose)
        print(f"finished in {time.time() - t0:.0f}s; records in {store.records_path}")
        from harness.leaderboard import write_run_outputs

        print(write_run_outputs(store.dir))
    finally:
        if started:
            import ray

            ray.shutdown()
    return 0


def _with_sources(suite: SuiteSpec, resolved: dict[str, str]) -> dict[str, object]:
    """The suite as run: sources stay named (so a resume reuses the same cached checkpoints)."""
    return dataclasses.asdict(suite)
