"""Pre-flight: every check `harness train` makes, applied to every cell of a plan at the bounds of its search
space, with the cell's metric and resources, before Ray starts. `harness run --dry-run` prints every problem
it finds; `harness run` refuses to start on any (nothing is written, no network is trained)."""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator

from harness.core.config import TrialConfig, hyperparameters, param_of
from harness.core.errors import ConfigError, NotHere
from harness.data.catalog import final_trains_on_val
from harness.data.registry import dataset_task, spec_options
from harness.study.gpus import gpu_count
from harness.study.plan import Plan, SourceJob
from harness.study.search_rules import check_search
from harness.study.spaces import Dist
from harness.study.suite import Cell
from harness.study.trial import trials_that_fit
from harness.tasks import TASKS
from harness.train.checks import Memo, run_problems

LOCAL = "this machine"
MAX_COMBINATIONS = 512  # beyond this, each value is tried with the others at their low and at their high ends


def extremes(key: str, d: Dist) -> list[Any]:
    """The values of a distribution a search may reach at its ends: low and high (for a continuous one whose
    high is the open end of the key's range, just below it: Tune draws from [low, high)), every value of a
    choice or grid."""
    if d.kind in ("choice", "grid"):
        return list(d.args)
    lo, hi = d.args
    p = param_of(hyperparameters()[key])
    if d.kind != "int" and p.high_open and hi == p.high:
        hi = math.nextafter(hi, lo)
    return [lo, hi]


def bound_configs(cell: Cell) -> Iterator[dict[str, Any]]:
    """The cell's search configurations at the bounds of its space: every combination of every key's
    extremes, or (beyond MAX_COMBINATIONS) each extreme with the other keys all low and all high."""
    base = {**cell.constants, **{k: v for k, v in cell.space.items() if not isinstance(v, Dist)}}
    ends = {k: extremes(k, v) for k, v in cell.space.items() if isinstance(v, Dist)}
    if math.prod(len(v) for v in ends.values()) <= MAX_COMBINATIONS:
        for combo in itertools.product(*ends.values()):
            yield {**base, **dict(zip(ends, combo))}
        return
    for edge in (0, -1):
        others = {k: v[edge] for k, v in ends.items()}
        for key, values in ends.items():
            for value in values:
                yield {**base, **others, key: value}


def reported_metrics(dataset: str) -> list[str]:
    """The metrics a trial on `dataset` reports each epoch, which a search may select on."""
    task = TASKS.get(dataset_task(dataset))
    names = dict.fromkeys((*task.headlines, *task.shown, *task.scalars))
    return ["train_loss", *(f"val_{k}" for k in names)]


def local_resources(count_gpus: bool = True) -> tuple[float, float]:
    """The CPUs and GPUs of the Ray cluster `harness run` starts on this machine. GPUs are counted where
    `count_gpus` (which may import torch); a plan whose trials need no GPU has none to place, and gets 0."""
    return float(os.cpu_count() or 1), float(gpu_count() if count_gpus else 0)


def needs_gpus(plan: Plan) -> bool:
    """Whether a trial of the plan asks for a GPU (then the pre-flight checks that it fits this machine's)."""
    return any(cell.resources.gpus_per_trial > 0 for cell in plan.cells)


@dataclass(frozen=True)
class Problem:
    """One line of what `harness run` would refuse; `here`: valid, but not on this machine (downloadable data or
    weights, a bigger cluster's resources), which `--dry-run` lists without failing."""

    text: str
    here: bool = False


Problems = dict[str, Problem]


def _problem(problems: Problems, e: ConfigError) -> None:
    problems.setdefault(str(e), Problem(str(e), isinstance(e, NotHere)))


def check_cell(cell: Cell, memo: Memo, planned: dict[str, str]) -> list[Problem]:
    """Every problem of one cell: its search configurations at their bounds, a final run per seed, the metric
    and the search (checked as Tune would refuse it, without Ray)."""
    problems: Problems = {}
    on_val = final_trains_on_val(cell.dataset.name)
    low = next(bound_configs(cell))
    finals = ({**low, **cell.final_run_seeds(seed), "evaluate_test": True, "train_on_val": on_val}
              for seed in cell.final_seed_list)
    for values in itertools.chain(bound_configs(cell), finals):
        try:
            for e in run_problems(TrialConfig.from_dict(values), memo, planned):
                _problem(problems, e)
        except ConfigError as e:
            _problem(problems, e)
    try:
        allowed = reported_metrics(cell.dataset.name)
        if cell.search.metric not in allowed:
            raise ConfigError(f"search.metric={cell.search.metric!r}: not reported by {dataset_task(cell.dataset.name)} "
                              f"trials; choose from: headline, {', '.join(allowed)}")
        check_search(cell)
    except ConfigError as e:
        _problem(problems, e)
    return list(problems.values())


def preflight(plan: Plan, cluster: tuple[float, float] | None = None, where: str = LOCAL
              ) -> list[Problem]:
    """Every problem `harness run` would meet with this plan, one line each, in plan order (none: it may start).
    `cluster` is the (CPUs, GPUs) trials are placed on (None: not known yet; checked once Ray is joined)."""
    problems: Problems = {}
    memo: Memo = {}
    planned = {f"checkpoint:{j.path}": j.config.backbone for j in plan.of_kind("source")
               if isinstance(j, SourceJob) and not j.path.is_file()}
    for job in plan.of_kind("source"):
        try:
            spec_options(job.config.dataset)
            for e in run_problems(job.config, memo):
                _problem(problems, type(e)(f"{job.label}: {e}"))
        except ConfigError as e:
            _problem(problems, ConfigError(f"{job.label}: {e}"))
    for cell in plan.cells:
        for problem in check_cell(cell, memo, planned):
            problems.setdefault(problem.text, problem)
        try:
            if cluster is not None:
                trials_that_fit(cell.resources, cell.search.max_concurrent_trials, *cluster, where)
        except ConfigError as e:
            _problem(problems, NotHere(str(e)) if where == LOCAL else e)
    return list(problems.values())
