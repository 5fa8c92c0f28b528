"""The SecAgg+ neighbour graph: a random Harary graph (Bell et al. CCS 2020, Sec. 3).

Clients are placed in a random cyclic order (a seeded permutation) and each is connected
to the ``k / 2`` clients on either side: a ``k``-regular, ``k``-connected graph (Harary's
``H_{k,n}`` for even ``k``) on a random relabelling. An odd ``k`` is rounded up to the next
even degree (more neighbours never weakens privacy or robustness); ``k >= n - 1`` gives the
complete graph, i.e. the original SecAgg of Bonawitz et al.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["default_num_neighbours", "default_threshold", "effective_degree", "neighbour_graph"]


def default_num_neighbours(n: int) -> int:
    """The smallest even number ``>= 2 * ceil(log2 n)``, capped at ``n - 1``.

    Args:
        n: Number of clients (``>= 2``).

    Returns:
        A degree ``k = O(log n)`` for :func:`neighbour_graph`.
    """
    if n < 2:
        raise ValueError(f"need at least 2 clients, got n={n}")
    k = 2 * math.ceil(math.log2(n))
    k += k % 2
    return min(k, n - 1)


def default_threshold(k: int) -> int:
    """A Shamir threshold of a strict majority of the ``k`` neighbours: ``k // 2 + 1``."""
    if k < 1:
        raise ValueError(f"num_neighbours must be >= 1, got {k}")
    return k // 2 + 1


def effective_degree(n: int, k: int) -> int:
    """The degree :func:`neighbour_graph` actually builds for ``n`` clients and ``k``.

    Raises:
        ValueError: If ``n < 2`` or ``k`` is not in ``[1, n - 1]``.
    """
    if n < 2:
        raise ValueError(f"need at least 2 clients, got n={n}")
    if not 1 <= k <= n - 1:
        raise ValueError(f"num_neighbours must be in [1, n - 1] = [1, {n - 1}], got {k}")
    k_even = k + k % 2
    return n - 1 if k_even >= n - 1 else k_even


def neighbour_graph(n: int, k: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """A random ``k``-regular Harary graph on ``n`` clients.

    Args:
        n: Number of clients, ids ``0..n-1``.
        k: Requested degree (see :func:`effective_degree`).
        seed: Seed of the random cyclic order.

    Returns:
        For each client id, the sorted tuple of its neighbours' ids.
    """
    degree = effective_degree(n, k)
    if degree == n - 1:
        return tuple(tuple(v for v in range(n) if v != u) for u in range(n))
    order = np.random.default_rng([seed, 0x6E]).permutation(n)
    half = degree // 2
    neighbours: list[tuple[int, ...]] = [()] * n
    for pos in range(n):
        ring = [int(order[(pos + off) % n]) for off in range(-half, half + 1) if off != 0]
        neighbours[int(order[pos])] = tuple(sorted(ring))
    return tuple(neighbours)
