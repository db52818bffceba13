"""The training loop: prepare, train epoch by epoch, evaluate, summarise. Knows nothing of Ray.

`fit(config)` is the one loop of the CLI, Ray Tune trials and Ray Train workers (`train_loop` returns its
summary alone); distributed runs pass `Hooks` that wrap the model and the loaders (DDP).

    prepare(config, hooks)        weights, data (loaded once), task, model, cached features, loader, optimiser,
                                  schedule, the method's objective
    train_epoch(prepared, epoch)  one pass over the training batches
    evaluate(prepared, split)     the task's metrics of one split
    summarise(prepared, ...)      the run's JSON-serialisable summary

A federated method (harness.methods.federated) runs the same loop with rounds for epochs: `train_round` has
each sampled client run `local_epochs` of `train_epoch` on its shard (`client_update`), then the server
aggregates (harness.train.federation).
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, RandomSampler, Sampler

from harness.core.config import TrialConfig
from harness.data.augment import BatchTransform, batch_mix, batch_transform
from harness.data.batches import TensorBatches
from harness.data.bundle import AnySplit, DatasetBundle, Split
from harness.data.files import FileSplit
from harness.data.preprocessing import Preprocessing
from harness.methods import METHODS
from harness.methods.objective import MethodContext, Objective, l1_penalty
from harness.models.staged import Classifier
from harness.models.classifiers import require_classifier
from harness.models.weights import LoadedWeights, build_backbone, load_weights
from harness.tasks import Task, task_of
from harness.train.checks import check_names
from harness.train.compiling import compile_model, compiled_graphs
from harness.train.cost import CostMeter
from harness.train.federation import ClientTask, ClientUpdate, Federation
from harness.train.inputs import load_data, predict
from harness.train.optim import cosine_with_warmup, make_optimizer, make_scheduler
from harness.train.placement import place_splits, sync_every

Reporter = Callable[[dict[str, Any]], None]
ClientRunner = Callable[[list[ClientTask], dict[str, torch.Tensor]], list[ClientUpdate]]


@dataclass
class Hooks:
    """How a distributed runner wraps the model and other loaders (identity when single-process), and which
    of `world_size` workers this process is. The training loader shards itself by `rank` (DistributedSampler
    seeded by the run's seed); `prepare_loader` is for loaders a method adds (e.g. an auxiliary task)."""

    prepare_model: Callable[[nn.Module], nn.Module] = lambda m: m
    prepare_loader: Callable[[DataLoader], DataLoader] = lambda d: d
    device: torch.device | None = None
    world_size: int = 1
    rank: int = 0
    sync_buffers: Callable[[nn.Module], None] = lambda m: None
    clients: ClientRunner | None = None  # where a federated run's clients train; None: one after another, here


class Checkpoints(Protocol):
    """Where a run keeps its state between epochs, so that a run restarted after its process died continues
    from its last saved epoch (in a Ray Tune trial: the trial's checkpoints)."""

    def load(self) -> dict[str, Any] | None:
        """The state to continue from (`training_state`), or None to start afresh."""

    def due(self, elapsed: float) -> bool:
        """Whether to save after an epoch, `elapsed` seconds into the run."""

    def save(self, state: dict[str, Any]) -> None:
        """Keep `state`; it goes with the epoch's report, which follows."""


@dataclass
class FitResult:
    """What a finished run leaves: its summary (JSON-serialisable) and the trained network."""

    summary: dict[str, Any]
    model: Classifier


@dataclass
class Prepared:
    """Everything a run's epochs need, built once by `prepare`."""

    config: TrialConfig
    hooks: Hooks
    device: torch.device
    amp: torch.dtype | None
    weights: LoadedWeights
    prep: Preprocessing
    bundle: DatasetBundle
    task: Task
    headline: str  # the bundle's headline metric
    model: Classifier
    cached: bool  # the frozen backbone's features computed once; only the head trains, on them
    inputs: dict[str, AnySplit]  # what `trained` sees per split: images, or cached features
    trained: nn.Module  # what the optimiser updates: the model, or its head alone on cached features
    transform: BatchTransform | None  # applied to every batch `trained` sees (None on cached features)
    net: nn.Module  # `trained` as the hooks wrap it (DDP), and torch.compile'd with `compile: true`
    loader: DataLoader | TensorBatches
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    objective: Objective
    federation: Federation | None = None  # the server's side of a federated method's run
    untrained: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # see `untrained_scores`


@dataclass(frozen=True)
class EpochResult:
    """One pass over the training batches: mean loss, images seen by all workers, seconds, whether it diverged."""

    train_loss: float
    images: int
    seconds: float
    diverged: bool
    compile_seconds: float = 0.0  # steps that compiled a graph (`compile: true`), left out of `seconds`


def prepare(config: TrialConfig, hooks: Hooks | None = None, log: Callable[[str], None] | None = None,
            cache_features: bool = True) -> Prepared:
    """Build a run: seed, weights, data (loaded once), task, model, input pipeline, cached features when the
    whole backbone is frozen and nothing augments the images, training loader, optimiser, schedule and the
    method's objective. The order is that of the random stream, so a config and seed give the same run."""
    hooks = hooks or Hooks()
    check_names(config)
    method = METHODS.get(config.method)
    generator = seed_everything(config.seed)
    device = hooks.device or pick_device()
    amp = amp_dtype(device)
    channels_last = device.type == "cuda"

    weights = load_weights(config.weights, config.backbone, any_network=method.any_source)
    bundle, prep = load_data(config, weights)
    task = task_of(bundle)
    headline = task.headline(bundle)
    model = build_model(config, bundle, weights, prep.image_size, prep).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    transform = (batch_transform(config, prep, bundle.flip, channels_last).to(device) if task.batch_transform
                 else None)  # a detector normalises and resizes its inputs itself
    mix = batch_mix(config, bundle.num_classes)

    splits = {"train": bundle.train, "val": bundle.val, **({"test": bundle.test} if config.evaluate_test else {})}
    splits = place_splits(splits, device)
    if config.decode_on_device:
        splits = {k: s.decoding_on(device) if isinstance(s, FileSplit) else s for k, s in splits.items()}
    cached = (cache_features and task.caches_features and model.frozen_stages == model.backbone.num_stages
              and config.augment == "none" and mix is None)
    if cached:
        inputs = {k: Split(predict(model.backbone, s, transform, device, amp, to_cpu=False), s.labels)
                  for k, s in splits.items()}
        trained, transform = model.head, None
    else:
        inputs, trained = splits, model

    loader = train_loader(config, inputs["train"], task, generator, hooks)
    ctx = MethodContext(config=config, model=model, trained=trained, bundle=bundle, task=task, prep=prep,
                        transform=transform, device=device, amp=amp, criterion=task.criterion(config.label_smoothing),
                        mix=mix, predict=lambda m, images, t: predict(m, images, t, device, amp),
                        prepare_loader=hooks.prepare_loader, log=log,
                        penalties=[p for p in (l1_penalty(trained, config.l1),) if p is not None])
    if method.initialise is not None:
        method.initialise(ctx, inputs["train"])
    net = hooks.prepare_model(trained)
    if config.compile:
        net = compile_model(net)
    optimizer = make_optimizer(config, trained)
    scheduler = make_scheduler(config, optimizer, len(loader))
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    objective = method.objective(ctx)
    federation = None
    if method.server is not None:
        Federation.check(config, task.name, hooks.world_size)
        federation = Federation(config, method.server(config), inputs["train"], trained, bundle.num_classes)
    prepared = Prepared(config=config, hooks=hooks, device=device, amp=amp, weights=weights, prep=prep, bundle=bundle,
                        task=task, headline=headline, model=model, cached=cached, inputs=inputs, trained=trained,
                        transform=transform, net=net, loader=loader, optimizer=optimizer, scheduler=scheduler,
                        scaler=scaler, objective=objective, federation=federation)
    if method.untrained_scores:
        prepared.untrained = untrained_scores(prepared)
    return prepared


def untrained_scores(p: Prepared) -> dict[str, dict[str, Any]]:
    """The scalar metrics of the network as built, before any training step, as `untrained_<metric>` per split:
    validation unless the run trains on it, test only in a run scored on test."""
    splits = [s for s, wanted in (("val", not p.config.train_on_val), ("test", p.config.evaluate_test)) if wanted]
    return {s: {f"untrained_{k}": v for k, v in evaluate(p, s).items() if not isinstance(v, (list, dict))}
            for s in splits}


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return the generator that shuffles the training batches."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision on CUDA (bfloat16 where supported, else float16); none on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def build_model(config: TrialConfig, bundle: DatasetBundle, weights: LoadedWeights, input_size: int = 0,
                prep: Preprocessing | None = None) -> Classifier:
    """Backbone with its weights, then the task's new head for the target classes (or the method's own
    network, or the task's whole network: a detector), with the method's frozen stages."""
    method = METHODS.get(config.method)
    task = task_of(bundle)
    if task.build is not None:
        model = task.build(config, weights, bundle.num_classes, prep)
        model.freeze(method.check(config, model.backbone.num_stages))
        return model
    network = weights.network or config.backbone
    backbone = build_backbone(network, weights)
    depth = method.check(config, backbone.num_stages)
    if method.build is not None:
        kept = ({"classifier": require_classifier(weights, network, backbone.feature_dim, config.weights,
                                                  config.method)} if method.source_classifier else {})
        model = method.build(config, backbone, bundle.num_classes, input_size or bundle.image_size, **kept)
    else:
        model = Classifier(backbone, head=task_of(bundle).head(backbone.feature_dim, bundle.num_classes, config.dropout))
    model.freeze(depth)
    return model


