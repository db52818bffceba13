"""Client shards of a training split for federated runs: IID, or label skew by a Dirichlet(alpha) draw per class
(Hsu et al. 2019, "Measuring the effects of non-identical data distribution for federated visual
classification"), deterministic by a seed. Every index goes to exactly one client."""

from __future__ import annotations

import numpy as np

from harness.core.errors import ConfigError

MIN_SHARD = 2  # a client needs two images: BatchNorm cannot train on a batch of one
MAX_DRAWS = 1000


def client_shards(labels: np.ndarray, clients: int, alpha: float, seed: int) -> list[np.ndarray]:
    """The training indices of each of `clients` clients, each sorted: alpha = 0 is an IID split (a random
    permutation cut into near-equal parts); alpha > 0 splits every class over the clients by proportions drawn
    from Dirichlet(alpha), redrawn until every client holds at least MIN_SHARD images (small alpha: each client
    sees few classes)."""
    labels = np.asarray(labels)
    n = len(labels)
    if n < clients * MIN_SHARD:
        raise ConfigError(f"clients={clients}: the training split has {n} images, fewer than {MIN_SHARD} per "
                          f"client; use at most {n // MIN_SHARD} clients")
    rng = np.random.default_rng(seed)
    if alpha == 0:
        return [np.sort(part) for part in np.array_split(rng.permutation(n), clients)]
    for _ in range(MAX_DRAWS):
        parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for c in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(clients, alpha))) * len(members)).astype(int)[:-1]
            for k, chunk in enumerate(np.split(members, cuts)):
                parts[k].append(chunk)
        shards = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(s) for s in shards) >= MIN_SHARD:
            return shards
    raise ConfigError(f"alpha={alpha}: no Dirichlet draw in {MAX_DRAWS} gave each of {clients} clients "
                      f"{MIN_SHARD} images; use fewer clients or a larger alpha")


def label_mix(labels: np.ndarray, shard: np.ndarray, num_classes: int) -> np.ndarray:
    """The share of each class among a client's images (sums to 1)."""
    counts = np.bincount(np.asarray(labels)[shard], minlength=num_classes).astype(float)
    return counts / counts.sum()
