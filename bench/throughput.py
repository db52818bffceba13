"""Training throughput of the engine against a bare PyTorch loop, and trials per hour when trials are packed.

For each workload the same network, data, batch size and precision go through (a) a bare PyTorch loop written
here, (b) the engine of `harness train` (harness/train/loop.py) and (c) one Ray Tune trial of the harness; it
prints training images/s of each and the ratios b/a and c/a (targets: >= 0.95 and >= 0.90). Workloads:
resnet20 at 32 px on an in-memory dataset (digits), resnet18 and resnet50 at 224 px on a file-backed one
(real JPEG files written under /tmp in the EuroSAT layout and read through the catalogue's `eurosat`).
Throughput counts every training step of every epoch (loader start-up and the first steps included) for all
three alike; each of (a), (b) and (c) is run `--repeats` times in ABBA order (a b c, c b a, ...) and the best is
kept (shared machines); with two or more repeats it also prints every run and the medians of the paired ratios.

`--pack` measures packing instead: a small-data cell's trials one per device against packed (fractions of a
GPU capped by the memory estimate of harness/study/packing.py, or fractions of the CPUs where no GPU is
present), and prints trials per hour and, on a GPU, its utilisation.

Usage: python bench/throughput.py [--quick] [--device auto|cpu|cuda] [--workloads resnet20,resnet18,resnet50]
       [--skip-ray] [--repeats 2] [--threads N] [--photos N]
       python bench/throughput.py --pack [--quick] [--trials 8]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's tables off, as in harness runs

from typing import Self

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import datasets as tvd
from torchvision.transforms import v2

from harness.core.config import TrialConfig
from harness.data.files import loader_workers
from harness.data.root import use_data_root
from harness.models.weights import load_weights
from harness.train.inputs import load_data
from harness.train.loop import Hooks, amp_dtype, build_model, fit

DATA_ROOT = Path(tempfile.gettempdir()) / "harness-throughput-data"
CLASSES = 10


@dataclass(frozen=True)
class Workload:
    """One row of the table: a network at an input size on a dataset, with the batch size and epochs."""

    backbone: str
    dataset: str
    size: int
    files: bool
    batch: int
    epochs: int
    per_class: int = 0  # few-shot training subset (0: all)


def workloads(quick: bool, device: torch.device) -> dict[str, Workload]:
    gpu = device.type == "cuda"
    photos = "eurosat?size=224"
    return {
        "resnet20": Workload("resnet20", "digits", 32, False, 128 if gpu else 64, 2 if quick else 4,
                             30 if quick else 0),
        "resnet18": Workload("resnet18", photos, 224, True, 64 if gpu else 16, 2 if quick else 3),
        "resnet50": Workload("resnet50", photos, 224, True, 64 if gpu else 8, 2 if quick else 3),
    }


def write_photos(per_class: int) -> Path:
    """`per_class` JPEG photos (textured, 256 x 320) per class in the EuroSAT layout; reused when present."""
    root = DATA_ROOT / f"{per_class}"
    done = root / "done"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    for k in range(CLASSES):
        folder = root / "eurosat" / "2750" / f"class{k:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            base = rng.integers(0, 256, (8, 10, 3)).astype(np.uint8)
            image = Image.fromarray(base).resize((320, 256), Image.BICUBIC)
            noise = rng.integers(-20, 21, (256, 320, 3))
            pixels = np.clip(np.asarray(image, dtype=np.int64) + noise + 10 * k, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"class{k:02d}_{n}.jpg", quality=90)
    done.write_text("ok")
    return root


def config_of(w: Workload) -> TrialConfig:
    return TrialConfig(dataset=w.dataset, backbone=w.backbone, method="scratch", batch_size=w.batch, epochs=w.epochs,
                       lr=0.01, warmup_epochs=0.0, augment="none", samples_per_class=w.per_class)


# ---------------------------------------------------------------- (a) the bare loop

def bare_loop(w: Workload, device: torch.device) -> float:
    """Images/s of a plain loop: tensors on the device (or an ImageFolder DataLoader), SGD, autocast on CUDA."""
    config = config_of(w)
    torch.manual_seed(0)
    weights = load_weights("none", w.backbone)
    bundle, prep = load_data(config, weights)
    model = build_model(config, bundle, weights, prep.image_size, prep).to(device)
    amp, cuda = amp_dtype(device), device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    mean = torch.tensor(prep.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, device=device).view(1, 3, 1, 1)
    n = len(bundle.train)
    if w.files:
        tf = v2.Compose([v2.PILToTensor(), v2.Resize(256, antialias=True), v2.CenterCrop(224)])
        folder = tvd.ImageFolder(str(DATA_ROOT / os.environ["BENCH_PER_CLASS"] / "eurosat" / "2750"), transform=tf)
        subset = torch.utils.data.Subset(folder, list(range(n)))
        workers = loader_workers()
        batches = torch.utils.data.DataLoader(subset, batch_size=w.batch, shuffle=True, num_workers=workers,
                                              persistent_workers=workers > 0, pin_memory=cuda)
    else:
        images, labels = bundle.train.images.to(device), bundle.train.labels.to(device)
        batches = None
    model.train()
    seconds, seen = 0.0, 0
    for _ in range(w.epochs):
        start = time.perf_counter()
        if batches is None:
            order = torch.randperm(n, device=device)
            epoch = ((images[order[i:i + w.batch]], labels[order[i:i + w.batch]]) for i in range(0, n, w.batch))
        else:
            epoch = iter(batches)
        for x, y in epoch:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            x = x.float().div_(255)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = (x - mean) / std
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(y)
        if cuda:
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
    return seen / seconds


# ---------------------------------------------------------------- (b) the engine, (c) a Ray Tune trial

def engine(w: Workload, device: torch.device) -> float:
    summary = fit(config_of(w), hooks=Hooks(device=device), validate_every_epoch=False).summary
    return summary["cost"]["train_images_per_s"]


def ray_trial(w: Workload, cpus: int, gpus: int) -> float:
    """One trial of the harness's Tune trainable (harness.study.trial.tune_trial) on a local Ray instance."""
    from ray import tune

    from harness.study.trial import RUNNER_KEY, tune_trial

    runner = {"workers": 1, "cpus": cpus, "gpus": gpus, "metric": "val_accuracy", "final": True,
              "data_root": os.environ.get("HARNESS_DATA")}
    with tempfile.TemporaryDirectory() as storage:
        tuner = tune.Tuner(tune.with_resources(tune_trial, {"cpu": cpus, "gpu": gpus}),
                           param_space={**config_of(w).to_dict(), RUNNER_KEY: runner},
                           run_config=tune.RunConfig(name="throughput", storage_path=storage, verbose=0))
        result = tuner.fit()[0]
    if "summary" not in result.metrics:
        raise SystemExit(f"the Ray trial failed: {result.metrics.get('error') or result.error}")
    return json.loads(result.metrics["summary"])["cost"]["train_images_per_s"]