def train_loader(config: TrialConfig, split: AnySplit, task: Task, generator: torch.Generator,
                 hooks: Hooks | None = None) -> DataLoader:
    """The training split in shuffled batches, collated as the task says; a last batch of a single image is
    dropped (BatchNorm cannot train on it).

    One process: shuffled by the run's generator. N workers: `batch_size` is the global batch, so each worker
    takes batch_size // N images per step from its own 1/N of the epoch (a DistributedSampler seeded by the
    run's seed, reshuffled by `set_epoch`; the last len % N images of an epoch are left out so no image is
    seen twice)."""
    n = hooks.world_size if hooks else 1
    if n <= 1:
        if split.in_memory and task.collate is None:
            return tensor_batches(split, config.batch_size, RandomSampler(split.labels, generator=generator),
                                  len(split) % config.batch_size == 1, generator)
        return wrap(split, DataLoader(split.dataset(), batch_size=config.batch_size, shuffle=True,
                                      generator=generator, drop_last=len(split) % config.batch_size == 1,
                                      **{"collate_fn": task.collate, **split.loader_kwargs()}))
    from torch.utils.data.distributed import DistributedSampler

    batch = max(1, config.batch_size // n)
    dataset = split.dataset()
    sampler = DistributedSampler(dataset, num_replicas=n, rank=hooks.rank, shuffle=True, seed=config.seed,
                                 drop_last=True)
    if split.in_memory and task.collate is None:
        return tensor_batches(split, batch, sampler, len(sampler) % batch == 1, None)
    return wrap(split, DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=len(sampler) % batch == 1,
                                  **{"collate_fn": task.collate, **split.loader_kwargs()}))


