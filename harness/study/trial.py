"""What runs inside a Ray Tune trial: one TrialConfig through the engine, in the trial's own process or over
the workers of a Ray Train `TorchTrainer` (DDP) when a trial has more than one worker.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Callable

from harness.core.jsonio import dumps
from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.data.root import use_data_root, use_teachers_dir
from harness.study.suite import Resources

if TYPE_CHECKING:
    from harness.train.loop import Hooks

RUNNER_KEY = "_runner"
TRIAL_FUNCTION_CPU = 0.01  # what a multi-worker trial's own function holds; its workers' share is reduced by it
SCHEDULE_TIMEOUT_ENV = "HARNESS_SCHEDULE_TIMEOUT_S"
DEFAULT_SCHEDULE_TIMEOUT_S = 600.0
CHECKPOINT_AFTER_ENV = "HARNESS_CHECKPOINT_AFTER_S"
DEFAULT_CHECKPOINT_AFTER_S = 60.0
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
JOB_KEY = "_job"
CELL_KEY = "_cell"  # a packed final run names its cell
STATE_FILE = "state.pt"
# what Ray raises when a process, an actor or a node is gone: Tune retries such a trial (FailureConfig)
INFRASTRUCTURE_ERRORS = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError",
                         "NodeDiedError", "LocalRayletDiedError", "OwnerDiedError", "ObjectLostError",
                         "RaySystemError", "PreemptionError", "ActorUnschedulableError")


class _DeferLast:
    """Forward per-epoch rows at once; hold the last one so it can carry the run's summary. Every row carries
    the searched `metric` (NaN where the loop had none), so Tune never refuses a row."""

    def __init__(self, send: Callable[[dict[str, Any]], None], metric: str = "",
                 extra: dict[str, Any] | None = None) -> None:
        self.send, self.last, self.metric, self.extra = send, None, metric, extra or {}

    def _full(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**({self.metric: math.nan} if self.metric else {}), **row, **self.extra}

    def __call__(self, row: dict[str, Any]) -> None:
        if row.get("status") == "running":
            self.send(self._full(row))
        else:
            self.last = row

    def finish(self, summary: dict[str, Any]) -> None:
        row = dict(self.last or {"epoch": 0, "status": summary["status"], "val_accuracy": float("nan")})
        row.update({f"test_{k}": v for k, v in (summary.get("test") or {}).items() if isinstance(v, (int, float))})
        row["summary"] = dumps(summary)
        self.send(self._full(row))

    def fail(self, error: BaseException) -> None:
        """Report a deterministic error as the trial's last row: it ends once, and is not retried."""
        epoch = (self.last or {}).get("epoch", 0)
        self.send(self._full({"epoch": epoch, "status": "error", "error": error_message(error)}))


PLACEMENT_KEYS = ("node_ip", "hostname", "node_id", "accelerator", "devices")


