"""The networks behind the backbone registry (harness.models.backbones): `StagedBackbone` (ordered stages,
the last returning flat features), the stage-freezing `Classifier`, the own CIFAR-style ResNets and the cuts
of torchvision's models into stages. Imported when a network is built, never to list or check one."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torchvision.models import get_model

from harness.core.errors import ConfigError


class StagedBackbone(nn.Module):
    """A feature extractor as an ordered list of stages; the last stage returns (N, feature_dim)."""

    def __init__(self, stages: list[nn.Module], feature_dim: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.feature_dim = feature_dim

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


class StageFreezing(nn.Module):
    """A network on `self.backbone` (a StagedBackbone or a view of one) whose first `frozen_stages` stages can
    be frozen: no gradients, normalisation statistics fixed in training mode too."""

    frozen_stages: int = 0

    def freeze(self, depth: int) -> None:
        """Freeze the first `depth` stages: no gradients, BatchNorm statistics fixed."""
        self.frozen_stages = depth
        for i, stage in enumerate(self.backbone.stages):
            for p in stage.parameters():
                p.requires_grad_(i >= depth)
        self.train(self.training)

    def train(self, mode: bool = True) -> "StageFreezing":
        super().train(mode)
        for stage in self.backbone.stages[: self.frozen_stages]:
            stage.eval()
        return self


class Classifier(StageFreezing):
    """Backbone plus a head on its features; frozen stages stay in eval mode while training. `facts` are what
    a method records about the network in the run's summary.

    The head comes from the caller: the run's task (harness.tasks) or a method's own network. Without one,
    `num_classes` and `dropout` make the classification head (dropout, then linear), for code that rebuilds a
    classifier itself (a teacher file, the multi-branch network)."""

    def __init__(self, backbone: StagedBackbone, num_classes: int = 0, dropout: float = 0.0,
                 head: nn.Module | None = None) -> None:
        super().__init__()
        if head is None and num_classes < 1:
            raise ValueError("Classifier needs a head, or num_classes for the classification head")
        self.backbone = backbone
        self.head = head if head is not None else nn.Sequential(nn.Dropout(dropout),
                                                                nn.Linear(backbone.feature_dim, num_classes))
        self.frozen_stages = 0
        self.facts: dict[str, object] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


# ---- own CIFAR-style residual networks (He et al. 2016, section 4.2) ----

class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def cifar_resnet(depth: int, width: int = 16) -> StagedBackbone:
    """ResNet-(6n+2) for small images: a 3x3 stem and three stages of n BasicBlocks (widths w, 2w, 4w)."""
    n = (depth - 2) // 6
    widths = [width, 2 * width, 4 * width]
    stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
    stages: list[nn.Module] = [stem]
    cin = width
    for i, w in enumerate(widths):
        blocks = [BasicBlock(cin if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1) for j in range(n)]
        cin = w
        stages.append(nn.Sequential(*blocks))
    stages[-1] = nn.Sequential(stages[-1], nn.AdaptiveAvgPool2d(1), nn.Flatten())
    backbone = StagedBackbone(stages, widths[-1])
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return backbone


# ---- torchvision models, cut into stages ----

def _resnet_stages(m: nn.Module) -> StagedBackbone:
    stem = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool)
    last = nn.Sequential(m.layer4, m.avgpool, nn.Flatten())
    return StagedBackbone([stem, m.layer1, m.layer2, m.layer3, last], m.fc.in_features)


def _split_at_pools(features: nn.Sequential) -> list[nn.Module]:
    stages, current = [], []
    for layer in features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages.append(nn.Sequential(*current))
            current = []
    if current:
        stages.append(nn.Sequential(*current))
    return stages


def _features_classifier_stages(m: nn.Module, group_by_pool: bool = False) -> StagedBackbone:
    """Models with `features`, `avgpool` and `classifier`: the pretrained classifier minus its last layer
    joins the final stage, so its layers transfer too."""
    parts = _split_at_pools(m.features) if group_by_pool else list(m.features)
    neck = list(m.classifier)[:-1]
    flatten = [] if any(isinstance(x, nn.Flatten) for x in neck) else [nn.Flatten()]
    last = nn.Sequential(parts[-1], m.avgpool, *flatten, *neck)
    return StagedBackbone(parts[:-1] + [last], m.classifier[-1].in_features)


class _ViTEmbed(nn.Module):
    """Patch embedding, class token and position embedding of a torchvision VisionTransformer."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit_conv_proj = vit.conv_proj
        self.class_token = vit.class_token
        self.pos_embedding = vit.encoder.pos_embedding
        self.dropout = vit.encoder.dropout
        self.patch_size, self.image_size, self.hidden_dim = vit.patch_size, vit.image_size, vit.hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(f"vit expects {self.image_size}x{self.image_size} images, got {h}x{w}")
        p = self.patch_size
        x = self.vit_conv_proj(x).reshape(n, self.hidden_dim, (h // p) * (w // p)).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.dropout(x + self.pos_embedding)


class _ClassToken(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


def _vit_stages(m: nn.Module) -> StagedBackbone:
    layers = list(m.encoder.layers)
    last = nn.Sequential(layers[-1], m.encoder.ln, _ClassToken())
    return StagedBackbone([_ViTEmbed(m)] + layers[:-1] + [last], m.hidden_dim)


CUTS: dict[str, Callable[[nn.Module], StagedBackbone]] = {
    "resnet": _resnet_stages,
    "features_by_pool": lambda m: _features_classifier_stages(m, group_by_pool=True),
    "features": _features_classifier_stages,
    "vit": _vit_stages,
}


def cut_torchvision(name: str, cut: str, weights: object | None) -> StagedBackbone:
    """torchvision's model `name` with `weights` (an enum member, or None), cut into stages by CUTS[cut]."""
    return CUTS[cut](get_model(name, weights=weights))


# ---- weights ----

def load_state_checked(module: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """load_state_dict with errors that name the first mismatching layer."""
    own = module.state_dict()
    for key, value in state.items():
        if key not in own:
            raise ConfigError(f"{origin}: layer '{key}' does not exist in this backbone")
        if own[key].shape != value.shape:
            raise ConfigError(f"{origin}: layer '{key}' has shape {tuple(value.shape)} in the checkpoint, "
                              f"{tuple(own[key].shape)} in the backbone")
    missing = [k for k in own if k not in state]
    if missing:
        raise ConfigError(f"{origin}: layer '{missing[0]}' is missing from the checkpoint")
    module.load_state_dict(state)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