def wrap(split: AnySplit, loader: DataLoader) -> DataLoader:
    """The loader as the split wants it read (a file split decoded on the device decodes each batch there)."""
    return split.wrap_loader(loader) if hasattr(split, "wrap_loader") else loader


def tensor_batches(split: Split, batch_size: int, sampler: Sampler, drop_last: bool,
                   generator: torch.Generator | None) -> TensorBatches:
    """An in-memory split's batches indexed where its images are (the GPU for a whole run, see placement)."""
    return TensorBatches(split.images, split.labels.to(split.images.device), batch_size, sampler, drop_last,
                         generator)


def train_epoch(p: Prepared, epoch: int, max_steps: int | None = None) -> EpochResult:
    """One pass over the training batches: per batch the objective's loss plus its weight penalties, one
    optimiser step and one schedule step; stops at the first non-finite loss, and a pass that leaves non-finite
    weights has diverged too. Nothing waits for the device within a step: the loss is summed where it is, and
    its divergence flag is read every `sync_every` steps (each step on the CPU, where reading costs nothing).
    With `compile: true` the steps that compiled a graph count as compile time, not training time. `max_steps`
    ends the pass early (a memory probe)."""
    if hasattr(p.loader, "sampler") and hasattr(p.loader.sampler, "set_epoch"):
        p.loader.sampler.set_epoch(epoch)
    p.net.train()
    every = sync_every(p.device)
    start = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64, device=p.device)
    nonfinite = torch.zeros((), dtype=torch.bool, device=p.device)
    batches, images, compiling = 0, 0, 0.0
    for x, y in p.loader:
        step_start, graphs = time.perf_counter(), compiled_graphs() if p.config.compile else 0
        x, y = x.to(p.device, non_blocking=True), y.to(p.device, non_blocking=True)
        if p.transform is not None:
            x = p.transform(x, train=True)
        with torch.autocast(p.device.type, dtype=p.amp, enabled=p.amp is not None):
            loss = p.objective(p.net, x, y)
        penalty = p.objective.penalty()
        if penalty is not None:
            loss = loss + penalty
        nonfinite |= ~torch.isfinite(loss.detach())
        if (batches + 1) % every == 0 and nonfinite:
            return EpochResult(float("nan"), images, time.perf_counter() - start - compiling, diverged=True,
                               compile_seconds=compiling)
        p.optimizer.zero_grad(set_to_none=True)
        p.scaler.scale(loss).backward()
        p.scaler.step(p.optimizer)
        p.scaler.update()
        p.scheduler.step()
        loss_sum += loss.detach()
        batches += 1
        images += len(y) * p.hooks.world_size
        if p.config.compile and compiled_graphs() != graphs:
            compiling += time.perf_counter() - step_start
        if batches == max_steps:
            break
    finite = not nonfinite and all(bool(torch.isfinite(w).all()) for w in p.trained.parameters())
    return EpochResult(loss_sum.item() / max(1, batches) if finite else float("nan"), images,
                       time.perf_counter() - start - compiling, diverged=not finite, compile_seconds=compiling)


