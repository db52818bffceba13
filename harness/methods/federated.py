"""Federated transfer: K clients each hold a shard of the target's training split and train one network together,
from pretrained weights or not. Every round the sampled clients start from the global weights, run
`local_epochs` epochs of the training loop on their shard, and a server aggregates what they send:

- `fedavg` (McMahan et al. 2017): the sample-weighted mean of the clients' weights.
- `fedprox` (Li et al. 2020): FedAvg whose clients add mu/2 ||w - w_global||^2 to their loss.
- `fedbn` (Li et al. 2021): FedAvg except BatchNorm layers, which every client keeps; the server's model (the one
  scored on validation and test) carries the sample-weighted mean of the clients' BatchNorm layers.
- `fedadam` (Reddi et al. 2021): the server takes an Adam step (server_lr) along the mean client update.

The aggregation is a few lines of torch on state dicts (written here rather than taken from Flower, whose
simulation calls ray.shutdown() and would end the Tune trial's own Ray session). The first freeze_depth stages
are frozen: neither trained nor sent. The rounds are the loop's epochs (one validation and report per round).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.core.config import MethodArgs, TrialConfig, param
from harness.methods.base import Method, register
from harness.methods.objective import MethodContext, Objective

if TYPE_CHECKING:
    import torch
    from torch import nn

State = dict[str, "torch.Tensor"]


@dataclass(frozen=True)
class FederatedArgs(MethodArgs):
    """The federated setting (clients, alpha, client_fraction: part of the cell, never searched) and the
    searched local training (local_epochs, freeze_depth)."""

    clients: int = param(10, "clients, each holding one shard of the training split", low=1, searchable=False)
    alpha: float = param(0.0, "label skew: Dirichlet concentration of each client's class mix (0 = IID shards)",
                         low=0, searchable=False)
    client_fraction: float = param(1.0, "share of the clients sampled each round", low=0, low_open=True, high=1,
                                   searchable=False)
    local_epochs: int = param(1, "epochs each sampled client trains on its shard per round", low=1)
    freeze_depth: int = param(0, "leading backbone stages kept frozen (neither trained nor sent)", low=0,
                              stage_relative=True)


@dataclass(frozen=True)
class FedProxArgs(FederatedArgs):
    """FedAvg's knobs plus the proximal term's weight."""

    mu: float = param(0.01, "weight of the clients' proximal term mu/2 ||w - w_global||^2; 0 is FedAvg", low=0)


@dataclass(frozen=True)
class FedAdamArgs(FederatedArgs):
    """FedAvg's knobs plus the server optimiser's learning rate."""

    server_lr: float = param(0.01, "learning rate of the server's Adam step along the mean client update", low=0,
                             low_open=True)


class ClientObjective(Objective):
    """A client's loss: the task's loss (plus the run's weight penalties); `start` is called when a client begins
    its local epochs from the global weights."""

    def start(self) -> None:
        """Nothing to remember for FedAvg, FedBN and FedAdam."""


class ProxObjective(ClientObjective):
    """FedProx's client loss: the task's loss + mu/2 ||w - w_global||^2 over the trained weights, w_global being
    the weights the client started its round from."""

    def __init__(self, ctx: MethodContext) -> None:
        self.mu = ctx.config.method_args.mu
        self.weights = [p for p in ctx.trained.parameters() if p.requires_grad]
        self.anchors: list[torch.Tensor] = []
        super().__init__(ctx, [self.proximal])

    def start(self) -> None:
        self.anchors = [p.detach().clone() for p in self.weights]

    def proximal(self) -> torch.Tensor:
        import torch

        return 0.5 * self.mu * torch.stack([(p - a).pow(2).sum() for p, a in zip(self.weights, self.anchors)]).sum()


def weighted_mean(states: list[State], weights: list[float]) -> State:
    """The weighted mean of state dicts (weights summing to 1), accumulated in float64; integer tensors (BatchNorm's
    batch counters) are rounded back."""
    out = {}
    for key, first in states[0].items():
        total = sum(w * s[key].double() for s, w in zip(states, weights))
        out[key] = (total.round() if not first.is_floating_point() else total).to(first.dtype)
    return out


class Server:
    """FedAvg's server: the new global weights are the sample-weighted mean of what the clients sent. `local`
    names the state-dict entries clients keep (none here)."""

    def __init__(self, config: TrialConfig) -> None:
        self.config = config

    def local(self, module: nn.Module, name: str) -> bool:
        """Whether the entry `name` (of sub-module `module`) stays with each client instead of being sent."""
        return False

    def bind(self, parameters: list[str]) -> None:
        """The names of the sent entries that are parameters (the rest are buffers)."""
        self.parameters = parameters

    def aggregate(self, current: State, sent: list[State], samples: list[int]) -> State:
        """The new global values of the sent entries from the current ones and each client's."""
        total = sum(samples)
        return weighted_mean(sent, [n / total for n in samples])

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing kept between rounds."""


class FedBNServer(Server):
    """FedBN's server: BatchNorm layers (weights, biases and running statistics) stay with each client."""

    def local(self, module: nn.Module, name: str) -> bool:
        from torch import nn

        return isinstance(module, nn.modules.batchnorm._BatchNorm)


class FedAdamServer(Server):
    """FedAdam's server (Reddi et al. 2021): the mean client update, negated, is the gradient of an Adam step
    (betas 0.9, 0.99; eps = tau = 1e-3) on the global parameters; buffers take the mean."""

    def __init__(self, config: TrialConfig) -> None:
        super().__init__(config)
        self.weights: list[torch.Tensor] = []
        self.optimizer: torch.optim.Adam | None = None
        self.saved: dict[str, Any] | None = None

    def aggregate(self, current: State, sent: list[State], samples: list[int]) -> State:
        import torch

        mean = super().aggregate(current, sent, samples)
        if self.optimizer is None:
            self.weights = [current[k].detach().clone().float().requires_grad_(True) for k in self.parameters]
            self.optimizer = torch.optim.Adam(self.weights, lr=self.config.method_args.server_lr, betas=(0.9, 0.99),
                                              eps=1e-3)
            if self.saved is not None:
                self.optimizer.load_state_dict(self.saved)
        with torch.no_grad():
            for w, k in zip(self.weights, self.parameters):
                w.copy_(current[k])
                w.grad = (current[k] - mean[k]).float()
        self.optimizer.step()
        return {**mean, **{k: w.detach().clone().to(current[k].dtype) for w, k in zip(self.weights, self.parameters)}}

    def state_dict(self) -> dict[str, Any]:
        return {"adam": self.optimizer.state_dict()} if self.optimizer is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.saved = state.get("adam")


def freeze_depth(config: TrialConfig, num_stages: int) -> int:
    return config.method_args.freeze_depth


for _name, _description, _args, _objective, _server in (
    ("fedavg", ("federated averaging: K clients train local_epochs on their shard per round, the server averages "
                "their weights by samples"), FederatedArgs, ClientObjective, Server),
    ("fedprox", "FedAvg whose clients add the proximal term mu/2 ||w - w_global||^2 to their loss", FedProxArgs,
                ProxObjective, Server),
    ("fedbn", "FedAvg with BatchNorm layers kept by each client (the server's model averages them)", FederatedArgs,
              ClientObjective, FedBNServer),
    ("fedadam", "federated training whose server takes an Adam step (server_lr) along the mean client update",
                FedAdamArgs, ClientObjective, FedAdamServer),
):
    register(Method(_name, _description, freeze_depth, args=_args, objective=_objective, server=_server))
