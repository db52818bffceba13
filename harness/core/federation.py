"""A federated setting (how many clients, how skewed their data, which fraction trains each round): the keys that
describe it and its words, shared by the federated methods, the suites and the leaderboard."""

from __future__ import annotations

from typing import Any

SETTING_KEYS = ("clients", "alpha", "client_fraction")


def setting(values: dict[str, Any]) -> str:
    """A federated setting in words (`10 clients, alpha 0.1, fraction 1`; alpha 0 reads `iid`)."""
    alpha = float(values.get("alpha", 0.0))
    return (f"{int(values.get('clients', 10))} clients, {'iid' if alpha == 0 else f'alpha {alpha:g}'}, "
            f"fraction {float(values.get('client_fraction', 1.0)):g}")