def throughput(args: argparse.Namespace, device: torch.device) -> None:
    threads = torch.get_num_threads()
    per_class = args.photos or (6 if args.quick else 100)
    os.environ["BENCH_PER_CLASS"] = str(per_class)
    use_data_root(str(write_photos(per_class)))
    print(f"device: {describe(device)}; torch {torch.__version__}, {threads} threads, loader workers "
          f"{loader_workers()}; precision {amp_dtype(device) or 'float32'}; load average "
          f"{os.getloadavg()[0]:.1f}; Ray worker niceness {args.ray_nice if args.ray_nice is not None else 15}")
    chosen = workloads(args.quick, device)
    names = args.workloads.split(",")
    rows = []
    gpus = 1 if device.type == "cuda" else 0
    if not args.skip_ray:
        import ray

        if args.ray_nice is not None:  # Ray starts its workers at niceness 15: on a shared machine they lose
            os.environ["RAY_worker_niceness"] = str(args.ray_nice)  # CPU time to every other process's
        ray.init(num_cpus=threads, num_gpus=gpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    try:
        for name in names:
            w = chosen[name]
            kinds = {"a": lambda: bare_loop(w, device), "b": lambda: engine(w, device)}
            if not args.skip_ray:
                kinds["c"] = lambda: ray_trial(w, threads, gpus)
            runs: dict[str, list[float]] = {k: [] for k in kinds}
            for i in range(args.repeats):  # ABBA order: a drift of the machine's speed falls on all alike
                for k in list(kinds)[::1 if i % 2 == 0 else -1]:
                    runs[k].append(kinds[k]())
            a, b, c = (max(runs[k]) if k in runs else math.nan for k in "abc")
            if args.repeats > 1:
                shown = "; ".join(f"({k}) {' '.join(f'{x:.1f}' for x in v)}" for k, v in runs.items())
                medians = "  ".join(f"{k}/a {float(np.median([y / x for x, y in zip(runs['a'], runs[k], strict=True)])):.3f}"
                                    for k in runs if k != "a")
                print(f"  {name}: img/s of each run {shown}; median of the paired ratios {medians}", flush=True)
            rows.append((name, w, a, b, c))
            print(f"{name:9s} {w.size:3d}px {'files ' if w.files else 'memory'} batch {w.batch:3d} x {w.epochs} epochs: "
                  f"(a) bare {a:8.1f} img/s  (b) engine {b:8.1f}  (c) Ray trial {c:8.1f}  "
                  f"b/a {b / a:.3f}  c/a {c / a:.3f}", flush=True)
    finally:
        if not args.skip_ray:
            import ray

            ray.shutdown()
    worst_b = min(b / a for _, _, a, b, _ in rows)
    worst_c = min(c / a for _, _, a, _, c in rows)
    print(f"worst b/a {worst_b:.3f} (target >= 0.95), worst c/a {worst_c:.3f} (target >= 0.90)")


# ---------------------------------------------------------------- --pack: trials per hour

class GpuSampler:
    """Mean GPU utilisation (NVML, through torch.cuda.utilization) sampled every 0.2 s while it runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append(float(torch.cuda.utilization()))
            except Exception:  # noqa: BLE001 - no NVML: no figure
                return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else math.nan


def pack(args: argparse.Namespace, device: torch.device) -> None:
    """A small-data cell's trials one per device against packed, through the harness's own search (Tune)."""
    import ray

    from harness.study.packing import GPU_MARGIN, trials_per_gpu
    from harness.study.search import search_one
    from harness.study.suite import cells, load_suite
    from harness.train.memory import probe_memory

    cuda = device.type == "cuda"
    cpus = max(2, torch.get_num_threads())
    print(f"device: {describe(device)}; {cpus} CPUs for Ray")
    config = TrialConfig(dataset="digits:5-9", samples_per_class=20, backbone="resnet8", method="scratch",
                         epochs=2 if args.quick else 6, batch_size=32)
    estimate = probe_memory(config, device)
    parts = ", ".join(f"{k} {v / 2**20:.1f}" for k, v in estimate.parts.items())
    print(f"memory estimate of one trial ({config.backbone}, batch {config.batch_size}): "
          f"{estimate.bytes / 2**20:.0f} MiB ({estimate.source}: {parts} MiB)")
    for total in (80 * 2**30, 24 * 2**30):
        print(f"  on a {total / 2**30:.0f} GiB GPU with a {GPU_MARGIN:.0%} margin: "
              f"{trials_per_gpu(total, estimate.bytes)} such trials fit")
    if not cuda:
        print("GPU part: no GPU present: not measured; below, the same comparison on the CPUs (fractions of them)")
    settings = ({"one per GPU": ({"cpus_per_trial": 1, "gpus_per_trial": 1.0}, 0),
                 "packed, 0.25 GPU each": ({"cpus_per_trial": 1, "gpus_per_trial": 0.25}, 0)} if cuda else
                {"one at a time": ({"cpus_per_trial": cpus}, 1),
                 f"packed, {cpus} x 1 CPU": ({"cpus_per_trial": 1}, cpus)})
    ray.init(num_cpus=cpus, num_gpus=1 if cuda else 0, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    results = {}
    try:
        for label, (resources, at_once) in settings.items():
            suite = {"name": "pack", "datasets": [{"name": config.dataset, "samples_per_class": 20}],
                     "methods": ["scratch"], "backbones": [{"name": config.backbone, "weights": "none"}],
                     "search": {"num_samples": args.trials, "scheduler": "fifo", "max_concurrent_trials": at_once},
                     "resources": resources, "final_seeds": 1,
                     "overrides": {"epochs": config.epochs, "batch_size": config.batch_size}}
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "pack.yaml"
                path.write_text(json.dumps(suite))
                cell = cells(load_suite(str(path)))[0]
                t0 = time.perf_counter()
                with GpuSampler() if cuda else _Nothing() as sampler:
                    trials = search_one(cell, tmp, lambda *report: None)
                wall = time.perf_counter() - t0
            ok = sum(t.status == "ok" for t in trials)
            util = f", GPU utilisation {sampler.mean():.0f}%" if cuda else ""
            results[label] = ok / wall * 3600
            print(f"  {label:24s} {ok}/{len(trials)} trials in {wall:6.1f}s: {results[label]:7.0f} trials/hour{util}",
                  flush=True)
    finally:
        ray.shutdown()
    first, second = results.values()
    print(f"packed / one per device: {second / first:.2f}x trials per hour (target on a GPU: >= 2x)")


class _Nothing:
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB)"
    return f"CPU ({os.cpu_count()} cores: {platform_cpu()})"


def platform_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few images and epochs (a CPU check in minutes)")
    p.add_argument("--photos", type=int, default=0,
                   help="JPEG photos per class of the file-backed workloads (0: 6 with --quick, else 100); --quick's "
                        "6 give 3 steps an epoch, too few to measure a ratio to 5%%")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--workloads", default="resnet20,resnet18,resnet50")
    p.add_argument("--skip-ray", action="store_true", help="leave out (c), the Ray Tune trial")
    p.add_argument("--ray-nice", type=int, default=None, help="niceness of Ray's worker processes (Ray's default: "
                   "15; 0 gives the trial the driver's share of a CPU that other jobs share)")
    p.add_argument("--repeats", type=int, default=2, help="runs of (a), (b) and (c) each, best kept")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--pack", action="store_true", help="trials per hour, packed against one per device")
    p.add_argument("--trials", type=int, default=8, help="--pack: trials of the cell")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    (pack if args.pack else throughput)(args, device)


if __name__ == "__main__":
    main()
