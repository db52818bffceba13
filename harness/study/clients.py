"""Federated clients as Ray tasks (`client_parallelism: ray`): each sampled client of a round trains in a task
with its own resources, through the same `client_update` as the sequential default, so that both give the same
model for the same seeds (the server aggregates in client order either way)."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import torch

from harness.core.config import TrialConfig
from harness.data.root import runtime_env_vars
from harness.train.federation import ClientTask, ClientUpdate
from harness.train.loop import ClientRunner, Prepared, client_update, prepare

_PREPARED: dict[str, Prepared] = {}  # per worker process: the last run a client task prepared


def ray_clients(config: TrialConfig, cpus: float, gpus: float) -> ClientRunner:
    """A client runner for `Hooks.clients`: one Ray task per client of a round ({cpus} CPUs and {gpus} GPUs
    each), the global weights put in the object store once per round."""
    import ray

    values = config.replace(evaluate_test=False).to_dict()  # a client reads its training shard only
    task = ray.remote(_train_client).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)

    def run(tasks: list[ClientTask], current: dict[str, torch.Tensor]) -> list[ClientUpdate]:
        device = next(iter(current.values())).device
        state = ray.put(_moved(current, torch.device("cpu")))
        tasks = [dataclasses.replace(t, kept=_moved(t.kept, torch.device("cpu"))) for t in tasks]
        env = runtime_env_vars()  # the trial's data root and teachers folder
        updates = ray.get([task.remote(values, max(1, int(cpus)), state, t, env) for t in tasks])
        return [dataclasses.replace(u, sent=_moved(u.sent, device), kept=_moved(u.kept, device)) for u in updates]

    return run


def _train_client(values: dict[str, Any], threads: int, current: dict[str, torch.Tensor],
                  task: ClientTask, env: dict[str, str]) -> ClientUpdate:
    """One client's round in a Ray task: the run prepared once per worker process (same seed: same initial
    network and shards as the trial's), then the loop's `client_update`."""
    os.environ.update(env)
    torch.set_num_threads(threads)
    key = json.dumps(values, sort_keys=True)
    if key not in _PREPARED:
        _PREPARED.clear()
        _PREPARED[key] = prepare(TrialConfig.from_dict(values))
    update = client_update(_PREPARED[key], current, task)
    cpu = torch.device("cpu")  # what crosses processes is on the CPU; each side moves it to its own device
    return dataclasses.replace(update, sent=_moved(update.sent, cpu), kept=_moved(update.kept, cpu))


def _moved(state: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in state.items()}
