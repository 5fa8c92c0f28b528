"""SignGuard: norm filter + sign-statistics clustering, then a median-norm-clipped mean.

Xu, Huang, Song, Lan. "Byzantine-robust Federated Learning through Collaborative Malicious
Gradient Filtering." ICDCS 2022. Reference code: ``JianXu95/SignGuard``
(``aggregators/signguard.py``, class ``signguard_multiclass``).

With ``||u_i||`` the row norms and ``med`` their median:

1. **Norm filter.** Keep rows with ``low <= ||u_i|| / med <= high`` (``norm_bounds``,
   default ``(0.1, 3.0)``).
2. **Sign filter.** On a random subset of ``k = max(1, ⌊coord_fraction · d⌋)``
   coordinates, describe each row by the fractions of its positive, zero and negative
   entries, ``(p_i, z_i, q_i)``; cluster these points with MeanShift (bandwidth from
   scikit-learn's ``estimate_bandwidth(quantile=0.5)``: the mean distance of a point to
   its ``⌊n/2⌋``-th nearest neighbour, itself included; bin seeding, ``cluster_all=False``)
   and keep the largest cluster.
3. **Aggregate.** Over the rows that pass both filters, the mean of
   ``u_i · min(1, med_clip / ||u_i||)`` where ``med_clip`` is the median norm of all rows.

Differences from the reference code (all deliberate):

- The coordinates are a uniformly random subset; the code takes a random *contiguous*
  block of ``k`` coordinates.
- The features are the plain fractions; the code also divides each feature column by its
  maximum (+1e-8), which blows up tiny differences in a column that is almost 0
  everywhere (e.g. the zero fraction of float gradients).
- The bandwidth is estimated from all rows, so it is deterministic; the code subsamples
  50 rows at random (the same rows whenever ``n <= 50``).
- MeanShift refuses a bandwidth of 0, which the estimate always is for ``n <= 3`` (the
  nearest neighbour of a point is itself) and the code then fails. Here the bandwidth then
  falls back to the mean distance to the nearest *other* point; when that is 0 as well
  (every point has an exact duplicate), the clusters are the groups of identical feature
  vectors.
- The norm bounds are inclusive (the code uses strict inequalities), so with a median norm
  of 0 the zero rows pass and the aggregate is 0 instead of an average over no rows.
- A row of norm 0 stays 0 when clipped (the code divides 0 by 0).
- When no row passes both filters the aggregate is the zero update (the round is skipped)
  instead of NaN.

As in the reference code, ``med`` in the norm filter is the usual median (mean of the two
middle values for an even ``n``) and ``med_clip`` the lower median (``torch.median``).
Ties between equally large clusters go to the cluster MeanShift ranks first (by density,
then by position), or, for identical feature vectors, to the lexicographically smallest
vector: never to a row order.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor

from fedshield.aggregators.base import Aggregation
from fedshield.aggregators.checks import check_updates


def signguard_aggregation(
    updates: Tensor,
    *,
    generator: torch.Generator | None = None,
    norm_bounds: tuple[float, float] = (0.1, 3.0),
    coord_fraction: float = 0.1,
) -> Aggregation:
    """SignGuard aggregate with the rows that passed both filters.

    Args:
        updates: ``[n_clients, n_params]`` float update matrix.
        generator: Source of the coordinate subset. None draws from torch's default
            generator (not reproducible from the experiment seed).
        norm_bounds: ``(low, high)`` with ``0 <= low <= 1 <= high``: a row passes the norm
            filter when ``low <= ||u_i|| / median <= high``.
        coord_fraction: Fraction of the coordinates, in ``(0, 1]``, the sign statistics
            are computed on (at least one coordinate).

    Returns:
        :class:`Aggregation` with ``aggregate`` ``[n_params]`` (mean of the accepted rows
        clipped to the median norm; zeros when no row is accepted), ``accepted``
        ``bool [n]`` (norm filter ∩ largest sign cluster) and ``weights`` None.

    Raises:
        ValueError: Bad update matrix (see :func:`check_updates`), or bad
            ``norm_bounds`` or ``coord_fraction``.
    """
    check_updates(updates)
    low, high = _check_norm_bounds(norm_bounds)
    coord_fraction = _check_coord_fraction(coord_fraction)
    d = updates.shape[1]

    norms = torch.linalg.vector_norm(updates, dim=1)
    med = _midpoint_median(norms)
    norm_ok = (norms >= low * med) & (norms <= high * med)

    k = max(1, int(coord_fraction * d))
    if k < d:
        gen_device = generator.device if generator is not None else updates.device
        idx = torch.randperm(d, generator=generator, device=gen_device)[:k]
        sub = updates[:, idx.to(updates.device)]
    else:
        sub = updates
    features = (
        torch.stack([(sub > 0).sum(dim=1), (sub == 0).sum(dim=1), (sub < 0).sum(dim=1)], dim=1).to(
            torch.float64
        )
        / k
    )
    sign_ok = torch.from_numpy(_largest_cluster(features.cpu().numpy())).to(updates.device)

    accepted = norm_ok & sign_ok
    count = int(accepted.sum())
    if count == 0:
        return Aggregation(aggregate=torch.zeros_like(updates[0]), accepted=accepted)
    clip = norms.median()  # lower median, as the reference code's torch.median
    # min(1, clip / ||u_i||); rows of norm 0 keep factor 1 (they stay 0)
    factor = torch.where(norms > clip, clip / torch.where(norms > 0, norms, 1.0), 1.0)
    coef = torch.where(accepted, factor, 0.0) / count
    return Aggregation(aggregate=coef.to(updates.dtype) @ updates, accepted=accepted)


def signguard(
    updates: Tensor,
    *,
    generator: torch.Generator | None = None,
    norm_bounds: tuple[float, float] = (0.1, 3.0),
    coord_fraction: float = 0.1,
) -> Tensor:
    """SignGuard aggregate (see :func:`signguard_aggregation`).

    Args:
        updates: ``[n_clients, n_params]`` float update matrix.
        generator: Source of the coordinate subset.
        norm_bounds: ``(low, high)`` bounds on ``||u_i|| / median``.
        coord_fraction: Fraction of the coordinates used for the sign statistics.

    Returns:
        ``[n_params]`` aggregate (zeros when no row is accepted).

    Raises:
        ValueError: As :func:`signguard_aggregation`.
    """
    return signguard_aggregation(
        updates, generator=generator, norm_bounds=norm_bounds, coord_fraction=coord_fraction
    ).aggregate


def _largest_cluster(features: np.ndarray) -> np.ndarray:
    """``bool [n]``: the largest MeanShift cluster of the ``[n, 3]`` sign features."""
    from sklearn.cluster import MeanShift  # scikit-learn takes ~1 s to import: only when used
    from threadpoolctl import threadpool_limits

    n = features.shape[0]
    if n == 1:
        return np.ones(1, dtype=bool)
    dist = np.sqrt(((features[:, None, :] - features[None, :, :]) ** 2).sum(axis=-1))
    dist.sort(axis=1)  # column 0 is each point's distance to itself
    # estimate_bandwidth(quantile=0.5): mean distance to the int(n/2)-th neighbour (self
    # included); 0 for n <= 3, then the mean distance to the nearest other point
    bandwidth = float(dist[:, max(1, int(n * 0.5)) - 1].mean())
    if bandwidth <= 0:
        bandwidth = float(dist[:, 1].mean())
    if bandwidth > 0:
        # one thread: the radius queries on a handful of 3-D points gain nothing from
        # OpenMP, and on a busy machine its threads made one fit take ~1 s instead of ~10 ms
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            # with as many bins as points sklearn seeds from the points and says so
            warnings.filterwarnings("ignore", message="Binning data failed", category=UserWarning)
            ms = MeanShift(bandwidth=bandwidth, bin_seeding=True, cluster_all=False)
            labels = ms.fit(features).labels_
    else:
        # every point has an exact duplicate: the clusters are the groups of equal points
        _, labels = np.unique(features, axis=0, return_inverse=True)
        labels = labels.reshape(-1)
    clustered = labels[labels >= 0]
    if clustered.size == 0:  # cannot happen with bin seeding; keep every row if it does
        return np.ones(n, dtype=bool)
    largest = np.bincount(clustered).argmax()  # ties -> the lowest label
    return np.asarray(labels == largest)


def _midpoint_median(values: Tensor) -> Tensor:
    """Median of a 1-D tensor, the mean of the two middle values for an even length."""
    ordered = values.sort().values
    k = values.shape[0]
    return (ordered[(k - 1) // 2] + ordered[k // 2]) / 2


def _check_norm_bounds(norm_bounds: tuple[float, float]) -> tuple[float, float]:
    try:
        low, high = (float(b) for b in norm_bounds)
    except (TypeError, ValueError):
        raise ValueError(
            f"norm_bounds must be a pair of numbers (low, high), got {norm_bounds!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= 1 <= high):
        raise ValueError(
            f"norm_bounds must satisfy 0 <= low <= 1 <= high (finite), got {norm_bounds!r}"
        )
    return low, high


def _check_coord_fraction(coord_fraction: float) -> float:
    if isinstance(coord_fraction, bool) or not isinstance(coord_fraction, int | float):
        raise ValueError(f"coord_fraction must be a number, got {coord_fraction!r}")
    if not (math.isfinite(coord_fraction) and 0 < coord_fraction <= 1):
        raise ValueError(f"coord_fraction must be in (0, 1], got {coord_fraction}")
    return float(coord_fraction)


__all__ = ["signguard", "signguard_aggregation"]
