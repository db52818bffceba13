"""MLflow export of a run folder: one MLflow run per harness run (the leaderboard files and report.html as its
artifacts), one child run per cell with its leaderboard row, and under each cell one run per search trial and
per final run (parameters, per-epoch metrics, status, cost).

Live logging during `harness run` is Ray Tune's MLflowLoggerCallback (harness/study/tracking.py), which tags each
trial's run as this module does; `export` then adds what is missing, so a run logged live and one exported after
the fact (`harness leaderboard RUN --mlflow URI`) hold the same runs, and exporting twice adds nothing.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from harness.core.errors import ConfigError
from harness.results.records import (
    CellRecord,
    FinalRecord,
    TrialRecord,
    entry_label,
    target_label,
)

TAG_KIND, TAG_RUN, TAG_CELL, TAG_RECORD, TAG_STATUS = ("harness.kind", "harness.run_id", "harness.cell_id",
                                                       "harness.record", "harness.status")
PARENT = "mlflow.parentRunId"
RUN_NAME = "mlflow.runName"
ARTIFACTS = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "report.html")
FILE_STORE_OPT_IN = "MLFLOW_ALLOW_FILE_STORE"  # MLflow keeps its file store in maintenance mode behind this flag
BATCH = 100  # MLflow's limit of params (and of tags) per log_batch call; of metrics 10 times as many
MLFLOW_STATUS = {"ok": "FINISHED", "stopped_early": "FINISHED", "diverged": "FAILED", "error": "FAILED",
                 "lost": "FAILED", "interrupted": "KILLED"}


def client(uri: str) -> Any:
    """An MlflowClient for `uri` (a `file:` store is opted into, as MLflow asks); a missing package is one line."""
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise ConfigError(f"--mlflow={uri}: needs the mlflow package; install with pip install -e '.[mlflow]'") \
            from None
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault(FILE_STORE_OPT_IN, "true")
    return MlflowClient(tracking_uri=uri)


def experiment_id(mlflow: Any, name: str) -> str:
    """The id of the MLflow experiment `name`, created when missing."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return mlflow.create_experiment(name)
    except Exception:  # another process created it first
        found = mlflow.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def find_runs(mlflow: Any, experiment: str, **tags: str) -> list[Any]:
    """The runs of `experiment` carrying every given tag (keys with dots are quoted as MLflow's filter needs)."""
    query = " and ".join(f"tags.`{k.replace('__', '.')}` = '{v}'" for k, v in tags.items())
    return list(mlflow.search_runs([experiment], query, max_results=50000))


def _tags(**tags: str) -> dict[str, str]:
    return {k.replace("__", "."): v for k, v in tags.items()}


def find_or_create(mlflow: Any, experiment: str, name: str, parent: str | None = None, **tags: str) -> str:
    """The id of the run with these tags, created (named `name`, a child of `parent`) when there is none."""
    found = find_runs(mlflow, experiment, **tags)
    if found:
        return found[0].info.run_id
    extra = {PARENT: parent} if parent else {}
    return mlflow.create_run(experiment, run_name=name, tags={**_tags(**tags), **extra}).info.run_id


def run_run(mlflow: Any, experiment: str, run_id: str) -> str:
    """The MLflow run of a harness run (the parent of its cells)."""
    return find_or_create(mlflow, experiment, run_id, harness__kind="run", harness__run_id=run_id)


def cell_run(mlflow: Any, experiment: str, run_id: str, cell_id: str, name: str) -> str:
    """The MLflow run of one cell of a harness run (the parent of its trials and finals)."""
    parent = run_run(mlflow, experiment, run_id)
    return find_or_create(mlflow, experiment, name, parent, harness__kind="cell", harness__run_id=run_id,
                          harness__cell_id=cell_id)


def record_key(r: TrialRecord | FinalRecord) -> str:
    """The tag that names a trial's or final run's MLflow run: `trial:<cell>:<trial id>`, `final:<cell>:<seed>`."""
    return f"trial:{r.cell_id}:{r.trial_id}" if isinstance(r, TrialRecord) else f"final:{r.cell_id}:{r.seed}"


def plain_params(config: Mapping[str, Any]) -> dict[str, str]:
    """A configuration as MLflow parameters (strings; nested values as JSON; private keys left out)."""
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v)) for k, v in config.items()
            if not k.startswith("_")}


def numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a mapping, as MLflow metrics named `prefix + key`."""
    return {f"{prefix}{k}": float(v) for k, v in (values or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def log(mlflow: Any, run: str, params: Mapping[str, str] = {}, metrics: Mapping[str, float] = {},
        steps: Iterable[tuple[int, Mapping[str, float]]] = (), tags: Mapping[str, str] = {}) -> None:
    """Parameters, metrics (at step 0, or per step) and tags of one run, in batches."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    ms = [Metric(k, v, now, 0) for k, v in metrics.items()]
    ms += [Metric(k, v, now, step) for step, row in steps for k, v in row.items()]
    ps = [Param(k, v[:6000]) for k, v in params.items()]
    ts = [RunTag(k, v) for k, v in tags.items()]
    for i in range(0, len(ms), 10 * BATCH):
        mlflow.log_batch(run, metrics=ms[i:i + 10 * BATCH])
    for i in range(0, max(len(ps), len(ts)), BATCH):
        mlflow.log_batch(run, params=ps[i:i + BATCH], tags=ts[i:i + BATCH])


