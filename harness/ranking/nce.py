"""NCE (Tran et al., 2019, "Transferability and Hardness of Supervised Classification Tasks", ICCV): the
negative conditional entropy -H(Y | Z) of the target labels Y given the source labels Z, with Z the source
classifier's most probable class for each target image."""

from __future__ import annotations

import numpy as np

from harness.ranking.base import SOURCE_PROBS, Estimator, one_hot, register


def nce(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """-H(Y | Z) = sum_{y,z} P(y, z) log P(y | z), from the empirical joint of target labels and the source
    classifier's hard predictions."""
    z = np.asarray(source_probs).argmax(1)
    joint = one_hot(labels).T @ one_hot(z) / len(z)
    cond = joint / joint.sum(0, keepdims=True)
    seen = joint > 0
    return float((joint[seen] * np.log(cond[seen])).sum())


register(Estimator("nce", "NCE: negative conditional entropy of the target labels given the source "
                   "classifier's predicted classes (Tran et al., 2019)", nce, needs=SOURCE_PROBS,
                   paper="Tran et al., ICCV 2019"))
