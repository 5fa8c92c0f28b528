"""Min-Max and Min-Sum: the largest push along a bad direction that still looks benign.

Shejwalkar, Houmansadr. "Manipulating the Byzantine: Optimizing Model Poisoning Attacks
and Defenses for Federated Learning." NDSS 2021 (the AGR-agnostic attacks, Section IV-C).

Every attacker sends ``m(gamma) = mean + gamma * p``, ``mean`` the mean of the benign
updates ``g_1..g_n`` it knows and ``p`` a perturbation (:func:`perturbation_vector`):

    unit_vec  p = -mean / ||mean||_2
    std       p = -std          (coordinate-wise, unbiased, as torch.std in the reference)
    sign      p = -sign(mean)

with ``gamma`` the largest value such that

    Min-Max:  max_i ||m - g_i||_2     <= max_{i,j} ||g_i - g_j||_2
    Min-Sum:  sum_i ||m - g_i||_2^2   <= max_i sum_j ||g_i - g_j||_2^2

found exactly as in the authors' code (``our_attack_dist`` / ``our_attack_score``):
``gamma = gamma_init``, ``step = gamma_init / 2``, ``gamma_succ = 0``; while
``|gamma_succ - gamma| > tol``: if the condition holds at ``gamma`` then
``gamma_succ = gamma; gamma += step`` else ``gamma -= step``; ``step /= 2``. The result
is ``mean + gamma_succ * p``. This is a bisection of ``[0, 2 gamma_init]``: the returned
``gamma_succ`` satisfies the condition and the true largest ``gamma`` is below
``gamma_succ + 2 tol`` unless it reaches ``2 gamma_init`` (then ``gamma_succ`` is just
under ``2 gamma_init``). ``gamma = 0`` always satisfies both conditions.

Reference-code note: the authors' Min-Sum code compares against ``min_i sum_j ||g_i -
g_j||^2`` (``min_score``), while the paper (Eq. 5) and this module use ``max_i``, which
allows a larger ``gamma``.

Cost: one GEMM for the pairwise distances (:func:`pairwise_sq_distances`) and one
matrix-vector product ``G p``; after that each search step is O(n) (Min-Max) or O(1)
(Min-Sum), because with ``c_i = g_i - mean``

    ||m(gamma) - g_i||^2 = ||c_i||^2 - 2 gamma <p, c_i> + gamma^2 ||p||^2,
    ||c_i||^2 = (1/n) sum_j D_ij - (1/(2 n^2)) sum_{j,k} D_jk,   D_ij = ||g_i - g_j||^2,
    sum_i ||m - g_i||^2 = sum_i ||c_i||^2 + n gamma^2 ||p||^2   (sum_i c_i = 0).

The scalar search runs in float64 on the CPU whatever the input's dtype and device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from fedshield.aggregators.base import pairwise_sq_distances
from fedshield.aggregators.checks import check_updates
from fedshield.attacks._checks import check_min_rows, check_real

#: the perturbation kinds of the paper (the reference code's ``dev_type``)
PERTURBATIONS = ("unit_vec", "std", "sign")


def perturbation_vector(benign_updates: Tensor, kind: str) -> Tensor:
    """The perturbation direction ``p`` of Min-Max / Min-Sum.

    Args:
        benign_updates: ``[n, d]`` benign updates known to the attackers.
        kind: ``"unit_vec"`` (``-mean / ||mean||``; zeros when the mean is exactly 0),
            ``"std"`` (``-std``, unbiased, needs ``n >= 2``) or ``"sign"``
            (``-sign(mean)``).

    Returns:
        ``[d]`` perturbation, same dtype as ``benign_updates``.

    Raises:
        ValueError: Bad matrix, unknown ``kind`` (the message lists the allowed ones), or
            ``"std"`` with fewer than 2 rows.
    """
    _check_kind(kind)
    check_updates(benign_updates)
    return _perturbation(benign_updates, benign_updates.mean(dim=0), kind)


def min_max_gamma(
    benign_updates: Tensor,
    *,
    perturbation: str = "unit_vec",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
) -> float:
    """The ``gamma`` Min-Max finds (see the module docstring); arguments as :func:`min_max`."""
    return _min_max_parts(benign_updates, perturbation, gamma_init, tol)[2]


def min_sum_gamma(
    benign_updates: Tensor,
    *,
    perturbation: str = "unit_vec",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
) -> float:
    """The ``gamma`` Min-Sum finds (see the module docstring); arguments as :func:`min_sum`."""
    return _min_sum_parts(benign_updates, perturbation, gamma_init, tol)[2]


def min_max(
    benign_updates: Tensor,
    *,
    perturbation: str = "unit_vec",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
) -> Tensor:
    """The Min-Max malicious update ``mean + gamma * p``.

    ``gamma`` is the largest value (up to ``tol``) with
    ``max_i ||m - g_i|| <= max_{i,j} ||g_i - g_j||``.

    Args:
        benign_updates: ``[n, d]`` benign updates known to the attackers.
        perturbation: One of ``PERTURBATIONS``.
        gamma_init: Start of the search (> 0); the search covers ``[0, 2 gamma_init)``.
        tol: Stopping tolerance of the search (> 0).

    Returns:
        ``[d]`` malicious update (all attackers send it), same dtype as the input.

    Raises:
        ValueError: Bad matrix, unknown ``perturbation``, ``"std"`` with fewer than 2
            rows, or ``gamma_init`` / ``tol`` not finite and > 0.
    """
    mean, p, gamma = _min_max_parts(benign_updates, perturbation, gamma_init, tol)
    return mean.add_(p, alpha=gamma)


def min_sum(
    benign_updates: Tensor,
    *,
    perturbation: str = "unit_vec",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
) -> Tensor:
    """The Min-Sum malicious update ``mean + gamma * p``.

    ``gamma`` is the largest value (up to ``tol``) with
    ``sum_i ||m - g_i||^2 <= max_i sum_j ||g_i - g_j||^2``.

    Args:
        benign_updates: ``[n, d]`` benign updates known to the attackers.
        perturbation: One of ``PERTURBATIONS``.
        gamma_init: Start of the search (> 0); the search covers ``[0, 2 gamma_init)``.
        tol: Stopping tolerance of the search (> 0).

    Returns:
        ``[d]`` malicious update (all attackers send it), same dtype as the input.

    Raises:
        ValueError: As :func:`min_max`.
    """
    mean, p, gamma = _min_sum_parts(benign_updates, perturbation, gamma_init, tol)
    return mean.add_(p, alpha=gamma)


# --------------------------------------------------------------------------- internals


def _check_kind(kind: str) -> None:
    if kind not in PERTURBATIONS:
        allowed = ", ".join(repr(k) for k in PERTURBATIONS)
        raise ValueError(f"unknown perturbation {kind!r}: allowed perturbations are {allowed}")


def _perturbation(benign_updates: Tensor, mean: Tensor, kind: str) -> Tensor:
    if kind == "unit_vec":
        norm = torch.linalg.vector_norm(mean)
        if not bool(norm > 0):
            return torch.zeros_like(mean)
        return mean / (-norm)
    if kind == "std":
        check_min_rows(benign_updates, 2, "the 'std' perturbation")
        return benign_updates.std(dim=0).neg_()
    return mean.sign().neg_()


class _Quadratics:
    """``||m(gamma) - g_i||^2 = a_i - 2 gamma b_i + gamma^2 c`` and the pairwise ``D``."""

    def __init__(self, benign_updates: Tensor, mean: Tensor, p: Tensor) -> None:
        n = benign_updates.shape[0]
        dist = pairwise_sq_distances(benign_updates).to(device="cpu", dtype=torch.float64)
        #: [n, n] squared pairwise distances D_ij
        self.dist = dist
        # ||g_i - mean||^2 from D (no centred copy of the matrix)
        self.a = (dist.mean(dim=1) - dist.sum() / (2.0 * n * n)).clamp_(min=0.0)
        # <p, g_i - mean>: one GEMV
        gp = (benign_updates @ p).to(device="cpu", dtype=torch.float64)
        self.b = gp - float(torch.dot(mean, p))
        p64 = p.to(torch.float64)
        self.c = float(torch.dot(p64, p64))


def _prepare(
    benign_updates: Tensor, perturbation: str, gamma_init: float, tol: float
) -> tuple[Tensor, Tensor, _Quadratics, float, float]:
    _check_kind(perturbation)
    check_updates(benign_updates)
    g0 = check_real("gamma_init", gamma_init, positive=True)
    t = check_real("tol", tol, positive=True)
    mean = benign_updates.mean(dim=0)
    p = _perturbation(benign_updates, mean, perturbation)
    return mean, p, _Quadratics(benign_updates, mean, p), g0, t


def _min_max_parts(
    benign_updates: Tensor, perturbation: str, gamma_init: float, tol: float
) -> tuple[Tensor, Tensor, float]:
    mean, p, q, g0, t = _prepare(benign_updates, perturbation, gamma_init, tol)
    threshold = float(q.dist.max())

    def holds(gamma: float) -> bool:
        worst = (q.a - (2.0 * gamma) * q.b).add_(gamma * gamma * q.c).max()
        return bool(worst <= threshold)

    return mean, p, _search(holds, g0, t)


def _min_sum_parts(
    benign_updates: Tensor, perturbation: str, gamma_init: float, tol: float
) -> tuple[Tensor, Tensor, float]:
    mean, p, q, g0, t = _prepare(benign_updates, perturbation, gamma_init, tol)
    n = benign_updates.shape[0]
    threshold = float(q.dist.sum(dim=1).max())
    sum_a, sum_b = float(q.a.sum()), float(q.b.sum())

    def holds(gamma: float) -> bool:
        return sum_a - 2.0 * gamma * sum_b + n * gamma * gamma * q.c <= threshold

    return mean, p, _search(holds, g0, t)


def _search(holds: Callable[[float], bool], gamma_init: float, tol: float) -> float:
    """The reference code's halving search; returns ``gamma_succ`` (0 if none held)."""
    gamma, step, succ = gamma_init, gamma_init / 2.0, 0.0
    while abs(succ - gamma) > tol:
        if holds(gamma):
            succ = gamma
            gamma += step
        else:
            gamma -= step
        step /= 2.0
        if step == 0.0:  # tol below float resolution: no further progress is possible
            break
    return succ


__all__ = [
    "PERTURBATIONS",
    "min_max",
    "min_max_gamma",
    "min_sum",
    "min_sum_gamma",
    "perturbation_vector",
]
