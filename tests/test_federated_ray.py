"""Federated clients as Ray tasks (`client_parallelism: ray`) give the model the sequential default gives."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from harness.core.config import TrialConfig
from harness.train.loop import Hooks, fit

ray = pytest.importorskip("ray")

from harness.study.clients import ray_clients


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_clients_as_ray_tasks_give_the_sequential_model(ray_local):
    config = TrialConfig.from_dict({"dataset": "digits", "backbone": "resnet8", "samples_per_class": 10,
                                    "batch_size": 32, "method": "fedbn", "clients": 3, "alpha": 0.5,
                                    "client_fraction": 0.67, "epochs": 2, "dropout": 0.1, "seed": 5})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the trial and each client task (1 CPU each): the same float reduction order
    try:
        sequential = fit(config)
        parallel = fit(config, hooks=Hooks(clients=ray_clients(config, cpus=1, gpus=0)))
    finally:
        torch.set_num_threads(threads)
    assert_close(parallel.model.state_dict(), sequential.model.state_dict())
    assert parallel.summary["val"] == sequential.summary["val"]
    assert parallel.summary["cost"]["mb_total"] == sequential.summary["cost"]["mb_total"]
