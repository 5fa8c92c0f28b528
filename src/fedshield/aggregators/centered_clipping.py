"""Centered clipping: average the updates after clipping them around the last aggregate.

Karimireddy, He, Jaggi. "Learning from History for Byzantine Robust Optimization."
ICML 2021.

Starting from ``v_0 = center`` (the previous round's aggregate), ``L = iterations`` times::

    v_{l+1} = v_l + (1/n) sum_i clip_tau(x_i - v_l),     clip_tau(z) = z * min(1, tau / ||z||)

The paper pairs it with worker momentum (beta about 0.9); that belongs to the clients, not
to this rule. Each iteration is one pass for the ``n`` distances ``||x_i - v||``
(``torch.cdist`` in direct mode, no ``[n, d]`` temporary) and one GEMV, since with
``c_i = min(1, tau / ||x_i - v||)`` the update is ``v <- (1/n) c @ X + (1 - sum_i c_i / n) v``.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor

from fedshield.aggregators.checks import check_updates


def centered_clipping(
    updates: Tensor, *, center: Tensor, tau: float, iterations: int = 1
) -> Tensor:
    """Centered clipping aggregate.

    Args:
        updates: ``[n, d]`` float update matrix.
        center: ``[d]`` starting point, normally the previous aggregate (momentum); finite.
        tau: Clipping radius, a finite number > 0.
        iterations: Number of clipping iterations ``L >= 1``.

    Returns:
        ``[d]`` aggregate, in the dtype of ``updates``.

    Raises:
        ValueError: Bad update matrix, ``center`` not a finite ``[d]`` tensor, ``tau`` not
            a finite positive number, or ``iterations`` not an integer >= 1.
    """
    check_updates(updates)
    n, d = updates.shape
    if not isinstance(center, Tensor):
        raise ValueError(f"center must be a torch.Tensor, got {type(center).__name__}")
    if tuple(center.shape) != (d,):
        raise ValueError(f"center must have shape ({d},), got {tuple(center.shape)}")
    if not bool(torch.isfinite(center).all()):
        raise ValueError("center has non-finite (NaN/Inf) entries")
    if isinstance(tau, bool) or not isinstance(tau, Real) or not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")

    v = center.to(device=updates.device, dtype=updates.dtype)
    for _ in range(iterations):
        dist = torch.cdist(
            v.unsqueeze(0), updates, p=2.0, compute_mode="donot_use_mm_for_euclid_dist"
        )[0].to(torch.float64)
        # min(1, tau / ||z||); a zero distance gives inf -> 1 (and z = 0 anyway)
        c = (float(tau) / dist).clamp(max=1.0)
        # v + (1/n) sum_i c_i (x_i - v) = (1/n) c @ X + (1 - sum_i c_i / n) v: no
        # cancellation between two large terms, and the plain mean when nothing is clipped
        v = torch.add((c.to(updates.dtype) @ updates).div_(n), v, alpha=1.0 - float(c.sum()) / n)
    return v


__all__ = ["centered_clipping"]
