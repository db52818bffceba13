"""CPU cost of the detection-quick suite, measured run by run so that a busy machine does not distort it.

Pretrains the suite's source (resnet8 on shapes classification) and trains one run per method of the suite
(fcos_resnet8 on shapes_det?images=300&classes=4, 10 epochs, AdamW), each in this process with one torch
thread, and prints
each one's wall and CPU seconds, its training images/s and its test map50. CPU seconds hardly depend on
what else the machine runs; the suite's time on 2 idle cores is then about (source + 5 runs per cell x 4
cells) / 2 plus Ray's start-up: the figure to compare with the 8-minute target.
Usage: python bench/bench_detection.py [--epochs 10] [--images 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from harness.core.config import TrialConfig
from harness.train.artifacts import pretrain, source_config
from harness.train.loop import fit

RAY_START_S = 15  # starting a local Ray cluster and its first workers, measured on an idle 2-core machine


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """fn's result, wall seconds and CPU seconds of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--images", type=int, default=300)
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        config = source_config("shapes?per_class=100", "resnet8", epochs=30, augment="basic")
        (path, _), wall, cpu = timed(lambda: pretrain(config, out_dir=Path(tmp)))
        print(f"source  shapes?per_class=100 resnet8 30 epochs: {wall:6.1f} s wall  {cpu:6.1f} s CPU")
        total = cpu
        methods = (("scratch", {}), ("linear_probe", {}), ("finetune", {}), ("partial", {"freeze_depth": 2}))
        for method, extra in methods:
            weights = "none" if method == "scratch" else f"checkpoint:{path}"
            run = TrialConfig.from_dict({"dataset": f"shapes_det?images={args.images}&classes=4",
                                         "backbone": "fcos_resnet8", "optimizer": "adamw",
                                         "method": method, "weights": weights, "epochs": args.epochs,
                                         "batch_size": 8, "lr": 0.002, "augment": "basic", "evaluate_test": True,
                                         **extra})
            result, wall, cpu = timed(lambda run=run: fit(run))
            s = result.summary
            print(f"{method:<13} {wall:6.1f} s wall  {cpu:6.1f} s CPU  {s['cost']['train_images_per_s']:6.1f} "
                  f"images/s  test map50 {s['test']['map50']:.4f}")
            total += 5 * cpu  # 2 search trials + 3 finals per cell
        print(f"suite: {total:.0f} CPU-seconds; on 2 idle cores about {total / 2 + RAY_START_S:.0f} s "
              f"(target: 480 s)")


if __name__ == "__main__":
    main()
