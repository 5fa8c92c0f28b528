"""Geometric median by the smoothed Weiszfeld algorithm (RFA).

Pillutla, Kakade, Harchaoui. "Robust Aggregation for Federated Learning." IEEE Transactions
on Signal Processing 70, 2022.

The (weighted) geometric median minimises ``g(v) = sum_i alpha_i ||v - w_i||`` with
``alpha = weights / sum(weights)``. Smoothed Weiszfeld, starting at the weighted mean::

    beta_i = alpha_i / max(eps, ||v - w_i||)
    v     <- sum_i beta_i w_i / sum_i beta_i

stopping when ``|g(v_old) - g(v_new)| <= eps * g(v_new)`` or after ``max_iter`` updates.
``eps`` (the paper's ``nu``, default ``1e-6``) both smooths the weights near a data point
and sets the tolerance, as in RFA's reference implementation. Every iterate is a convex
combination of the rows, so the result lies in their coordinate-wise bounding box.

Per iteration: the ``n`` distances ``||v - w_i||`` in one pass over the matrix without an
``[n, d]`` temporary (``torch.cdist`` in direct mode), and the weighted sum as one GEMV.
The objective reuses those distances, so it costs nothing extra.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor

from fedshield.aggregators.checks import check_updates, check_weights


def geometric_median(
    updates: Tensor,
    weights: Tensor | None = None,
    *,
    eps: float = 1e-6,
    max_iter: int = 100,
) -> Tensor:
    """Approximate weighted geometric median of the rows (smoothed Weiszfeld).

    Args:
        updates: ``[n, d]`` float update matrix.
        weights: ``[n]`` non-negative weights (e.g. sample counts); None = uniform.
        eps: Smoothing floor on the distances and relative tolerance on the objective;
            finite, > 0.
        max_iter: Maximum number of Weiszfeld updates, >= 1.

    Returns:
        ``[d]`` aggregate, in the dtype of ``updates``.

    Raises:
        ValueError: Bad update matrix, bad weights, ``eps`` not a finite positive number
            or ``max_iter`` not an integer >= 1.
    """
    check_updates(updates)
    n = updates.shape[0]
    if isinstance(eps, bool) or not isinstance(eps, Real) or not math.isfinite(eps):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    if eps <= 0:
        raise ValueError(f"eps must be a finite number > 0, got {eps}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if weights is None:
        alpha = torch.full((n,), 1.0 / n, dtype=torch.float64, device=updates.device)
    else:
        w = check_weights(weights, n).to(device=updates.device, dtype=torch.float64)
        alpha = w / w.sum()

    v = alpha.to(updates.dtype) @ updates
    dist = _distances_to(updates, v)
    objective = float(alpha @ dist)
    for _ in range(max_iter):  # Weiszfeld iterations
        beta = alpha / dist.clamp(min=eps)
        v = (beta / beta.sum()).to(updates.dtype) @ updates
        dist = _distances_to(updates, v)
        new_objective = float(alpha @ dist)
        converged = abs(objective - new_objective) <= eps * new_objective
        objective = new_objective
        if converged:
            break
    return v


def _distances_to(updates: Tensor, point: Tensor) -> Tensor:
    """``float64 [n]``: ``||updates_i - point||`` in one pass, without an ``[n, d]`` temporary."""
    dist = torch.cdist(
        point.unsqueeze(0), updates, p=2.0, compute_mode="donot_use_mm_for_euclid_dist"
    )
    return dist[0].to(torch.float64)


__all__ = ["geometric_median"]
