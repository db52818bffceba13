"""Transferability estimates of one candidate source network for a target: the target's training images through
the frozen backbone (the linear probe's feature path: the weights' preprocessing, evaluation mode, batched
`predict`), the network's own classifier over them where it has one, then every estimator on the result.
The test split stays sealed: nothing of it is read."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.data.augment import BatchTransform, batch_transform
from harness.data.bundle import DatasetBundle
from harness.models.classifiers import source_classifier
from harness.models.weights import LoadedWeights, build_backbone, load_weights
from harness.ranking import ESTIMATORS, Observation, Refused, estimate
from harness.train.inputs import eval_batch, load_data, predict
from harness.train.checks import check_names
from harness.train.loop import amp_dtype, pick_device, seed_everything

PRECISIONS = ("auto", "bf16", "fp32")


def feature_config(dataset: str, backbone: str, weights: str, samples_per_class: int = 0, seed: int = 0,
                   split_seed: int = 0, subset_seed: int = 0) -> TrialConfig:
    """The linear probe's configuration on the target (no augmentation, test not scored), whose cached training
    features the estimators read; the seeds are the search trials', so the few-shot subset is theirs."""
    return TrialConfig.from_dict({"dataset": dataset, "backbone": backbone, "weights": weights,
                                  "method": "linear_probe", "augment": "none", "samples_per_class": samples_per_class,
                                  "seed": seed, "split_seed": split_seed, "subset_seed": subset_seed,
                                  "evaluate_test": False})


def feature_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the estimates' feature pass (None: float32). `auto` is the fast one the hardware
    runs natively: CUDA's mixed precision (the linear probe's own), bfloat16 on a CPU with AVX512-BF16 or AMX
    (oneDNN's bf16 convolutions there are about 1.7x faster than float32), else float32. Estimates only rank
    candidates, and bf16's ~0.3% feature error is far below the spread of their scores."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision='{precision}': choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return amp_dtype(device)
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return torch.bfloat16 if native else None


@dataclass
class TargetFeatures:
    """The target's training split as one source network sees it, and the seconds that took."""

    observation: Observation
    network: str
    num_classes: int
    seconds: float
    precision: str


@dataclass
class FeaturePass:
    """One candidate's network, target split and transform, ready for its feature pass."""

    config: TrialConfig
    weights: LoadedWeights
    network: str
    backbone: torch.nn.Module
    bundle: DatasetBundle
    transform: BatchTransform
    device: torch.device
    amp: torch.dtype | None
    seconds: float


def prepare_features(config: TrialConfig, device: torch.device | None = None, precision: str = "auto"
                     ) -> FeaturePass:
    """Everything a feature pass reads, built in the order `train.loop.prepare` builds a linear probe (seeds
    first, so a randomly initialised network is the probe's), the network left in evaluation mode. Uses the global
    random state: call it from one thread; the forward passes may then run in several."""
    if config.evaluate_test:
        raise ValueError("transferability estimates never read the test split; build the config with feature_config")
    t0 = time.perf_counter()
    check_names(config)
    seed_everything(config.seed)
    device = device or pick_device()
    amp = feature_dtype(precision, device)
    weights = load_weights(config.weights, config.backbone)
    bundle, prep = load_data(config, weights)
    network = weights.network or config.backbone
    backbone = build_backbone(network, weights).to(device).eval()
    channels_last = device.type == "cuda"
    if channels_last or amp is not None:
        backbone = backbone.to(memory_format=torch.channels_last)
    transform = batch_transform(config, prep, bundle.flip, channels_last).to(device)
    return FeaturePass(config, weights, network, backbone, bundle, transform, device, amp, time.perf_counter() - t0)


def feature_slices(fp: FeaturePass, parts: int) -> list[slice]:
    """The training split cut into at most `parts` runs of whole evaluation batches, so that every image is in
    the batch it would be in one pass (and gets the same features)."""
    n, size = len(fp.bundle.train), eval_batch(fp.device)
    step = -(-n // parts // size) * size or size
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def forward_slice(fp: FeaturePass, part: slice) -> tuple[torch.Tensor, float]:
    """Features of the training images in `part` through the frozen network and the seconds that took; draws no
    random numbers and leaves the network as it was, so several slices can run in threads at once."""
    t0 = time.perf_counter()
    train = fp.bundle.train
    images = train if part == slice(0, len(train)) else train.take(np.arange(part.start, part.stop))
    features = predict(fp.backbone, images, fp.transform, fp.device, fp.amp)
    return features, time.perf_counter() - t0


def finish_features(fp: FeaturePass, features: torch.Tensor, seconds: float) -> TargetFeatures:
    """The training split's features with the network's own classifier over them where it has one."""
    t0 = time.perf_counter()
    classifier, why = source_classifier(fp.weights, fp.network, fp.backbone.feature_dim, fp.config.weights)
    probs = None
    if classifier is not None:
        with torch.no_grad():
            probs = torch.softmax(classifier.float()(features), dim=1).numpy()
    obs = Observation(features.numpy().astype(np.float64), fp.bundle.train.labels.numpy(), probs, why)
    used = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[fp.amp]
    return TargetFeatures(obs, fp.network, fp.bundle.num_classes, fp.seconds + seconds + time.perf_counter() - t0,
                          used)


def extract_features(fp: FeaturePass) -> TargetFeatures:
    """The whole training split through the frozen network (and its own classifier) in one pass."""
    return finish_features(fp, *forward_slice(fp, slice(0, len(fp.bundle.train))))


def target_features(config: TrialConfig, device: torch.device | None = None, precision: str = "auto"
                    ) -> TargetFeatures:
    """Features (and source-classifier probabilities) of the training split of `config`'s target, built as
    `train.loop.prepare` builds a linear probe, so that on the CPU with precision `fp32` they equal the features
    it caches (with bf16 they differ by its rounding)."""
    return extract_features(prepare_features(config, device, precision))


@dataclass
class CandidateScores:
    """Every estimator's score of one candidate (or why it refused), the seconds each took and the features'."""

    network: str
    images: int
    feature_dim: int
    num_classes: int
    feature_seconds: float
    precision: str = "fp32"
    scores: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


def score_candidate(config: TrialConfig, estimators: list[str] | None = None, precision: str = "auto"
                    ) -> CandidateScores:
    """The features of `config`'s target through its network, extracted once (in `precision`, see
    `feature_dtype`), then each estimator on them."""
    return score_features(target_features(config, precision=precision), estimators)


def score_features(tf: TargetFeatures, estimators: list[str] | None = None) -> CandidateScores:
    """Each estimator (all by default) on one candidate's features, with the seconds each took."""
    names = list(estimators or ESTIMATORS)
    for name in names:
        ESTIMATORS.get(name)
    out = CandidateScores(tf.network, len(tf.observation.labels), tf.observation.features.shape[1], tf.num_classes,
                          tf.seconds, tf.precision)
    for name in names:
        try:
            out.scores[name], out.seconds[name] = estimate(name, tf.observation)
        except Refused as e:
            out.refused[name] = str(e)
    return out
