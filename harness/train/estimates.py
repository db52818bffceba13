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
from harness.data.augment import batch_transform
from harness.models.classifiers import source_classifier
from harness.models.weights import build_backbone, load_weights
from harness.ranking import ESTIMATORS, Observation, Refused, estimate
from harness.train.inputs import load_data, predict
from harness.train.loop import amp_dtype, check_names, pick_device, seed_everything


def feature_config(dataset: str, backbone: str, weights: str, samples_per_class: int = 0, seed: int = 0,
                   split_seed: int = 0, subset_seed: int = 0) -> TrialConfig:
    """The linear probe's configuration on the target (no augmentation, test not scored), whose cached training
    features the estimators read; the seeds are the search trials', so the few-shot subset is theirs."""
    return TrialConfig.from_dict({"dataset": dataset, "backbone": backbone, "weights": weights,
                                  "method": "linear_probe", "augment": "none", "samples_per_class": samples_per_class,
                                  "seed": seed, "split_seed": split_seed, "subset_seed": subset_seed,
                                  "evaluate_test": False})


@dataclass
class TargetFeatures:
    """The target's training split as one source network sees it, and the seconds that took."""

    observation: Observation
    network: str
    num_classes: int
    seconds: float


def target_features(config: TrialConfig, device: torch.device | None = None) -> TargetFeatures:
    """Features (and source-classifier probabilities) of the training split of `config`'s target, built in the
    order `train.loop.prepare` builds a linear probe, so they equal the features it caches."""
    if config.evaluate_test:
        raise ValueError("transferability estimates never read the test split; build the config with feature_config")
    t0 = time.perf_counter()
    check_names(config)
    seed_everything(config.seed)
    device = device or pick_device()
    amp = amp_dtype(device)
    weights = load_weights(config.weights, config.backbone)
    bundle, prep = load_data(config, weights)
    network = weights.network or config.backbone
    backbone = build_backbone(network, weights).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    transform = batch_transform(config, prep, bundle.flip, channels_last).to(device)
    features = predict(backbone, bundle.train, transform, device, amp)
    classifier, why = source_classifier(weights, network, backbone.feature_dim, config.weights)
    probs = None
    if classifier is not None:
        with torch.no_grad():
            probs = torch.softmax(classifier.float()(features), dim=1).numpy()
    obs = Observation(features.numpy().astype(np.float64), bundle.train.labels.numpy(), probs, why)
    return TargetFeatures(obs, network, bundle.num_classes, time.perf_counter() - t0)


@dataclass
class CandidateScores:
    """Every estimator's score of one candidate (or why it refused), the seconds each took and the features'."""

    network: str
    images: int
    feature_dim: int
    num_classes: int
    feature_seconds: float
    scores: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


def score_candidate(config: TrialConfig, estimators: list[str] | None = None) -> CandidateScores:
    """The features of `config`'s target through its network, extracted once, then each estimator on them."""
    names = list(estimators or ESTIMATORS)
    for name in names:
        ESTIMATORS.get(name)
    tf = target_features(config)
    out = CandidateScores(tf.network, len(tf.observation.labels), tf.observation.features.shape[1], tf.num_classes,
                          tf.seconds)
    for name in names:
        try:
            out.scores[name], out.seconds[name] = estimate(name, tf.observation)
        except Refused as e:
            out.refused[name] = str(e)
    return out
