"""Shared pieces of the robust aggregation rules: the detailed result type and the
pairwise-distance kernel every distance-based rule uses."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from fedshield.aggregators.checks import check_updates


@dataclass(frozen=True)
class Aggregation:
    """An aggregate with what the rule decided about each row.

    Attributes:
        aggregate: ``[d]`` the aggregated update.
        accepted: ``bool [n]`` rows the rule kept (selected, in the majority cluster, not
            filtered out); None for rules that keep every row (e.g. median).
        weights: ``float [n]`` trust weights the rule gave each row (FLTrust, FoolsGold);
            None when not applicable.
    """

    aggregate: Tensor
    accepted: Tensor | None = None
    weights: Tensor | None = None


def pairwise_sq_distances(updates: Tensor) -> Tensor:
    """``[n, n]`` squared L2 distances between rows from one matrix product.

    ``||u_i - u_j||^2 = ||u_i||^2 + ||u_j||^2 - 2 <u_i, u_j>``: one ``[n, d] x [d, n]``
    GEMM instead of ``n^2`` difference vectors. Accumulated in float64 when the input is
    float32 would cost a copy of the matrix, so the Gram matrix is computed in the input
    dtype and the result clamped at 0 (cancellation can make tiny distances negative);
    the diagonal is exactly 0.
    """
    gram = updates @ updates.T
    sq = gram.diagonal().clone()
    dist = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2.0 * gram).clamp_(min=0.0)
    dist.fill_diagonal_(0.0)
    return dist


def check_num_byzantine(n: int, num_byzantine: int, *, need: str, ok: bool) -> None:
    """Raise a clear error when a rule's assumption on ``(n, f)`` does not hold.

    Args:
        n: Number of rows.
        num_byzantine: Assumed number of Byzantine rows ``f``.
        need: The assumption in words, e.g. ``"n > 2f + 2"``.
        ok: Whether it holds.

    Raises:
        ValueError: ``num_byzantine`` negative or the assumption violated.
    """
    if isinstance(num_byzantine, bool) or not isinstance(num_byzantine, int):
        raise ValueError(f"num_byzantine must be an integer, got {num_byzantine!r}")
    if num_byzantine < 0:
        raise ValueError(f"num_byzantine must be >= 0, got {num_byzantine}")
    if not ok:
        raise ValueError(
            f"num_byzantine = {num_byzantine} is too large for n = {n} updates: this rule "
            f"needs {need}"
        )


__all__ = ["Aggregation", "check_num_byzantine", "check_updates", "pairwise_sq_distances"]