def placement() -> dict[str, Any]:
    """Where this process runs: the node's IP, hostname and Ray node id, and the accelerator it trains on (the
    GPU model and how many GPUs it sees, or `cpu` and its CPU threads). Every row a trial reports carries it."""
    import socket

    import ray
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {"node_ip": ray.util.get_node_ip_address(), "hostname": socket.gethostname(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "accelerator": torch.cuda.get_device_name(0) if gpus else "cpu",
            "devices": gpus or torch.get_num_threads()}


def placement_of(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The placement a trial's reported row carries (None for a trial that reported none)."""
    found = {k: (metrics or {})[k] for k in PLACEMENT_KEYS if k in (metrics or {})}
    return found or None


def error_message(error: BaseException) -> str:
    """`Type: last line of the message` of an error (at most 300 characters of it)."""
    lines = str(error).strip().splitlines() or [""]
    return f"{type(error).__name__}: {lines[-1][:300]}"


def is_infrastructure_failure(error: BaseException) -> bool:
    """Whether `error` (or what caused it, or a failed Ray Train worker's error) is a lost process, actor or
    node rather than an error of the trial's own code."""
    seen, todo = set(), [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if any(c.__name__ in INFRASTRUCTURE_ERRORS for c in type(e).__mro__):
            return True
        todo += [e.__cause__, e.__context__, getattr(e, "controller_failure", None),
                 *getattr(e, "worker_failures", {}).values()]
    return False


class TuneCheckpoints:
    """A trial's mid-run state kept as Tune checkpoints: saved with the epoch's report once the trial has run
    `after_s` seconds, found again when Tune restarts the trial (a retry after a lost process, or a resume)."""

    def __init__(self, after_s: float) -> None:
        self.after_s, self.pending = after_s, None

    def load(self) -> dict[str, Any] | None:
        import torch
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as d:
            return torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)

    def due(self, elapsed: float) -> bool:
        return elapsed >= self.after_s

    def save(self, state: dict[str, Any]) -> None:
        self.pending = state

    def report(self, row: dict[str, Any]) -> None:
        """tune.report the row, with the state saved since the last report as its checkpoint."""
        import torch
        from ray import tune

        state, self.pending = self.pending, None
        if state is None:
            tune.report(row)
            return
        with tempfile.TemporaryDirectory() as d:
            torch.save(state, Path(d) / STATE_FILE)
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(d))


def unpack(config: dict[str, Any]) -> dict[str, Any]:
    """A search trial's config is the trial; a packed final run carries its whole config under JOB_KEY."""
    return dict(config[JOB_KEY]) if JOB_KEY in config else dict(config)


def tune_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one TrialConfig, in this process or over a TorchTrainer's workers.
    A deterministic error is reported as the trial's last row (status error); a lost process, actor or node
    is raised, so that Tune retries the trial."""
    from ray import tune

    from harness.study.clients import ray_clients
    from harness.train.loop import Hooks, train_loop

    config = unpack(config)
    runner = config.pop(RUNNER_KEY)
    config.pop(CELL_KEY, None)
    checkpoints = TuneCheckpoints(runner.get("checkpoint_after_s", DEFAULT_CHECKPOINT_AFTER_S))
    reporter = _DeferLast(checkpoints.report, runner.get("metric", ""))
    try:
        trial_config = TrialConfig.from_dict(config)
        use_teachers_dir(runner.get("teachers"))
        use_data_root(runner.get("data_root"))
        if runner["workers"] <= 1:
            import torch

            torch.set_num_threads(max(1, int(runner["cpus"])))
            reporter.extra = placement()
            hooks = None
            if runner.get("client_parallelism") == "ray":
                hooks = Hooks(clients=ray_clients(trial_config, runner["cpus"], runner["gpus"]))
            reporter.finish(train_loop(trial_config, reporter=reporter, hooks=hooks,
                                       validate_every_epoch=not runner.get("final"), checkpoints=checkpoints))
            return
        _fit_torch_trainer(trial_config, runner, tune.get_context().get_trial_id())
    except Exception as e:  # noqa: BLE001 - a lost process is re-raised; every other error is the trial's outcome
        if is_infrastructure_failure(e):
            raise
        reporter.fail(e)


def checkpoint_after_s() -> float:
    """How long a single-worker trial runs before it checkpoints after every epoch ($HARNESS_CHECKPOINT_AFTER_S)."""
    return float(os.environ.get(CHECKPOINT_AFTER_ENV) or DEFAULT_CHECKPOINT_AFTER_S)


def worker_resources(runner: dict[str, Any]) -> dict[str, float]:
    """Each Ray Train worker's resources: the trial's CPUs per worker less an equal part of what the trial
    function itself holds, so that a trial needs exactly workers x cpus_per_trial CPUs in all."""
    cpus = runner["cpus"] - TRIAL_FUNCTION_CPU / runner["workers"]
    return {"CPU": round(cpus, 6), **({"GPU": runner["gpus"]} if runner["gpus"] else {})}


def trials_that_fit(resources: Resources, configured: int, cpus: float, gpus: float, where: str = "the cluster") -> int | None:
    """How many trials of `resources` run at once on `cpus` and `gpus`; refuses a trial that can never fit
    (None: as many as Tune schedules)."""
    n = resources.workers_per_trial
    need_cpu, need_gpu = n * resources.cpus_per_trial, n * resources.gpus_per_trial
    if n > 1 and resources.cpus_per_trial <= TRIAL_FUNCTION_CPU / n:
        raise ConfigError(f"resources.cpus_per_trial={resources.cpus_per_trial:g}: a multi-worker trial's function "
                          f"holds {TRIAL_FUNCTION_CPU:g} CPU out of its workers' share; give more than "
                          f"{TRIAL_FUNCTION_CPU / n:g} per worker")
    if need_cpu > cpus:
        raise ConfigError(f"resources: a trial needs {need_cpu:g} CPUs (workers_per_trial={n} x cpus_per_trial="
                          f"{resources.cpus_per_trial:g}) but {where} has {cpus:g}")
    if need_gpu > gpus:
        raise ConfigError(f"resources: a trial needs {need_gpu:g} GPUs (workers_per_trial={n} x gpus_per_trial="
                          f"{resources.gpus_per_trial:g}) but {where} has {gpus:g}")
    count = int(cpus // need_cpu)
    if need_gpu:
        count = min(count, int(gpus // need_gpu))
    count = max(1, count)
    return min(configured, count) if configured else (count if n > 1 else None)


def schedule_timeout_s() -> float:
    """How long a multi-worker trial waits for its workers' resources before it fails with a message."""
    return float(os.environ.get(SCHEDULE_TIMEOUT_ENV) or DEFAULT_SCHEDULE_TIMEOUT_S)


def _fit_torch_trainer(config: TrialConfig, runner: dict[str, Any], trial_id: str) -> None:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    timeout = runner.get("schedule_timeout_s", DEFAULT_SCHEDULE_TIMEOUT_S)
    os.environ[START_TIMEOUT_ENV] = str(timeout)  # read by the Train controller this process starts
    resources = worker_resources(runner)
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"trial": config.to_dict(), "cpus": runner["cpus"], "final": runner.get("final", False),
                           "teachers": runner.get("teachers"), "data_root": runner.get("data_root"),
                           "metric": runner.get("metric", "")},
        scaling_config=ray.train.ScalingConfig(num_workers=runner["workers"], use_gpu=runner["gpus"] > 0,
                                               resources_per_worker=resources),
        torch_config=TorchConfig(backend=torch_backend(runner["gpus"])),
        run_config=ray.train.RunConfig(name=f"train-{trial_id}", storage_path=runner["storage"],
                                       callbacks=[TuneReportCallback(), *_placement_group_recorder(trial_id)],
                                       failure_config=ray.train.FailureConfig(max_failures=0,
                                                                              controller_failure_limit=0)),
    )
    try:
        trainer.fit()
    except Exception as e:  # noqa: BLE001 - only the start-up timeout is translated; the rest re-raised
        failure = getattr(e, "controller_failure", e)
        if type(failure).__name__ != "WorkerGroupStartupTimeoutError":
            raise
        import ray

        raise RuntimeError(f"the trial's {runner['workers']} workers ({resources} each) could not be scheduled "
                           f"within {timeout:g} s ({SCHEDULE_TIMEOUT_ENV}); the cluster has "
                           f"{_schedulable(ray.cluster_resources())}, free {_schedulable(ray.available_resources())}"
                           ) from None


