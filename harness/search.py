"""Ray Tune search per (dataset, method, backbone) cell, Ray Train for multi-worker trials, final seeded runs.

One Tuner per cell searches on the validation split; the best configuration (validation only, diverged and
errored trials excluded) re-runs with `final_seeds` seeds as parallel trials that score the test split once.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable
from urllib.parse import urlparse

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own tables only with --verbose

from harness.catalog import final_trains_on_val  # noqa: E402
from harness.dataroot import runtime_env_vars  # noqa: E402
from harness.engine import Hooks, train_loop  # noqa: E402
from harness.errors import ConfigError  # noqa: E402
from harness.jsonio import dumps  # noqa: E402
from harness.results import RunStore  # noqa: E402
from harness.spaces import Dist, space_to_data  # noqa: E402
from harness.spec import TrialConfig  # noqa: E402
from harness.suite import Cell, Resources, SuiteSpec  # noqa: E402

RUNNER_KEY = "_runner"
CONNECT_TIMEOUT_S = 10


# ---------------------------------------------------------------- Ray start-up and resources

def init_ray(address: str | None = None, verbose: bool = False) -> bool:
    """Join a cluster (`auto`, `host:port`, `ray://host:port`) or start a local one; True if we started it."""
    import ray

    if not verbose:
        for name in ("ray", "ray.tune", "ray.train"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if address:
        _check_reachable(address)
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": verbose,
                          "logging_level": logging.INFO if verbose else logging.WARNING}
    if runtime_env_vars():  # the data root reaches trial processes on every node
        kw["runtime_env"] = {"env_vars": runtime_env_vars()}
    if address:
        try:
            ray.init(address=address, **kw)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
            raise ConfigError(f"--address={address}: cannot join the Ray cluster ({str(e).splitlines()[0]})") from None
    else:
        ray.init(num_cpus=os.cpu_count(), **kw)
    return True


def _check_reachable(address: str) -> None:
    if address == "auto":
        return
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    if not parsed.hostname or not parsed.port:
        raise ConfigError(f"--address={address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ConfigError(f"--address={address}: no Ray cluster reachable at {parsed.hostname}:{parsed.port} "
                          f"({e.strerror or e})") from None


def max_concurrency(resources: Resources, configured: int) -> int | None:
    """How many trials fit the cluster at once; refuses a trial that can never fit."""
    import ray

    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    n = resources.workers_per_trial
    need_cpu, need_gpu = n * resources.cpus_per_trial, n * resources.gpus_per_trial
    if need_cpu > cpus:
        raise ConfigError(f"resources: a trial needs {need_cpu:g} CPUs (workers_per_trial={n} x cpus_per_trial="
                          f"{resources.cpus_per_trial:g}) but the cluster has {cpus:g}")
    if need_gpu > gpus:
        raise ConfigError(f"resources: a trial needs {need_gpu:g} GPUs (workers_per_trial={n} x gpus_per_trial="
                          f"{resources.gpus_per_trial:g}) but the cluster has {gpus:g}")
    fits = int(cpus // need_cpu)
    if need_gpu:
        fits = min(fits, int(gpus // need_gpu))
    fits = max(1, fits)
    return min(configured, fits) if configured else (fits if n > 1 else None)


# ---------------------------------------------------------------- the trial (runs in a Ray worker)

class _DeferLast:
    """Forward per-epoch rows at once; hold the last one so it can carry the run's summary."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self.send, self.last = send, None

    def __call__(self, row: dict[str, Any]) -> None:
        if row.get("status") == "running":
            self.send(row)
        else:
            self.last = row

    def finish(self, summary: dict[str, Any]) -> None:
        row = dict(self.last or {"epoch": 0, "status": summary["status"], "val_accuracy": float("nan")})
        row["summary"] = dumps(summary)
        self.send(row)


def tune_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one TrialConfig, in this process or over a TorchTrainer's workers."""
    from ray import tune

    config = dict(config)
    runner = config.pop(RUNNER_KEY)
    trial_config = TrialConfig.from_dict(config)
    if runner["workers"] <= 1:
        import torch

        torch.set_num_threads(max(1, int(runner["cpus"])))
        reporter = _DeferLast(tune.report)
        reporter.finish(train_loop(trial_config, reporter=reporter))
        return
    _fit_torch_trainer(trial_config, runner, tune.get_context().get_trial_id())


