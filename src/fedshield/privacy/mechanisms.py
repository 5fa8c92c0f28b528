"""Clipping and noise mechanisms of differential privacy, on the update matrix.

Row-wise L2 clipping (the sensitivity bound of DP-FedAvg and DP-SGD; McMahan et al. ICLR
2018, Abadi et al. CCS 2016)::

    clip_C(u_i) = u_i * min(1, C / ||u_i||_2)

Gaussian and Laplace noise drawn from an explicit ``torch.Generator`` (determinism):
``N(0, std^2)`` and ``Laplace(0, b)`` (density ``exp(-|x|/b) / 2b``, std ``sqrt(2) b``).

Calibration of one release:

- Laplace (Dwork, McSherry, Nissim, Smith. TCC 2006): ``b = Delta_1 / epsilon`` is
  ``epsilon``-DP.
- Analytic Gaussian (Balle, Wang. "Improving the Gaussian Mechanism for Differential
  Privacy: Analytical Calibration and Optimal Denoising." ICML 2018, Thm. 8 / Alg. 1):
  ``N(0, sigma^2)`` with L2 sensitivity ``Delta`` is ``(epsilon, delta)``-DP iff

      Phi(Delta / (2 sigma) - epsilon sigma / Delta)
          - e^epsilon Phi(-Delta / (2 sigma) - epsilon sigma / Delta) <= delta,

  valid for every ``epsilon > 0`` (the classical ``sqrt(2 ln(1.25/delta)) Delta / epsilon``
  needs ``epsilon < 1`` and is larger). The smallest such ``sigma`` is found by root finding.

These samplers use floating-point arithmetic: like every textbook sampler they are open to
the floating-point attacks of Mironov (CCS 2012) and are meant for research simulation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np
import torch
from scipy import optimize, special
from torch import Tensor

from fedshield.aggregators.checks import check_updates

Shape = int | Sequence[int] | torch.Size


def _positive_finite(value: float, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _nonnegative_finite(value: float, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_delta(delta: float) -> float:
    if isinstance(delta, bool) or not isinstance(delta, Real) or not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    return float(delta)


# --------------------------------------------------------------------------- clipping


def clip_updates(updates: Tensor, *, clip_norm: float) -> Tensor:
    """Clip every row of the update matrix to L2 norm at most ``clip_norm``.

    ``row * min(1, C / ||row||)``: rows inside the ball are unchanged, a zero row stays
    zero, directions are kept. Norms are computed in one vectorised reduction; the rare rows
    whose norm under- or overflows the dtype (entries beyond ~1e19 in float32) are rescaled
    by their largest entry first, so they are clipped correctly instead of zeroed.

    Args:
        updates: ``[n_clients, n_params]`` finite float matrix (float32 or float64).
        clip_norm: ``C``, a finite number > 0.

    Returns:
        ``[n_clients, n_params]`` new matrix, same dtype (``updates`` is not modified).

    Raises:
        ValueError: Bad ``clip_norm`` or bad update matrix (not 2-D, empty, not floating,
            non-finite entries).
    """
    c = _positive_finite(clip_norm, "clip_norm")
    check_updates(updates)
    norms = torch.linalg.vector_norm(updates, dim=1)
    # C / 0 = inf -> factor 1: a zero row stays zero without a NaN
    factors = (c / norms).clamp(max=1.0)
    suspect = (norms == 0) | torch.isinf(norms)
    if bool(suspect.any()):
        idx = suspect.nonzero().flatten()
        rows = updates[idx]
        peak = rows.abs().amax(dim=1)
        safe_peak = torch.where(peak > 0, peak, torch.ones_like(peak))
        # ||row|| = peak * ||row / peak||, with ||row / peak|| in [1, sqrt(d)]
        scaled = torch.linalg.vector_norm(rows / safe_peak.unsqueeze(1), dim=1)
        fixed = ((c / safe_peak) / scaled).clamp(max=1.0)
        factors[idx] = torch.where(peak > 0, fixed, torch.ones_like(fixed))
    return updates * factors.unsqueeze(1)


# --------------------------------------------------------------------------- noise


def _size(shape: Shape) -> tuple[int, ...]:
    size = (shape,) if isinstance(shape, int) else tuple(shape)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in size):
        raise ValueError(f"shape must be non-negative integers, got {shape!r}")
    return size


def _check_generator(generator: torch.Generator, dtype: torch.dtype) -> None:
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating point dtype, got {dtype}")


def gaussian_noise(
    shape: Shape, *, std: float, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Draw i.i.d. ``N(0, std^2)`` noise from ``generator``.

    Args:
        shape: Output shape.
        std: Standard deviation, a finite number >= 0.
        generator: Source of randomness (its device is the output's device).
        dtype: Floating output dtype.

    Returns:
        Tensor of ``shape``.

    Raises:
        ValueError: Bad ``std``, ``shape``, ``generator`` or ``dtype``.
    """
    s = _nonnegative_finite(std, "std")
    _check_generator(generator, dtype)
    z = torch.randn(_size(shape), generator=generator, dtype=dtype, device=generator.device)
    return z.mul_(s)


