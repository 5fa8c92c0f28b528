"""Divide-and-Conquer (DnC): spectral outlier filtering on random coordinate subsets.

Shejwalkar, Houmansadr. "Manipulating the Byzantine: Optimizing Model Poisoning Attacks and
Defenses for Federated Learning." NDSS 2021. Authors' code:
``vrt1shjwlkr/NDSS21-Model-Poisoning``; ports that intersect the per-iteration sets as
here: ``JianXu95/SignGuard`` (``aggregators/DnC.py``) and others.

For ``f`` assumed Byzantine rows and filtering fraction ``c``, repeat ``num_iters`` times:

    r     = a random subset of min(sub_dim, d) coordinates
    Ū     = U[:, r] − mean_i U[i, r]                     centred sub-matrix
    v     = top right singular vector of Ū
    s_i   = <Ū_i, v>²                                    outlier score
    I     = the n − ⌊c f⌋ rows with the lowest scores
    good  = good ∩ I

and return the mean of the rows in ``good``. A poisoned group must shift the rows along a
common direction to move the mean, which makes that direction the top singular vector of
the centred matrix and the poisoned rows its largest projections.

Details of this implementation:

- Needs ``n > c · f`` (at least one row kept per iteration); ``⌊c f⌋`` rows are removed.
- When ``d <= sub_dim`` every iteration sees all coordinates and selects the same rows, so
  the selection runs once and draws nothing from the generator.
- Ties between scores (e.g. identical rows) are broken towards the lower row index.
- The intersection can be empty when ``num_iters · ⌊c f⌋ >= n``; the aggregate is then the
  zero update (the round is skipped) and no row is accepted. The ports average the empty
  set (NaN).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fedshield.aggregators.base import Aggregation, check_num_byzantine
from fedshield.aggregators.checks import check_updates


def dnc_aggregation(
    updates: Tensor,
    *,
    num_byzantine: int,
    sub_dim: int = 10000,
    num_iters: int = 5,
    filter_frac: float = 1.0,
    generator: torch.Generator | None = None,
) -> Aggregation:
    """DnC aggregate with the rows that survived every iteration.

    Args:
        updates: ``[n_clients, n_params]`` float update matrix.
        num_byzantine: Assumed number of Byzantine rows ``f >= 0``.
        sub_dim: Number of coordinates sampled per iteration (``>= 1``; capped at ``d``).
        num_iters: Number of iterations (``>= 1``).
        filter_frac: Filtering fraction ``c >= 0``: each iteration removes ``⌊c f⌋``
            rows.
        generator: Source of the coordinate subsets. None draws from torch's default
            generator (not reproducible from the experiment seed).

    Returns:
        :class:`Aggregation` with ``aggregate`` ``[n_params]`` (mean of the good rows;
        zeros when no row survives every iteration), ``accepted`` ``bool [n]`` (the good
        set) and ``weights`` None.

    Raises:
        ValueError: Bad update matrix (see :func:`check_updates`), ``n <= c · f``, or a
            bad ``num_byzantine``, ``sub_dim``, ``num_iters`` or ``filter_frac``.
    """
    check_updates(updates)
    _check_positive_int("sub_dim", sub_dim)
    _check_positive_int("num_iters", num_iters)
    if isinstance(filter_frac, bool) or not isinstance(filter_frac, int | float):
        raise ValueError(f"filter_frac must be a number, got {filter_frac!r}")
    if not math.isfinite(filter_frac) or filter_frac < 0:
        raise ValueError(f"filter_frac must be finite and >= 0, got {filter_frac}")
    n, d = updates.shape
    valid_f = (
        isinstance(num_byzantine, int)
        and not isinstance(num_byzantine, bool)
        and num_byzantine >= 0
    )
    removed = math.floor(filter_frac * num_byzantine) if valid_f else 0
    try:
        check_num_byzantine(
            n,
            num_byzantine,
            need=f"n > filter_frac * num_byzantine = {filter_frac:g} * {num_byzantine}",
            ok=n > removed,
        )
    except ValueError as err:
        raise ValueError(f"DnC: {err}") from None
    keep = n - removed

    k = min(sub_dim, d)
    rounds = num_iters if k < d else 1  # with every coordinate each round is the same
    good = torch.ones(n, dtype=torch.bool, device=updates.device)
    for _ in range(rounds):
        if k < d:
            gen_device = generator.device if generator is not None else updates.device
            idx = torch.randperm(d, generator=generator, device=gen_device)[:k]
            sub = updates[:, idx.to(updates.device)]
        else:
            sub = updates
        good &= _lowest_scores(sub, keep)

    count = int(good.sum())
    if count == 0:
        aggregate = torch.zeros_like(updates[0])
    else:
        aggregate = (good.to(updates.dtype) / count) @ updates
    return Aggregation(aggregate=aggregate, accepted=good)


def dnc(
    updates: Tensor,
    *,
    num_byzantine: int,
    sub_dim: int = 10000,
    num_iters: int = 5,
    filter_frac: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DnC aggregate: mean of the rows kept by every iteration (see :func:`dnc_aggregation`).

    Args:
        updates: ``[n_clients, n_params]`` float update matrix.
        num_byzantine: Assumed number of Byzantine rows ``f``.
        sub_dim: Number of coordinates sampled per iteration.
        num_iters: Number of iterations.
        filter_frac: Filtering fraction ``c``.
        generator: Source of the coordinate subsets.

    Returns:
        ``[n_params]`` aggregate (zeros when no row survives every iteration).

    Raises:
        ValueError: As :func:`dnc_aggregation`.
    """
    return dnc_aggregation(
        updates,
        num_byzantine=num_byzantine,
        sub_dim=sub_dim,
        num_iters=num_iters,
        filter_frac=filter_frac,
        generator=generator,
    ).aggregate


def _lowest_scores(sub: Tensor, keep: int) -> Tensor:
    """``bool [n]``: the ``keep`` rows of ``sub`` with the lowest outlier scores."""
    centered = sub - sub.mean(dim=0)
    # top right singular vector; n x k with n small, so the thin SVD is cheap
    v = torch.linalg.svd(centered, full_matrices=False).Vh[0]
    scores = (centered @ v).square()
    order = torch.argsort(scores, stable=True)
    mask = torch.zeros(sub.shape[0], dtype=torch.bool, device=sub.device)
    mask[order[:keep]] = True
    return mask


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


__all__ = ["dnc", "dnc_aggregation"]
