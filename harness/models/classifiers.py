"""A source network's own classifier, the layer from its features to its source classes: the last linear layer
of a torchvision ImageNet model, or the head `harness pretrain` keeps in a source file. LEEP and NCE read it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.core.errors import ConfigError
from harness.models.backbones import BACKBONES
from harness.models.weights import LoadedWeights

if TYPE_CHECKING:
    import torch
    from torch import nn

CLASSIFIER_KEY = "classifier"  # the key of a source file that holds its head's weight and bias


def last_linear(module: nn.Module) -> nn.Linear | None:
    """The last nn.Linear registered in a module (the classifier of every torchvision model and harness head)."""
    from torch import nn

    layers = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return layers[-1] if layers else None


def classifier_state(head: nn.Module) -> dict[str, torch.Tensor] | None:
    """Weight and bias of a head's last linear layer, as a source file keeps them."""
    layer = last_linear(head)
    return None if layer is None else {k: v.detach().cpu() for k, v in layer.state_dict().items()}


def source_classifier(weights: LoadedWeights, network: str, feature_dim: int, spec: str) -> tuple[nn.Linear | None, str]:
    """(the network's own classifier, "") or (None, one line saying why it has none); `spec` names the weights."""
    from torch import nn
    from torchvision.models import get_model

    if weights.kind == "none":
        return None, f"weights '{spec}' are a randomly initialised network with no trained classifier"
    if weights.kind == "imagenet":
        info = BACKBONES.get(network)
        layer = last_linear(get_model(info.torchvision_name, weights=weights.weights_enum))
        if layer is None or layer.in_features != feature_dim:
            return None, f"the ImageNet classifier of '{network}' does not take its {feature_dim} features"
        return layer, ""
    state = weights.classifier
    if state is None:
        return None, (f"weights '{spec}' keep no classifier (a source file written before sources kept their "
                      f"head; delete it and run `harness pretrain` again)")
    out_features, in_features = state["weight"].shape
    if in_features != feature_dim:
        return None, f"the classifier in '{spec}' takes {in_features} features, the network gives {feature_dim}"
    layer = nn.Linear(in_features, out_features, bias="bias" in state)
    layer.load_state_dict(state)
    return layer, ""


def require_classifier(weights: LoadedWeights, network: str, feature_dim: int, spec: str, method: str) -> nn.Linear:
    """The network's own classifier for a method that keeps it; a one-line ConfigError naming the weights and the
    method when the weights have none."""
    layer, why = source_classifier(weights, network, feature_dim, spec)
    if layer is None:
        raise ConfigError(f"weights='{spec}': method '{method}' needs the source network's own classifier; {why}")
    return layer


def lacks_classifier(weights: LoadedWeights, spec: str, method: str) -> ConfigError | None:
    """What can be told without building the network: weights that surely have no classifier for `method` (none,
    or a source file written before files kept their head); a file a study has yet to write will have one."""
    if weights.kind == "none" or (weights.kind == "checkpoint" and weights.state_dict is not None
                                  and weights.classifier is None):
        why = source_classifier(weights, "", 0, spec)[1]
        return ConfigError(f"weights='{spec}': method '{method}' needs the source network's own classifier; {why}")
    return None
