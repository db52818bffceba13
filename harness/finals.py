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

from harness.catalog import final_trains_on_val
from harness.progress import Progress
from harness.results import RunStore
from harness.search import cell_fields, make_tuner, max_concurrency, runner_fields, trial_callback, trial_status
from harness.suite import Cell
from harness.trial import JOB_KEY, RUNNER_KEY

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


def pending_jobs(cell: Cell, best: dict[str, Any], store: RunStore) -> list[FinalJob]:
    """The seeds of `cell` not yet recorded in `store` (a resumed run re-runs only those)."""
    have = {r["seed"] for r in store.records("final") if r["cell_id"] == cell.cell_id}
    return [FinalJob(cell, dict(best["config"]), s, float(best.get("trial_seconds") or 0.0))
            for s in range(cell.final_seeds) if s not in have]


def _job_config(job: FinalJob, storage: str) -> dict[str, Any]:
    return {**job.config, "seed": job.seed, "evaluate_test": True,
            "train_on_val": final_trains_on_val(job.cell.dataset.name), "_cell": job.cell.cell_id,
            RUNNER_KEY: {**runner_fields(job.cell, storage), "final": True}}


def run_finals(jobs: list[FinalJob], store: RunStore, storage: str, progress: Progress,
               verbose: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Run `jobs` and record each; returns every final record of the jobs' cells (earlier runs' too) by cell id."""
    groups: dict[tuple, list[FinalJob]] = {}
    for job in jobs:
        c = job.cell
        groups.setdefault((astuple(c.resources), c.search.metric), []).append(job)
    labels = {job.cell.cell_id: job.cell.label for job in jobs}
    counter = itertools.count(1)

    def report(job: dict[str, Any], status: str, value: float | None, seconds: float, metric: str) -> None:
        progress.trial_done(f"[final] {labels.get(job.get('_cell'), '?')} seed {job.get('seed')}",
                            f"final {next(counter)}/{len(jobs)}", status, metric, value, seconds)

    for group in groups.values():
        store.append(_run_group(group, storage, report, verbose))
    cell_ids = {job.cell.cell_id for job in jobs}
    out: dict[str, list[dict[str, Any]]] = {cid: [] for cid in cell_ids}
    for record in store.records("final"):
        if record["cell_id"] in out:
            out[record["cell_id"]].append(record)
    return {cid: sorted(rs, key=lambda r: r["seed"]) for cid, rs in out.items()}


def _run_group(jobs: list[FinalJob], storage: str, report: Callable[..., None], verbose: bool
               ) -> list[dict[str, Any]]:
    from ray import tune

    first = jobs[0].cell
    queue = sorted(jobs, key=lambda j: (-j.expected_seconds, j.key))
    by_key = {job.key: job for job in queue}
    name = "final-" + hashlib.sha1(",".join(sorted(by_key)).encode()).hexdigest()[:12]
    space = {JOB_KEY: tune.grid_search([_job_config(job, storage) for job in queue])}
    metric = first.search.metric
    callback = trial_callback(name, lambda config, *rest: report(config.get(JOB_KEY, {}), *rest, metric), metric)
    grid = make_tuner(name, space, first.resources, metric, first.search.mode, storage, callback, verbose,
                      max_concurrency(first.resources, 0)).fit()
    records = []
    for result in grid:
        job = by_key[f"{result.config[JOB_KEY]['_cell']}:{result.config[JOB_KEY]['seed']}"]
        status, summary, error = trial_status(result)
        record = {"kind": "final", **cell_fields(job.cell), "seed": job.seed, "status": status, "error": error,
                  "trial_seconds": (result.metrics or {}).get("time_total_s", 0.0)}
        if summary:
            record.update({k: summary[k] for k in SUMMARY_FIELDS})
        records.append(record)
    order = {job.key: i for i, job in enumerate(jobs)}
    return sorted(records, key=lambda r: order[f"{r['cell_id']}:{r['seed']}"])
