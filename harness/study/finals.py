"""Final runs: each cell's best configuration re-run with `final_seeds` seeds, each scored once on the test split.

The finals of all cells run together, one Tuner per resource shape, longest first, as many at once as the
cluster fits (max_concurrent_trials is a search setting; final runs are independent): the seeds of every cell
fill the cluster, and trial processes start (and import torch) once rather than once per cell.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import astuple, dataclass
from typing import Any, Callable

from harness.core.config import TrialConfig
from harness.data.catalog import final_trains_on_val
from harness.results.records import FinalRecord, TrialRecord
from harness.results.store import RunStore
from harness.study.progress import Progress
from harness.study import interrupt
from harness.study.packing import packed_resources
from harness.study.search import (Claim, cell_fields, test_metric, joined_resources, make_tuner, max_concurrency, outcome, results_with_trials,
                                  runner_fields, trial_callback)
from harness.study.suite import Cell
from harness.study.tracking import Tracking
from harness.study.plan import preparation_job
from harness.study.trial import CELL_KEY, JOB_KEY, RUNNER_KEY, placement_of

SUMMARY_FIELDS = ("config", "config_hash", "val", "test", "cost", "model", "data", "epochs_completed")


@dataclass(frozen=True)
class FinalJob:
    """One seeded final run of a cell's winning configuration; `expected_seconds` orders the queue."""

    cell: Cell
    config: dict[str, Any]
    seed: int
    expected_seconds: float

    @property
    def key(self) -> str:
        return f"{self.cell.cell_id}:{self.seed}"


def pending_jobs(cell: Cell, best: TrialRecord, have: set[int]) -> list[FinalJob]:
    """The final seeds of `cell` not among `have`, those already recorded (a resumed run re-runs only the others)."""
    return [FinalJob(cell, dict(best.config), s, float(best.trial_seconds or 0.0))
            for s in cell.final_seed_list if s not in have]


def final_config(job: FinalJob) -> TrialConfig:
    """The configuration of a final run: the winner's, with the final run's seeds (never the search's), scored
    on test."""
    return TrialConfig.from_dict({**job.config, **job.cell.final_run_seeds(job.seed), "evaluate_test": True,
                                  "train_on_val": final_trains_on_val(job.cell.dataset.name)})


def _job_config(job: FinalJob, storage: str) -> dict[str, Any]:
    return {**final_config(job).to_dict(), CELL_KEY: job.cell.cell_id,
            RUNNER_KEY: {**runner_fields(job.cell, storage), "final": True}}


@dataclass(frozen=True)
class TunerFinals:
    """A cell's final runs started by the Tuner that searched it (`multiplex.Finals`), as `run_finals` would
    start them, on the trial processes the search warmed; a cell whose finals need a network not trained yet
    (a teacher for training on train + validation) is left to `run_finals`, after `before_finals` trains it."""

    cells: dict[str, Cell]
    storage: str

    def __call__(self, cell_id: str, config: dict[str, Any], trial_id: str) -> list[dict[str, Any]] | None:
        cell = self.cells.get(cell_id)
        if cell is None:
            return None
        best = {k: v for k, v in config.items() if k not in (RUNNER_KEY, CELL_KEY)}
        jobs = [FinalJob(cell, best, seed, 0.0) for seed in cell.final_seed_list]
        preparations = [preparation_job(final_config(job)) for job in jobs]
        if any(p is not None and not p.preparation.path.is_file() for p in preparations):
            return None
        return [_job_config(job, self.storage) for job in jobs]

    def record(self, result: Any, trial: Any) -> FinalRecord:
        job = trial.config[JOB_KEY]
        return final_record(FinalJob(self.cells[job[CELL_KEY]], {}, job["seed"], 0.0), result, trial)


def run_finals(jobs: list[FinalJob], store: RunStore, storage: str, progress: Progress,
               verbose: bool = False, claim: Claim = lambda name, cells=(): (name, False),
               tracking: Tracking | None = None) -> list[FinalRecord]:
    """Run `jobs`, one Tuner per resource shape, and append their records to `store`; returns those records.
    `claim(name)` records each Tuner as this run's and says whether to restore it; after a stop no group starts."""
    groups: dict[tuple, list[FinalJob]] = {}
    for job in jobs:
        groups.setdefault((astuple(job.cell.resources), test_metric(job.cell)), []).append(job)
    cells = {job.cell.cell_id: job.cell for job in jobs}
    counter = itertools.count(1)

    def report(config: dict[str, Any], status: str, value: float | None, seconds: float) -> None:
        cell = cells[config[JOB_KEY][CELL_KEY]]
        progress.trial_done(f"[final] {cell.label} seed {config[JOB_KEY]['seed']}",
                            f"final {next(counter)}/{len(jobs)}", status, test_metric(cell), value, seconds)

    records: list[FinalRecord] = []
    for group in groups.values():
        if interrupt.requested():
            break
        records += store.append(_run_group(group, storage, report, verbose, claim, tracking))
    return records


def final_record(job: FinalJob, result: Any, trial: Any = None) -> FinalRecord:
    """The record of one seeded final run from its Tune result (and Tune's trial: how often it failed); the loop's
    summary fills it when it finished. No scheduler stops a final early: one without a summary was interrupted."""
    status, summary, error = outcome(result, ended=False)
    return FinalRecord(**cell_fields(job.cell), seed=job.seed, status=status, error=error,
                       trial_seconds=(result.metrics or {}).get("time_total_s", 0.0),
                       failures=getattr(trial, "num_failures", 0), node=placement_of(result.metrics),
                       **({k: summary[k] for k in SUMMARY_FIELDS} if summary else {}))


def _run_group(jobs: list[FinalJob], storage: str, report: Callable[..., None], verbose: bool,
               claim: Claim, tracking: Tracking | None = None) -> list[FinalRecord]:
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    first = jobs[0].cell
    by_key = {job.key: job for job in jobs}
    queue = sorted(jobs, key=lambda j: (-j.expected_seconds, j.key))
    name, restore = claim("final-" + hashlib.sha1(",".join(sorted(by_key)).encode()).hexdigest()[:12])
    space = {JOB_KEY: tune.grid_search([_job_config(job, storage) for job in queue])}
    resources = packed_resources(list({j.cell.cell_id: j.cell for j in jobs}.values()), joined_resources()[1])
    everything_that_fits = BasicVariantGenerator(max_concurrent=max_concurrency(resources, 0) or 0)
    # no Tune metric: nothing is selected among final runs, and one that trains on validation reports no val_
    tuner = make_tuner(name, space, resources, None, None, storage,
                       trial_callback(name, report, test_metric(first)), verbose, everything_that_fits,
                       restore=restore,
                       more_callbacks=(tracking.callback(list({j.cell.cell_id: j.cell for j in jobs}.values())),)
                       if tracking else ())
    with interrupt.tune_running():
        grid = tuner.fit()
    records = {}
    for result, trial in results_with_trials(grid):
        config = trial.config
        job = by_key[f"{config[JOB_KEY][CELL_KEY]}:{config[JOB_KEY]['seed']}"]
        records[job.key] = final_record(job, result, trial)
    return [records[key] for key in by_key]  # in the order the jobs came: cell by cell, seed by seed
