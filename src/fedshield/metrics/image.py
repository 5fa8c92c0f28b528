"""Image-reconstruction quality: MSE, PSNR, SSIM (and an LPIPS placeholder).

Used to score gradient-inversion attacks: how close is the attacker's reconstruction
``b`` to the client's private image ``a``. All images live in ``[0, 1]``.

    MSE(a, b)  = mean((a - b)^2)
    PSNR(a, b) = 10 log10(R^2 / MSE(a, b))     R = data range (1.0); MSE = 0 -> +inf

SSIM: Wang, Bovik, Sheikh, Simoncelli. "Image Quality Assessment: From Error Visibility
to Structural Similarity." IEEE TIP 13(4), 2004. Computed by
``skimage.metrics.structural_similarity`` with ``data_range=1.0`` and the paper's
settings: an 11x11 Gaussian window with sigma = 1.5 (``gaussian_weights=True``) and
population (not sample) covariances (``use_sample_covariance=False``). Colour images are
scored per channel and averaged (``channel_axis``); a batch ``[N, C, H, W]`` is the mean
of the per-image scores. Images (or regions) must be at least 11x11.

    SSIM(x, y) = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))
    C1 = (0.01 R)^2, C2 = (0.03 R)^2, averaged over all window positions.

Shapes accepted: ``[H, W]``, ``[C, H, W]`` or ``[N, C, H, W]``, as torch Tensors or numpy
arrays; both arguments must have the same shape. ``region=(top, left, height, width)``
restricts any metric to that box of the last two (spatial) axes, e.g. a face or a
text field in FedRE-style evaluations of privacy-sensitive regions.

LPIPS (Zhang et al., CVPR 2018) needs pretrained network weights that cannot be
downloaded in this environment; :func:`lpips` only raises :class:`LPIPSUnavailableError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeAlias, TypeVar

import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import Tensor

ImageLike: TypeAlias = Tensor | np.ndarray
Region: TypeAlias = tuple[int, int, int, int]
_T = TypeVar("_T", Tensor, np.ndarray)

# skimage's Gaussian window: 2 * int(3.5 * 1.5 + 0.5) + 1 = 11 pixels per side
_SSIM_SIGMA = 1.5
_SSIM_MIN_SIDE = 11


class LPIPSUnavailableError(RuntimeError):
    """LPIPS cannot be computed here (no pretrained weights, not implemented)."""


def _as_array(x: ImageLike, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        arr = x.detach().cpu().to(torch.float64).numpy()
    elif isinstance(x, np.ndarray):
        arr = np.asarray(x, dtype=np.float64)
    else:
        raise ValueError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if arr.ndim not in (2, 3, 4):
        raise ValueError(
            f"{name} must have shape [H, W], [C, H, W] or [N, C, H, W], got shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} has values outside [0, 1] (min {lo:.4g}, max {hi:.4g})")
    return arr


def _crop(arr: np.ndarray, region: Region | None) -> np.ndarray:
    if region is None:
        return arr
    if len(region) != 4:
        raise ValueError(f"region must be (top, left, height, width), got {region!r}")
    top, left, height, width = (int(v) for v in region)
    H, W = arr.shape[-2:]
    if top < 0 or left < 0 or height <= 0 or width <= 0:
        raise ValueError(
            f"region (top, left, height, width) = {region!r} needs top, left >= 0 and "
            "height, width > 0"
        )
    if top + height > H or left + width > W:
        raise ValueError(f"region {region!r} does not fit in the {H}x{W} image")
    return arr[..., top : top + height, left : left + width]


def _pair(a: ImageLike, b: ImageLike, region: Region | None) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: a has shape {x.shape}, b has shape {y.shape}")
    return _crop(x, region), _crop(y, region)


def mse(a: ImageLike, b: ImageLike, *, region: Region | None = None) -> float:
    """Mean squared error over all pixels (and channels, and images).

    Args:
        a: Reference image(s) in ``[0, 1]``, shape ``[H, W]``, ``[C, H, W]`` or ``[N, C, H, W]``.
        b: Reconstruction, same shape as ``a``.
        region: Optional box ``(top, left, height, width)`` on the spatial axes.

    Returns:
        ``mean((a - b)^2)``.

    Raises:
        ValueError: Unsupported type or shape, shape mismatch, values outside ``[0, 1]`` or
            non-finite, or a region that is empty or does not fit.
    """
    x, y = _pair(a, b, region)
    return float(np.mean((x - y) ** 2))


def psnr(
    a: ImageLike, b: ImageLike, *, data_range: float = 1.0, region: Region | None = None
) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range^2 / MSE)``.

    Args:
        a: Reference image(s) in ``[0, 1]``, shape ``[H, W]``, ``[C, H, W]`` or ``[N, C, H, W]``.
        b: Reconstruction, same shape as ``a``.
        data_range: Peak value R (1.0 for ``[0, 1]`` images).
        region: Optional box ``(top, left, height, width)`` on the spatial axes.

    Returns:
        PSNR in dB over all pixels (a batch is pooled into one MSE); ``inf`` when identical.

    Raises:
        ValueError: As :func:`mse`, or ``data_range <= 0``.
    """
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive finite number, got {data_range}")
    err = mse(a, b, region=region)
    if err == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / err)


