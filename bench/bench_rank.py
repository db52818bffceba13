"""Cost of transferability estimation against training: scoring five candidate source networks on a 10-class
target (`harness rank`: training features through each frozen network, then LogME, LEEP, NCE, H-score and GBC)
against one linear-probe search cell on the same target (Ray Tune, the quick suite's budget).

Prints both wall times and their ratio (target: at most 0.1), the estimators' share of the scoring, the
precision of the feature pass (`harness rank`'s default `auto`: bfloat16 on a CPU that runs it natively), and the
scoring's CPU-seconds (far from threads x wall means other work held the cores, and the ratio with it).
Four sources are pretrained briefly first (not timed); the fifth candidate is a randomly initialised network.
Both sides get the whole machine as `harness rank` and `harness run` would: scoring with torch's default threads
(`--threads 1` pins one, the CPU a search trial gets), the cell on a local Ray cluster of every core.
Usage: python bench/bench_rank.py [--target digits] [--threads 0] [--precision auto] [--workers 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="digits")
    p.add_argument("--backbone", default="resnet8")
    p.add_argument("--threads", type=int, default=0, help="CPU threads of the scoring (0: the libraries' default)")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"), help="the feature pass")
    p.add_argument("--workers", type=int, default=0, help="candidates extracted at once (`harness rank --workers`)")
    args = p.parse_args()
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)

    import ray
    import torch

    from harness.study.estimates import rank
    from harness.study.search import search_one
    from harness.study.suite import cells, suite_from_dict
    from harness.train.artifacts import pretrain, source_config

    with tempfile.TemporaryDirectory() as tmp:
        sources = [pretrain(source_config(spec, args.backbone, epochs=3), out_dir=tmp)[0]
                   for spec in ("digits:0-4", "digits:0-2", "digits:0-1", "shapes?per_class=50")]
        entries = [f"checkpoint:{s}" for s in sources] + [f"{args.backbone}=none"]

        t0, c0 = time.perf_counter(), time.process_time()
        records = rank(args.target, entries, args.backbone, precision=args.precision, workers=args.workers)
        scoring, scoring_cpu = time.perf_counter() - t0, time.process_time() - c0
        estimators = sum(sum(r.seconds.values()) for r in records)

        suite = suite_from_dict({
            "name": "bench", "datasets": [args.target], "methods": ["linear_probe"],
            "backbones": [{"name": args.backbone, "weights": f"checkpoint:{sources[0]}"}],
            "search": {"num_samples": 4, "scheduler": "asha", "max_concurrent_trials": 1},
            "resources": {"cpus_per_trial": 1}}, "bench")
        (cell,) = cells(suite)
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            t0 = time.perf_counter()
            trials = search_one(cell, str(Path(tmp) / "tune"), lambda *a: None)
            search = time.perf_counter() - t0
        finally:
            ray.shutdown()

    print(f"target {args.target} ({records[0].images} training images, 10 classes), {args.backbone}, "
          f"{torch.get_num_threads()} threads, {args.workers or 'default'} workers, {records[0].precision} features, {os.cpu_count()} cores")
    print(f"  scoring 5 candidates:           {scoring:7.2f}s  (features {scoring - estimators:.2f}s, "
          f"5 estimators {estimators:.2f}s; {scoring_cpu:.2f} CPU-seconds)")
    print(f"  one linear-probe search cell:   {search:7.2f}s  ({len(trials)} trials, "
          f"{sum(t.trial_seconds for t in trials):.1f} trial-seconds)")
    print(f"  ratio: {scoring / search:.3f} (target <= 0.1)")


if __name__ == "__main__":
    main()
