"""LEEP (Nguyen et al., 2020, "LEEP: A New Measure to Evaluate Transferability of Learned Representations",
ICML): the mean log-likelihood of the target labels under the "expected empirical predictor" that maps the
source classifier's distribution over source classes z through the empirical P(y | z) of the target.

The empirical P(y | z) and the predictor are also what the `label_mapping` method starts from (and scores
untrained), so they are public here."""

from __future__ import annotations

import numpy as np

from harness.ranking.base import SOURCE_PROBS, Estimator, one_hot, register


def empirical_conditional(source_probs: np.ndarray, labels: np.ndarray, num_classes: int | None = None
                          ) -> np.ndarray:
    """P(y | z) (C x Z) from the joint P(y, z) = mean_i theta_z(x_i) [y_i = y], each source class z's column
    normalised over y (a column with no mass stays 0). Labels are the C values present in sorted order, or
    0 .. num_classes - 1 when `num_classes` is given."""
    p = np.asarray(source_probs, dtype=np.float64)
    p = p / p.sum(1, keepdims=True)
    y = one_hot(labels) if num_classes is None else np.eye(num_classes)[np.asarray(labels, dtype=np.int64)]
    joint = y.T @ p / len(p)
    return joint / np.maximum(joint.sum(0, keepdims=True), np.finfo(float).tiny)


def expected_empirical_predictor(source_probs: np.ndarray, conditional: np.ndarray) -> np.ndarray:
    """The predictor's distribution over the target classes (n x C): sum_z P(y | z) theta_z(x)."""
    p = np.asarray(source_probs, dtype=np.float64)
    return (p / p.sum(1, keepdims=True)) @ conditional.T


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP of the source classifier's probabilities (n x Z) for integer labels: mean_i log sum_z P(y_i|z)
    theta_z(x_i), with the joint P(y, z) = mean_i theta_z(x_i) [y_i = y]."""
    eep = expected_empirical_predictor(source_probs, empirical_conditional(source_probs, labels))
    return float(np.log((eep * one_hot(labels)).sum(1)).mean())


register(Estimator("leep", "LEEP: log-likelihood of the expected empirical predictor over the source "
                   "classifier's classes (Nguyen et al., 2020)", leep, needs=SOURCE_PROBS,
                   paper="Nguyen et al., ICML 2020"))