def _schedulable(resources: dict[str, float]) -> dict[str, float]:
    """CPUs, GPUs and custom resources, without Ray's per-placement-group and per-node bookkeeping entries."""
    internal = ("memory", "object_store_memory")
    return {k: round(v, 3) for k, v in sorted(resources.items())
            if "_group_" not in k and not k.startswith("node:") and k not in internal}


PG_KEY_PREFIX = b"harness/train-pg/"


def _placement_group_recorder(trial_id: str) -> list[Any]:
    """A Ray Train callback that records the placement group of the trial's workers under the trial's id.

    When Tune stops a multi-worker trial (ASHA) it kills the trial's process, and with it the Train
    controller, before the controller removes its workers' placement group; Train's own cleaner needs Ray's
    State API (the dashboard), so without it the group and its CPUs/GPUs would stay reserved and the next
    trial would wait forever. The record lets the Tune side release it (`release_train_resources`)."""
    try:
        from ray.train.v2._internal.execution.callback import WorkerGroupCallback
    except ImportError:  # another Ray Train version: nothing recorded, Train's own cleaner is all there is
        return []

    class RecordPlacementGroup(WorkerGroupCallback):
        def after_worker_group_start(self, worker_group: Any) -> None:
            from ray.experimental.internal_kv import _internal_kv_put

            pg = worker_group.get_worker_group_state().placement_group_handle.placement_group
            _internal_kv_put(PG_KEY_PREFIX + trial_id.encode(), pg.id.hex().encode(), overwrite=True)

    return [RecordPlacementGroup()]


