"""The multi-branch network (harness.methods.multibranch): a Classifier with one more head per auxiliary task."""

from __future__ import annotations

import torch
import torch.nn as nn

from harness.models.staged import Classifier, StagedBackbone


class MultiBranchClassifier(Classifier):
    """A Classifier with one more head per auxiliary task; `forward(x)` is the main task, `forward(x, aux_1, ...)`
    returns the main logits and each task's from one pass of the concatenated batches through the shared trunk."""

    def __init__(self, backbone: StagedBackbone, num_classes: int, aux_classes: list[int], dropout: float,
                 train_aux: list[bool]) -> None:
        super().__init__(backbone, num_classes, dropout)
        with torch.random.fork_rng(devices=[]):  # the main network initialises as fine-tuning's does
            self.aux_heads = nn.ModuleList(nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.feature_dim, c))
                                           for c in aux_classes)
        for head, trained in zip(self.aux_heads, train_aux):
            head.requires_grad_(trained)

    def forward(self, x: torch.Tensor, *aux: torch.Tensor | None):  # noqa: ANN201
        """Main logits; with auxiliary batches (None for a branch left out), (main, [logits or None per branch])."""
        if not aux:
            return self.head(self.backbone(x))
        features = self.backbone(torch.cat([x, *(a for a in aux if a is not None)]))
        main, start, out = self.head(features[:len(x)]), len(x), []
        for head, a in zip(self.aux_heads, aux):
            if a is None:
                out.append(None)
                continue
            out.append(head(features[start:start + len(a)]))
            start += len(a)
        return main, out

    def aux_logits(self, k: int, x: torch.Tensor) -> torch.Tensor:
        return self.aux_heads[k](self.backbone(x))


class AuxView(nn.Module):
    """Branch k of a multi-branch network as a network of its own (what `predict` takes)."""

    def __init__(self, model: MultiBranchClassifier, k: int) -> None:
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.aux_logits(self.k, x)