def laplace_noise(
    shape: Shape, *, scale: float, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Draw i.i.d. ``Laplace(0, scale)`` noise from ``generator``.

    ``E1 - E2`` with ``E1, E2 ~ Exp(1)`` independent is standard Laplace; it is drawn with
    ``Tensor.exponential_(generator=...)`` (``torch.distributions`` takes no generator).

    Args:
        shape: Output shape.
        scale: Scale ``b`` (std ``sqrt(2) b``), a finite number >= 0.
        generator: Source of randomness (its device is the output's device).
        dtype: Floating output dtype.

    Returns:
        Tensor of ``shape``.

    Raises:
        ValueError: Bad ``scale``, ``shape``, ``generator`` or ``dtype``.
    """
    b = _nonnegative_finite(scale, "scale")
    _check_generator(generator, dtype)
    size = _size(shape)
    e1 = torch.empty(size, dtype=dtype, device=generator.device).exponential_(generator=generator)
    e2 = torch.empty(size, dtype=dtype, device=generator.device).exponential_(generator=generator)
    return e1.sub_(e2).mul_(b)


# --------------------------------------------------------------------------- calibration


def laplace_scale(*, epsilon: float, sensitivity: float) -> float:
    """Laplace scale ``b = Delta_1 / epsilon`` of an ``epsilon``-DP release.

    Args:
        epsilon: Privacy parameter, finite and > 0.
        sensitivity: L1 sensitivity ``Delta_1``, finite and > 0.

    Raises:
        ValueError: Non-positive or non-finite input.
    """
    eps = _positive_finite(epsilon, "epsilon")
    return _positive_finite(sensitivity, "sensitivity") / eps


def _gaussian_delta(s: float, epsilon: float) -> float:
    """Exact delta(epsilon) of the Gaussian mechanism with ``s = sigma / Delta``.

    Balle & Wang 2018, Thm. 8. This condition *defines* the (epsilon, delta) guarantee of a
    single Gaussian release (an identity of the mechanism, not an accounting shortcut):
    it is evaluated here only to calibrate sigma. ``e^eps Phi(.)`` is taken in log space.
    """
    a, b = 1.0 / (2.0 * s), epsilon * s
    return float(special.ndtr(a - b) - math.exp(epsilon + special.log_ndtr(-a - b)))


def analytic_gaussian_sigma(*, epsilon: float, delta: float, sensitivity: float) -> float:
    """Smallest Gaussian std that makes one release ``(epsilon, delta)``-DP (Balle & Wang).

    Solves ``delta(sigma) = delta`` for the exact privacy profile of the Gaussian mechanism
    (see the module docstring) with Brent's method on ``s = sigma / Delta``, then moves up
    by ulps until ``delta(sigma) <= delta`` holds in floating point.

    Args:
        epsilon: Target epsilon, finite and > 0 (any size: no ``epsilon < 1`` restriction).
        delta: Target delta in (0, 1).
        sensitivity: L2 sensitivity ``Delta``, finite and > 0.

    Returns:
        ``sigma`` > 0.

    Raises:
        ValueError: Out-of-range input.
    """
    eps = _positive_finite(epsilon, "epsilon")
    delta = _check_delta(delta)
    sens = _positive_finite(sensitivity, "sensitivity")

    def gap(s: float) -> float:
        return _gaussian_delta(s, eps) - delta

    # delta(s) falls from 1 (s -> 0) to 0 (s -> inf): bracket by doubling / halving
    hi = 1.0
    while gap(hi) > 0:
        hi *= 2.0
    lo = hi / 2.0
    while gap(lo) <= 0:
        lo /= 2.0
    s = float(optimize.brentq(gap, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500))
    sigma = s * sens
    while _gaussian_delta(sigma / sens, eps) > delta:
        sigma = float(np.nextafter(sigma, math.inf))
    return sigma


__all__ = [
    "analytic_gaussian_sigma",
    "clip_updates",
    "gaussian_noise",
    "laplace_noise",
    "laplace_scale",
]
