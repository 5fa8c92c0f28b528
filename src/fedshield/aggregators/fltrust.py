"""FLTrust: trust-scored, norm-aligned mean of the client updates.

Cao, Fang, Liu, Gong. "FLTrust: Byzantine-robust Federated Learning via Trust
Bootstrapping." NDSS 2021.

The server computes its own update ``g0`` on a small clean root data set (the paper uses
100 examples) with the same local procedure as the clients, and scores every client update
against it:

    TS_i  = ReLU(cos(g_i, g0))                  trust score, in [0, 1]
    ĝ_i   = (||g0|| / ||g_i||) · g_i            rescaled to the server update's norm
    g     = Σ_i TS_i ĝ_i / Σ_i TS_i             (g = 0 when Σ_i TS_i = 0)

A row pointing away from ``g0`` (cos <= 0) gets no weight, and rescaling removes any
advantage from a large norm. When every score is 0 the paper skips the round; here the
aggregate is the zero update, which leaves the model unchanged. A client row of norm 0 has
no direction: it gets ``TS = 0``. Results depend on how representative the root data is.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fedshield.aggregators.base import Aggregation
from fedshield.aggregators.checks import check_updates


def fltrust_aggregation(updates: Tensor, *, server_update: Tensor) -> Aggregation:
    """FLTrust aggregate with each row's trust score.

    Args:
        updates: ``[n_clients, n_params]`` float update matrix.
        server_update: ``[n_params]`` the server's own update ``g0`` from its root data
            set; finite, non-zero norm. Cast to the dtype and device of ``updates``.

    Returns:
        :class:`Aggregation` with ``aggregate`` ``[n_params]`` (``Σ TS_i ĝ_i / Σ TS_i``,
        zeros when every score is 0), ``accepted`` ``bool [n]`` (``TS_i > 0``) and
        ``weights`` ``[n]`` the trust scores ``TS_i`` in ``[0, 1]``.

    Raises:
        ValueError: Bad update matrix (see :func:`check_updates`), or ``server_update``
            not a 1-D floating tensor of length ``n_params``, non-finite, or of norm 0.
    """
    check_updates(updates)
    g0 = _check_server_update(server_update, updates)
    g0_norm = torch.linalg.vector_norm(g0)
    norms = torch.linalg.vector_norm(updates, dim=1)
    has_direction = norms > 0
    safe_norms = torch.where(has_direction, norms, torch.ones_like(norms))
    # one GEMV for all n cosines; rows of norm 0 get cos 0
    cos = torch.where(has_direction, (updates @ g0) / (safe_norms * g0_norm), 0.0)
    trust = cos.clamp(min=0.0, max=1.0)  # ReLU; max=1 only absorbs rounding above 1
    total = trust.sum()
    if float(total) <= 0.0:
        aggregate = torch.zeros_like(updates[0])
    else:
        # Σ TS_i (||g0|| / ||g_i||) g_i / Σ TS_i as one GEMV over the rows
        coef = trust * (g0_norm / safe_norms) / total
        aggregate = coef @ updates
    return Aggregation(aggregate=aggregate, accepted=trust > 0, weights=trust)


def fltrust(updates: Tensor, *, server_update: Tensor) -> Tensor:
    """FLTrust aggregate ``Σ TS_i ĝ_i / Σ TS_i`` (see :func:`fltrust_aggregation`).

    Args:
        updates: ``[n_clients, n_params]`` float update matrix.
        server_update: ``[n_params]`` the server's root-data update ``g0``.

    Returns:
        ``[n_params]`` aggregate (zeros when no row has a positive trust score).

    Raises:
        ValueError: As :func:`fltrust_aggregation`.
    """
    return fltrust_aggregation(updates, server_update=server_update).aggregate


def _check_server_update(server_update: Tensor, updates: Tensor) -> Tensor:
    """Validate ``g0`` against ``updates`` and return it in their dtype and device."""
    d = updates.shape[1]
    if not isinstance(server_update, Tensor):
        raise ValueError(
            f"server_update must be a torch.Tensor, got {type(server_update).__name__}"
        )
    if server_update.dim() != 1 or server_update.shape[0] != d:
        raise ValueError(
            f"server_update must have shape ({d},) to match updates {tuple(updates.shape)}, "
            f"got {tuple(server_update.shape)}"
        )
    if not server_update.is_floating_point():
        raise ValueError(f"server_update must be floating point, got {server_update.dtype}")
    g0 = server_update.to(dtype=updates.dtype, device=updates.device)
    if not bool(torch.isfinite(g0).all()):
        raise ValueError("server_update has non-finite (NaN/Inf) entries")
    if float(torch.linalg.vector_norm(g0)) == 0.0:
        raise ValueError("server_update has norm 0: FLTrust needs a reference direction")
    return g0


__all__ = ["fltrust", "fltrust_aggregation"]
