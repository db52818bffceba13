"""Ray start-up and the Ray Tune search of every (dataset, method, backbone) cell.

Each cell has its own search algorithm and ASHA scheduler and sees the validation split only; cells whose
trials have one worker share one Tuner (harness/study/multiplex.py), so its trial processes stay warm from one
cell to the next; the others get a Tuner each. The winner is picked here, and harness/finals.py re-runs it with
seeds on the test split.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
from collections import Counter
from dataclasses import asdict, astuple
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own tables only with --verbose

from ray import tune  # noqa: E402

from harness.data.registry import headline_metric  # noqa: E402
from harness.data.root import DATA_ENV, runtime_env_vars, teachers_dir  # noqa: E402
from harness.core.errors import ConfigError, RunFailure  # noqa: E402
from harness.results.records import CellRecord, FinalRecord, TrialRecord  # noqa: E402
from harness.results.store import RunStore  # noqa: E402
from harness.study import interrupt  # noqa: E402
from harness.study.multiplex import FINAL_PREFIX, CellsScheduler, CellsSearch, Finals  # noqa: E402
from harness.study.packing import packed_resources  # noqa: E402
from harness.study.progress import Progress, TrialSink  # noqa: E402
from harness.study.search_rules import as_grid, check_search  # noqa: E402
from harness.study.spaces import Dist, space_to_data  # noqa: E402
from harness.study.suite import Cell, Resources  # noqa: E402
from harness.study.tracking import Tracking  # noqa: E402
from harness.study.trial import (CELL_KEY, JOB_KEY, RUNNER_KEY, TRIAL_FUNCTION_CPU, best_of, trials_that_fit, checkpoint_after_s, error_message,  # noqa: E402
                                 is_infrastructure_failure, placement_of, release_train_resources, schedule_timeout_s,
                                 trial_status, tune_trial)

CONNECT_TIMEOUT_S = 5
PROBE_TIMEOUT_S = 3
MAX_FAILURES_ENV = "HARNESS_MAX_FAILURES"
DEFAULT_MAX_FAILURES = 3
# what Tune says while it stops on our request, in words meant for Tuner.restore users; the run says it instead
QUIET_LOGGERS = ("ray.tune.tune", "ray.tune.analysis.experiment_analysis", "ray.tune.execution.tune_controller")


# ---------------------------------------------------------------- Ray start-up and resources

def init_ray(address: str | None = None, verbose: bool = False) -> bool:
    """Join a cluster (`auto`, `host:port`, `ray://host:port`) or start a local one; True if we started it."""
    import ray

    if not verbose:
        for name in ("ray", "ray.tune", "ray.train"):
            logging.getLogger(name).setLevel(logging.WARNING)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    if address:
        check_reachable(address)
    if ray.is_initialized():
        return False
    # No runtime_env of our own: inside a Ray Job, trial processes with a runtime env other than the job's make
    # Ray unpack the job's working_dir again on the head node, deleting the folder the job runs in. The data
    # root and teachers folder reach trials in their config (runner_fields) and actors as arguments instead.
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": verbose,
                          "logging_level": logging.INFO if verbose else logging.WARNING}
    if address:
        try:
            ray.init(address=address, **kw)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
            raise ConfigError(f"--address={address}: cannot join the Ray cluster ({str(e).splitlines()[0]})") from None
    else:
        ray.init(num_cpus=os.cpu_count(), **kw)
    return True


def check_reachable(address: str) -> None:
    """Refuse an address that is malformed, unreachable, or reachable but no Ray head (one line, within seconds)."""
    if address == "auto":
        return
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    if not parsed.hostname or not parsed.port:
        raise ConfigError(f"--address={address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=CONNECT_TIMEOUT_S) as conn:
            grpc = _speaks_grpc(conn)
    except OSError as e:
        raise ConfigError(f"--address={address}: no Ray cluster reachable at {parsed.hostname}:{parsed.port} "
                          f"({e.strerror or e})") from None
    if not grpc:
        raise ConfigError(f"--address={address}: {parsed.hostname}:{parsed.port} accepts connections but is no Ray "
                          f"head (it does not answer gRPC); give the head's GCS port (default 6379) or ray://HOST:10001")


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # and an empty SETTINGS


def _speaks_grpc(conn: socket.socket) -> bool:
    """Whether the server answers an HTTP/2 client preface with a SETTINGS frame, as every gRPC server (a Ray
    head's GCS, Ray Client) does, within PROBE_TIMEOUT_S."""
    conn.settimeout(PROBE_TIMEOUT_S)
    try:
        conn.sendall(HTTP2_PREFACE)
        header = b""
        while len(header) < 9:
            chunk = conn.recv(9 - len(header))
            if not chunk:
                return False
            header += chunk
    except OSError:
        return False
    return header[3] == 4


def joined_resources() -> tuple[float, float]:
    """The CPUs and GPUs of the cluster this process has joined."""
    import ray

    total = ray.cluster_resources()
    return total.get("CPU", 0.0), total.get("GPU", 0.0)


def cluster_resources(address: str) -> tuple[float, float]:
    """The CPUs and GPUs of the cluster at `address`, joined for the question and left again."""
    import ray

    started = init_ray(address)
    try:
        return joined_resources()
    finally:
        if started:
            ray.shutdown()


def max_concurrency(resources: Resources, configured: int) -> int | None:
    """How many trials fit the cluster at once; refuses a trial that can never fit."""
    return trials_that_fit(resources, configured, *joined_resources())


# ---------------------------------------------------------------- Tuners

_SINKS: dict[str, TrialSink] = {}
_ENDED: dict[str, set[str]] = {}  # experiment name -> ids of the trials seen ending in this process
_SPANS: dict[str, dict[str, list[float]]] = {}  # experiment name -> cell id -> [first trial start, last trial end]


class TrialCallback(tune.Callback):
    """Hands each finished or errored trial of experiment `name` to the sink registered for it in this process,
    and notes that it ended (`ended_trials`): a Tuner that was stopped leaves the others unfinished.
    `metric` is the reported value the sink gets: one name, or one per cell (a Tuner shared by cells; its final
    runs' under FINAL_PREFIX + cell id).

    Tune pickles a Tuner's callbacks into its experiment folder, so the callback holds only the name:
    a restored Tuner (`--resume`) reports to the sink of the process that resumes it.
    """

    def __init__(self, name: str, metric: str | dict[str, str]) -> None:
        self.name, self.metric = name, metric

    def _metric(self, config: dict[str, Any]) -> str:
        if isinstance(self.metric, str):
            return self.metric
        return self.metric[FINAL_PREFIX + config[JOB_KEY][CELL_KEY] if JOB_KEY in config else config[CELL_KEY]]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if CELL_KEY in trial.config:
            span = _SPANS.setdefault(self.name, {}).setdefault(trial.config[CELL_KEY], [time.time(), time.time()])
            span[0] = min(span[0], time.time())

    def _send(self, trial: Any, failed: bool) -> None:
        _ENDED.setdefault(self.name, set()).add(trial.trial_id)
        if CELL_KEY in trial.config and trial.config[CELL_KEY] in _SPANS.get(self.name, {}):
            _SPANS[self.name][trial.config[CELL_KEY]][1] = time.time()
        r = trial.last_result or {}
        status = trial_status(r, failed)
        sink = _SINKS.get(self.name)
        if sink is not None:
            sink(trial.config, status, None if status == "error" else r.get(self._metric(trial.config)),
                 r.get("time_total_s", 0.0))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        release_train_resources(trial.trial_id)
        self._send(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        release_train_resources(trial.trial_id)
        self._send(trial, failed=True)


def trial_callback(name: str, sink: TrialSink, metric: str | dict[str, str]) -> TrialCallback:
    """A Tune callback for experiment `name` that reports its trials to `sink` (status ok, stopped_early, ...)."""
    _SINKS[name] = sink
    _ENDED[name] = set()
    _SPANS[name] = {}
    return TrialCallback(name, metric)


def ended_trials(name: str) -> set[str]:
    """Ids of the trials of experiment `name` that ended (finished, stopped by the scheduler, failed) since its
    callback was made in this process."""
    return _ENDED.get(name, set())


def storage_path(store: RunStore, storage: str | None) -> str:
    """Where Tune keeps this run's experiments: a folder named after the run in --storage-path, else the run
    folder's tune/ (never a folder another run writes)."""
    return f"{storage.rstrip('/')}/{store.run_id}" if storage else str((store.dir / "tune").resolve())


def max_failures() -> int:
    """How often Tune retries a trial whose process, actor or node was lost ($HARNESS_MAX_FAILURES)."""
    return int(os.environ.get(MAX_FAILURES_ENV) or DEFAULT_MAX_FAILURES)


def make_tuner(name: str, param_space: dict[str, Any], resources: Resources, metric: str | None, mode: str | None,
               storage: str,
               callback: Any, verbose: bool, search_alg: Any, scheduler: Any = None, num_samples: int = 1,
               restore: bool = False, more_callbacks: tuple[Any, ...] = ()):
    """A Tuner over `tune_trial`, or with `restore` (an experiment this run started before) the interrupted one
    of the same name restored from `storage`; its unfinished and lost trials run again, from their last
    checkpoints. An experiment folder that is not this run's is refused, never unpickled.
    `search_alg` carries the limit on trials at once: Tune ignores max_concurrent_trials for a generator
    it is given."""
    multi = resources.workers_per_trial > 1
    trial_resources = {"cpu": TRIAL_FUNCTION_CPU} if multi else {"cpu": resources.cpus_per_trial,
                                                                 "gpu": resources.gpus_per_trial}
    trainable = tune.with_resources(tune_trial, trial_resources)
    path = f"{storage.rstrip('/')}/{name}"
    if restore and tune.Tuner.can_restore(path):
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                  param_space=param_space)
    if not restore and tune.Tuner.can_restore(path):
        raise ConfigError(f"{path}: a Tune experiment this run did not start; it is not restored (restoring "
                          f"unpickles it); remove it or use another --storage-path")
    # reuse_actors: a fresh process per trial re-imports torch (4 one-epoch trials: 28.6 s -> 8.4 s); not for a
    # multi-worker trial, whose function trainable cannot reset its Ray Train run (Tune then stalls)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=metric, mode=mode, num_samples=num_samples, scheduler=scheduler,
                                    search_alg=search_alg, reuse_actors=not multi,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=2 if verbose else 0,
                                  callbacks=[callback, *more_callbacks], failure_config=tune.FailureConfig(max_failures=max_failures()),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def search_parts(cell: Cell, concurrency: int | None = None) -> tuple[dict[str, Any], Any, Any]:
    """Tune's param space, scheduler and search algorithm (limited to `concurrency` trials at once) for a cell,
    once `check_search` passes it; sampling is seeded from the cell's id, so a cell draws the same
    configurations in whichever process or order it is searched."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    check_search(cell)
    space = {k: (v.to_tune() if isinstance(v, Dist) else v) for k, v in cell.space.items()}
    seed = int(cell.cell_id, 16) % 2**32
    search_alg = BasicVariantGenerator(random_state=seed, max_concurrent=concurrency or 0)
    if cell.search.algorithm == "optuna":
        try:
            from ray.tune.search.optuna import OptunaSearch
        except ImportError as e:
            raise ConfigError(f"search.algorithm='optuna': {e}; install with pip install -e '.[optuna]'") from None
        from ray.tune.search import ConcurrencyLimiter

        search_alg = OptunaSearch(seed=seed)
        if concurrency:
            search_alg = ConcurrencyLimiter(search_alg, max_concurrent=concurrency)
    elif cell.search.algorithm == "grid":
        space = {k: (as_grid(k, v).to_tune() if isinstance(v, Dist) else v) for k, v in cell.space.items()}
    scheduler = (ASHAScheduler(time_attr="epoch", max_t=cell.max_epochs, grace_period=cell.search.grace_period,
                               reduction_factor=cell.search.reduction_factor)
                 if cell.search.scheduler == "asha" else FIFOScheduler())
    return space, scheduler, search_alg


def runner_fields(cell: Cell, storage: str) -> dict[str, Any]:
    """How a trial of this cell runs: workers, CPUs and GPUs each, and where Ray Train keeps its runs."""
    r = cell.resources
    return {"workers": r.workers_per_trial, "cpus": r.cpus_per_trial, "gpus": r.gpus_per_trial, "storage": storage,
            "teachers": str(teachers_dir()), "data_root": runtime_env_vars().get(DATA_ENV),
            "schedule_timeout_s": schedule_timeout_s(), "metric": cell.search.metric,
            "checkpoint_after_s": checkpoint_after_s(), "client_parallelism": r.client_parallelism}


def cell_fields(cell: Cell) -> dict[str, Any]:
    """The identity every record of a cell carries (the fields of `CellFields`), as keyword arguments."""
    return {"cell_id": cell.cell_id, "dataset": cell.dataset.name, "samples_per_class": cell.dataset.samples_per_class,
            "method": cell.method, "backbone": cell.backbone.name, "weights": cell.weights}


def test_metric(cell: Cell) -> str:
    """What a final run's progress line shows: its headline test score (the leaderboard's ranking metric)."""
    return f"test_{headline_metric(cell.dataset.name)}"


def outcome(result: Any, ended: bool = True) -> tuple[str, dict[str, Any] | None, str | None]:
    """(status, the training loop's summary if it reported one, error message) of one Tune result. A trial
    that did not end (`ended`: its Tuner was stopped first) or failed by a stop is `interrupted`; one that
    failed because its process, actor or node was lost (after Tune's retries) is `lost`."""
    metrics = result.metrics or {}
    if result.error is not None:
        text = f"{type(result.error).__name__}: {result.error}"
        if "KeyboardInterrupt" in text or "TaskCancelledError" in text:
            return "interrupted", None, None
        status = "lost" if is_infrastructure_failure(result.error) else "error"
        return status, None, error_message(result.error)
    status = trial_status(metrics)
    if status == "error":
        return status, None, metrics.get("error")
    if status == "stopped_early" and not ended:
        return "interrupted", None, None
    return status, json.loads(metrics["summary"]) if "summary" in metrics else None, None


def results_with_trials(grid: Any) -> list[tuple[Any, Any]]:
    """(result, Tune trial) pairs of a ResultGrid: the trial has its id, config and how often it failed."""
    return list(zip(grid, grid._experiment_analysis.trials))


def trial_record(cell: Cell, result: Any, search_seconds: float, trial: Any = None, ended: bool = True
                 ) -> TrialRecord:
    """The record of one search trial of `cell` from its Tune result (and Tune's trial, when known)."""
    status, summary, error = outcome(result, ended)
    metric = cell.search.metric
    m = result.metrics or {}
    config = result.config if result.config is not None else getattr(trial, "config", {})
    return TrialRecord(**cell_fields(cell), trial_id=m.get("trial_id") or getattr(trial, "trial_id", None)
                       or os.path.basename(result.path),
                       status=status, config={k: v for k, v in config.items() if k not in (RUNNER_KEY, CELL_KEY)},
                       epochs_completed=m.get("epoch", 0), metric=metric, value=m.get(metric),
                       val=(summary or {}).get("val"), history=_history(result, metric),
                       trial_seconds=m.get("time_total_s", 0.0), cost=(summary or {}).get("cost"), error=error,
                       search_seconds=search_seconds, finished_at=m.get("timestamp"),
                       failures=getattr(trial, "num_failures", 0), node=placement_of(m))


def _history(result: Any, metric: str) -> list[dict[str, Any]]:
    df = result.metrics_dataframe
    if df is None or df.empty:
        return []
    cols = [c for c in ("epoch", metric, "train_loss", "lr", "time_total_s") if c in df.columns]
    return df[cols].to_dict("records")


# ---------------------------------------------------------------- one cell's search

def search_name(cell: Cell) -> str:
    """The name of a cell's Tune experiment (a folder under the run's storage path)."""
    return f"search-{cell.cell_id}"


Claim = Callable[..., tuple[str, bool]]  # (a Tuner's base name, the cells it searches) -> (this run's experiment
# name, whether to restore it)


def shares_a_tuner(cell: Cell) -> bool:
    """Whether a cell's search can share a Tuner with other cells: one worker per trial (its process is reused
    from cell to cell) and a search algorithm Tune generates variants with (random, grid); an Optuna search or
    a multi-worker trial gets a Tuner of its own."""
    return cell.resources.workers_per_trial <= 1 and cell.search.algorithm != "optuna"


def shared_name(cells: list[Cell]) -> str:
    """The name of a Tune experiment searching `cells` together."""
    return "search-" + hashlib.sha1(",".join(c.cell_id for c in cells).encode()).hexdigest()[:12]


def search_one(cell: Cell, storage: str, sink: TrialSink, verbose: bool = False,
               experiment: tuple[str, bool] | None = None, tracking: Tracking | None = None) -> list[TrialRecord]:
    """Search one cell with its own Tuner on the validation split, in `experiment` (name, and whether to restore
    and continue this run's earlier search of it); returns its trial records (not yet stored), those a stop left
    unfinished `interrupted`. With `tracking`, Tune logs each trial to MLflow too."""
    metric = cell.search.metric
    resources = packed_resources([cell], joined_resources()[1])
    concurrency = max_concurrency(resources, cell.search.max_concurrent_trials)
    space, scheduler, search_alg = search_parts(cell, concurrency)
    t0 = time.time()
    name, restore = experiment or (search_name(cell), False)
    tuner = make_tuner(name, {**cell.constants, RUNNER_KEY: runner_fields(cell, storage), **space},
                       resources, metric, cell.search.mode, storage, trial_callback(name, sink, metric),
                       verbose, search_alg, scheduler, cell.search.num_samples, restore,
                       (tracking.callback([cell]),) if tracking else ())
    with interrupt.tune_running():
        grid = tuner.fit()
    search_seconds = time.time() - t0
    ended = ended_trials(name)
    return [trial_record(cell, result, search_seconds, trial, trial.trial_id in ended)
            for result, trial in results_with_trials(grid)]


@contextlib.contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    """`name` set to `value` in this process for the block (unchanged where value is None)."""
    before = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if value is not None:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before


def search_shared(cells: list[Cell], storage: str, sink: TrialSink, parallel: int, verbose: bool = False,
                  experiment: tuple[str, bool] | None = None, tracking: Tracking | None = None,
                  finals: Finals | None = None) -> tuple[dict[str, list[TrialRecord]], dict[str, list[FinalRecord]]]:
    """Search `cells` (one resource shape, `shares_a_tuner`) in one Tuner, `parallel` cells at a time, each with
    its own search algorithm and scheduler as `search_one` gives it; with `finals`, each cell's final runs follow
    its search in the same Tuner (as many at once as fit). Returns each cell's trial records and final records
    (not yet stored). A restored experiment (`experiment`: name, restore) may hold cells searched before: only
    `cells` are returned."""
    resources = packed_resources(cells, joined_resources()[1])
    parts, schedulers, limits = {}, {}, []
    for cell in cells:
        limits.append(max_concurrency(resources, cell.search.max_concurrent_trials) or 0)
        space, scheduler, search_alg = search_parts(cell, limits[-1])
        scheduler.set_search_properties(cell.search.metric, cell.search.mode)
        parts[cell.cell_id] = (search_alg, {**cell.constants, RUNNER_KEY: runner_fields(cell, storage),
                                            CELL_KEY: cell.cell_id, **space}, cell.search.num_samples)
        schedulers[cell.cell_id] = scheduler
    t0 = time.time()
    name, restore = experiment or (shared_name(cells), False)
    metrics = {c.cell_id: c.search.metric for c in cells}
    metrics.update({FINAL_PREFIX + c.cell_id: test_metric(c) for c in cells})
    everything_that_fits = max_concurrency(resources, 0) or 0
    searcher = CellsSearch(parts, parallel, {c.cell_id: (c.search.metric, c.search.mode) for c in cells}, finals,
                           everything_that_fits)
    tuner = make_tuner(name, {}, resources, None, None, storage, trial_callback(name, sink, metrics),
                       verbose, searcher, CellsScheduler(schedulers), 1, restore,
                       (tracking.callback(cells),) if tracking else ())
    # Tune lets a search algorithm that is not its own generator have one trial waiting for resources at a time,
    # which runs a cell's trials one after another whenever the first ends before a second process starts
    pending = max(1, min(len(cells), parallel) * max(limits), everything_that_fits if finals else 0) \
        if all(limits) else 0
    with interrupt.tune_running(), _env("TUNE_MAX_PENDING_TRIALS_PG", str(pending) if pending else None):
        grid = tuner.fit()
    whole = time.time() - t0
    ended, spans = ended_trials(name), _SPANS.get(name, {})
    by_id = {c.cell_id: c for c in cells}
    out: dict[str, list[TrialRecord]] = {c.cell_id: [] for c in cells}
    final_runs: dict[str, list[FinalRecord]] = {c.cell_id: [] for c in cells}
    for result, trial in results_with_trials(grid):
        if JOB_KEY in trial.config:
            if finals is not None and trial.config[JOB_KEY][CELL_KEY] in by_id:
                record = finals.record(result, trial)
                final_runs[record.cell_id].append(record)
            continue
        cell = by_id.get(trial.config.get(CELL_KEY))
        if cell is not None:
            span = spans.get(cell.cell_id)
            out[cell.cell_id].append(trial_record(cell, result, span[1] - span[0] if span else whole, trial,
                                                  trial.trial_id in ended))
    return out, final_runs


class CellSearcher:
    """A Ray actor that runs cells' Tuners one after another. Several of them let cells search at once:
    Tune's driver side is not thread-safe, so each concurrent Tuner needs a process of its own. The driver
    passes a stop on as SIGUSR1, which a running Tuner takes as its own stop request."""

    def __init__(self, events: Any, env: dict[str, str]) -> None:
        self.events = events
        os.environ.update(env)  # the driver's data root and teachers folder
        interrupt.ignore_stop_requests()

    def pid(self) -> int:
        return os.getpid()

    def search(self, unit: list[tuple[int, Cell]], storage: str, verbose: bool, experiment: tuple[str, bool],
               tracking: Tracking | None = None, parallel: int = 1, finals: Finals | None = None
               ) -> list[Searched]:
        return search_unit(unit, storage, lambda i, *rest: self.events.put((i, *rest)), verbose, experiment,
                           tracking, parallel, finals)


Report = Callable[..., None]  # (cell index, status, value, trial seconds[, the seed of a final run])
Searched = tuple[int, Cell, list[TrialRecord], list[FinalRecord]]  # (index, cell, trials, final runs it ran)


def search_unit(unit: list[tuple[int, Cell]], storage: str, report: Report, verbose: bool,
                experiment: tuple[str, bool], tracking: Tracking | None = None, parallel: int = 1,
                finals: Finals | None = None) -> list[Searched]:
    """Search one unit of work: a cell with a Tuner of its own, or cells sharing one (more than one, or any
    cell that `shares_a_tuner`; with `finals` their final runs follow in it); returns (index, cell, trial
    records, final records) for each."""
    index = {cell.cell_id: i for i, cell in unit}

    def sink(config: dict[str, Any], status: str, value: float | None, seconds: float) -> None:
        if JOB_KEY in config:
            report(index[config[JOB_KEY][CELL_KEY]], status, value, seconds, config[JOB_KEY]["seed"])
        else:
            report(index[config[CELL_KEY]] if CELL_KEY in config else unit[0][0], status, value, seconds)

    if len(unit) == 1 and not shares_a_tuner(unit[0][1]):
        i, cell = unit[0]
        return [(i, cell, search_one(cell, storage, sink, verbose, experiment, tracking), [])]
    trials, final_runs = search_shared([cell for _, cell in unit], storage, sink, parallel, verbose, experiment,
                                       tracking, finals)
    return [(i, cell, trials[cell.cell_id], final_runs[cell.cell_id]) for i, cell in unit]


def search_units(todo: list[tuple[int, Cell]]) -> list[list[tuple[int, Cell]]]:
    """`todo` as units of work: the cells that share a Tuner, one unit per resource shape, then each other cell
    on its own, in the order of their first cell."""
    shared: dict[tuple, list[tuple[int, Cell]]] = {}
    units: list[list[tuple[int, Cell]]] = []
    for i, cell in todo:
        if shares_a_tuner(cell):
            key = astuple(cell.resources)
            if key not in shared:
                shared[key] = []
                units.append(shared[key])
            shared[key].append((i, cell))
        else:
            units.append([(i, cell)])
    return units


def claim_unit(claim: Claim, unit: list[tuple[int, Cell]]) -> tuple[str, bool]:
    """This run's experiment for a unit of work (see `search_units`), and whether to restore it."""
    cells = [cell for _, cell in unit]
    if len(cells) == 1 and not shares_a_tuner(cells[0]):
        return claim(search_name(cells[0]))
    return claim(shared_name(cells), tuple(c.cell_id for c in cells))


def search_cells(todo: list[tuple[int, Cell]], storage: str, progress: Progress, verbose: bool = False,
                 parallel: int = 2, claim: Claim = lambda name, cells=(): (name, False),
                 tracking: Tracking | None = None, finals: Finals | None = None) -> Iterator[Searched]:
    """Search `todo` (index, cell), `parallel` cells at a time; yields (index, cell, trial records, final
    records) as each unit of work ends (`search_units`: the cells sharing a Tuner end together; with `finals`
    their final runs follow each cell's search in that Tuner). `claim(name, cells)` is asked before each Tuner
    starts: it records the experiment as this run's, under a name no other run uses, and says whether the run
    started it before (then it is restored). After a stop no further Tuner starts.

    With several units at once, each runs in a CellSearcher on this node (so local storage paths hold) holding
    no CPU; its trials compete for the cluster like any others. One unit (or one cell at a time) runs its Tuner
    in this process instead (no actor to start).
    """
    import ray
    from ray.util.queue import Empty, Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cells = dict(todo)
    done = {i: 0 for i, _ in todo}
    finals_done = {i: 0 for i, _ in todo}

    def report(i: int, status: str, value: float | None, seconds: float, seed: int | None = None) -> None:
        cell = cells[i]
        if seed is not None:
            finals_done[i] += 1
            progress.trial_done(f"[final] {cell.label} seed {seed}", f"final {finals_done[i]}/{cell.final_seeds}",
                                status, test_metric(cell), value, seconds)
            return
        done[i] += 1
        progress.trial_done(progress.cell(i, cell.label), f"search {done[i]}/{cell.num_trials}",
                            status, cell.search.metric, value, seconds)

    units = search_units(todo)
    if min(parallel, len(todo)) <= 1 or len(units) == 1:  # the Tuner runs here, no actor to start
        for unit in units:
            if interrupt.requested():
                return
            yield from search_unit(unit, storage, report, verbose, claim_unit(claim, unit), tracking, parallel,
                                   finals)
        return
    events = Queue(actor_options={"num_cpus": 0})
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(num_cpus=0, max_restarts=0)(CellSearcher)
    free = [actor.options(scheduling_strategy=here).remote(events, runtime_env_vars())
            for _ in range(min(parallel, len(units)))]
    searchers = list(free)
    waiting, running = list(units), {}
    stack = contextlib.ExitStack()
    stack.enter_context(interrupt.tune_running())
    for pid in ray.get([s.pid.remote() for s in searchers]):
        stack.enter_context(interrupt.forward_to(pid))

    def drain() -> None:
        while True:
            try:
                report(*events.get_nowait())
            except Empty:
                return

    try:
        while waiting or running:
            if interrupt.requested():
                waiting.clear()
            while waiting and free:
                unit = waiting.pop(0)
                searcher = free.pop()
                running[searcher.search.remote(unit, storage, verbose, claim_unit(claim, unit), tracking,
                                               parallel, finals)] = (unit, searcher)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.25)
            drain()
            for ref in ready:
                unit, searcher = running.pop(ref)
                free.append(searcher)
                try:
                    searched = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    raise e.as_instanceof_cause() from None
                except ray.exceptions.RayActorError as e:
                    labels = ", ".join(f"{cell.label} ({cell.cell_id})" for _, cell in unit)
                    raise RunFailure(f"cell {labels}: the process searching it died "
                                     f"({type(e).__name__}); the trials it finished are kept") from None
                drain()
                yield from searched
    finally:
        stack.close()
        for searcher in searchers:
            ray.kill(searcher)
        ray.kill(events.actor)


def best_trial(trials: list[TrialRecord], mode: str) -> TrialRecord | None:
    """The winner on validation (`best_of`: the earliest of equals); errored, diverged, stopped-early and
    non-finite trials never win."""
    winner = best_of(((t.trial_id, t.status, t.value) for t in trials), mode)
    return next((t for t in trials if t.trial_id == winner), None)


def cell_record(cell: Cell, trials: list[TrialRecord], best: TrialRecord | None,
                finals: list[FinalRecord]) -> CellRecord:
    """The per-cell summary: trial counts, trial-seconds, the winner and its configuration, the finals run."""
    counts = Counter(t.status for t in trials)
    searched = dict(
        **cell_fields(cell), metric=cell.search.metric, mode=cell.search.mode, trials=len(trials),
        trials_completed=counts["ok"], trials_stopped_early=counts["stopped_early"],
        trials_errored=counts["error"], trials_diverged=counts["diverged"], trials_lost=counts["lost"],
        trial_seconds=sum(t.trial_seconds or 0.0 for t in trials),
        gpus_per_trial=cell.resources.gpus_per_trial * cell.resources.workers_per_trial,
        search_seconds=trials[0].search_seconds if trials else 0.0,
        space=space_to_data(cell.space), search=asdict(cell.search), resources=asdict(cell.resources),
        final_seeds=cell.final_seeds)
    if best is None:
        errors = [t.error for t in trials if t.error]
        return CellRecord(**searched, status="no_winner", finals=0,
                          reason=errors[0] if errors else "every trial diverged or was stopped")
    return CellRecord(**searched, status="ok", best_value=best.value, best_config=dict(best.config),
                      best_trial_id=best.trial_id, finals=len(finals))


def describe(config: dict[str, Any], cell: Cell) -> str:
    """The searched hyperparameters of a configuration, e.g. `lr=0.05, dropout=0.1`."""
    searched = [k for k, v in cell.space.items() if isinstance(v, Dist)]
    return ", ".join(f"{k}={config[k]:.3g}" if isinstance(config[k], float) else f"{k}={config[k]}"
                     for k in searched if k in config)
