"""The server side of a federated run (harness.methods.federated): the clients' shards, which clients train each
round and with which seed, what is sent, the aggregation of their updates into the global model, and the
federated figures (per-client accuracy, communication, rounds to 90% of the final accuracy).

A client's local training itself is the loop's (`harness.train.loop.client_update`), so that a client runs
the same epochs whether it runs in the trial's process or as a Ray task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.data.bundle import AnySplit
from harness.data.shards import client_shards, label_mix
from harness.methods.federated import State, weighted_mean

ROUND_SEED_STRIDE = 10007  # round r shuffles with seed + stride * (r - 1): round 1 sees a centralised run's order


@dataclass(frozen=True)
class ClientTask:
    """What one client needs for one round besides the global weights: who it is, the round, the seed of its data
    order and dropout, and the entries it keeps between rounds (FedBN's BatchNorm layers)."""

    client: int
    round: int
    seed: int
    kept: State = field(default_factory=dict)


@dataclass(frozen=True)
class ClientUpdate:
    """What a client sends back after its local epochs: the sent entries, the kept ones, its sample count and how
    its epochs went."""

    client: int
    samples: int
    sent: State
    kept: State
    train_loss: float
    images: int
    seconds: float
    diverged: bool


def round_seed(seed: int, round_: int) -> int:
    """The seed of every client's data order and dropout in a round; round 1 uses the run's seed."""
    return seed + ROUND_SEED_STRIDE * (round_ - 1)


class Federation:
    """The server's state: shards (deterministic by the split seed), client sampling (by the run's seed), the
    server strategy, the clients' kept entries, and the bytes sent each round."""

    def __init__(self, config: TrialConfig, server: Any, train: AnySplit, trained: nn.Module,
                 num_classes: int) -> None:
        args = config.method_args
        self.config, self.server = config, server
        labels = train.labels.numpy()
        self.shards = client_shards(labels, args.clients, args.alpha, config.split_seed)
        self.mixes = np.stack([label_mix(labels, s, num_classes) for s in self.shards])
        trainable = trainable_entries(trained)
        owners = dict(entry_owners(trained))
        self.kept_keys = [k for k in trainable if server.local(owners[k], k)]
        self.sent_keys = [k for k in trainable if k not in self.kept_keys]
        params = {n for n, _ in trained.named_parameters()}
        server.bind([k for k in self.sent_keys if k in params])
        state = trained.state_dict()
        self.kept: list[State] = [{k: state[k].detach().clone() for k in self.kept_keys} for _ in self.shards]
        self.round_bytes: list[int] = []
        per_client = sum(state[k].numel() * state[k].element_size() for k in self.sent_keys)
        self.bytes_per_client = 2 * per_client  # the global weights down, the client's weights up

    @property
    def clients_per_round(self) -> int:
        args = self.config.method_args
        return max(1, round(args.client_fraction * args.clients))

    def tasks(self, round_: int) -> list[ClientTask]:
        """The clients of a round, in client order: all of them, or a sample drawn by (seed, round)."""
        k, m = len(self.shards), self.clients_per_round
        chosen = range(k) if m == k else sorted(np.random.default_rng([self.config.seed, round_]).choice(k, m, False))
        seed = round_seed(self.config.seed, round_)
        return [ClientTask(int(c), round_, seed, self.kept[c]) for c in chosen]

    def global_state(self, trained: nn.Module) -> State:
        """The global values of the sent entries (copies)."""
        state = trained.state_dict()
        return {k: state[k].detach().clone() for k in self.sent_keys}

    def aggregate(self, trained: nn.Module, current: State, updates: list[ClientUpdate]) -> None:
        """Put the server's new global weights into `trained`: the strategy's aggregate of the sent entries, and
        for kept entries the sample-weighted mean over every client (what the server's model is scored with)."""
        new = self.server.aggregate(current, [u.sent for u in updates], [u.samples for u in updates])
        for u in updates:
            self.kept[u.client] = u.kept
        if self.kept_keys:
            sizes = np.array([len(s) for s in self.shards], dtype=float)
            new.update(weighted_mean(self.kept, list(sizes / sizes.sum())))
        trained.load_state_dict(new, strict=False)
        self.round_bytes.append(self.bytes_per_client * len(updates))

    def client_metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Per-client accuracy of the server's model on a held-out split: each client's accuracy is the per-class
        accuracy weighted by that client's class mix (its own label distribution), so validation and test stay
        on the server. Mean and worst over the clients."""
        num_classes = self.mixes.shape[1]
        targets = targets.long()
        hits = torch.bincount(targets[outputs.argmax(1) == targets], minlength=num_classes).double()
        counts = torch.bincount(targets, minlength=num_classes).double()
        present = (counts > 0).numpy()
        recall = (hits / counts.clamp(min=1)).numpy()
        mixes = self.mixes[:, present]
        acc = (mixes * recall[present]).sum(1) / np.maximum(mixes.sum(1), 1e-12)
        return {"client_accuracy_mean": float(acc.mean()), "client_accuracy_worst": float(acc.min())}

    def facts(self, history: list[dict[str, Any]], headline: str) -> dict[str, dict[str, Any]]:
        """The run's federated figures: communication (cost) and rounds to reach 90% of the final validation
        score (from the per-round curve), plus the setting's shard sizes (model)."""
        mb = [b / 2**20 for b in self.round_bytes]
        curve = [row.get(f"val_{headline}") for row in history]
        curve = [v for v in curve if v is not None and np.isfinite(v)]
        to_90 = next((i + 1 for i, v in enumerate(curve) if v >= 0.9 * curve[-1]), None) if curve else None
        return {"cost": {"mb_per_round": float(np.mean(mb)) if mb else 0.0, "mb_total": float(sum(mb)),
                         "rounds_to_90": to_90},
                "model": {"clients_per_round": self.clients_per_round,
                          "shard_sizes": [len(s) for s in self.shards]}}

    @staticmethod
    def check(config: TrialConfig, task_name: str, world_size: int) -> None:
        """Federated runs are single-process classification runs (clients may still run as Ray tasks)."""
        if task_name != "classification":
            raise ConfigError(f"method='{config.method}': federated methods score classification only; dataset "
                              f"'{config.dataset}' is a {task_name} task")
        if world_size > 1:
            raise ConfigError(f"workers_per_trial={world_size}: method '{config.method}' runs its clients in one "
                              f"process or as Ray tasks (client_parallelism: ray), not over DDP workers")

    def state_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "round_bytes": list(self.round_bytes), "server": self.server.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept, self.round_bytes = list(state["kept"]), list(state["round_bytes"])
        self.server.load_state_dict(state["server"])


def trainable_entries(module: nn.Module) -> list[str]:
    """State-dict entries that training changes: trainable parameters, and the buffers of modules with one
    (BatchNorm statistics of trained stages); frozen stages' entries are neither trained nor sent."""
    out = []
    for name, m in module.named_modules():
        own = list(m.named_parameters(recurse=False))
        if any(p.requires_grad for _, p in own):
            prefix = f"{name}." if name else ""
            out += [prefix + n for n, p in own if p.requires_grad]
            out += [prefix + n for n, _ in m.named_buffers(recurse=False)]
    return out


def entry_owners(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """(state-dict entry, the module holding it) for every parameter and buffer."""
    out = []
    for name, m in module.named_modules():
        prefix = f"{name}." if name else ""
        out += [(prefix + n, m) for n, _ in m.named_parameters(recurse=False)]
        out += [(prefix + n, m) for n, _ in m.named_buffers(recurse=False)]
    return out
