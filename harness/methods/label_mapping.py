"""Label-based transfer (label mapping): the source network, its own classifier over the Z source classes
included, stays frozen, and the target prediction is a learned map from the source's class probabilities to the
C target classes: P(y | x) = sum_z M[y, z] theta_z(x).

M starts as the empirical P(y | z) of the training split, the joint P(y, z) = mean_i theta_z(x_i) [y_i = y] of
LEEP (Nguyen et al., 2020; harness.ranking.leep computes it), so the untrained network is LEEP's expected
empirical predictor; the run scores it before training (`untrained_<metric>` in its validation and test metrics).
M is a linear map on the source softmax kept column-stochastic (each column a softmax over the target classes of
free parameters), so the output is a distribution whose log feeds the cross-entropy. The source network being
frozen, its features are computed once and cached when nothing augments the images; an epoch is then a C x Z
matrix product. `dropout` has no layer to act on here (the map reads probabilities) and must stay 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.methods.base import Method, register
from harness.methods.objective import MethodContext
from harness.ranking.leep import empirical_conditional

if TYPE_CHECKING:
    import torch.nn as nn

    from harness.data.bundle import AnySplit
    from harness.models.staged import Classifier, StagedBackbone

def check(config: TrialConfig) -> None:
    """Dropout would rescale the probabilities the map reads."""
    if config.dropout != 0:
        raise ConfigError(f"dropout={config.dropout}: method 'label_mapping' has no layer for dropout (its map "
                          f"reads the source's class probabilities); use 0")


def build(config: TrialConfig, backbone: StagedBackbone, num_classes: int, input_size: int,
          classifier: nn.Linear) -> Classifier:
    """The source backbone and its own classifier, then the map to the target classes (uniform until
    `initialise` sets it from the training split)."""
    from harness.methods.training.label_mapping import LabelMappingHead
    from harness.models.staged import Classifier

    model = Classifier(backbone, head=LabelMappingHead(classifier, num_classes))
    model.facts = {"source_classes": classifier.out_features}
    return model


def initialise(ctx: MethodContext, train: AnySplit) -> None:
    """M := the empirical P(y | z) of the source's probabilities on the training split (LEEP's)."""
    import torch

    from harness.methods.training.label_mapping import SourceProbs

    head = ctx.model.head
    probs = ctx.predict(SourceProbs(head, None if ctx.trained is head else ctx.model.backbone), train, ctx.transform)
    conditional = empirical_conditional(probs.numpy(), train.labels.numpy(), ctx.bundle.num_classes)
    head.map.start_from(torch.from_numpy(conditional).float().to(ctx.device))


register(Method("label_mapping", "label-based transfer: the source network and its classifier frozen, a learned "
                "map from its class probabilities to the target classes (starting from LEEP's empirical P(y|z), "
                "scored untrained too)", lambda c, n: n, pretrained="required", validate=check, build=build,
                source_classifier=True, initialise=initialise, untrained_scores=True))
