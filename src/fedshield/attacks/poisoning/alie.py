"""A Little Is Enough (ALIE): shift every coordinate by a few standard deviations.

Baruch, Baruch, Goldberg. "A Little Is Enough: Circumventing Defenses For Distributed
Learning." NeurIPS 2019.

With ``n`` clients of which ``f`` are malicious, the attackers need ``s`` benign
"supporters" to reach a majority, and pick the largest deviation ``z`` that still keeps
``s`` benign values farther from the mean than the malicious one (normal approximation):

    s = floor(n / 2 + 1) - f
    z = Phi^{-1}((n - s) / n)
    u' = mu - z * sigma        (coordinate-wise; every attacker sends the same u')

where ``mu`` and ``sigma`` are the coordinate-wise mean and standard deviation of the
benign updates known to the attackers (their own honest updates, or all benign ones when
omniscient). Published values: ``(n, f) = (50, 12) -> z = 0.583``, ``(20, 4) -> 0.385``,
``(100, 20) -> 0.496``.

Which standard deviation: ``sigma`` here is the **unbiased** sample std (Bessel's
correction, ``torch.std``'s default ``correction=1``), as in Shejwalkar & Houmansadr's
NDSS'21 reference code (``lie_attack``: ``torch.std(all_updates, dim=0)``) and most torch
ports. Ports of the authors' numpy code compute the population std (``np.var(...) **
0.5``, ``ddof=0``), smaller by ``sqrt((m - 1) / m)`` for ``m`` benign rows; to reproduce
it pass ``z = z_paper * sqrt((m - 1) / m)``. Some codebases hard-code ``z = 1``; pass
``z`` to override.
"""

from __future__ import annotations

import math

from scipy.stats import norm
from torch import Tensor

from fedshield.aggregators.checks import check_updates
from fedshield.attacks._checks import check_int, check_min_rows, check_real


def alie_z(num_clients: int, num_byzantine: int) -> float:
    """ALIE's deviation ``z = Phi^{-1}((n - s) / n)`` with ``s = floor(n/2 + 1) - f``.

    Args:
        num_clients: ``n``, all clients of the round (benign and malicious), >= 1.
        num_byzantine: ``f``, the malicious ones, ``0 <= f < n``.

    Returns:
        ``z`` (e.g. 0.5828 for ``n = 50, f = 12``).

    Raises:
        ValueError: Bad ``n`` / ``f``, or ``(n - s) / n`` outside ``(0, 1)`` (so that
            ``z`` would be infinite): ``f >= floor(n/2 + 1)`` (the attackers are a
            majority on their own), or ``n = 1``.
    """
    n = check_int("num_clients", num_clients, minimum=1)
    f = check_int("num_byzantine", num_byzantine, minimum=0)
    if f >= n:
        raise ValueError(
            f"num_byzantine = {f} must be smaller than num_clients = {n} (the benign "
            "clients are the ones the attack hides among)"
        )
    s = math.floor(n / 2 + 1) - f
    p = (n - s) / n
    if not 0.0 < p < 1.0:
        raise ValueError(
            f"ALIE's z is undefined for num_clients = {n}, num_byzantine = {f}: "
            f"s = floor(n/2 + 1) - f = {s} gives (n - s)/n = {p}, outside (0, 1)"
        )
    return float(norm.ppf(p))


def alie(
    benign_updates: Tensor,
    *,
    num_clients: int,
    num_byzantine: int,
    z: float | None = None,
) -> Tensor:
    """The ALIE malicious update ``mu - z * sigma``.

    Args:
        benign_updates: ``[m, d]`` benign updates known to the attackers, ``m >= 2``.
        num_clients: ``n``, all clients of the round (used for ``z``).
        num_byzantine: ``f``, the malicious ones (used for ``z``).
        z: Deviation; None computes :func:`alie_z` ``(n, f)``.

    Returns:
        ``[d]`` malicious update, same dtype as ``benign_updates``.

    Raises:
        ValueError: Bad matrix, fewer than 2 rows (no std), bad ``n`` / ``f`` (see
            :func:`alie_z`), or ``z`` not finite.
    """
    check_updates(benign_updates)
    check_min_rows(benign_updates, 2, "ALIE's coordinate-wise std")
    if z is None:
        z_value = alie_z(num_clients, num_byzantine)
    else:
        z_value = _checked_z(num_clients, num_byzantine, z)
    mu = benign_updates.mean(dim=0)
    sigma = benign_updates.std(dim=0)  # unbiased (correction=1), see the module docstring
    return mu.sub_(sigma, alpha=z_value)


def _checked_z(num_clients: int, num_byzantine: int, z: float) -> float:
    """Validate an explicit ``z`` and the ``(n, f)`` that come with it."""
    n = check_int("num_clients", num_clients, minimum=1)
    f = check_int("num_byzantine", num_byzantine, minimum=0)
    if f >= n:
        raise ValueError(f"num_byzantine = {f} must be smaller than num_clients = {n}")
    return check_real("z", z)


__all__ = ["alie", "alie_z"]
