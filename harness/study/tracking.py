"""`harness run --mlflow URI`: every search trial and final run logged live by Ray Tune's MLflow integration
(ray.air.integrations.mlflow.MLflowLoggerCallback: parameters, each epoch's metrics, status), each as a child of
its cell's MLflow run, with the run's cost at its end; the cells' leaderboard rows and the run's files follow when
the run ends (harness/results/tracking.py, which also tags runs the same way)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from harness.results import tracking as export
from harness.results.records import entry_label, target_label
from harness.study.suite import Cell
from harness.study.trial import CELL_KEY, JOB_KEY, RUNNER_KEY, trial_status


@dataclass(frozen=True)
class Tracking:
    """Where a run logs: the MLflow tracking URI, the experiment (the suite's name) and the run's id."""

    uri: str
    experiment: str
    run_id: str

    def start(self) -> None:
        """Check the store answers and create the experiment and the run's MLflow run, before any trial starts."""
        client = export.client(self.uri)
        try:
            experiment = export.experiment_id(client, self.experiment)
        except Exception as e:  # noqa: BLE001 (any failure of the store is the URI's)
            raise export.ConfigError(f"--mlflow={self.uri}: {str(e).splitlines()[0]}") from None
        export.run_run(client, experiment, self.run_id)

    def parents(self, cells: list[Cell]) -> dict[str, str]:
        """The MLflow run of each cell (created when missing): the parent of its trials' and finals' runs."""
        client = export.client(self.uri)
        experiment = export.experiment_id(client, self.experiment)
        return {c.cell_id: export.cell_run(client, experiment, self.run_id, c.cell_id,
                                           f"{target_label(c.dataset.name, c.dataset.samples_per_class)} · "
                                           f"{entry_label(c.method, c.backbone.name, c.weights)}")
                for c in cells}

    def callback(self, cells: list[Cell]) -> TrialsToMLflow:
        return TrialsToMLflow(self, self.parents(cells))

    def finish(self, run_dir: Path) -> dict[str, int]:
        """Log the cells' leaderboard rows, whatever the live logging missed, and the run's files."""
        return export.export_run(self.uri, run_dir, self.experiment)


class TrialsToMLflow(MLflowLoggerCallback):
    """Ray Tune's MLflow logger with each trial's run tagged with its harness record and made a child of its
    cell's run; the parameters are the trial's configuration (not Tune's runner fields), and at its end the
    trial's status and cost."""

    def __init__(self, tracking: Tracking, parents: dict[str, str]) -> None:
        super().__init__(tracking_uri=tracking.uri, experiment_name=tracking.experiment)
        self.tracking, self.parents = tracking, parents

    def setup(self, *args: Any, **kwargs: Any) -> None:
        export.client(self.tracking.uri)  # opts into a file store as MLflow asks
        super().setup(*args, **kwargs)

    def _identity(self, trial: Any) -> tuple[str, str, str, dict[str, Any]]:
        """(kind, cell id, record key, parameters) of a Tune trial: a final run carries its job, a search trial
        of a shared Tuner its cell, one of a cell's own Tuner belongs to that cell."""
        config = trial.config
        if JOB_KEY in config:
            job = config[JOB_KEY]
            cell = job[CELL_KEY]
            return "final", cell, f"final:{cell}:{job['seed']}", {k: v for k, v in job.items() if k != RUNNER_KEY}
        cell = config.get(CELL_KEY) or next(iter(self.parents))
        return "trial", cell, f"trial:{cell}:{trial.trial_id}", {k: v for k, v in config.items() if k != RUNNER_KEY}

    def log_trial_start(self, trial: Any) -> None:
        if trial in self._trial_runs:
            return
        kind, cell, key, params = self._identity(trial)
        tags = {export.PARENT: self.parents[cell], export.TAG_KIND: kind, export.TAG_RUN: self.tracking.run_id,
                export.TAG_CELL: cell, export.TAG_RECORD: key}
        name = f"final seed {params.get('seed')}" if kind == "final" else f"trial {trial.trial_id}"
        run = self.mlflow_util.start_run(tags=tags, run_name=name)
        self._trial_runs[trial] = run.info.run_id
        self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=export.plain_params(params))

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        run_id = self._trial_runs[trial]
        last = trial.last_result or {}
        summary = json.loads(last["summary"]) if isinstance(last.get("summary"), str) else {}
        status = trial_status(last, failed)
        client = self.mlflow_util._get_client()
        export.log(client, run_id, metrics={**export.numbers(summary.get("cost") or {}, "cost_"),
                                            **export.numbers(summary.get("test") or {}, "test_")},
                   tags={export.TAG_STATUS: status})
        super().log_trial_end(trial, failed=status in ("error", "diverged"))
