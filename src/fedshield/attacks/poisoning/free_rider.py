"""Free riders: clients that upload without training, to receive the model for free.

Lin, Du, Liu. "Free-riders in Federated Learning: Attacks and Defenses." arXiv
1911.12560, 2019 (the "delta weights" free rider re-sends the last global step);
Fraboni, Vidal, Lorenzi. "Free-rider Attacks on Model Aggregation in Federated
Learning." AISTATS 2021 (plain free riders send the global model back unchanged, i.e. a
zero update; disguised ones add Gaussian noise ``phi(t) * eps_t`` to hide it).

Modes, for a global step ``Delta_{t-1} = G^t - G^{t-1}`` (``previous_update``):

    stale        u' = Delta_{t-1}                  (zeros in the first round: plain)
    noise        u' = eps,  eps ~ N(0, sigma^2 I)  (disguised plain free rider)
    noisy_stale  u' = Delta_{t-1} + eps            (eps alone in the first round)

A time-varying disguise ``phi(t)`` is obtained by passing the round's ``sigma``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fedshield.attacks._checks import check_int, check_real, check_vector

FREE_RIDER_MODES = ("stale", "noise", "noisy_stale")


def free_rider(
    dim: int,
    *,
    previous_update: Tensor | None = None,
    mode: str = "stale",
    sigma: float = 1e-3,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One free-rider upload.

    Args:
        dim: Update dimension ``d`` (>= 1).
        previous_update: ``[d]`` the previous global update ``G^t - G^{t-1}``; None in
            the first round (treated as zeros).
        mode: One of ``FREE_RIDER_MODES`` (see the module docstring).
        sigma: Noise standard deviation for ``noise`` / ``noisy_stale`` (finite, >= 0);
            ignored by ``stale``.
        generator: Source of the noise; None uses torch's global generator. It must live
            on ``previous_update``'s device when both are given.

    Returns:
        ``[d]`` update, in ``previous_update``'s dtype and device (float32 on the
        generator's device, or the CPU, without one). Never a view of ``previous_update``.

    Raises:
        ValueError: ``dim < 1``, unknown ``mode`` (the message lists the allowed ones),
            ``sigma`` negative or not finite, or ``previous_update`` not a finite float
            1-D tensor of length ``dim``.
    """
    d = check_int("dim", dim, minimum=1)
    if mode not in FREE_RIDER_MODES:
        allowed = ", ".join(repr(m) for m in FREE_RIDER_MODES)
        raise ValueError(f"unknown free-rider mode {mode!r}: allowed modes are {allowed}")
    s = check_real("sigma", sigma, nonnegative=True)
    if previous_update is not None:
        check_vector("previous_update", previous_update)
        if previous_update.shape[0] != d:
            raise ValueError(
                f"previous_update must have shape ({d},), got {tuple(previous_update.shape)}"
            )
        base = previous_update.clone()
    else:
        device = generator.device if generator is not None else None
        base = torch.zeros(d, dtype=torch.float32, device=device)
    if mode == "stale":
        return base
    noise = torch.randn(d, generator=generator, dtype=base.dtype, device=base.device)
    if mode == "noise":
        return noise.mul_(s)
    return base.add_(noise, alpha=s)


__all__ = ["FREE_RIDER_MODES", "free_rider"]
