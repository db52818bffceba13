"""L2-SP (Li et al., 2018, "Explicit inductive bias for transfer learning with convolutional networks"):
fine-tuning whose loss pulls the backbone towards its pretrained weights and keeps the new head small."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.core.config import MethodArgs, param
from harness.methods.base import Method, register
from harness.methods.objective import MethodContext, Objective

if TYPE_CHECKING:
    import torch

    from harness.models.staged import Classifier


@dataclass(frozen=True)
class L2SPArgs(MethodArgs):
    """Strengths of the two L2-SP penalties."""

    l2sp_alpha: float = param(0.1, "alpha, the pull of the backbone towards its pretrained weights", low=0)
    l2sp_beta: float = param(0.01, "beta, the L2 penalty on the new head's weights", low=0)


class L2SP:
    """L2-SP (Li et al., 2018): alpha * ||w - w0||^2 over the trained backbone parameters, pulling them
    towards their pretrained values w0, plus beta * ||w||^2 over the new head's weight matrices."""

    def __init__(self, model: Classifier, alpha: float, beta: float) -> None:
        self.backbone = [p for p in model.backbone.parameters() if p.requires_grad]
        self.anchors = [p.detach().clone() for p in self.backbone]
        self.head = [p for p in model.head.parameters() if p.requires_grad and p.ndim > 1]
        self.alpha, self.beta = alpha, beta

    def distance(self) -> torch.Tensor:
        """||w - w0||^2 of the backbone."""
        import torch

        if not self.backbone:
            return torch.zeros(())
        return torch.stack([(p - p0).pow(2).sum() for p, p0 in zip(self.backbone, self.anchors)]).sum()

    def __call__(self) -> torch.Tensor:
        import torch

        penalty = self.alpha * self.distance()
        if self.head:
            penalty = penalty + self.beta * torch.stack([p.pow(2).sum() for p in self.head]).sum()
        return penalty


class L2SPObjective(Objective):
    """Fine-tuning whose loss carries the L2-SP penalty; the summary records how far the backbone moved."""

    def __init__(self, ctx: MethodContext) -> None:
        args = ctx.config.method_args
        self.l2sp = L2SP(ctx.model, args.l2sp_alpha, args.l2sp_beta)
        super().__init__(ctx, [self.l2sp])

    def extras(self, status: str) -> dict[str, dict[str, Any]]:
        import torch

        with torch.no_grad():
            return {"model": {"distance_to_pretrained": float(self.l2sp.distance().sqrt())}}


def weight_distance(model: Classifier, reference: dict[str, torch.Tensor]) -> float:
    """Euclidean distance between a backbone's parameters and those in a reference state dict."""
    total = 0.0
    for name, p in model.backbone.named_parameters():
        total += (p.detach().float().cpu() - reference[name].float()).pow(2).sum().item()
    return total ** 0.5


register(Method("l2sp", "fine-tuning with L2-SP: l2sp_alpha x ||w - w0||^2 pulls the backbone towards its "
                "pretrained weights, l2sp_beta x ||head||^2", pretrained="required", args=L2SPArgs,
                objective=L2SPObjective))
