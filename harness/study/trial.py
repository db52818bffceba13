"""What runs inside a Ray Tune trial: one TrialConfig through the engine, in the trial's own process or over
the workers of a Ray Train `TorchTrainer` (DDP) when a trial has more than one worker.
"""

from __future__ import annotations

from typing import Any, Callable

from harness.train.loop import Hooks, train_loop
from harness.core.jsonio import dumps
from harness.core.config import TrialConfig
from harness.data.root import use_teachers_dir

RUNNER_KEY = "_runner"
JOB_KEY = "_job"
CELL_KEY = "_cell"  # a packed final run names its cell


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


def unpack(config: dict[str, Any]) -> dict[str, Any]:
    """A search trial's config is the trial; a packed final run carries its whole config under JOB_KEY."""
    return dict(config[JOB_KEY]) if JOB_KEY in config else dict(config)


def tune_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one TrialConfig, in this process or over a TorchTrainer's workers."""
    from ray import tune

    config = unpack(config)
    runner = config.pop(RUNNER_KEY)
    config.pop(CELL_KEY, None)
    trial_config = TrialConfig.from_dict(config)
    use_teachers_dir(runner.get("teachers"))
    if runner["workers"] <= 1:
        import torch

        torch.set_num_threads(max(1, int(runner["cpus"])))
        reporter = _DeferLast(tune.report)
        reporter.finish(train_loop(trial_config, reporter=reporter, validate_every_epoch=not runner.get("final")))
        return
    _fit_torch_trainer(trial_config, runner, tune.get_context().get_trial_id())


def _fit_torch_trainer(config: TrialConfig, runner: dict[str, Any], trial_id: str) -> None:
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"trial": config.to_dict(), "cpus": runner["cpus"], "final": runner.get("final", False),
                           "teachers": runner.get("teachers")},
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
    use_teachers_dir(loop_config.get("teachers"))
    hooks = Hooks(prepare_model=ray.train.torch.prepare_model,
                  prepare_loader=ray.train.torch.prepare_data_loader,
                  device=ray.train.torch.get_device(),
                  world_size=ray.train.get_context().get_world_size())
    reporter = _DeferLast(lambda row: ray.train.report(row))
    reporter.finish(train_loop(TrialConfig.from_dict(loop_config["trial"]), reporter=reporter, hooks=hooks,
                               validate_every_epoch=not loop_config["final"]))
