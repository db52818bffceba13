"""GBC (Pandy et al., 2022, "Transferability Estimation using Bhattacharyya Class Separability", CVPR): minus
the sum over ordered pairs of target classes of the Bhattacharyya coefficient between Gaussians (diagonal
covariance) fitted to each class's features, after PCA to at most 64 dimensions as in the paper."""

from __future__ import annotations

import numpy as np

from harness.ranking.base import Estimator, one_hot, register

PCA_DIMS = 64
VAR_FLOOR = 1e-6


def gbc(features: np.ndarray, labels: np.ndarray, dims: int = PCA_DIMS) -> float:
    """-sum_{i != j} exp(-D_B(i, j)), D_B the Bhattacharyya distance of class Gaussians N(mu_c, diag(var_c));
    0 when every pair of classes is perfectly separated, -C(C-1) when none is."""
    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(0)
    if f.shape[1] > dims:
        _, _, vh = np.linalg.svd(f, full_matrices=False)
        f = f @ vh[:dims].T
    y = one_hot(labels)
    count = y.sum(0)[:, None]
    mu = y.T @ f / count
    var = np.maximum(y.T @ f ** 2 / count - mu ** 2, 0.0) + VAR_FLOOR
    pair_var = (var[:, None, :] + var[None, :, :]) / 2
    log_var = np.log(var).sum(1)
    distance = (((mu[:, None, :] - mu[None, :, :]) ** 2 / pair_var).sum(2) / 8
                + (np.log(pair_var).sum(2) - (log_var[:, None] + log_var[None, :]) / 2) / 2)
    coefficient = np.exp(-distance)
    np.fill_diagonal(coefficient, 0.0)
    return float(-coefficient.sum())


register(Estimator("gbc", "GBC: minus the summed Bhattacharyya coefficients between Gaussian class "
                   "clusters of the features (Pandy et al., 2022)", gbc, paper="Pandy et al., CVPR 2022"))