def cell_name(row: pd.Series | CellRecord) -> str:
    return f"{target_label(row.dataset, row.samples_per_class)} · {entry_label(row.method, row.backbone, row.weights)}"


def _log_record(mlflow: Any, experiment: str, parent: str, r: TrialRecord | FinalRecord) -> None:
    name = f"trial {r.trial_id}" if isinstance(r, TrialRecord) else f"final seed {r.seed}"
    run = mlflow.create_run(experiment, run_name=name, tags={
        PARENT: parent, TAG_KIND: r.kind, TAG_RUN: r.run_id, TAG_CELL: r.cell_id, TAG_RECORD: record_key(r),
        TAG_STATUS: r.status}).info.run_id
    steps = [(int(h.get("epoch", i + 1)), numbers(h)) for i, h in enumerate(getattr(r, "history", []) or [])]
    metrics = {**numbers(r.val or {}, "val_"), **numbers(r.cost or {}, "cost_"), "trial_seconds": r.trial_seconds}
    if isinstance(r, FinalRecord):
        metrics.update(numbers(r.test or {}, "test_"))
    elif r.value is not None and math.isfinite(r.value):
        metrics[r.metric] = r.value
    log(mlflow, run, plain_params(r.config or {}), metrics, steps)
    mlflow.set_terminated(run, MLFLOW_STATUS.get(r.status, "FINISHED"))


def export(uri: str, run_dir: Path | str, df: pd.DataFrame, cells: list[CellRecord],
           records: list[TrialRecord | FinalRecord], experiment_name: str) -> dict[str, int]:
    """Log one run folder to MLflow at `uri`, in `experiment_name`: the run with its leaderboard files and report as
    artifacts, each cell with its leaderboard row, every trial and final run not logged yet. Returns how many runs
    of each kind it added."""
    run_dir = Path(run_dir)
    mlflow = client(uri)
    try:
        experiment = experiment_id(mlflow, experiment_name)
    except Exception as e:  # noqa: BLE001 (any failure of the store is the URI's)
        raise ConfigError(f"--mlflow={uri}: {str(e).splitlines()[0]}") from None
    run_id = run_dir.name
    top = run_run(mlflow, experiment, run_id)
    added = {"cell": 0, "trial": 0, "final": 0}
    logged = {r.data.tags.get(TAG_RECORD) for r in find_runs(mlflow, experiment, harness__run_id=run_id)}
    rows = {r.cell_id: r for _, r in df.iterrows()} if not df.empty else {}
    parents: dict[str, str] = {}
    for cell in cells:
        before = len(find_runs(mlflow, experiment, harness__kind="cell", harness__cell_id=cell.cell_id,
                               harness__run_id=run_id))
        parents[cell.cell_id] = cell_run(mlflow, experiment, run_id, cell.cell_id, cell_name(cell))
        added["cell"] += not before
        row = rows.get(cell.cell_id)
        params = {k: str(getattr(cell, k)) for k in ("dataset", "samples_per_class", "method", "backbone", "weights")}
        params.update({f"best.{k}": v for k, v in plain_params(cell.best_config or {}).items()})
        metrics = numbers(row.to_dict() if row is not None else {})
        tags = {TAG_STATUS: cell.status}
        if row is not None:
            tags.update({"verdict": str(row.get("verdict")), "metric": str(row.get("metric")),
                         "entry": str(row.get("entry"))})
        log(mlflow, parents[cell.cell_id], params, metrics, tags=tags)
        mlflow.set_terminated(parents[cell.cell_id], "FINISHED")
    for r in records:
        if record_key(r) not in logged:
            parent = parents.get(r.cell_id) or cell_run(mlflow, experiment, run_id, r.cell_id, r.cell_id)
            _log_record(mlflow, experiment, parent, r)
            added[r.kind] += 1
    for name in ARTIFACTS:
        if (run_dir / name).is_file():
            mlflow.log_artifact(top, str(run_dir / name))
    mlflow.set_terminated(top, "FINISHED")
    return added


def experiment_of(run_dir: Path) -> str:
    """The MLflow experiment of a run folder: its suite's name."""
    from harness.core.yamlio import read_yaml

    suite = run_dir / "suite.yaml"
    return str((read_yaml(suite) or {}).get("name") or "harness") if suite.is_file() else "harness"


def export_run(uri: str, run_dir: Path | str, experiment: str | None = None) -> dict[str, int]:
    """`export` of one run folder as the leaderboard reads it."""
    from harness.results import leaderboard

    run_dir = Path(run_dir)
    records = leaderboard.load_records([run_dir])
    try:
        df = leaderboard.frame(records)
    except ConfigError:  # no finished cell yet: the trials still go in
        df = pd.DataFrame()
    return export(uri, run_dir, df, records.cells, [*records.trials, *records.finals],
                  experiment or experiment_of(run_dir))