def evaluate(p: Prepared, split: str) -> dict[str, Any]:
    """The task's metrics of the trained network on one split ("val" or "test"), over the whole split (every
    worker of a multi-worker run scores the same network on all of it, after taking rank 0's buffers)."""
    p.hooks.sync_buffers(p.trained)
    outputs, targets = p.task.gather(lambda images: predict(p.trained, images, p.transform, p.device, p.amp),
                                     p.inputs[split])
    metrics = p.task.metrics(outputs, targets, p.bundle.num_classes)
    if p.federation is not None:
        metrics.update(p.federation.client_metrics(outputs, targets))
    return metrics


def summarise(p: Prepared, status: str, epochs_completed: int, val: dict[str, Any] | None,
              test: dict[str, Any] | None,
              history: list[dict[str, Any]], cost: CostMeter) -> dict[str, Any]:
    """The run's summary: config, status, metrics, curve, data, network and cost, plus the method's facts."""
    config, model, prep = p.config, p.model, p.prep
    summary = {
        "config": config.to_dict(),
        "config_hash": config.identity(),
        "status": status,
        "epochs_completed": epochs_completed,
        "val": val,
        "test": test,
        "history": history,
        "data": p.bundle.summary(),
        "model": {"backbone": config.backbone, "weights": config.weights, "num_stages": model.backbone.num_stages,
                  "frozen_stages": model.frozen_stages, "feature_dim": model.backbone.feature_dim,
                  "cached_features": p.cached, "input_size": prep.image_size, "normalisation": prep.source,
                  "mean": list(prep.mean), "std": list(prep.std),
                  "weights_meta": _plain(p.weights.meta)},
        "cost": cost.summary(model, p.device, p.amp, p.hooks.world_size),
    }
    if p.weights.network not in (None, config.backbone):
        summary["model"]["source_backbone"] = p.weights.network
    # the network transferred from and the one trained; a method with other networks (a teacher, a new target
    # network) names them in its facts
    summary["model"].update(source_network=None if config.weights == "none" else p.weights.network or config.backbone,
                            target_network=config.backbone)
    summary["model"].update(model.facts)
    for split, scores in p.untrained.items():
        if summary[split] is not None:
            summary[split] = {**summary[split], **scores}
    for section, facts in p.objective.extras(status).items():
        summary[section].update(facts)
    for section, facts in (p.federation.facts(history, p.headline) if p.federation else {}).items():
        summary[section].update(facts)
    return summary


