"""The plan of a study: a graph of content-hashed jobs built from a suite before anything runs.

Jobs, in the order they run: source networks pretrained from scratch (`sources:` of the suite), networks a
method prepares (distillation teachers), transferability estimates (`estimate: true`: one per target and
candidate weights), each cell's search and each of its seeded finals. A job's id is the hash of everything
that decides its outcome, so the same job is planned once however often a suite names it, and a resumed run
skips the jobs whose outcome is already on disk or in the run's records.
`harness run --dry-run` prints the plan; `harness run` executes it (harness/study/runner.py).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from harness.core.config import TrialConfig, config_hash
from harness.core.errors import ConfigError
from harness.methods import METHODS
from harness.methods.base import Preparation
from harness.results.records import (FINAL_DONE, TRIAL_DONE, CellRecord, EstimateRecord, FinalRecord, Record,
                                     TrialRecord)
from harness.study.spaces import Dist
from harness.study.suite import Cell, SuiteSpec, cells
from harness.train.artifacts import source_config, source_path

DISCRETE = ("choice", "grid", "int")


@dataclass(frozen=True)
class Job:
    """One unit of work: `kind` is source, teacher, search or final; `needs` are the ids of jobs it waits for."""

    kind: str
    job_id: str
    label: str
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceJob(Job):
    key: str = ""
    config: TrialConfig = field(default_factory=TrialConfig)
    path: Path = Path()


@dataclass(frozen=True)
class PreparationJob(Job):
    preparation: Preparation | None = None


@dataclass(frozen=True)
class EstimateJob(Job):
    """Transferability estimates of one candidate (backbone, weights) for one target, from its training split;
    `candidate` is how people know it (the suite's source key, else the weights)."""

    dataset: str = ""
    samples_per_class: int = 0
    backbone: str = ""
    weights: str = ""
    candidate: str = ""
    split_seed: int = 0  # the search trials' seeds: the estimates see the data the search sees
    subset_seed: int = 0


@dataclass(frozen=True)
class SearchJob(Job):
    cell: Cell | None = None


@dataclass(frozen=True)
class FinalJob(Job):
    cell: Cell | None = None
    seed: int = 0


@dataclass
class Plan:
    """The jobs of a study by id, in the order they run, and the suite's `source:KEY` weights resolved."""

    suite: SuiteSpec
    jobs: dict[str, Job]
    source_weights: dict[str, str]
    cells: list[Cell]
    dynamic_preparations: dict[str, str] = field(default_factory=dict)  # cell id -> why its finals' are decided later

    def of_kind(self, kind: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.kind == kind]

    def preparations_for(self, configs: Iterable[TrialConfig]) -> list[PreparationJob]:
        """The preparation jobs (planned or not) that runs with these configurations need."""
        out: dict[str, PreparationJob] = {}
        for config in configs:
            job = preparation_job(config)
            if job is not None:
                out.setdefault(job.job_id, job)
        return list(out.values())


def final_job_id(cell_id: str, seed: int) -> str:
    return config_hash({"cell": cell_id, "final_seed": seed})


def preparation_job(config: TrialConfig) -> PreparationJob | None:
    """The job that trains what `config`'s method needs first (a teacher), or None."""
    method = METHODS.get(config.method)
    prep = method.preparation(config) if method.preparation is not None else None
    if prep is None:
        return None
    return PreparationJob("teacher", prep.config.identity(), f"{prep.kind} {prep.config.backbone} on "
                          f"{prep.config.dataset} ({prep.config.epochs} epochs, seed {prep.config.seed})",
                          preparation=prep)


def _probe_configs(cell: Cell, **fixed: Any) -> tuple[list[TrialConfig], list[str]]:
    """Every configuration of the cell that differs in what its preparation depends on, and those keys.

    Each searched key is tried at its extreme values; a key that changes the preparation is enumerated (it must be
    discrete: a continuous key that decides which teacher is trained would need a teacher per trial)."""
    base = {**cell.constants, **{k: v for k, v in cell.space.items() if not isinstance(v, Dist)}, **fixed}
    dists = {k: v for k, v in cell.space.items() if isinstance(v, Dist)}
    first = {k: d.args[0] for k, d in dists.items()}
    make = lambda values: TrialConfig.from_dict({**base, **first, **values})  # noqa: E731
    reference = preparation_job(make({}))
    if reference is None:
        return [], []
    deciding = []
    for key, d in dists.items():
        for value in d.args[1:]:
            job = preparation_job(make({key: value}))
            if job is None or job.job_id != reference.job_id:
                if d.kind not in DISCRETE:
                    raise ConfigError(f"search space of {cell.method}: key '{key}' {d.to_data()} decides which "
                                      f"{reference.preparation.kind} is trained; give it fixed, choice or grid values")
                deciding.append(key)
                break
    values = [list(range(dists[k].args[0], dists[k].args[1] + 1)) if dists[k].kind == "int" else list(dists[k].args)
              for k in deciding]
    return [make(dict(zip(deciding, combo))) for combo in itertools.product(*values)], deciding


def build_plan(suite: SuiteSpec, sources_dir: Path | str) -> Plan:
    """The study's jobs, deduplicated by id: sources, teachers, searches and finals, each after what it needs."""
    from harness.data.catalog import final_trains_on_val

    jobs: dict[str, Job] = {}
    resolved: dict[str, str] = {}
    source_ids: dict[str, str] = {}
    for key in suite.source_keys():
        s = suite.sources[key]
        config = source_config(s.dataset, s.backbone, s.epochs, s.lr, s.batch_size, s.augment, s.seed)
        path = source_path(config, sources_dir).resolve()
        job = SourceJob("source", config.identity(), f"source {key}: {s.backbone} on {s.dataset}, {s.epochs} epochs",
                        key=key, config=config, path=path)
        jobs.setdefault(job.job_id, job)
        source_ids[f"checkpoint:{path}"] = job.job_id
        resolved[key] = f"checkpoint:{path}"
    plan = Plan(suite, jobs, resolved, [])
    for cell in cells(suite, resolved):
        if cell.cell_id in jobs:
            continue  # the same cell named twice by the suite (e.g. scratch under two weights) runs once
        plan.cells.append(cell)
        needs = tuple(source_ids[w] for w in [cell.weights] if w in source_ids)
        probes, deciding = _probe_configs(cell)
        search_preps = plan.preparations_for(probes)
        for p in search_preps:
            jobs.setdefault(p.job_id, replace(p, needs=_source_needs(p, source_ids)))
        jobs[cell.cell_id] = SearchJob("search", cell.cell_id, cell.label,
                                       needs + tuple(p.job_id for p in search_preps), cell=cell)
        on_val = final_trains_on_val(cell.dataset.name)
        for seed in cell.final_seed_list:
            final_needs: tuple[str, ...] = (cell.cell_id,)
            if probes and not deciding:
                for p in plan.preparations_for(_probe_configs(cell, **cell.final_run_seeds(seed),
                                                              train_on_val=on_val)[0]):
                    jobs.setdefault(p.job_id, replace(p, needs=_source_needs(p, source_ids)))
                    final_needs += (p.job_id,)
            elif deciding:
                plan.dynamic_preparations[cell.cell_id] = (f"its finals' teachers follow the search's choice of "
                                                           f"{', '.join(deciding)}")
            fid = final_job_id(cell.cell_id, seed)
            jobs[fid] = FinalJob("final", fid, f"{cell.label} seed {seed}", final_needs, cell=cell, seed=seed)
    if suite.estimate:
        for job in estimate_jobs(plan.cells, source_ids, resolved):
            jobs.setdefault(job.job_id, job)
    order = {"source": 0, "teacher": 1, "estimate": 2, "search": 3, "final": 4}
    plan.jobs = dict(sorted(jobs.items(), key=lambda kv: order[kv[1].kind]))
    return plan


def estimate_jobs(cs: list[Cell], source_ids: dict[str, str], resolved: dict[str, str]) -> list[EstimateJob]:
    """One estimate job per (target, backbone, weights) that a cell transfers from (methods that take no
    pretrained weights have no candidate); it waits for its source network."""
    keys = {weights: key for key, weights in resolved.items()}
    out: dict[str, EstimateJob] = {}
    for c in cs:
        if METHODS.get(c.method).pretrained == "forbidden":
            continue
        d = c.dataset
        seeds = {"split_seed": c.seeds.split, "subset_seed": c.seeds.subset}
        job_id = config_hash({"estimate": 1, "dataset": d.name, "samples_per_class": d.samples_per_class,
                              "backbone": c.backbone.name, "weights": _weights(c.weights),
                              **{k: v for k, v in seeds.items() if v}})
        candidate = keys.get(c.weights, _weights(c.weights))
        needs = tuple(source_ids[w] for w in [c.weights] if w in source_ids)
        label = f"estimate {d.label} · {c.backbone.name} · {candidate}"
        out.setdefault(job_id, EstimateJob("estimate", job_id, label, needs, dataset=d.name, samples_per_class=d.samples_per_class,
                                           backbone=c.backbone.name, weights=c.weights, candidate=candidate,
                                           **seeds))
    return list(out.values())


def _source_needs(job: PreparationJob, source_ids: dict[str, str]) -> tuple[str, ...]:
    """A preparation starting from a planned source network waits for it."""
    weights = job.preparation.config.weights
    return (source_ids[weights],) if weights in source_ids else ()


def _weights(weights: str) -> str:
    """Weights as shown in the plan: a checkpoint by its file name."""
    return "checkpoint:" + Path(weights[len("checkpoint:"):]).name if weights.startswith("checkpoint:") else weights


def search_complete(trials: list[TrialRecord], num_trials: int) -> bool:
    """Whether a cell's search is over: all its trials ran and none was interrupted (`trials`: those that stand)."""
    return len(trials) >= num_trials and all(t.status in TRIAL_DONE for t in trials)


def done_jobs(plan: Plan, records: list[Record]) -> set[str]:
    """Ids of the plan's jobs whose outcome exists: network files on disk, complete searches and final seeds that
    will not run again in the records (those that stand: `RunStore.records()`)."""
    done = {j.job_id for j in plan.jobs.values() if isinstance(j, SourceJob) and j.path.is_file()}
    done |= {j.job_id for j in plan.jobs.values()
             if isinstance(j, PreparationJob) and j.preparation is not None and j.preparation.path.is_file()}
    cells_done = {r.cell_id for r in records if isinstance(r, CellRecord)}
    trials: dict[str, list[TrialRecord]] = {}
    for r in records:
        if isinstance(r, TrialRecord):
            trials.setdefault(r.cell_id, []).append(r)
    finals = {final_job_id(r.cell_id, r.seed) for r in records
              if isinstance(r, FinalRecord) and r.status in FINAL_DONE}
    done |= {r.job for r in records if isinstance(r, EstimateRecord) and r.job in plan.jobs}
    for j in plan.jobs.values():
        if isinstance(j, SearchJob) and (j.job_id in cells_done or (
                j.job_id in trials and search_complete(trials[j.job_id], j.cell.num_trials))):
            done.add(j.job_id)
        elif isinstance(j, FinalJob) and (j.job_id in finals or j.cell.cell_id in cells_done):
            done.add(j.job_id)
    return done


def describe(plan: Plan, done: set[str] = frozenset()) -> list[str]:
    """The plan as lines for `--dry-run`: one per source, teacher and search, the finals of a cell on one line."""
    counts = {k: len(plan.of_kind(k)) for k in ("source", "teacher", "estimate", "search", "final")}
    trials = sum(c.num_trials for c in plan.cells)
    estimates = f"{counts['estimate']} estimate(s), " if counts["estimate"] else ""
    lines = [f"plan: {counts['source']} source(s), {counts['teacher']} teacher(s), {estimates}"
             f"{counts['search']} search(es) ({trials} trials), {counts['final']} final run(s); "
             f"{len(done & set(plan.jobs))} of {len(plan.jobs)} jobs done"]
    short = lambda ids: ", ".join(i[:8] for i in ids) or "-"  # noqa: E731
    mark = lambda job_id: "done" if job_id in done else "todo"  # noqa: E731
    for job in plan.jobs.values():
        if isinstance(job, SourceJob):
            lines.append(f"  [{mark(job.job_id)}] {job.label}  job {job.job_id}  -> {job.path}")
        elif isinstance(job, PreparationJob):
            lines.append(f"  [{mark(job.job_id)}] {job.label}  job {job.job_id}  needs {short(job.needs)}  "
                         f"-> {job.preparation.path}")
        elif isinstance(job, EstimateJob):
            lines.append(f"  [{mark(job.job_id)}] {job.label}  job {job.job_id}  needs {short(job.needs)}")
        elif isinstance(job, SearchJob):
            c = job.cell
            finals = [j for j in plan.jobs.values() if isinstance(j, FinalJob) and j.cell.cell_id == c.cell_id]
            final_done = sum(j.job_id in done for j in finals)
            extra = f"; {plan.dynamic_preparations[c.cell_id]}" if c.cell_id in plan.dynamic_preparations else ""
            lines.append(f"  [{mark(job.job_id)}] search {c.label:<42} weights={_weights(c.weights):<20} {c.num_trials} trials "
                         f"(max {c.max_epochs} epochs)  job {job.job_id}  needs {short(job.needs)}")
            lines.append(f"         finals: seeds {', '.join(map(str, c.final_seed_list))} (search seed "
                         f"{c.seeds.search}), {final_done} done, each needs the search"
                         + (" and its seed's teacher" if any(len(j.needs) > 1 for j in finals) else "") + extra)
    return lines
