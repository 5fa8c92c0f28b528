"""Krum and Multi-Krum: keep the update(s) closest to their nearest neighbours.

Blanchard, El Mhamdi, Guerraoui, Stainer. "Machine Learning with Adversaries: Byzantine
Tolerant Gradient Descent." NeurIPS 2017.

With ``n`` updates of which at most ``f`` are Byzantine (requires ``n > 2f + 2``)::

    score(i)  = sum_{j in N_i} ||U_i - U_j||^2      N_i: the n - f - 2 rows j != i closest to U_i
    Krum(U)   = U_{i*},  i* = argmin_i score(i)
    MultiKrum(U; m) = (1/m) sum_{i in S_m} U_i       S_m: the m rows with the lowest scores

All ``n^2`` squared distances come from one ``[n, d] x [d, n]`` GEMM
(:func:`fedshield.aggregators.base.pairwise_sq_distances`); everything after that is on the
``[n, n]`` matrix. The distance matrix is symmetrised (BLAS does not promise
``gram[i, j] == gram[j, i]`` bit for bit), so that a pair of mutual nearest neighbours gets
exactly equal scores.

Ties in the score (for instance such a pair when ``n - f - 2 == 1``) are broken by the
smaller sum of squared distances to *all* rows, then by the lower row index, so that the
chosen value does not depend on the order of the rows unless two rows tie on both.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fedshield.aggregators.base import Aggregation, check_num_byzantine, pairwise_sq_distances
from fedshield.aggregators.checks import check_updates


def krum_scores(updates: Tensor, *, num_byzantine: int) -> Tensor:
    """Krum score of every row: the sum of its ``n - f - 2`` smallest squared distances.

    Args:
        updates: ``[n, d]`` float update matrix.
        num_byzantine: ``f``, the assumed number of Byzantine rows; needs ``n > 2f + 2``.

    Returns:
        ``[n]`` scores, in the dtype of ``updates`` (lower = more central).

    Raises:
        ValueError: Bad update matrix, or ``num_byzantine`` negative, not an integer or too
            large for ``n``.
    """
    check_updates(updates)
    n = updates.shape[0]
    _check_krum_assumption(n, num_byzantine)
    dist = symmetric_sq_distances(updates)
    return scores_from_distances(dist, n - num_byzantine - 2)


def krum_aggregation(updates: Tensor, *, num_byzantine: int, num_selected: int = 1) -> Aggregation:
    """Multi-Krum with the selection: mean of the ``num_selected`` lowest-score rows.

    Args:
        updates: ``[n, d]`` float update matrix.
        num_byzantine: ``f``, the assumed number of Byzantine rows; needs ``n > 2f + 2``.
        num_selected: ``m`` in ``1..n``; ``1`` is Krum (the selected row itself, exactly).

    Returns:
        :class:`~fedshield.aggregators.base.Aggregation` with ``aggregate`` the ``[d]``
        unweighted mean of the selected rows and ``accepted`` the ``bool [n]`` mask of the
        selected rows.

    Raises:
        ValueError: Bad update matrix, ``num_byzantine`` out of range, or ``num_selected``
            not an integer in ``1..n``.
    """
    check_updates(updates)
    n = updates.shape[0]
    _check_krum_assumption(n, num_byzantine)
    if isinstance(num_selected, bool) or not isinstance(num_selected, int):
        raise ValueError(f"num_selected must be an integer, got {num_selected!r}")
    if not 1 <= num_selected <= n:
        raise ValueError(f"num_selected must be in 1..n = 1..{n}, got {num_selected}")

    dist = symmetric_sq_distances(updates)
    order = rank_rows(scores_from_distances(dist, n - num_byzantine - 2), dist.sum(dim=1))
    chosen = order[:num_selected]
    accepted = torch.zeros(n, dtype=torch.bool, device=updates.device)
    accepted.index_fill_(0, chosen, True)
    if num_selected == 1:
        aggregate = updates[int(chosen[0])].clone()
    else:
        # sum of the selected rows as one GEMV with a 0/1 mask (no copy of the rows)
        aggregate = (accepted.to(updates.dtype) @ updates) / num_selected
    return Aggregation(aggregate=aggregate, accepted=accepted)


def krum(updates: Tensor, *, num_byzantine: int, num_selected: int = 1) -> Tensor:
    """Krum: the row with the lowest score (or Multi-Krum's mean for ``num_selected > 1``).

    Args:
        updates: ``[n, d]`` float update matrix.
        num_byzantine: ``f``, the assumed number of Byzantine rows; needs ``n > 2f + 2``.
        num_selected: ``m`` in ``1..n``; the default 1 returns one input row exactly.

    Returns:
        ``[d]`` aggregate.

    Raises:
        ValueError: As :func:`krum_aggregation`.
    """
    return krum_aggregation(
        updates, num_byzantine=num_byzantine, num_selected=num_selected
    ).aggregate


def multi_krum(updates: Tensor, *, num_byzantine: int, num_selected: int | None = None) -> Tensor:
    """Multi-Krum: the mean of the ``num_selected`` rows with the lowest Krum scores.

    Args:
        updates: ``[n, d]`` float update matrix.
        num_byzantine: ``f``, the assumed number of Byzantine rows; needs ``n > 2f + 2``.
        num_selected: ``m`` in ``1..n``; None = ``n - f``.

    Returns:
        ``[d]`` aggregate.

    Raises:
        ValueError: As :func:`krum_aggregation`.
    """
    if num_selected is None:
        check_updates(updates)
        n = updates.shape[0]
        _check_krum_assumption(n, num_byzantine)
        num_selected = n - num_byzantine
    return krum_aggregation(
        updates, num_byzantine=num_byzantine, num_selected=num_selected
    ).aggregate


# --------------------------------------------------------------------------- helpers
# (also used by Bulyan's repeated Krum)


def symmetric_sq_distances(updates: Tensor) -> Tensor:
    """``[n, n]`` squared distances from one GEMM, made exactly symmetric."""
    dist = pairwise_sq_distances(updates)
    return (dist + dist.T) * 0.5


def scores_from_distances(dist: Tensor, num_closest: int) -> Tensor:
    """Per row of a squared-distance matrix, the sum of its ``num_closest`` smallest
    off-diagonal entries (``num_closest`` in ``0..n-1``)."""
    n = dist.shape[0]
    if num_closest <= 0:
        return dist.new_zeros(n)
    off = dist.clone()
    off.fill_diagonal_(float("inf"))
    return off.topk(num_closest, dim=1, largest=False, sorted=False).values.sum(dim=1)


def rank_rows(scores: Tensor, totals: Tensor) -> Tensor:
    """Row indices ordered by score, then by total distance, then by index (all ascending)."""
    by_total = torch.sort(totals, stable=True).indices
    return by_total[torch.sort(scores[by_total], stable=True).indices]


def _check_krum_assumption(n: int, num_byzantine: int) -> None:
    ok = isinstance(num_byzantine, int) and n > 2 * num_byzantine + 2
    need = (
        f"n > 2f + 2 = {2 * num_byzantine + 2} (Krum's assumption)"
        if isinstance(num_byzantine, int)
        else "n > 2f + 2 (Krum's assumption)"
    )
    check_num_byzantine(n, num_byzantine, need=need, ok=ok)


__all__ = ["krum", "krum_aggregation", "krum_scores", "multi_krum"]
