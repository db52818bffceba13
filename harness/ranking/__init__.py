"""Transferability estimators (LogME, LEEP, NCE, H-score, GBC): numpy maths that scores a source network for a
target from what the network makes of the target's training images, before any training. Importing the
package registers every estimator in ESTIMATORS."""

from harness.ranking import logme, leep, nce, hscore, gbc  # noqa: F401, I001  (tables follow this order)
from harness.ranking.base import ESTIMATORS, Estimator, Observation, Refused, estimate

__all__ = ["ESTIMATORS", "Estimator", "Observation", "Refused", "estimate"]
