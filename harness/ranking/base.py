"""What an estimator sees and how it is registered: the target's training labels with the source network's
features of those images and, where the network has a classifier of its own, its probabilities over the
source classes. Every estimator's score is higher for a better-expected transfer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness.core.registry import Registry

FEATURES = "features"
SOURCE_PROBS = "source_probs"


class Refused(Exception):
    """An estimator cannot score this candidate (e.g. LEEP without a source classifier); the message is one line."""


@dataclass(frozen=True)
class Observation:
    """The target's training images as one source network sees them: `features` (n x d), integer `labels`
    (n,), and `source_probs` (n x Z, the network's own classifier over its Z source classes) or None with
    `no_classifier` saying why there is none."""

    features: np.ndarray
    labels: np.ndarray
    source_probs: np.ndarray | None = None
    no_classifier: str = "the network has no classifier of its own"


@dataclass(frozen=True)
class Estimator:
    """A transferability estimator: `score(inputs, labels)` on `needs` (features, or the source classifier's
    probabilities); `paper` is the citation its module gives."""

    name: str
    description: str
    score: Callable[[np.ndarray, np.ndarray], float]
    needs: str = FEATURES
    paper: str = ""

    def inputs(self, obs: Observation) -> np.ndarray:
        """What `score` takes from the observation; Refused when it needs a classifier the network lacks."""
        if self.needs == FEATURES:
            return obs.features
        if obs.source_probs is None:
            raise Refused(f"{self.name} needs the source network's own classifier: {obs.no_classifier}")
        return obs.source_probs


ESTIMATORS: Registry[Estimator] = Registry("estimator")


def register(estimator: Estimator) -> Estimator:
    return ESTIMATORS.register(estimator.name, estimator.description)(estimator)


def estimate(name: str, obs: Observation) -> tuple[float, float]:
    """(score, seconds) of one estimator on one observation; raises Refused when it cannot score it."""
    est = ESTIMATORS.get(name)
    inputs = est.inputs(obs)
    t0 = time.perf_counter()
    value = est.score(inputs, np.asarray(obs.labels))
    return float(value), time.perf_counter() - t0


def one_hot(labels: np.ndarray) -> np.ndarray:
    """(n, C) indicator matrix of the C label values present, in sorted order."""
    _, index = np.unique(np.asarray(labels), return_inverse=True)
    out = np.zeros((len(index), int(index.max()) + 1))
    out[np.arange(len(index)), index] = 1.0
    return out
