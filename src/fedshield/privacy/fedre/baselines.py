"""Baselines of FedRE's evaluation: LDP-Fed's alpha-CLDP and the pixel-level "Blur".

**alpha-CLDP** (LDP-Fed: Truex, Liu, Chow, Gursoy, Wei. "LDP-Fed: Federated Learning with
Local Differential Privacy." EdgeSys 2020, arXiv 2006.03637; the mechanism is from Gursoy,
Tamersoy, Truex, Wei, Liu. "Secure and Utility-Aware Data Collection with Condensed Local
Differential Privacy." IEEE TDSC 2019). Each value ``x`` is clipped to ``[-c, c]`` and
snapped to the nearest of ``m = levels`` equally spaced points
``v_i = -c + i * 2c / (m - 1)``, ``i = 0..m-1``; with ``i`` its level index, the output is
level ``j`` drawn by the Exponential Mechanism on the ordinal domain::

    Pr[j | i] = exp(-alpha |i - j| / 2) / sum_k exp(-alpha |i - k| / 2)

Privacy: ``Pr[j | i] <= exp(alpha |i - i'|) Pr[j | i']`` (alpha-CLDP with the index
distance ``d(i, i') = |i - i'|``); the largest distance is ``m - 1``, so one value is
``epsilon``-LDP with ``epsilon = alpha (m - 1)`` over the whole domain. (In value units the
distance is ``|v_i - v_i'| = |i - i'| * 2c / (m - 1)``, i.e. ``alpha_value = alpha (m - 1)
/ (2c)``.) Sampling is by inverse CDF: one ``torch.rand`` draw (float64, from the explicit
generator) per value and a ``searchsorted`` on that value's CDF row (rows from a
precomputed ``m x m`` table when ``m^2 <= 2^21``, else computed per chunk), in chunks of
about ``2^21 / m`` values so memory stays bounded.

**Blur** (the pixel-level baseline of FedRE, Table 1 "Blur+LUS"): Gaussian-blur the images
and replace only the pixels of the privacy-sensitive region with their blurred values. The
blur is a separable Gaussian of std ``sigma`` with radius ``r = ceil(3 sigma)`` (weights
``exp(-x^2 / (2 sigma^2))`` for ``x = -r..r``, normalised to sum 1) applied along H then W
by ``conv1d`` on a padded copy. The padding is half-sample symmetric (``d c b a | a b c d``,
scipy.ndimage's ``mode="reflect"``, numpy's ``"symmetric"``; torch's ``F.pad`` "reflect"
would be scipy's ``"mirror"``), computed by index arithmetic so any image size works. It
equals ``scipy.ndimage.gaussian_filter(x, (0, 0, sigma, sigma), mode="reflect",
truncate=r / sigma)``.
"""

from __future__ import annotations

import math
from numbers import Integral

import torch
import torch.nn.functional as F
from torch import Tensor

from fedshield.privacy.mechanisms import _check_generator, _positive_finite

_CHUNK_CELLS = 2**21  # float64 cells of one chunk's [chunk, levels] CDF table (16 MiB)


def _check_values(values: Tensor, name: str) -> None:
    if not isinstance(values, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
    if not values.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {values.dtype}")
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} has non-finite (NaN/Inf) entries")


# --------------------------------------------------------------------------- alpha-CLDP


def cldp_levels(clip: float, levels: int) -> Tensor:
    """The ``levels`` equally spaced output points ``-clip .. clip`` (float64)."""
    c = _positive_finite(clip, "clip")
    if isinstance(levels, bool) or not isinstance(levels, Integral) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    return torch.linspace(-c, c, int(levels), dtype=torch.float64)


def _cdf_rows(inputs: Tensor, ks: Tensor, alpha: float) -> Tensor:
    """``[len(inputs), m]`` CDFs of ``Pr[j | i] ~ exp(-alpha |i - j| / 2)``."""
    # weights <= 1 (= 1 at j = i): no overflow; far levels may underflow to 0
    w = torch.exp(-0.5 * alpha * (inputs.unsqueeze(1) - ks).abs())
    cdf = torch.cumsum(w, dim=1)
    return cdf / cdf[:, -1:]


