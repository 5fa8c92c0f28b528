"""Fang et al.'s full-knowledge local model poisoning attacks on Krum and trimmed mean.

Fang, Cao, Jia, Gong. "Local Model Poisoning Attacks to Byzantine-Robust Federated
Learning." USENIX Security 2020 (Section 4, full knowledge). The paper crafts local
*models* ``w'`` around the current global model ``w_Re``; here everything is in update
space (``u = w - w_Re``), so ``w_Re`` is the origin, and the attackers know the benign
updates ``g_1..g_m`` (``m`` rows) of the round; ``c`` (``num_byzantine``) is the number
of attackers, so the server sees ``n = m + c`` rows.

The changing direction ``s_j`` of coordinate ``j`` is the sign of what the global model
would do *before the attack*, ``s_j = 1`` if it would increase, ``-1`` if it would
decrease. As in the NDSS'21 reference implementation (Shejwalkar & Houmansadr,
``deviation = torch.sign(mean)``) it is estimated from the benign mean:
``s = sign(mean_i g_i)``. (Under trimmed mean / median the before-attack aggregate is the
trimmed mean / median of the benign rows, whose sign agrees with the mean's wherever the
benign rows roughly agree.)

**Attack on Krum** (:func:`fang_krum`). All ``c`` attackers send ``u' = -lambda * s``;
``lambda`` starts at the paper's upper bound (Section 4.2)

    lambda_max = 1 / ((n - 2c - 1) sqrt(d)) * min_i sum_{l in Gamma_i} ||g_l - g_i||
                 + 1 / sqrt(d) * max_i ||g_i||

with ``Gamma_i`` the ``n - c - 2 = m - 2`` benign updates closest to ``g_i`` (``||g_i||``
is the paper's ``D(w_i, w_Re)``), and is halved until Krum, run on the ``n`` rows ``[c
copies of u'; g_1..g_m]`` with ``f = c``, selects a malicious copy. If ``lambda`` would
fall to ``threshold`` or below first, the last candidate tried (the smallest ``lambda``
above ``threshold``) is returned and :class:`FangKrumResult` reports
``selected=False``. The NDSS'21 reference code instead sums over the ``m - c - 2``
closest benign updates in ``lambda_max`` and, on failure, returns ``w_Re - lambda * s``
with the already-halved ``lambda``.

Krum (Blanchard et al. NeurIPS 2017): ``score(i)`` = sum of the ``n - c - 2`` smallest
``||u_i - u_j||^2`` over ``j != i``; the row with the smallest score is selected, ties going
to the lowest index, i.e. to the malicious copies placed first (as in the reference code).
It needs ``n > 2c + 2``, i.e. ``m >= c + 3``. Distances come from one GEMM
(:func:`pairwise_sq_distances`) for the benign block; each halving only recomputes the
``m`` malicious-to-benign distances from precomputed dot products,
``||-lambda s - g_i||^2 = lambda^2 ||s||^2 + 2 lambda <s, g_i> + ||g_i||^2``.

**Attack on trimmed mean and median** (:func:`fang_trimmed_mean`, Section 4.3; the same
attack serves both). With ``w_max,j`` / ``w_min,j`` the largest / smallest benign value of
coordinate ``j`` and ``b > 1``, each attacker samples each coordinate independently and
uniformly from

    s_j = -1 (benign would decrease j; push it up):
        [w_max,j, b * w_max,j]    if w_max,j > 0
        [w_max,j / b, w_max,j]    if w_max,j <= 0   (i.e. between w_max,j and w_max,j / b)
    s_j = +1 (benign would increase j; push it down), and s_j = 0 (mean exactly 0):
        [w_min,j / b, w_min,j]    if w_min,j > 0
        [b * w_min,j, w_min,j]    if w_min,j <= 0

so every malicious value is ``>= w_max,j`` (resp. ``<= w_min,j``): beyond every benign value,
on the side opposite to the benign direction, by at most a factor ``b``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from fedshield.aggregators.base import pairwise_sq_distances
from fedshield.aggregators.checks import check_updates
from fedshield.attacks._checks import check_int, check_real


@dataclass(frozen=True)
class FangKrumResult:
    """Outcome of the Fang attack on Krum.

    Attributes:
        update: ``[d]`` the malicious update ``-lam * s`` every attacker sends.
        lam: The ``lambda`` of ``update``.
        selected: Whether Krum selects a malicious copy at ``lam`` (False when the
            search stopped at the threshold).
        halvings: How many times ``lambda`` was halved from its initial value, so
            ``lam == lambda_0 / 2**halvings``.
        lambda_init: The initial ``lambda_0`` (the paper's bound unless given).
    """

    update: Tensor
    lam: float
    selected: bool
    halvings: int
    lambda_init: float


def fang_krum_lambda_bound(benign_updates: Tensor, *, num_byzantine: int) -> float:
    """The paper's upper bound on ``lambda`` (module docstring), from the benign updates.

    Args:
        benign_updates: ``[m, d]`` benign updates, ``m >= num_byzantine + 3``.
        num_byzantine: ``c >= 1``, the number of attackers.

    Returns:
        ``lambda_max >= 0``.

    Raises:
        ValueError: Bad matrix or ``num_byzantine`` (see :func:`fang_krum`).
    """
    c = _check_krum_args(benign_updates, num_byzantine)
    m, d = benign_updates.shape
    dist = pairwise_sq_distances(benign_updates).to(torch.float64).sqrt_()
    dist.fill_diagonal_(math.inf)
    nearest = dist.topk(m - 2, dim=1, largest=False).values.sum(dim=1)
    n = m + c
    term1 = float(nearest.min()) / ((n - 2 * c - 1) * math.sqrt(d))
    term2 = float(torch.linalg.vector_norm(benign_updates, dim=1).max()) / math.sqrt(d)
    return term1 + term2


def fang_krum_search(
    benign_updates: Tensor,
    *,
    num_byzantine: int,
    lambda_init: float | None = None,
    threshold: float = 1e-5,
) -> FangKrumResult:
    """Run the Fang attack on Krum and report the ``lambda`` found.

    Arguments as :func:`fang_krum`.

    Returns:
        :class:`FangKrumResult`.
    """
    c = _check_krum_args(benign_updates, num_byzantine)
    thr = check_real("threshold", threshold, positive=True)
    if lambda_init is None:
        lam0 = fang_krum_lambda_bound(benign_updates, num_byzantine=c)
    else:
        lam0 = check_real("lambda_init", lambda_init, positive=True)
    m = benign_updates.shape[0]
    n = m + c
    s = torch.sign(benign_updates.mean(dim=0))
    ss = float(s.abs().sum())  # ||s||^2: the number of non-zero signs
    sg = (benign_updates @ s).to(device="cpu", dtype=torch.float64)
    gg = torch.linalg.vector_norm(benign_updates, dim=1).to(device="cpu", dtype=torch.float64)
    gg = gg * gg
    full = torch.zeros(n, n, dtype=torch.float64)
    full[c:, c:] = pairwise_sq_distances(benign_updates).to(device="cpu", dtype=torch.float64)

    lam, halvings = lam0, 0
    while True:
        to_benign = (lam * lam * ss + (2.0 * lam) * sg + gg).clamp_(min=0.0)
        full[:c, c:] = to_benign
        full[c:, :c] = to_benign.unsqueeze(1)
        selected = _krum_index(full, c) < c
        if selected or lam / 2.0 <= thr:
            break
        lam /= 2.0
        halvings += 1
    return FangKrumResult(
        update=s.mul_(-lam), lam=lam, selected=selected, halvings=halvings, lambda_init=lam0
    )


def fang_krum(
    benign_updates: Tensor,
    *,
    num_byzantine: int,
    lambda_init: float | None = None,
    threshold: float = 1e-5,
) -> Tensor:
    """The Fang malicious update against Krum, ``-lambda * sign(mean(benign))``.

    Args:
        benign_updates: ``[m, d]`` benign updates of the round (full knowledge),
            ``m >= num_byzantine + 3`` so that Krum's ``n > 2c + 2`` holds for
            ``n = m + c``.
        num_byzantine: ``c >= 1`` attackers, all sending the returned update.
        lambda_init: Initial ``lambda`` (finite, > 0); None = the paper's bound
            (:func:`fang_krum_lambda_bound`).
        threshold: Stop halving when ``lambda`` would fall to or below it (> 0); the
            last candidate tried is then returned even though Krum does not select it.
            The first candidate is always tried, even if ``lambda_init <= threshold``.

    Returns:
        ``[d]`` malicious update, same dtype as the input.

    Raises:
        ValueError: Bad matrix, ``num_byzantine < 1`` or too large for Krum, or bad
            ``lambda_init`` / ``threshold``.
    """
    return fang_krum_search(
        benign_updates, num_byzantine=num_byzantine, lambda_init=lambda_init, threshold=threshold
    ).update


def fang_trimmed_mean(
    benign_updates: Tensor,
    *,
    num_byzantine: int,
    b: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The Fang malicious updates against trimmed mean and median (module docstring).

    Args:
        benign_updates: ``[m, d]`` benign updates of the round (full knowledge).
        num_byzantine: ``c >= 0`` attackers (0 gives an empty ``[0, d]`` tensor).
        b: Range factor ``b > 1`` (the paper and the reference code use 2).
        generator: Source of the uniform draws (on the input's device); None uses
            torch's global generator.

    Returns:
        ``[c, d]`` malicious updates (each attacker its own draws), same dtype and device
        as the input.

    Raises:
        ValueError: Bad matrix, ``num_byzantine < 0``, or ``b`` not finite and > 1.
    """
    check_updates(benign_updates)
    c = check_int("num_byzantine", num_byzantine, minimum=0)
    factor = check_real("b", b)
    if factor <= 1.0:
        raise ValueError(f"b must be > 1, got {factor}")
    w_max = benign_updates.amax(dim=0)
    w_min = benign_updates.amin(dim=0)
    # far end of each interval; the near end is w_max (push up) or w_min (push down)
    far_up = torch.where(w_max > 0, w_max * factor, w_max / factor)
    far_down = torch.where(w_min > 0, w_min / factor, w_min * factor)
    push_up = benign_updates.mean(dim=0) < 0  # s_j = -1
    near = torch.where(push_up, w_max, w_min)
    far = torch.where(push_up, far_up, far_down)
    u = torch.rand(
        c,
        benign_updates.shape[1],
        generator=generator,
        dtype=benign_updates.dtype,
        device=benign_updates.device,
    )
    return near + u * (far - near)


def _check_krum_args(benign_updates: Tensor, num_byzantine: int) -> int:
    check_updates(benign_updates)
    c = check_int("num_byzantine", num_byzantine, minimum=1)
    m = benign_updates.shape[0]
    if m < c + 3:
        raise ValueError(
            f"num_byzantine = {c} is too large for {m} benign rows: Krum on the "
            f"n = {m} + {c} rows needs n > 2f + 2, i.e. at least {c + 3} benign rows"
        )
    return c


def _krum_index(sq_dist: Tensor, num_byzantine: int) -> int:
    """Krum's choice on a full ``[n, n]`` squared-distance matrix (lowest index on ties)."""
    n = sq_dist.shape[0]
    off = sq_dist.clone()
    off.fill_diagonal_(math.inf)
    scores = off.topk(n - num_byzantine - 2, dim=1, largest=False).values.sum(dim=1)
    return int(torch.argmin(scores))


__all__ = [
    "FangKrumResult",
    "fang_krum",
    "fang_krum_lambda_bound",
    "fang_krum_search",
    "fang_trimmed_mean",
]
