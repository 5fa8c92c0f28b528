"""Aggregation rules: pure functions over the update matrix ``[n_clients, n_params]``.

Each rule is ``rule(updates, weights=None, **options) -> Tensor[n_params]``. The registry
maps a config name to the rule; :func:`get` fails with the list of known names.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from fedshield.aggregators.checks import check_updates, check_weights, nonfinite_rows
from fedshield.aggregators.mean import mean

Aggregator = Callable[..., Tensor]

#: name -> aggregation rule
AGGREGATORS: dict[str, Aggregator] = {
    "mean": mean,
}


def get(name: str) -> Aggregator:
    """Look up an aggregation rule by name.

    Raises:
        ValueError: Unknown name (the message lists the known ones).
    """
    try:
        return AGGREGATORS[name]
    except KeyError:
        known = ", ".join(sorted(AGGREGATORS))
        raise ValueError(f"unknown aggregator {name!r}: known aggregators are {known}") from None


__all__ = [
    "AGGREGATORS",
    "Aggregator",
    "check_updates",
    "check_weights",
    "get",
    "mean",
    "nonfinite_rows",
]
