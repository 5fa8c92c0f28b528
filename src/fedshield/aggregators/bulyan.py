"""Bulyan: repeated Krum selection, then a trimmed average around the coordinate median.

El Mhamdi, Guerraoui, Rouault. "The Hidden Vulnerability of Distributed Learning in
Byzantium." ICML 2018.

With ``n`` updates of which at most ``f`` are Byzantine (requires ``n >= 4f + 3``)::

    theta = n - 2f,   beta = theta - 2f
    S     = theta rows picked by Krum one at a time, each pick removed before the next
    Bulyan(U)_k = (1 / beta) * sum of the beta values of {U_{i,k} : i in S} closest to
                  median_k = coordinate median of S (mean of the two middle values, theta even)

Selection: the ``[n, n]`` squared distances come from one GEMM; each Krum round scores the
``r`` remaining rows on the sub-block of that matrix, summing each row's
``min(r - 1, max(1, r - f - 2))`` smallest distances (Krum's ``n - f - 2`` for the current
``r``; the bounds apply in the last rounds, where ``r - f - 2`` can reach 0, as in Flower's
``aggregate_krum``). Ties are broken as in :mod:`fedshield.aggregators.krum`.

Coordinate step: with the selected values of a coordinate sorted, ``s_0 <= ... <= s_{theta-1}``,
the ``beta`` values closest to the median are a contiguous window ``s_k .. s_{k+beta-1}``.
Sliding the window one step right swaps ``s_k`` for ``s_{k+beta}``, which is an improvement
iff ``m - s_k > s_{k+beta} - m``; both sides are monotone in ``k``, so the window start is
``k* = #{t < 2f : m - s_t > s_{t+beta} - m}`` (ties keep the left window), computed for all
coordinates at once on the ``[d, theta]`` row-sorted copy of the selected rows. The window
sum is then a gather of ``beta`` values per coordinate when ``beta <= 2f``, else the
always-included middle block plus two masked edge blocks of ``2f`` values, so apart from
the sorted copy no temporary holds more than ``2f`` values per coordinate. (Prefix sums
would pick the window as well, but a difference of prefix sums loses every small value next
to a huge selected one, so the sum is taken over the window itself.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from fedshield.aggregators.base import Aggregation, check_num_byzantine
from fedshield.aggregators.checks import check_updates
from fedshield.aggregators.krum import rank_rows, scores_from_distances, symmetric_sq_distances
from fedshield.aggregators.median import middle_of_sorted, sort_columns


def bulyan_aggregation(updates: Tensor, *, num_byzantine: int) -> Aggregation:
    """Bulyan with the selection: which ``theta = n - 2f`` rows the repeated Krum kept.

    Args:
        updates: ``[n, d]`` float update matrix.
        num_byzantine: ``f``, the assumed number of Byzantine rows; needs ``n >= 4f + 3``.

    Returns:
        :class:`~fedshield.aggregators.base.Aggregation` with the ``[d]`` aggregate and
        ``accepted``, the ``bool [n]`` mask of the ``theta`` selected rows.

    Raises:
        ValueError: Bad update matrix, or ``num_byzantine`` negative, not an integer or
            too large for ``n``.
    """
    check_updates(updates)
    n = updates.shape[0]
    f = num_byzantine
    ok = isinstance(f, int) and n >= 4 * f + 3
    need = (
        f"n >= 4f + 3 = {4 * f + 3} (Bulyan's assumption)"
        if isinstance(f, int)
        else "n >= 4f + 3 (Bulyan's assumption)"
    )
    check_num_byzantine(n, f, need=need, ok=ok)
    theta = n - 2 * f
    beta = theta - 2 * f

    if f == 0:
        # theta = beta = n: every row is selected and every value averaged
        accepted = torch.ones(n, dtype=torch.bool, device=updates.device)
        return Aggregation(aggregate=updates.mean(dim=0), accepted=accepted)
    selected = _select_by_repeated_krum(updates, f, theta)
    accepted = torch.zeros(n, dtype=torch.bool, device=updates.device)
    accepted.index_fill_(0, selected, True)

    # [d, theta]: each coordinate's selected values, sorted, contiguous along the row
    st = sort_columns(updates, rows=selected.sort().values).T
    med = middle_of_sorted(st.T).unsqueeze(1)  # [d, 1]
    c = 2 * f  # = theta - beta: the window start is one of 0..c
    # window start per coordinate: k* = #{t < c : m - s_t > s_{t+beta} - m} (module docstring)
    start = torch.gt(torch.sub(med, st[:, :c]), torch.sub(st[:, beta:], med))
    start = start.sum(dim=1, keepdim=True)  # int64 [d, 1], in 0..c

    if beta <= c:
        offsets = torch.arange(beta, device=updates.device)
        total = st.gather(1, start + offsets).sum(dim=1)
    else:
        # columns c..beta-1 are in every window; column t < c is in iff t >= start;
        # column beta + t (t < c) is in iff t < start
        t = torch.arange(c, device=updates.device)
        total = st[:, c:beta].sum(dim=1)
        total += torch.where(t >= start, st[:, :c], 0).sum(dim=1)
        total += torch.where(t < start, st[:, beta:], 0).sum(dim=1)
    return Aggregation(aggregate=total.div_(beta), accepted=accepted)


def bulyan(updates: Tensor, *, num_byzantine: int) -> Tensor:
    """Bulyan aggregate (see the module docstring).

    Args:
        updates: ``[n, d]`` float update matrix.
        num_byzantine: ``f``, the assumed number of Byzantine rows; needs ``n >= 4f + 3``.

    Returns:
        ``[d]`` aggregate.

    Raises:
        ValueError: As :func:`bulyan_aggregation`.
    """
    return bulyan_aggregation(updates, num_byzantine=num_byzantine).aggregate


def _select_by_repeated_krum(updates: Tensor, f: int, theta: int) -> Tensor:
    """Indices (in selection order) of ``theta`` rows picked by Krum one at a time."""
    dist = symmetric_sq_distances(updates)  # the only pass over the d columns
    remaining = torch.arange(updates.shape[0], device=updates.device)
    picked: list[Tensor] = []
    for _ in range(theta):  # loop over Krum selections, each on an [r, r] sub-block
        r = remaining.shape[0]
        # index_select, not dist[remaining][:, remaining]: advanced indexing costs ~1000x more
        sub = dist.index_select(0, remaining).index_select(1, remaining)
        num_closest = min(r - 1, max(1, r - f - 2))
        best = int(rank_rows(scores_from_distances(sub, num_closest), sub.sum(dim=1))[0])
        picked.append(remaining[best])
        remaining = torch.cat([remaining[:best], remaining[best + 1 :]])
    return torch.stack(picked)


__all__ = ["bulyan", "bulyan_aggregation"]
