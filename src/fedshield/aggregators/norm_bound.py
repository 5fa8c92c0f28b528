"""Norm bounding: clip every update to a maximum L2 norm, then average.

Sun, Kairouz, Suresh, McMahan. "Can You Really Backdoor Federated Learning?" arXiv:1911.07963,
2019 (NeurIPS 2019 FL workshop).

    clip_M(u_i) = u_i * min(1, M / ||u_i||)
    norm_bound(U, w) = sum_i w_i clip_M(u_i) / sum_i w_i

With ``M`` = None the bound is the median of the row norms (mean of the two middle norms for
even ``n``), a data-driven choice for when no bound is configured. The aggregate never
materialises the clipped matrix: it is one GEMV with the weights ``w_i * min(1, M / ||u_i||)``.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor

from fedshield.aggregators.checks import check_updates, check_weights


def clip_rows(updates: Tensor, max_norm: float | Tensor) -> Tensor:
    """Scale each row down to L2 norm at most ``max_norm`` (rows within it are unchanged).

    Args:
        updates: ``[n, d]`` float update matrix.
        max_norm: Bound, a finite number > 0, or a ``[n]`` tensor of per-row bounds > 0.

    Returns:
        ``[n, d]`` new matrix (``updates`` is not modified).

    Raises:
        ValueError: Bad update matrix, or a bound that is not finite and > 0 or has the
            wrong shape.
    """
    check_updates(updates)
    norms = torch.linalg.vector_norm(updates, dim=1)
    bound = _check_bound(max_norm, updates)
    return updates * _clip_factors(norms, bound).unsqueeze(1)


def norm_bound(
    updates: Tensor, weights: Tensor | None = None, *, max_norm: float | Tensor | None = None
) -> Tensor:
    """Weighted mean of the rows after clipping each to L2 norm ``max_norm``.

    Args:
        updates: ``[n, d]`` float update matrix.
        weights: ``[n]`` non-negative weights (e.g. sample counts); None = uniform.
        max_norm: Bound ``M`` (finite number > 0 or ``[n]`` tensor); None = median of the
            row norms.

    Returns:
        ``[d]`` aggregate.

    Raises:
        ValueError: Bad update matrix, bad weights or bad bound.
    """
    check_updates(updates)
    n = updates.shape[0]
    norms = torch.linalg.vector_norm(updates, dim=1)
    if max_norm is None:
        s = norms.sort().values
        bound: Tensor = (s[(n - 1) // 2] + s[n // 2]) / 2
    else:
        bound = _check_bound(max_norm, updates)
    factors = _clip_factors(norms, bound)
    if weights is None:
        coef = factors / n
    else:
        w = check_weights(weights, n).to(device=updates.device, dtype=updates.dtype)
        coef = factors * (w / w.sum())
    return coef @ updates


def _clip_factors(norms: Tensor, bound: Tensor) -> Tensor:
    """``min(1, bound / norm)`` per row; a row with norm <= bound (also 0) gets 1."""
    return torch.where(norms > bound, bound / norms, torch.ones_like(norms))


def _check_bound(max_norm: float | Tensor, updates: Tensor) -> Tensor:
    n = updates.shape[0]
    if isinstance(max_norm, Tensor):
        if max_norm.dim() == 0:
            max_norm = max_norm.item()
        else:
            if tuple(max_norm.shape) != (n,):
                raise ValueError(
                    f"max_norm must be a number or have shape ({n},), "
                    f"got shape {tuple(max_norm.shape)}"
                )
            bound = max_norm.to(device=updates.device, dtype=updates.dtype)
            if not bool(torch.isfinite(bound).all()) or bool((bound <= 0).any()):
                raise ValueError(f"max_norm must be finite and > 0, got {bound.tolist()}")
            return bound
    if (
        isinstance(max_norm, bool)
        or not isinstance(max_norm, Real)
        or not math.isfinite(max_norm)
        or max_norm <= 0
    ):
        raise ValueError(f"max_norm must be a finite number > 0, got {max_norm!r}")
    return torch.tensor(float(max_norm), dtype=updates.dtype, device=updates.device)


__all__ = ["clip_rows", "norm_bound"]