def ssim(a: ImageLike, b: ImageLike, *, region: Region | None = None) -> float:
    """Structural similarity (Wang et al. 2004) via scikit-image, Gaussian window.

    ``gaussian_weights=True``, ``sigma=1.5``, ``use_sample_covariance=False``,
    ``data_range=1.0``: the paper's configuration (an 11x11 window). ``[C, H, W]`` uses
    ``channel_axis=0`` (mean over channels); ``[N, C, H, W]`` is the mean over images.

    Args:
        a: Reference image(s) in ``[0, 1]``, shape ``[H, W]``, ``[C, H, W]`` or ``[N, C, H, W]``.
        b: Reconstruction, same shape as ``a``.
        region: Optional box ``(top, left, height, width)`` on the spatial axes.

    Returns:
        Mean SSIM, 1.0 for identical images.

    Raises:
        ValueError: As :func:`mse`, or an image (region) smaller than 11x11.
    """
    x, y = _pair(a, b, region)
    H, W = x.shape[-2:]
    if min(H, W) < _SSIM_MIN_SIDE:
        raise ValueError(
            f"SSIM needs images (or regions) of at least {_SSIM_MIN_SIDE}x{_SSIM_MIN_SIDE} "
            f"for its Gaussian window, got {H}x{W}"
        )
    if x.ndim == 2:
        x, y = x[None, None], y[None, None]
    elif x.ndim == 3:
        x, y = x[None], y[None]
    scores = [
        float(
            structural_similarity(
                xi,
                yi,
                data_range=1.0,
                channel_axis=0,
                gaussian_weights=True,
                sigma=_SSIM_SIGMA,
                use_sample_covariance=False,
            )
        )
        for xi, yi in zip(x, y, strict=True)
    ]
    return float(np.mean(scores))


def to_unit_range(x: _T, *, mean: Sequence[float], std: Sequence[float]) -> _T:
    """Undo a per-channel normalisation ``(x - mean) / std`` and clamp to ``[0, 1]``.

    Args:
        x: Normalised image(s), ``[C, H, W]`` or ``[N, C, H, W]`` (Tensor or ndarray).
        mean: Per-channel means, length C.
        std: Per-channel standard deviations (> 0), length C.

    Returns:
        ``clamp(x * std + mean, 0, 1)``, same type, shape and (floating) dtype as ``x``.

    Raises:
        ValueError: Wrong rank, ``len(mean)``/``len(std)`` different from C, or a
            non-positive std.
    """
    if x.ndim not in (3, 4):
        raise ValueError(f"x must have shape [C, H, W] or [N, C, H, W], got {tuple(x.shape)}")
    C = x.shape[-3]
    if len(mean) != C or len(std) != C:
        raise ValueError(
            f"mean and std need one value per channel ({C}), got {len(mean)} and {len(std)}"
        )
    if any(not (s > 0) for s in std):
        raise ValueError(f"std must be positive, got {list(std)}")
    if isinstance(x, Tensor):
        dtype = x.dtype if x.is_floating_point() else torch.float32
        m = torch.tensor(list(mean), dtype=dtype, device=x.device).view(C, 1, 1)
        s = torch.tensor(list(std), dtype=dtype, device=x.device).view(C, 1, 1)
        return (x.to(dtype) * s + m).clamp(0.0, 1.0)
    dt = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    mn = np.asarray(mean, dtype=dt).reshape(C, 1, 1)
    sd = np.asarray(std, dtype=dt).reshape(C, 1, 1)
    return np.clip(x.astype(dt) * sd + mn, 0.0, 1.0)


def lpips(a: ImageLike, b: ImageLike, *, weights_path: str | None = None) -> float:
    """LPIPS perceptual distance (Zhang et al. 2018): not available in fedshield.

    LPIPS needs an ImageNet-pretrained backbone (AlexNet/VGG) plus the authors' linear
    calibration layers. They cannot be downloaded here and fedshield does not ship or
    reimplement them, so this function always raises after checking its inputs. To
    report LPIPS, install the ``lpips`` package on a machine with the weights
    (``lpips.LPIPS(net="alex", model_path=...)``) and score the saved reconstructions
    there. Tests should catch :class:`LPIPSUnavailableError` and skip.

    Args:
        a: Reference image(s) in ``[0, 1]``.
        b: Reconstruction, same shape as ``a``.
        weights_path: Path to local LPIPS weights; accepted for API stability, unused.

    Raises:
        ValueError: Invalid images (as :func:`mse`).
        LPIPSUnavailableError: Always, for valid inputs.
    """
    _pair(a, b, None)
    where = (
        "no weights_path was given"
        if weights_path is None
        else f"weights_path={weights_path!r} was given, but fedshield has no LPIPS network"
    )
    raise LPIPSUnavailableError(
        "LPIPS is unavailable: its pretrained AlexNet/VGG backbone and linear-layer weights "
        f"cannot be downloaded in this environment and {where}. Install the `lpips` package "
        "with locally provided weights (lpips.LPIPS(net='alex', model_path=...)) and score "
        "the saved reconstructions outside fedshield; tests skip on LPIPSUnavailableError."
    )
