"""Weighted mean of client updates: FedAvg's aggregation rule.

McMahan, Moore, Ramage, Hampson, Agüera y Arcas. "Communication-Efficient Learning of Deep
Networks from Decentralized Data." AISTATS 2017.

    mean(U, w) = sum_k w_k U_k / sum_k w_k       U: [n, d], w: [n] >= 0

With ``weights`` the clients' sample counts this is FedAvg; without, the plain average.
"""

from __future__ import annotations

from torch import Tensor

from fedshield.aggregators.checks import check_updates, check_weights


def mean(updates: Tensor, weights: Tensor | None = None) -> Tensor:
    """Weighted mean of the rows of the update matrix.

    Args:
        updates: ``[n_clients, n_params]`` float update matrix.
        weights: ``[n_clients]`` non-negative weights (e.g. sample counts); None = uniform.

    Returns:
        ``[n_params]`` aggregate.

    Raises:
        ValueError: Empty or non-2-D matrix, non-finite entries, or bad weights
            (wrong length, negative, non-finite, all zero).
    """
    check_updates(updates)
    if weights is None:
        return updates.mean(dim=0)
    w = check_weights(weights, updates.shape[0]).to(updates.dtype)
    # one GEMV: w @ U / sum(w)
    return (w / w.sum()) @ updates
