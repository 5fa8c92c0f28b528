"""FLAME: cluster out outlying models, clip to the median norm, add Gaussian noise.

Nguyen, Rieger, Chen, Yalame, Möllering, Fereidooni, Marchal, Miettinen, Mirhoseini,
Zeitouni, Koushanfar, Sadeghi, Schneider. "FLAME: Taming Backdoors in Federated Learning."
USENIX Security 2022.

With the global model ``G`` and the local models ``W_i = G + u_i`` (``u_i`` = row ``i``):

1. **Filter.** HDBSCAN on the pairwise cosine distances ``1 − cos(W_i, W_j)`` with
   ``min_cluster_size = n // 2 + 1``, ``min_samples = 1`` and ``allow_single_cluster =
   True`` (the last from a third-party implementation, without which a majority cluster
   can never be selected); keep the rows of the majority cluster (label ≠ −1).
2. **Clip.** ``e_i = ||W_i − G|| = ||u_i||``, ``S = median(e_1..e_n)`` over *all* rows;
   each kept update becomes ``u_i · min(1, S / e_i)``.
3. **Noise.** Average the clipped kept updates and add ``N(0, (λ S)²)`` to every
   coordinate (``λ = 0.001`` for image classification, 0.01 for NLP in the paper).

The aggregate returned is an *update*: ``G' = G + aggregate`` is the paper's new global
model. Details of this implementation:

- The cosine distances come from the ``[n, n]`` Gram matrix (GEMMs over column blocks),
  accumulated in float64 with ``G`` added block by block: for ``||u_i|| << ||G||`` the
  distances between local models are far below float32 resolution. A row of norm 0 has
  no direction: its cosine with every other row is taken as 0 (distance 1).
- With ``allow_single_cluster``, HDBSCAN labels as noise the rows that leave the majority
  group before it falls below ``n // 2 + 1`` rows, so a few benign rows at the edge of the
  group can be filtered out too (the kept set has at least ``n // 2 + 1`` rows). Should
  HDBSCAN ever label every row as noise, every row is kept.
- ``S`` is the usual median (the mean of the two middle values when ``n`` is even).
- With a single row there is nothing to cluster: the row is kept, its clipping factor is
  ``min(1, S / e_1) = 1``, and the aggregate is the row plus the noise. No error.
- A row of norm 0 stays 0 after clipping; the noise is skipped when ``λ S = 0``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from fedshield.aggregators._similarity import cosine_similarity64
from fedshield.aggregators.base import Aggregation
from fedshield.aggregators.checks import check_updates


def flame_aggregation(
    updates: Tensor,
    *,
    global_params: Tensor | None = None,
    noise_lambda: float = 0.001,
    generator: torch.Generator | None = None,
) -> Aggregation:
    """FLAME aggregate with the majority-cluster mask.

    Args:
        updates: ``[n_clients, n_params]`` float update matrix ``u_i = W_i − G``.
        global_params: ``[n_params]`` the global model ``G`` the updates were computed
            from. When given, the clustering runs on the local models ``W_i = G + u_i``,
            as in the paper; when None, on the updates themselves.
        noise_lambda: Noise level ``λ >= 0``; the noise std is ``λ · S``. 0 disables it.
        generator: Source of the noise. None draws from torch's default generator
            (not reproducible from the experiment seed).

    Returns:
        :class:`Aggregation` with ``aggregate`` ``[n_params]`` (mean of the clipped kept
        updates plus noise), ``accepted`` ``bool [n]`` (the majority cluster) and
        ``weights`` None.

    Raises:
        ValueError: Bad update matrix (see :func:`check_updates`), ``global_params`` not a
            finite 1-D floating tensor of length ``n_params``, or ``noise_lambda``
            negative or non-finite.
    """
    check_updates(updates)
    noise_lambda = _check_noise_lambda(noise_lambda)
    n = updates.shape[0]
    g = None if global_params is None else _check_global_params(global_params, updates)
    accepted = (
        torch.ones(n, dtype=torch.bool, device=updates.device)
        if n == 1
        else _majority_cluster(updates, g)
    )

    norms = torch.linalg.vector_norm(updates, dim=1)
    s = _median(norms)
    # min(1, S / e_i); a row of norm 0 keeps factor 1 (it stays 0)
    factor = torch.where(norms > s, s / torch.where(norms > 0, norms, 1.0), 1.0)
    # mean of the clipped accepted rows as one GEMV
    coef = torch.where(accepted, factor, 0.0) / accepted.sum()
    aggregate = coef.to(updates.dtype) @ updates

    std = noise_lambda * float(s)
    if std > 0:
        gen_device = generator.device if generator is not None else updates.device
        noise = torch.randn(
            updates.shape[1], generator=generator, dtype=updates.dtype, device=gen_device
        )
        aggregate = aggregate + std * noise.to(updates.device)
    return Aggregation(aggregate=aggregate, accepted=accepted)


def flame(
    updates: Tensor,
    *,
    global_params: Tensor | None = None,
    noise_lambda: float = 0.001,
    generator: torch.Generator | None = None,
) -> Tensor:
    """FLAME aggregate (see :func:`flame_aggregation`).

    Args:
        updates: ``[n_clients, n_params]`` float update matrix.
        global_params: ``[n_params]`` the global model, or None to cluster the updates.
        noise_lambda: Noise level ``λ >= 0`` (std ``λ · S``).
        generator: Source of the noise.

    Returns:
        ``[n_params]`` aggregate update.

    Raises:
        ValueError: As :func:`flame_aggregation`.
    """
    return flame_aggregation(
        updates, global_params=global_params, noise_lambda=noise_lambda, generator=generator
    ).aggregate


def _majority_cluster(updates: Tensor, global_params: Tensor | None) -> Tensor:
    """``bool [n]``: HDBSCAN's majority cluster on the cosine distances of ``G + u_i``."""
    from sklearn.cluster import HDBSCAN  # scikit-learn takes ~1 s to import: only when used

    n = updates.shape[0]
    dist = 1.0 - cosine_similarity64(updates, global_params)  # symmetric float64
    dist.fill_diagonal_(0.0)
    labels = (
        HDBSCAN(
            metric="precomputed",
            min_cluster_size=n // 2 + 1,
            min_samples=1,
            allow_single_cluster=True,
            copy=False,
        )
        .fit(dist.cpu().numpy())
        .labels_
    )
    clustered = labels[labels >= 0]
    if clustered.size == 0:
        return torch.ones(n, dtype=torch.bool, device=updates.device)
    majority = np.bincount(clustered).argmax()
    return torch.from_numpy(labels == majority).to(updates.device)


