"""Weights for a backbone: none, torchvision's ImageNet weights from the local torch cache, or a harness
source checkpoint; each carries the preprocessing its network expects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from harness.core.errors import ConfigError, NotHere
from harness.data.preprocessing import Preprocessing
from harness.models.backbones import BACKBONES, TORCHVISION
from harness.models.checkpoints import SOURCE_FORMAT, read_file

if TYPE_CHECKING:
    import torch

    from harness.models.staged import StagedBackbone


@dataclass
class LoadedWeights:
    kind: str
    weights_enum: object | None = None
    state_dict: dict[str, torch.Tensor] | None = None
    meta: dict[str, object] = field(default_factory=dict)
    preprocessing: Preprocessing | None = None
    network: str | None = None  # the backbone a checkpoint holds
    classifier: dict[str, torch.Tensor] | None = None  # a source file's head over its source classes, if kept


def imagenet_weights(backbone: str) -> object:
    """The DEFAULT torchvision weights of a backbone, checked to be in the local torch cache."""
    from torchvision.models import get_model_weights

    info = BACKBONES.get(backbone)
    if info.torchvision_name is None:
        raise ConfigError(f"weights='imagenet': backbone '{backbone}' has no ImageNet weights; "
                          f"use a torchvision backbone ({', '.join(TORCHVISION)}) or checkpoint:PATH")
    enum = get_model_weights(info.torchvision_name).DEFAULT
    path = weights_file(enum)
    if not path.is_file():
        raise NotHere(f"weights='imagenet' for '{backbone}': file {path.name} not found in {path.parent}; "
                          f"on a machine with internet run `harness fetch {backbone}` and copy the file there")
    return enum


def fetch_imagenet_weights(backbone: str) -> Path:
    """Download a backbone's DEFAULT ImageNet weights into the torch cache (needs internet)."""
    from torchvision.models import get_model_weights

    info = BACKBONES.get(backbone)
    if info.torchvision_name is None:
        raise ConfigError(f"fetch: backbone '{backbone}' has no ImageNet weights (only torchvision backbones do)")
    enum = get_model_weights(info.torchvision_name).DEFAULT
    try:
        enum.get_state_dict(progress=True)
    except OSError as e:
        raise ConfigError(f"fetch {backbone}: cannot download {enum.url} ({e}); no internet here?") from None
    return weights_file(enum)


def weights_file(enum: object) -> Path:
    """Where torchvision caches a weights enum's file (the torch hub checkpoints folder)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(enum.url).path).name


def load_weights(spec: str, backbone: str, any_network: bool = False) -> LoadedWeights:
    """Resolve `none`, `imagenet` or `checkpoint:PATH` for a backbone (`any_network`: a checkpoint may hold
    another backbone, which is then the network built; see LoadedWeights.network). A network with its own
    weights names (a detector) resolves them itself."""
    resolve = BACKBONES.get(backbone).resolve_weights if backbone in BACKBONES else None
    if resolve is not None:
        return resolve(spec)
    if spec == "none":
        return LoadedWeights("none")
    if spec == "imagenet":
        enum = imagenet_weights(backbone)
        t = enum.transforms()
        prep = Preprocessing(int(t.crop_size[0]), tuple(t.mean), tuple(t.std), f"imagenet:{enum}",
                             int(t.resize_size[0]))
        return LoadedWeights("imagenet", weights_enum=enum, meta=dict(enum.meta), preprocessing=prep)
    if spec.startswith("checkpoint:"):
        return read_checkpoint(spec.partition(":")[2], None if any_network else backbone)
    raise ConfigError(f"weights='{spec}': choose from: none, imagenet, checkpoint:PATH")


def read_checkpoint(path: str, backbone: str | None = None) -> LoadedWeights:
    """A source network written by `harness pretrain`, loaded with weights_only=True."""
    p = Path(path).expanduser()
    blob = read_file(p, SOURCE_FORMAT, f"weights='checkpoint:{path}'", "write one with `harness pretrain`")
    meta = blob["meta"]
    lacking = [k for k in ("image_size", "mean", "std") if k not in (meta if isinstance(meta, dict) else {})]
    if lacking:
        raise ConfigError(f"weights='checkpoint:{path}': its meta lacks '{lacking[0]}' (the input size and "
                          f"normalisation it was trained with); write one with `harness pretrain`")
    if backbone is not None and blob["backbone"] != backbone:
        raise ConfigError(f"weights='checkpoint:{path}': it holds a '{blob['backbone']}' network, "
                          f"not backbone '{backbone}'")
    prep = Preprocessing(int(meta["image_size"]), tuple(meta["mean"]), tuple(meta["std"]), f"checkpoint:{p.name}")
    return LoadedWeights("checkpoint", state_dict=blob["state_dict"], meta=meta, preprocessing=prep,
                         network=blob["backbone"], classifier=blob.get("classifier"))


def build_backbone(name: str, weights: LoadedWeights) -> StagedBackbone:
    """A StagedBackbone with its weights loaded."""
    from harness.models.staged import load_state_checked

    info = BACKBONES.get(name)
    backbone = info.build(weights.weights_enum)
    if weights.state_dict is not None:
        load_state_checked(backbone, weights.state_dict, f"checkpoint for '{name}'")
    return backbone