def _plain(meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly scalar facts of a weights' metadata (e.g. ImageNet accuracy, parameters)."""
    keep = {}
    for k, v in meta.items():
        if isinstance(v, (str, int, float, bool)):
            keep[k] = v
        elif isinstance(v, dict) and all(isinstance(x, (str, int, float, bool, dict)) for x in v.values()):
            keep[k] = v
    return keep


def fit(config: TrialConfig, reporter: Reporter | None = None, hooks: Hooks | None = None,
        log: Callable[[str], None] | None = None, cache_features: bool = True,
        validate_every_epoch: bool = True, checkpoints: Checkpoints | None = None) -> FitResult:
    """Train one configuration; report validation metrics every epoch; evaluate test only when asked.

    With the whole backbone frozen and no augmentation or batch mixing, features are computed once per split
    and only the head trains on them (`cache_features=False` turns that off; results are the same).
    `validate_every_epoch=False` validates (and reports) after the last epoch only: a final run needs no
    curve for a scheduler to act on, and on small data validation costs more than training. With `checkpoints`
    the run saves its state after the epochs they say are due and continues from the one they hold. A run that
    trains on the validation split (`train_on_val`) is never scored on it: its record carries no in-sample "val"
    score."""
    cost = CostMeter()
    p = prepare(config, hooks, log, cache_features)
    status, epochs_completed, val, history = "ok", 0, {}, []
    saved = checkpoints.load() if checkpoints else None
    if saved is not None:
        epochs_completed, val, history = restore_state(p, cost, saved)
    validates = not config.train_on_val
    step = train_round if p.federation is not None else train_epoch
    validate_every_epoch = validate_every_epoch or p.federation is not None  # rounds to 90% need the curve
    for epoch in range(epochs_completed + 1, config.epochs + 1):
        result = step(p, epoch)
        cost.add(result.seconds, result.images, result.compile_seconds)
        if result.diverged:
            status = "diverged"
            history.append(diverged_row(p, epoch, val))
            if reporter:
                reporter(history[-1])
            break
        epochs_completed = epoch
        last, row = epoch == config.epochs, None
        if last or validate_every_epoch:
            val = evaluate(p, "val") if validates else {}
            row = epoch_row(p, epoch, result, val, cost.elapsed())
            history.append(row)
            if log:
                log(progress_line(p, row))
        if checkpoints and not last and checkpoints.due(cost.elapsed()):
            checkpoints.save(training_state(p, epoch, val, history, cost))
            row = row or {"epoch": epoch, "status": "running", "train_loss": result.train_loss}
        if reporter and row:
            reporter(row)

    test = evaluate(p, "test") if config.evaluate_test and status == "ok" else None
    return FitResult(summarise(p, status, epochs_completed, val if validates else None, test, history, cost),
                     p.model)


def training_state(p: Prepared, epoch: int, val: dict[str, Any], history: list[dict[str, Any]],
                   cost: CostMeter) -> dict[str, Any]:
    """Everything the epochs after `epoch` depend on: network, optimiser, schedule, loss scaler, random streams,
    the curve so far and the training cost spent."""
    generator = getattr(p.loader, "generator", None)
    return {"epoch": epoch, "val": val, "history": history, "model": p.model.state_dict(),
            "optimizer": p.optimizer.state_dict(), "scheduler": p.scheduler.state_dict(),
            "scaler": p.scaler.state_dict(), "train_seconds": cost.train_seconds, "images": cost.images,
            "compile_seconds": cost.compile_seconds,
            "torch_rng": torch.get_rng_state(), "loader_rng": generator.get_state() if generator else None,
            "numpy_rng": _numpy_rng(), "python_rng": random.getstate(),
            **({"federation": p.federation.state_dict()} if p.federation else {})}


def _numpy_rng() -> tuple[Any, ...]:
    """NumPy's random state in plain types (a state file then loads with torch.load(weights_only=True))."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return name, key.tolist(), pos, has_gauss, gauss


def restore_state(p: Prepared, cost: CostMeter, state: dict[str, Any]) -> tuple[int, dict[str, Any],
                                                                                  list[dict[str, Any]]]:
    """Put a prepared run where `training_state` left it; returns (epochs completed, last validation, curve)."""
    p.model.load_state_dict(state["model"])
    p.optimizer.load_state_dict(state["optimizer"])
    p.scheduler.load_state_dict(state["scheduler"])
    p.scaler.load_state_dict(state["scaler"])
    cost.add(state["train_seconds"], state["images"], state.get("compile_seconds", 0.0))
    torch.set_rng_state(state["torch_rng"])
    generator = getattr(p.loader, "generator", None)
    if generator is not None and state["loader_rng"] is not None:
        generator.set_state(state["loader_rng"])
    name, key, pos, has_gauss, gauss = state["numpy_rng"]
    np.random.set_state((name, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python_rng"])
    if p.federation is not None:
        p.federation.load_state_dict(state["federation"])
    return state["epoch"], state["val"], list(state["history"])


def epoch_row(p: Prepared, epoch: int, result: EpochResult, val: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """What an epoch reports: training loss, learning rate and the scalar validation metrics (`val_...`)."""
    return {"epoch": epoch, "status": "running" if epoch < p.config.epochs else "ok",
            "train_loss": result.train_loss, "lr": p.optimizer.param_groups[0]["lr"],
            **{f"val_{k}": v for k, v in val.items() if not isinstance(v, list)},
            "elapsed_s": elapsed}


def diverged_row(p: Prepared, epoch: int, val: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a diverged epoch reports: NaN loss and NaN for every scalar metric the task reports (and any the
    last validation had), so a search on any of them sees the epoch."""
    names = dict.fromkeys((*p.task.scalars, *p.task.headlines, *p.task.shown,
                           *(k for k, v in (val or {}).items() if not isinstance(v, list))))
    return {"epoch": epoch, "status": "diverged", "train_loss": float("nan"),
            **{f"val_{k}": float("nan") for k in names}}


def progress_line(p: Prepared, row: dict[str, Any]) -> str:
    """One line per validated epoch: training loss, the task's shown metrics and the headline, elapsed time."""
    shown = [k for k in dict.fromkeys((*p.task.shown, p.headline)) if f"val_{k}" in row]
    return (f"epoch {row['epoch']:3d}/{p.config.epochs}  train_loss {row['train_loss']:.4f}  "
            + "".join(f"val_{k} {row[f'val_{k}']:.4f}  " for k in shown) + f"{row['elapsed_s']:.1f}s")


def train_loop(config: TrialConfig, reporter: Reporter | None = None, hooks: Hooks | None = None,
               log: Callable[[str], None] | None = None, validate_every_epoch: bool = True,
               checkpoints: Checkpoints | None = None) -> dict[str, Any]:
    """Train and evaluate one configuration; return its JSON-serialisable summary."""
    return fit(config, reporter, hooks, log, validate_every_epoch=validate_every_epoch,
               checkpoints=checkpoints).summary


def train_round(p: Prepared, round_: int) -> EpochResult:
    """One federated round: the round's clients each train from the global weights (one after another here, or
    through `hooks.clients`, e.g. as Ray tasks), then the server aggregates their updates into `p.trained`."""
    start = time.perf_counter()
    fed = p.federation
    current = fed.global_state(p.trained)
    tasks = fed.tasks(round_)
    run = p.hooks.clients or (lambda ts, state: [client_update(p, state, t) for t in ts])
    updates = sorted(run(tasks, current), key=lambda u: u.client)
    samples = sum(u.samples for u in updates)
    loss = sum(u.train_loss * u.samples for u in updates) / samples
    images = sum(u.images for u in updates)
    if any(u.diverged for u in updates):
        return EpochResult(float("nan"), images, time.perf_counter() - start, diverged=True)
    fed.aggregate(p.trained, current, updates)
    finite = all(bool(torch.isfinite(w).all()) for w in p.trained.parameters())
    return EpochResult(loss if finite else float("nan"), images, time.perf_counter() - start, diverged=not finite)


def client_update(p: Prepared, current: dict[str, torch.Tensor], task: ClientTask) -> ClientUpdate:
    """One client's round: the global weights and its kept entries loaded, then `local_epochs` of `train_epoch`
    on its shard with a fresh optimiser; the learning rate follows the run's warm-up and cosine schedule over all
    rounds x local epochs (one client for one round is a centralised run of local_epochs epochs)."""
    fed, config = p.federation, p.config
    p.trained.load_state_dict({**current, **task.kept}, strict=False)
    torch.manual_seed(task.seed)
    shard = p.inputs["train"].take(fed.shards[task.client])
    loader = train_loader(config, shard, p.task, torch.Generator().manual_seed(task.seed))
    local_epochs, steps = config.method_args.local_epochs, len(loader)
    optimizer = make_optimizer(config, p.trained)
    scheduler = cosine_with_warmup(optimizer, round(config.warmup_epochs * steps), config.epochs * local_epochs * steps,
                                   start=(task.round - 1) * local_epochs * steps)
    p.objective.start()
    local = dataclasses.replace(p, loader=loader, optimizer=optimizer, scheduler=scheduler,
                                scaler=torch.amp.GradScaler(p.device.type, enabled=p.amp == torch.float16))
    results = []
    for epoch in range(1, local_epochs + 1):
        results.append(train_epoch(local, epoch))
        if results[-1].diverged:
            break
    state = p.trained.state_dict()
    return ClientUpdate(task.client, len(shard), {k: state[k].detach().clone() for k in fed.sent_keys},
                        {k: state[k].detach().clone() for k in fed.kept_keys},
                        train_loss=float(np.mean([r.train_loss for r in results])),
                        images=sum(r.images for r in results), seconds=sum(r.seconds for r in results),
                        diverged=results[-1].diverged)
