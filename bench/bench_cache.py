"""Linear-probe speed-up of feature caching: the same 10-epoch probe with and without cached features.

With the whole backbone frozen and no augmentation the engine computes features once per split and
trains only the head; without the cache every epoch runs the frozen backbone forward again.
Prints both wall times, the speed-up (target: >= 5x) and both test accuracies (they must agree).
Usage: python bench/bench_cache.py [--backbone resnet20] [--epochs 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from harness.train.loop import fit
from harness.train.artifacts import pretrain, source_config
from harness.core.config import TrialConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet20")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        source, _ = pretrain(source_config("digits:0-4", args.backbone, epochs=3), out_dir=tmp)
        print(f"source {args.backbone} on digits:0-4, 3 epochs: {time.perf_counter() - t0:.1f}s")
        config = TrialConfig(dataset="digits:5-9", backbone=args.backbone, weights=f"checkpoint:{source}",
                             method="linear_probe", lr=0.5, epochs=args.epochs, batch_size=64, evaluate_test=True)
        runs = {}
        for cached in (False, True):
            t0 = time.perf_counter()
            summary = fit(config, cache_features=cached).summary
            runs[cached] = (time.perf_counter() - t0, summary)
    (t_plain, s_plain), (t_cache, s_cache) = runs[False], runs[True]
    print(f"linear probe, {args.backbone}, digits:5-9 ({s_plain['data']['train']} train images), "
          f"{args.epochs} epochs, {torch.get_num_threads()} threads")
    print(f"  uncached: {t_plain:7.2f}s  test accuracy {s_plain['test']['accuracy']:.4f}")
    print(f"  cached:   {t_cache:7.2f}s  test accuracy {s_cache['test']['accuracy']:.4f}")
    print(f"  speed-up: {t_plain / t_cache:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
