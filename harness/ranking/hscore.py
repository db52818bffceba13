"""H-score (Bao et al., 2019, "An Information-Theoretic Approach to Transferability in Task Transfer Learning",
ICIP): tr(cov(f)^-1 cov(E[f | y])), how much of the features' variance lies between the target's classes."""

from __future__ import annotations

import numpy as np

from harness.ranking.base import Estimator, one_hot, register


def hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """tr(pinv(cov(f)) cov(g)), g(x) the mean feature of x's class; the pseudo-inverse copes with
    rank-deficient features (more dimensions than images, dead units)."""
    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(0)
    y = one_hot(labels)
    means = (y.T @ f) / y.sum(0)[:, None]
    g = y @ means
    cov_f = np.cov(f, rowvar=False)
    cov_g = np.cov(g, rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f, hermitian=True) @ cov_g))


register(Estimator("hscore", "H-score: trace of inverse feature covariance times between-class covariance "
                   "(Bao et al., 2019)", hscore, paper="Bao et al., ICIP 2019"))
