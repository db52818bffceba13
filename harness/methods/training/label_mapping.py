"""The label-mapping network (harness.methods.label_mapping): the frozen source classifier, its softmax and the
learned column-stochastic map to the target classes."""

from __future__ import annotations

import torch
import torch.nn as nn

from harness.models.staged import StagedBackbone

TINY = 1e-12  # floor of a probability before its log


class LabelMap(nn.Module):
    """A column-stochastic map M (C x Z, M = softmax over the target classes of `logits`) from source class
    probabilities to target class log-probabilities."""

    def __init__(self, source_classes: int, num_classes: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_classes, source_classes))

    def conditional(self) -> torch.Tensor:
        """M, the map's P(y | z): columns sum to 1."""
        return torch.softmax(self.logits, dim=0)

    @torch.no_grad()
    def start_from(self, conditional: torch.Tensor) -> None:
        """Make M equal `conditional` (C x Z, columns summing to 1); a column with no mass becomes uniform."""
        self.logits.copy_(torch.log(conditional.clamp_min(TINY)))

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        return torch.log((probs.float() @ self.conditional().T).clamp_min(TINY))


class LabelMappingHead(nn.Module):
    """The source classifier (frozen), its softmax, and the learned map to the target classes."""

    def __init__(self, classifier: nn.Linear, num_classes: int) -> None:
        super().__init__()
        self.classifier = classifier.requires_grad_(False)
        self.map = LabelMap(classifier.out_features, num_classes)

    def source_probs(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.classifier(features).float(), dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.map(self.source_probs(features))


class SourceProbs(nn.Module):
    """The source network's class probabilities: of images (with its backbone) or of cached features."""

    def __init__(self, head: LabelMappingHead, backbone: StagedBackbone | None) -> None:
        super().__init__()
        self.head, self.backbone = head, backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.source_probs(self.backbone(x) if self.backbone is not None else x)