def _median(values: Tensor) -> Tensor:
    """Median of a 1-D tensor, the mean of the two middle values for an even length."""
    ordered = values.sort().values
    k = values.shape[0]
    return (ordered[(k - 1) // 2] + ordered[k // 2]) / 2


def _check_noise_lambda(noise_lambda: float) -> float:
    if isinstance(noise_lambda, bool) or not isinstance(noise_lambda, int | float):
        raise ValueError(f"noise_lambda must be a number, got {noise_lambda!r}")
    if not math.isfinite(noise_lambda) or noise_lambda < 0:
        raise ValueError(f"noise_lambda must be finite and >= 0, got {noise_lambda}")
    return float(noise_lambda)


def _check_global_params(global_params: Tensor, updates: Tensor) -> Tensor:
    """Validate ``G`` against ``updates`` and return it on their device (in its own dtype:
    the distances are computed in float64 anyway)."""
    d = updates.shape[1]
    if not isinstance(global_params, Tensor):
        raise ValueError(
            f"global_params must be a torch.Tensor, got {type(global_params).__name__}"
        )
    if global_params.dim() != 1 or global_params.shape[0] != d:
        raise ValueError(
            f"global_params must have shape ({d},) to match updates {tuple(updates.shape)}, "
            f"got {tuple(global_params.shape)}"
        )
    if not global_params.is_floating_point():
        raise ValueError(f"global_params must be floating point, got {global_params.dtype}")
    g = global_params.to(device=updates.device)
    if not bool(torch.isfinite(g).all()):
        raise ValueError("global_params has non-finite (NaN/Inf) entries")
    return g


__all__ = ["flame", "flame_aggregation"]
