"""A run's inputs: the target's splits (loaded once), the preprocessing its network expects, and batched
inference over a split (evaluation, cached features)."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch
import torch.nn as nn

from harness.core.config import TrialConfig
from harness.data.augment import BatchTransform
from harness.data.bundle import AnySplit, DatasetBundle, SealedSplit
from harness.data.preprocessing import Preprocessing
from harness.data.registry import derive, load_dataset
from harness.models.backbones import BACKBONES
from harness.models.weights import LoadedWeights

EVAL_BATCH = {"cuda": 256}  # by device type; CPUs: 32 images fit the caches (bench/bench_rank.py)
EVAL_BATCH_DEFAULT = 32
RESIZE_IN_MEMORY_BYTES = 2**30  # larger in-memory datasets stay at their own size and are resized per batch


def load_data(config: TrialConfig, weights: LoadedWeights) -> tuple[DatasetBundle, Preprocessing]:
    """The target's splits and the preprocessing its network expects. The dataset is loaded once; its
    preprocessing (the weights', else the training split's own) decides the size it is resized to (in memory
    when that fits) after the few-shot subsets are drawn (by the subset seed); for a final run that trains on
    it, the validation split joins the training split. A run not scored on test gets the test split sealed: nothing of it is
    read, resized or run through the network."""
    base = load_dataset(config.dataset, split_seed=config.split_seed)
    if not config.evaluate_test:
        base = replace(base, test=SealedSplit(base.test))
    prep = resolve_preprocessing(config, base.image_size, base.stats, weights)
    size = prep.image_size if base.resize_bytes(prep.image_size) <= RESIZE_IN_MEMORY_BYTES else 0
    bundle = derive(base, config.samples_per_class, config.subset_seed, size, prep.resize_size, config.val_per_class)
    if config.train_on_val:
        bundle = replace(bundle, train=bundle.train.concat(bundle.val))
    return bundle, prep


def resolve_preprocessing(config: TrialConfig, bundle_size: int, bundle_stats: Callable[[], tuple],
                          weights: LoadedWeights) -> Preprocessing:
    """Input size and normalisation: those of the weights when they carry them, else the target's own."""
    info = BACKBONES.get(weights.network or config.backbone)
    prep = weights.preprocessing
    if prep is None:
        mean, std = bundle_stats()
        prep = Preprocessing(bundle_size, tuple(mean), tuple(std), "target training split")
    size = config.image_size or (prep.image_size if weights.kind == "imagenet" else bundle_size)
    size = max(size, info.min_size)
    mean, std = _three(prep.mean), _three(prep.std)
    resize = round(prep.resize_size * size / prep.image_size) if prep.resize_size else 0
    return Preprocessing(size, mean, std, prep.source, resize)


def _three(v: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(v) * 3 if len(v) == 1 else tuple(v)


def eval_batch(device: torch.device) -> int:
    """Images per batch of `predict` on `device`."""
    return EVAL_BATCH.get(device.type, EVAL_BATCH_DEFAULT)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor | AnySplit, transform: BatchTransform | None, device: torch.device,
            amp: torch.dtype | None, to_cpu: bool = True) -> torch.Tensor:
    """Outputs (logits or features) of a tensor of inputs or of a split's images (in memory or decoded from
    files), in evaluation mode, in batches; a network returning one dict per image (a detector) gives their list.
    On the CPU image batches go in channels-last, where oneDNN runs the convolutions of few-channel layers 1.5-2x
    faster (on CUDA the transform gives that layout already). No inference_mode: cached features are a head's
    training inputs, which autograd must be able to save; `to_cpu=False` leaves them on the device."""
    was_training = model.training
    model.eval()
    out = []
    size = eval_batch(device)
    batches = ((images[i:i + size] for i in range(0, len(images), size))
               if isinstance(images, torch.Tensor) else images.batches(size))
    for x in batches:
        x = x.to(device, non_blocking=True)
        if transform is not None:
            x = transform(x, train=False)
        if isinstance(x, torch.Tensor) and x.dim() == 4 and device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            y = model(x)
        if isinstance(y, torch.Tensor):
            out.append(y.float().cpu() if to_cpu else y.float())
        else:  # one dict of tensors per input (a detector's boxes)
            out.extend({k: v.cpu() for k, v in d.items()} for d in y)
    model.train(was_training)
    if out and not isinstance(out[0], torch.Tensor):
        return out
    return torch.cat(out) if out else torch.empty(0)