def release_train_resources(trial_id: str) -> bool:
    """Remove the placement group a finished, stopped or failed multi-worker trial left; True if one was left."""
    from ray._raylet import PlacementGroupID
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_get
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    import ray

    if not ray.is_initialized():
        return False
    key = PG_KEY_PREFIX + trial_id.encode()
    value = _internal_kv_get(key)
    if value is None:
        return False
    _internal_kv_del(key)
    pg = PlacementGroup(PlacementGroupID(bytes.fromhex(value.decode())))
    if placement_group_table(pg).get("state") in (None, "REMOVED"):
        return False
    remove_placement_group(pg)
    return True


def worker_hooks() -> Hooks:
    """The loop's hooks inside a Ray Train worker: DDP-wrapped model (gradients averaged every step; BatchNorm
    normalises each worker's batch by its own statistics and DDP broadcasts rank 0's running statistics), the
    worker's device, and its rank among the workers (the training loader shards itself by it)."""
    import ray.train
    import ray.train.torch

    from harness.train.loop import Hooks

    context = ray.train.get_context()
    return Hooks(prepare_model=ray.train.torch.prepare_model, prepare_loader=ray.train.torch.prepare_data_loader,
                 device=ray.train.torch.get_device(), world_size=context.get_world_size(),
                 rank=context.get_world_rank(), sync_buffers=broadcast_buffers)


def broadcast_buffers(module: Any) -> None:
    """Give every worker rank 0's buffers (BatchNorm running statistics), which DDP only broadcasts at the start
    of a forward pass: after the last training step each worker holds its own."""
    import torch.distributed as dist

    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


def torch_backend(gpus_per_worker: float) -> str:
    """The collective backend of a multi-worker trial: NCCL between GPUs, gloo on CPUs."""
    return "nccl" if gpus_per_worker > 0 else "gloo"


def _train_worker(loop_config: dict[str, Any]) -> None:
    """Per-worker loop of a Ray Train run: the same engine, with DDP through prepare_model/prepare_data_loader."""
    import ray.train
    import ray.train.torch
    import torch

    from harness.train.loop import train_loop

    torch.set_num_threads(max(1, int(loop_config["cpus"])))
    use_teachers_dir(loop_config.get("teachers"))
    use_data_root(loop_config.get("data_root"))
    hooks = worker_hooks()
    reporter = _DeferLast(lambda row: ray.train.report(row), loop_config.get("metric", ""), placement())
    reporter.finish(train_loop(TrialConfig.from_dict(loop_config["trial"]), reporter=reporter, hooks=hooks,
                               validate_every_epoch=not loop_config["final"]))


def best_of(trials: Iterable[tuple[str, str, float | None]], mode: str) -> str | None:
    """The id of the winner among (trial id, status, value): the best finite value of a trial that ended ok, the
    earliest of equals (the smallest id: a cell's ids count up); errored, diverged and stopped-early trials
    never win. The shared Tuner (picking a cell's finals) and the records agree through this one rule."""
    sign = 1 if mode == "max" else -1
    ok = [(-sign * v, i) for i, status, v in trials if status == "ok" and v is not None and math.isfinite(v)]
    return min(ok)[1] if ok else None


def trial_status(last: Mapping[str, Any] | None, failed: bool = False) -> str:
    """How a trial ended, from its last reported row: error (it raised, or reported an error), diverged (a NaN
    loss), ok (it reported the run's summary, which only the last epoch does) or stopped_early (the scheduler
    ended it before that)."""
    last = last or {}
    if failed or last.get("status") == "error":
        return "error"
    if last.get("status") == "diverged":
        return "diverged"
    return "ok" if "summary" in last else "stopped_early"
