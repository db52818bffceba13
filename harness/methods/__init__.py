"""Transfer methods, one plugin module each; importing the package registers them all in METHODS (in this order)."""

from harness.methods import scratch  # noqa: F401  (first: the no-transfer baseline)
from harness.methods import linear_probe  # noqa: F401
from harness.methods import finetune  # noqa: F401
from harness.methods import partial  # noqa: F401
from harness.methods import multibranch  # noqa: F401
from harness.methods import distill  # noqa: F401
from harness.methods import feature_transfer  # noqa: F401
from harness.methods import l2sp  # noqa: F401
from harness.methods.base import METHODS, Method  # noqa: F401
