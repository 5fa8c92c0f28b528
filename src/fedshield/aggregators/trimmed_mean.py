"""Coordinate-wise trimmed mean of client updates.

Yin, Chen, Ramchandran, Bartlett. "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates." ICML 2018.

With ``b = num_trim`` (the paper's ``beta * n``, ``beta >= f / n``) and
``s_{1,k} <= ... <= s_{n,k}`` the sorted values of coordinate ``k``::

    trmean_b(U)_k = 1 / (n - 2b) * sum_{j = b+1}^{n-b} s_{j,k}        requires n > 2b

i.e. per coordinate the ``b`` largest and ``b`` smallest values are dropped and the rest
averaged. ``b = 0`` is the plain mean. This equals ``scipy.stats.trim_mean`` with
``proportiontocut`` such that ``int(proportiontocut * n) == b``, and Flower's
``aggregate_trimmed_avg``.

Each column is sorted once (:func:`fedshield.aggregators.median.sort_columns`) and the
middle slice summed.
"""

from __future__ import annotations

from torch import Tensor

from fedshield.aggregators.checks import check_updates
from fedshield.aggregators.median import sort_columns


def trimmed_mean(updates: Tensor, *, num_trim: int) -> Tensor:
    """Per coordinate, the mean after dropping the ``num_trim`` largest and smallest values.

    Args:
        updates: ``[n, d]`` float update matrix.
        num_trim: ``b >= 0`` values cut at each end of every coordinate; needs ``n > 2b``.

    Returns:
        ``[d]`` aggregate.

    Raises:
        ValueError: Bad update matrix, ``num_trim`` not an integer, negative, or so large
            that nothing is left (``n <= 2 * num_trim``).
    """
    check_updates(updates)
    n = updates.shape[0]
    if isinstance(num_trim, bool) or not isinstance(num_trim, int):
        raise ValueError(f"num_trim must be an integer, got {num_trim!r}")
    if num_trim < 0:
        raise ValueError(f"num_trim must be >= 0, got {num_trim}")
    if n <= 2 * num_trim:
        raise ValueError(
            f"num_trim = {num_trim} cuts {2 * num_trim} of the n = {n} values of every "
            f"coordinate: the trimmed mean needs n > 2 * num_trim"
        )
    if num_trim == 0:
        return updates.mean(dim=0)
    return sort_columns(updates)[num_trim : n - num_trim].mean(dim=0)


__all__ = ["trimmed_mean"]
