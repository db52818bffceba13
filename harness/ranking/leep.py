"""LEEP (Nguyen et al., 2020, "LEEP: A New Measure to Evaluate Transferability of Learned Representations",
ICML): the mean log-likelihood of the target labels under the "expected empirical predictor" that maps the
source classifier's distribution over source classes z through the empirical P(y | z) of the target."""

from __future__ import annotations

import numpy as np

from harness.ranking.base import SOURCE_PROBS, Estimator, one_hot, register


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP of the source classifier's probabilities (n x Z) for integer labels: mean_i log sum_z P(y_i|z)
    theta_z(x_i), with the joint P(y, z) = mean_i theta_z(x_i) [y_i = y]."""
    p = np.asarray(source_probs, dtype=np.float64)
    p = p / p.sum(1, keepdims=True)
    y = one_hot(labels)
    joint = y.T @ p / len(p)
    cond = joint / np.maximum(joint.sum(0, keepdims=True), np.finfo(float).tiny)
    eep = (p @ cond.T * y).sum(1)
    return float(np.log(eep).mean())


register(Estimator("leep", "LEEP: log-likelihood of the expected empirical predictor over the source "
                   "classifier's classes (Nguyen et al., 2020)", leep, needs=SOURCE_PROBS,
                   paper="Nguyen et al., ICML 2020"))
