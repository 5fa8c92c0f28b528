"""Gaussian (random) attack: malicious clients upload isotropic Gaussian noise.

Blanchard, El Mhamdi, Guerraoui, Stainer. "Machine Learning with Adversaries: Byzantine
Tolerant Gradient Descent." NeurIPS 2017 (Gaussian Byzantine workers, Section 5); a
baseline in Fang, Cao, Jia, Gong. USENIX Security 2020.

    u'_k ~ N(0, sigma^2 I_d)        k = 1..num, independent
"""

from __future__ import annotations

import torch
from torch import Tensor

from fedshield.attacks._checks import check_int, check_real


def gaussian(
    num: int,
    dim: int,
    *,
    sigma: float,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Draw ``num`` malicious updates from ``N(0, sigma^2 I_dim)``.

    Args:
        num: Number of malicious rows (0 gives an empty ``[0, dim]`` tensor).
        dim: Update dimension ``d`` (>= 1).
        sigma: Standard deviation (finite, >= 0; 0 gives zeros).
        generator: Source of randomness; None uses torch's global generator. The output
            lives on the generator's device.
        dtype: Floating-point dtype of the output.

    Returns:
        ``[num, dim]`` tensor of independent draws.

    Raises:
        ValueError: ``num < 0``, ``dim < 1``, ``sigma`` negative or not finite, or a
            non-floating ``dtype``.
    """
    n = check_int("num", num, minimum=0)
    d = check_int("dim", dim, minimum=1)
    s = check_real("sigma", sigma, nonnegative=True)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    device = generator.device if generator is not None else None
    noise = torch.randn(n, d, generator=generator, dtype=dtype, device=device)
    return noise.mul_(s)


__all__ = ["gaussian"]
