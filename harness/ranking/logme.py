"""LogME (You et al., 2021, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML):
the maximum log marginal likelihood (evidence) of a Bayesian linear regression from the features to each
class's indicator, per image and averaged over classes; alpha and beta by the paper's fixed-point iteration."""

from __future__ import annotations

import numpy as np

from harness.ranking.base import Estimator, one_hot, register

TINY = 1e-300


def evidence(alpha: np.ndarray, beta: np.ndarray, s2: np.ndarray, z2: np.ndarray, perp: np.ndarray, n: int,
             d: int) -> np.ndarray:
    """log p(t | F, alpha, beta) per target column, from the squared singular values `s2` (r,) of F, the
    squared projections `z2` (r, C) of each target on F's left singular vectors and the squared norm `perp`
    (C,) of the part of each target outside F's column space."""
    denom = alpha + beta * s2[:, None]
    m2 = (beta ** 2 * s2[:, None] * z2 / denom ** 2).sum(0)
    res2 = (alpha ** 2 * z2 / denom ** 2).sum(0) + perp
    logdet = np.log(denom).sum(0) + (d - len(s2)) * np.log(alpha)
    return (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
            - beta / 2 * res2 - alpha / 2 * m2 - logdet / 2)


def fixed_point(s2: np.ndarray, z2: np.ndarray, perp: np.ndarray, n: int, max_iter: int = 1000,
                tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """The paper's iteration (Algorithm 1) for every target column at once: gamma = sum beta s^2 / (alpha +
    beta s^2), alpha = gamma / m'm, beta = (n - gamma) / |Fm - t|^2, until both change by less than `tol`."""
    alpha = np.ones(z2.shape[1])
    beta = np.ones(z2.shape[1])
    for _ in range(max_iter):
        denom = alpha + beta * s2[:, None]
        gamma = (beta * s2[:, None] / denom).sum(0)
        m2 = (beta ** 2 * s2[:, None] * z2 / denom ** 2).sum(0)
        res2 = (alpha ** 2 * z2 / denom ** 2).sum(0) + perp
        new_alpha = np.maximum(gamma / np.maximum(m2, TINY), TINY)
        new_beta = np.maximum(n - gamma, TINY) / np.maximum(res2, TINY)
        done = (np.abs(new_alpha / alpha - 1) < tol).all() and (np.abs(new_beta / beta - 1) < tol).all()
        alpha, beta = new_alpha, new_beta
        if done:
            break
    return alpha, beta


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of features (n x d) for integer labels: the mean over classes of the maximum evidence / n."""
    f = np.asarray(features, dtype=np.float64)
    t = one_hot(labels)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    rank = int((s > (s.max(initial=0.0) * max(n, d) * np.finfo(float).eps)).sum())
    u, s2 = u[:, :rank], s[:rank] ** 2  # directions the features do not span add nothing but alpha's prior
    z2 = (u.T @ t) ** 2
    perp = np.maximum((t ** 2).sum(0) - z2.sum(0), 0.0)
    alpha, beta = fixed_point(s2, z2, perp, n)
    return float(evidence(alpha, beta, s2, z2, perp, n, d).mean() / n)


register(Estimator("logme", "LogME: maximum evidence of Bayesian linear regression from features to labels "
                   "(You et al., 2021)", logme, paper="You et al., ICML 2021"))