def cldp_perturb(
    values: Tensor, *, alpha: float, clip: float, levels: int, generator: torch.Generator
) -> Tensor:
    """alpha-CLDP of LDP-Fed on every entry of ``values`` (see the module docstring).

    Args:
        values: Any-shaped finite float tensor (e.g. selected update coordinates).
        alpha: ``alpha > 0`` per level index of distance; ``epsilon = alpha (levels - 1)``
            is the worst-case LDP of one value.
        clip: ``c > 0``: values are clipped to ``[-c, c]``.
        levels: Number ``m >= 2`` of discretisation points.
        generator: Source of randomness.

    Returns:
        Tensor of ``values``' shape, dtype and device; every entry is one of the points of
        :func:`cldp_levels`.

    Raises:
        ValueError: Non-finite or non-floating values, bad ``alpha``, ``clip``, ``levels``
            or generator.
    """
    _check_values(values, "values")
    a = _positive_finite(alpha, "alpha")
    grid = cldp_levels(clip, levels)
    _check_generator(generator, torch.float64)
    c = float(grid[-1])
    m = grid.numel()
    step = 2.0 * c / (m - 1)
    flat = values.detach().reshape(-1).to(device="cpu", dtype=torch.float64)
    idx = torch.round((flat.clamp(-c, c) + c) / step).to(torch.int64).clamp_(0, m - 1)
    u = torch.rand(flat.numel(), generator=generator, dtype=torch.float64, device=generator.device)
    u = u.cpu()
    out_idx = torch.empty_like(idx)
    ks = torch.arange(m, dtype=torch.float64)
    # the [m, m] table of all CDF rows when it is small, else the rows of each chunk
    table = _cdf_rows(ks, ks, a) if m * m <= _CHUNK_CELLS else None
    chunk = max(1, _CHUNK_CELLS // m)
    for start in range(0, idx.numel(), chunk):
        i = idx[start : start + chunk]
        cdf = table[i] if table is not None else _cdf_rows(i.to(torch.float64), ks, a)
        j = torch.searchsorted(cdf, u[start : start + chunk].unsqueeze(1), right=True)
        out_idx[start : start + chunk] = j.squeeze(1).clamp_(max=m - 1)
    return grid[out_idx].reshape(values.shape).to(device=values.device, dtype=values.dtype)


# --------------------------------------------------------------------------- blur


def _symmetric_index(size: int, radius: int) -> Tensor:
    """Indices of a half-sample symmetric extension of ``[0, size)`` by ``radius``."""
    p = torch.arange(-radius, size + radius)
    q = torch.remainder(p, 2 * size)
    return torch.where(q < size, q, 2 * size - 1 - q)


def gaussian_kernel(sigma: float) -> Tensor:
    """Normalised 1-D Gaussian of std ``sigma``, radius ``ceil(3 sigma)`` (float64)."""
    s = _positive_finite(sigma, "sigma")
    r = math.ceil(3.0 * s)
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-(x**2) / (2.0 * s * s))
    return k / k.sum()


def _blur_last(x: Tensor, kernel: Tensor) -> Tensor:
    """Blur ``[B, H, W]`` along the last axis with symmetric padding."""
    b, h, w = x.shape
    r = (kernel.numel() - 1) // 2
    padded = x[..., _symmetric_index(w, r).to(x.device)]
    out = F.conv1d(padded.reshape(b * h, 1, w + 2 * r), kernel.view(1, 1, -1))
    return out.reshape(b, h, w)


def blur_regions(images: Tensor, region: Tensor, *, sigma: float = 2.0) -> Tensor:
    """Gaussian-blur the pixels of ``region``; the others are returned bit-identical.

    Args:
        images: ``[N, C, H, W]`` finite float images.
        region: ``[N, H, W]`` bool mask of the pixels to blur (all channels).
        sigma: Std of the Gaussian in pixels, finite and > 0 (radius ``ceil(3 sigma)``).

    Returns:
        ``[N, C, H, W]`` new tensor of ``images``' dtype.

    Raises:
        ValueError: Bad shapes or dtypes, non-finite images, or bad ``sigma``.
    """
    _check_values(images, "images")
    if images.dim() != 4 or images.numel() == 0:
        raise ValueError(f"images must be a non-empty [N, C, H, W] tensor, got {images.shape}")
    n, ch, h, w = images.shape
    if not isinstance(region, Tensor) or region.dtype != torch.bool:
        raise ValueError("region must be a bool tensor [N, H, W]")
    if tuple(region.shape) != (n, h, w):
        raise ValueError(f"region must have shape {(n, h, w)}, got {tuple(region.shape)}")
    kernel = gaussian_kernel(sigma).to(device=images.device, dtype=images.dtype)
    x = images.detach().reshape(n * ch, h, w)
    blurred = _blur_last(x, kernel)  # along W
    blurred = _blur_last(blurred.transpose(1, 2), kernel).transpose(1, 2)  # along H
    blurred = blurred.reshape(n, ch, h, w)
    return torch.where(region.to(images.device).unsqueeze(1), blurred, images)


__all__ = ["blur_regions", "cldp_levels", "cldp_perturb", "gaussian_kernel"]