def _fit_torch_trainer(config: TrialConfig, runner: dict[str, Any], trial_id: str) -> None:
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"trial": config.to_dict(), "cpus": runner["cpus"]},
        scaling_config=ray.train.ScalingConfig(
            num_workers=runner["workers"], use_gpu=runner["gpus"] > 0,
            resources_per_worker={"CPU": runner["cpus"], **({"GPU": runner["gpus"]} if runner["gpus"] else {})}),
        run_config=ray.train.RunConfig(name=f"train-{trial_id}", storage_path=runner["storage"],
                                       callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


def _train_worker(loop_config: dict[str, Any]) -> None:
    """Per-worker loop of a Ray Train run: the same engine, with DDP through prepare_model/prepare_data_loader."""
    import ray.train
    import ray.train.torch
    import torch

    torch.set_num_threads(max(1, int(loop_config["cpus"])))
    hooks = Hooks(prepare_model=ray.train.torch.prepare_model,
                  prepare_loader=ray.train.torch.prepare_data_loader,
                  device=ray.train.torch.get_device(),
                  world_size=ray.train.get_context().get_world_size())
    reporter = _DeferLast(lambda row: ray.train.report(row))
    reporter.finish(train_loop(TrialConfig.from_dict(loop_config["trial"]), reporter=reporter, hooks=hooks))


# ---------------------------------------------------------------- progress a person can follow

@dataclass
class Progress:
    """Prints one line per finished trial and per finished cell, with counts and an estimate of time left."""

    total_trials: int = 0
    done_trials: int = 0
    cell_index: int = 0
    total_cells: int = 0
    cell_label: str = ""
    phase: str = "search"
    phase_total: int = 0
    phase_done: int = 0
    started: float = field(default_factory=time.time)
    out: Any = None

    def say(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def eta(self) -> str:
        if not self.done_trials:
            return "?"
        left = (time.time() - self.started) / self.done_trials * max(0, self.total_trials - self.done_trials)
        return f"{int(left // 60)}m{int(left % 60):02d}s"

    def trial_done(self, status: str, metric: str, value: float | None, seconds: float) -> None:
        self.done_trials += 1
        self.phase_done += 1
        shown = "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
        self.say(f"[cell {self.cell_index}/{self.total_cells}] {self.cell_label}  {self.phase} "
                 f"{self.phase_done}/{self.phase_total}  {status:<13} {metric} {shown}  ({seconds:.1f}s)  "
                 f"trials {self.done_trials}/{self.total_trials}  about {self.eta()} left")


def _progress_callback(progress: Progress, metric: str):
    from ray import tune

    class ProgressCallback(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
            r = trial.last_result or {}
            status = r.get("status", "ok")
            if "summary" not in r and status != "diverged":
                status = "stopped_early"
            progress.trial_done(status, metric, r.get(metric), r.get("time_total_s", 0.0))

        def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
            r = trial.last_result or {}
            progress.trial_done("error", metric, None, r.get("time_total_s", 0.0))

    return ProgressCallback()


# ---------------------------------------------------------------- one cell

def _storage_path(store: RunStore, storage: str | None) -> str:
    return storage if storage else str((store.dir / "tune").resolve())


def _experiment_path(storage: str, name: str) -> str:
    return f"{storage.rstrip('/')}/{name}"


def _make_tuner(name: str, param_space: dict[str, Any], cell: Cell, storage: str, progress: Progress,
                verbose: bool, concurrency: int | None, scheduler: Any = None, search_alg: Any = None,
                num_samples: int = 1):
    from ray import tune

    resources = cell.resources
    trial_resources = ({"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial}
                       if resources.workers_per_trial <= 1 else {"cpu": 0.01})
    trainable = tune.with_resources(tune_trial, trial_resources)
    path = _experiment_path(storage, name)
    # reuse_actors: a fresh process per trial re-imports torch (4 one-epoch trials: 28.6 s -> 8.4 s)
    if tune.Tuner.can_restore(path):
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                  param_space=param_space)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=cell.search.metric, mode=cell.search.mode, num_samples=num_samples,
                                    scheduler=scheduler, search_alg=search_alg,
                                    max_concurrent_trials=concurrency, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=2 if verbose else 0,
                                  callbacks=[_progress_callback(progress, cell.search.metric)],
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )


def search_parts(cell: Cell) -> tuple[dict[str, Any], Any, Any]:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    space = {k: (v.to_tune() if isinstance(v, Dist) else v) for k, v in cell.space.items()}
    search_alg = None
    if cell.search.algorithm == "optuna":
        try:
            from ray.tune.search.optuna import OptunaSearch
        except ImportError as e:
            raise ConfigError(f"search.algorithm='optuna': {e}; install with pip install -e '.[optuna]'") from None
        if any(isinstance(v, Dist) and v.kind == "grid" for v in cell.space.values()):
            raise ConfigError("search.algorithm='optuna': grid distributions are not supported; use choice")
        search_alg = OptunaSearch(seed=0)
    elif cell.search.algorithm == "grid":
        space = {k: (_as_grid(k, v).to_tune() if isinstance(v, Dist) else v) for k, v in cell.space.items()}
    scheduler = (ASHAScheduler(time_attr="epoch", max_t=cell.max_epochs, grace_period=cell.search.grace_period,
                               reduction_factor=cell.search.reduction_factor)
                 if cell.search.scheduler == "asha" else FIFOScheduler())
    return space, scheduler, search_alg


def _as_grid(key: str, d: Dist) -> Dist:
    """Under search.algorithm=grid every value is enumerated: choice and int ranges become grids."""
    if d.kind in ("grid", "choice"):
        return Dist("grid", d.args)
    if d.kind == "int":
        return Dist("grid", tuple(range(d.args[0], d.args[1] + 1)))
    raise ConfigError(f"search.algorithm='grid': key '{key}' is {d.kind}, which cannot be enumerated; "
                      f"give it grid or choice values")


def _trial_status(result: Any) -> tuple[str, dict[str, Any] | None, str | None]:
    import json

    metrics = result.metrics or {}
    if result.error is not None:
        return "error", None, f"{type(result.error).__name__}: {str(result.error).strip().splitlines()[-1][:300]}"
    if metrics.get("status") == "diverged":
        return "diverged", json.loads(metrics["summary"]) if "summary" in metrics else None, None
    if "summary" in metrics:
        return "ok", json.loads(metrics["summary"]), None
    return "stopped_early", None, None


def _history(result: Any, metric: str) -> list[dict[str, Any]]:
    df = result.metrics_dataframe
    if df is None or df.empty:
        return []
    cols = [c for c in ("epoch", metric, "train_loss", "lr", "time_total_s") if c in df.columns]
    return df[cols].to_dict("records")


def _runner(cell: Cell, storage: str) -> dict[str, Any]:
    r = cell.resources
    return {"workers": r.workers_per_trial, "cpus": r.cpus_per_trial, "gpus": r.gpus_per_trial, "storage": storage}


def _cell_fields(cell: Cell) -> dict[str, Any]:
    return {"cell_id": cell.cell_id, "dataset": cell.dataset.name, "samples_per_class": cell.dataset.samples_per_class,
            "method": cell.method, "backbone": cell.backbone.name, "weights": cell.weights}


def run_cell(cell: Cell, store: RunStore, storage: str, progress: Progress, verbose: bool = False) -> dict[str, Any]:
    """Search one cell, record every trial, re-run the winner with final seeds on the test split."""
    metric, mode = cell.search.metric, cell.search.mode
    concurrency = max_concurrency(cell.resources, cell.search.max_concurrent_trials)
    base = {**cell.constants, RUNNER_KEY: _runner(cell, storage)}
    fields = _cell_fields(cell)
    search_name = f"search-{cell.cell_id}"

    trials = [r for r in store.records("trial") if r["cell_id"] == cell.cell_id]
    if not trials:
        space, scheduler, search_alg = search_parts(cell)
        progress.phase, progress.phase_total, progress.phase_done = "search", cell.num_trials, 0
        t0 = time.time()
        grid = _make_tuner(search_name, {**base, **space}, cell, storage, progress, verbose, concurrency,
                           scheduler, search_alg, cell.search.num_samples).fit()
        search_seconds = time.time() - t0
        trials = []
        for result in grid:
            status, summary, error = _trial_status(result)
            cfg = {k: v for k, v in result.config.items() if k != RUNNER_KEY}
            m = result.metrics or {}
            trials.append({"kind": "trial", **fields, "trial_id": m.get("trial_id") or os.path.basename(result.path),
                           "status": status, "config": cfg, "epochs_completed": m.get("epoch", 0),
                           "metric": metric, "value": m.get(metric), "val": (summary or {}).get("val"),
                           "history": _history(result, metric), "trial_seconds": m.get("time_total_s", 0.0),
                           "cost": (summary or {}).get("cost"), "error": error, "search_seconds": search_seconds})
        store.append(trials)

    sign = 1 if mode == "max" else -1
    winners = [t for t in trials if t["status"] == "ok" and t["value"] is not None and math.isfinite(t["value"])]
    best = max(winners, key=lambda t: sign * t["value"]) if winners else None
    counts = {s: sum(t["status"] == s for t in trials) for s in ("ok", "stopped_early", "error", "diverged")}
    cell_record = {"kind": "cell", **fields, "metric": metric, "mode": mode, "trials": len(trials),
                   "trials_completed": counts["ok"], "trials_stopped_early": counts["stopped_early"],
                   "trials_errored": counts["error"], "trials_diverged": counts["diverged"],
                   "trial_seconds": sum(t["trial_seconds"] or 0.0 for t in trials),
                   "gpus_per_trial": cell.resources.gpus_per_trial * cell.resources.workers_per_trial,
                   "search_seconds": trials[0].get("search_seconds") if trials else 0.0,
                   "space": space_to_data(cell.space), "search": asdict(cell.search),
                   "resources": asdict(cell.resources), "final_seeds": cell.final_seeds}
    if best is None:
        errors = [t["error"] for t in trials if t["error"]]
        cell_record.update(status="no_winner", best_value=None, best_config=None, best_trial_id=None,
                           finals=0, reason=errors[0] if errors else "every trial diverged or was stopped")
        store.append([cell_record])
        progress.say(f"[cell {progress.cell_index}/{progress.total_cells}] {cell.label}  NO WINNER: "
                     f"{cell_record['reason']}")
        return cell_record

    best_config = {k: v for k, v in best["config"].items()}
    finals = run_finals(cell, best_config, store, storage, progress, verbose, concurrency)
    tests = [f["test"]["accuracy"] for f in finals if f.get("test")]
    cell_record.update(status="ok", best_value=best["value"], best_config=best_config,
                       best_trial_id=best["trial_id"], finals=len(finals))
    store.append([cell_record])
    from harness.metrics import mean_confidence_interval

    mean, half = mean_confidence_interval(tests)
    ci = "" if math.isnan(half) else f" ± {half:.4f}"
    progress.say(f"[cell {progress.cell_index}/{progress.total_cells}] {cell.label}  done: best {metric} "
                 f"{best['value']:.4f} ({_describe(best_config, cell)}); {len(trials)} trials "
                 f"({counts['stopped_early']} stopped early, {counts['error']} errored, {counts['diverged']} diverged); "
                 f"test accuracy {mean:.4f}{ci} over {len(tests)} seeds")
    return cell_record


def _describe(config: dict[str, Any], cell: Cell) -> str:
    searched = [k for k, v in cell.space.items() if isinstance(v, Dist)]
    return ", ".join(f"{k}={config[k]:.3g}" if isinstance(config[k], float) else f"{k}={config[k]}"
                     for k in searched if k in config)


def run_finals(cell: Cell, best_config: dict[str, Any], store: RunStore, storage: str, progress: Progress,
               verbose: bool, concurrency: int | None) -> list[dict[str, Any]]:
    """The best configuration with `final_seeds` seeds, scored once on the test split (parallel trials)."""
    from ray import tune

    fields = _cell_fields(cell)
    have = {r["seed"]: r for r in store.records("final") if r["cell_id"] == cell.cell_id}
    seeds = [s for s in range(cell.final_seeds) if s not in have]
    if seeds:
        progress.phase, progress.phase_total, progress.phase_done = "final", len(seeds), 0
        space = {**best_config, "seed": tune.grid_search(seeds), "evaluate_test": True,
                 "train_on_val": final_trains_on_val(cell.dataset.name), RUNNER_KEY: _runner(cell, storage)}
        grid = _make_tuner(f"final-{cell.cell_id}", space, cell, storage, progress, verbose, concurrency).fit()
        new = []
        for result in grid:
            status, summary, error = _trial_status(result)
            seed = result.config["seed"]
            m = result.metrics or {}
            record = {"kind": "final", **fields, "seed": seed, "status": status, "error": error,
                      "trial_seconds": m.get("time_total_s", 0.0)}
            if summary:
                record.update({k: summary[k] for k in ("config", "config_hash", "val", "test", "cost", "model",
                                                       "data", "epochs_completed")})
            new.append(record)
        store.append(sorted(new, key=lambda r: r["seed"]))
        have.update({r["seed"]: r for r in new})
    return [have[s] for s in sorted(have)]


# ---------------------------------------------------------------- a whole suite

def prepare_sources(suite: SuiteSpec, out_dir: str, log: Callable[[str], None]) -> dict[str, str]:
    """Pretrain (or reuse) every source network the suite's backbones name; `source:KEY` -> `checkpoint:PATH`."""
    from harness.sources import pretrain, source_config

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


def run_suite(cells: list[Cell], store: RunStore, storage_path: str | None = None, verbose: bool = False,
              progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run every cell not already finished in this store (finished cells are recognised by their hash)."""
    progress = progress or Progress()
    storage = _storage_path(store, storage_path)
    done = {r["cell_id"]: r for r in store.records("cell")}
    progress.total_cells = len(cells)
    progress.total_trials = sum(c.num_trials + c.final_seeds for c in cells if c.cell_id not in done)
    out = []
    for i, cell in enumerate(cells, 1):
        progress.cell_index, progress.cell_label = i, cell.label
        if cell.cell_id in done:
            progress.say(f"[cell {i}/{len(cells)}] {cell.label}  already finished in {store.dir}; skipped")
            out.append(done[cell.cell_id])
            continue
        out.append(run_cell(cell, store, storage, progress, verbose))
    return out
