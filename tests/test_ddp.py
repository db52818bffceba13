"""DDP correctness of multi-worker runs: real Ray Train workers (gloo on CPU) running the harness's loop."""

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")
from ray import cloudpickle  # noqa: E402

from harness.core.config import TrialConfig  # noqa: E402
from harness.data.bundle import Split  # noqa: E402
from harness.study.trial import torch_backend, worker_hooks  # noqa: E402
from harness.tasks.base import TASKS  # noqa: E402
from harness.train.loop import Hooks, fit, train_loader  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the worker functions below travel to Ray's workers


@pytest.fixture(scope="module")
def ray_two_cpus():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def run_workers(fn, config: dict, tmp_path: Path, workers: int = 2) -> list[dict]:
    """Run `fn` on `workers` Ray Train workers; each writes rank<r>.json into tmp_path; returns them by rank."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    TorchTrainer(fn, train_loop_config={**config, "out": str(tmp_path)},
                 scaling_config=ray.train.ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 0.9}),
                 torch_config=TorchConfig(backend=torch_backend(0)),
                 run_config=ray.train.RunConfig(storage_path=str(tmp_path / "train"), name="ddp")).fit()
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(workers)]


def shard_worker(cfg: dict) -> None:
    torch.set_num_threads(1)
    hooks = worker_hooks()
    n = cfg["images"]
    split = Split(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n))
    config = TrialConfig.from_dict({"batch_size": cfg["batch_size"], "seed": cfg["seed"]})
    loader = train_loader(config, split, TASKS.get("classification"), torch.Generator(), hooks)
    epochs = []
    for epoch in (1, 2):
        loader.sampler.set_epoch(epoch)
        epochs.append([[int(i) for i in y] for _, y in loader])
    Path(cfg["out"], f"rank{hooks.rank}.json").write_text(json.dumps({"epochs": epochs, "world": hooks.world_size}))


def fit_worker(cfg: dict) -> None:
    torch.set_num_threads(1)
    hooks = worker_hooks()
    result = fit(TrialConfig.from_dict(cfg["trial"]), hooks=hooks)
    state = result.model.state_dict()
    digest = hashlib.sha256(b"".join(state[k].detach().cpu().numpy().tobytes() for k in sorted(state))).hexdigest()
    s = result.summary
    Path(cfg["out"], f"rank{hooks.rank}.json").write_text(json.dumps(
        {"digest": digest, "val": s["val"]["accuracy"], "test": s["test"]["accuracy"], "data": s["data"],
         "workers": s["cost"]["workers"], "history": [h.get("val_accuracy") for h in s["history"]]}))


def test_backend_is_nccl_between_gpus_and_gloo_on_cpus():
    assert torch_backend(1) == "nccl" and torch_backend(0.5) == "nccl" and torch_backend(0) == "gloo"


def test_each_worker_sees_a_distinct_shard_of_every_epoch(ray_two_cpus, tmp_path):
    ranks = run_workers(shard_worker, {"images": 101, "batch_size": 16, "seed": 3}, tmp_path)
    assert [r["world"] for r in ranks] == [2, 2]
    for epoch in range(2):
        shards = [[i for batch in r["epochs"][epoch] for i in batch] for r in ranks]
        assert all(len(b) == 8 for r in ranks for b in r["epochs"][epoch][:-1])  # global batch 16 = 2 x 8
        assert len(shards[0]) == len(shards[1]) == 50  # 101 // 2: one image left out, none seen twice
        assert not set(shards[0]) & set(shards[1]) and len(set(shards[0]) | set(shards[1])) == 100
    assert ranks[0]["epochs"][0] != ranks[0]["epochs"][1]  # reshuffled every epoch
    other = run_workers(shard_worker, {"images": 101, "batch_size": 16, "seed": 4}, tmp_path / "s4")
    assert other[0]["epochs"][0] != ranks[0]["epochs"][0]  # the run's seed, not a fixed sampler seed, shuffles


def test_two_workers_stay_identical_score_whole_splits_and_match_one_worker(ray_two_cpus, tmp_path):
    trial = {"dataset": "digits:0-4", "backbone": "resnet8", "method": "scratch", "epochs": 3, "batch_size": 32,
             "lr": 0.05, "seed": 1, "evaluate_test": True}
    ranks = run_workers(fit_worker, {"trial": trial}, tmp_path)
    assert ranks[0]["digest"] == ranks[1]["digest"]  # the same weights and BatchNorm statistics on every worker
    assert ranks[0]["history"] == ranks[1]["history"] and ranks[0]["workers"] == 2
    single = fit(TrialConfig.from_dict(trial), hooks=Hooks())
    # validation and test are scored over the whole splits, not per shard
    assert ranks[0]["data"]["val"] == single.summary["data"]["val"]
    assert ranks[0]["data"]["test"] == single.summary["data"]["test"]
    # the same global batch, seed and schedule: two workers learn what one does, within 5 points of accuracy
    assert abs(ranks[0]["val"] - single.summary["val"]["accuracy"]) < 0.05
    assert abs(ranks[0]["test"] - single.summary["test"]["accuracy"]) < 0.05
    assert ranks[0]["test"] > 0.8
