"""Sign flipping: a malicious client uploads its honest update reversed (and scaled).

Li, Xu, Chen, Giannakis, Ling. "RSA: Byzantine-Robust Stochastic Aggregation Methods
for Distributed Learning from Heterogeneous Datasets." AAAI 2019 (the sign-flipping
attack); a standard baseline since, e.g. Karimireddy, He, Jaggi. "Byzantine-Robust
Learning on Heterogeneous Datasets via Bucketing." ICLR 2022.

    u' = -c * u        c > 0 (c = 1: plain sign flip)
"""

from __future__ import annotations

from torch import Tensor

from fedshield.attacks._checks import check_real, check_rows


def sign_flip(updates: Tensor, *, scale: float = 1.0) -> Tensor:
    """Reverse (and scale) honest updates.

    Args:
        updates: ``[d]`` one update or ``[n, d]`` update matrix (float, finite).
        scale: ``c > 0``, the factor applied after flipping.

    Returns:
        ``-scale * updates``, same shape and dtype (a new tensor).

    Raises:
        ValueError: Bad ``updates`` (not 1-D/2-D, empty, non-float, NaN/Inf) or ``scale``
            not a finite number > 0.
    """
    check_rows(updates)
    c = check_real("scale", scale, positive=True)
    return updates * (-c)


__all__ = ["sign_flip"]
