"""Merging the clients' trained FedQSN proxies back into the owner's master model.

Reference: Xu et al., "FedQSN" (EMNLP 2025 Findings, arXiv 2508.18911). Each client
fine-tunes a proxy that lacks the coordinates of its removed units
(:mod:`~fedshield.privacy.fedqsn.masks`); the server folds the updates back into its
full-precision master model.

Faithful reading. The reference code averages the uploaded *whole* proxy states (its
proxies carry every weight, since it masks only activations at run time), so a coordinate
a client did not receive enters the mean as the zero it holds (:func:`merge_whole_state`,
kept for comparison). When the removed coordinates are really withheld, as fedshield does,
that mean drags every partially received coordinate towards zero; the consistent rule is
:func:`merge_per_coordinate`: each coordinate moves by the weighted mean of the deltas of
the clients that received it, and a coordinate nobody received keeps its master value.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["merge_per_coordinate", "merge_whole_state"]


def _check_weights(weights: Tensor | None, n: int, like: Tensor) -> Tensor:
    """Validated weights ``[n]`` in ``like``'s dtype and device (default ones)."""
    if weights is None:
        return torch.ones(n, dtype=like.dtype, device=like.device)
    if weights.shape != (n,) or weights.dtype == torch.bool or weights.is_complex():
        raise ValueError(
            f"weights must be a real [{n}] tensor, got {weights.dtype} {tuple(weights.shape)}"
        )
    w = weights.to(dtype=like.dtype, device=like.device)
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("weights must be finite and >= 0")
    if not bool((w > 0).any()):
        raise ValueError("weights must not all be zero")
    return w


def merge_per_coordinate(
    master: Tensor, deltas: Tensor, received: Tensor, weights: Tensor | None = None
) -> Tensor:
    """New master: each coordinate moved by the mean delta of the clients that had it.

    For coordinate ``i``, with ``R_i`` the clients whose ``received[:, i]`` is ``True``::

        new[i] = master[i] + sum_{k in R_i} w_k deltas[k, i] / sum_{k in R_i} w_k

    and ``new[i] = master[i]`` exactly when that denominator is 0 (nobody received the
    coordinate, or only clients of weight 0). Deltas where ``received`` is ``False`` are
    never read (they may hold anything, even NaN).

    Args:
        master: ``[P]`` floating master parameters.
        deltas: ``[n, P]`` each client's trained proxy minus the proxy it received (cast
            to ``master``'s dtype).
        received: ``bool [n, P]``: which coordinates each client's proxy carried.
        weights: Optional ``[n]`` client weights ``>= 0`` (e.g. sample counts), not all
            zero; default ones.

    Returns:
        A new ``[P]`` tensor in ``master``'s dtype.

    Raises:
        ValueError: Naming the argument, on wrong shapes or dtypes, a non-finite master,
            a non-finite delta at a received coordinate, or bad weights.
    """
    if master.dim() != 1 or not master.is_floating_point():
        raise ValueError(
            f"master must be a floating [P] vector, got {master.dtype} {tuple(master.shape)}"
        )
    P = master.shape[0]
    if deltas.dim() != 2 or deltas.shape[1] != P or deltas.shape[0] < 1:
        raise ValueError(f"deltas must be [n, {P}] with n >= 1, got {tuple(deltas.shape)}")
    if not deltas.is_floating_point():
        raise ValueError(f"deltas must be floating, got {deltas.dtype}")
    n = deltas.shape[0]
    if received.dtype != torch.bool or received.shape != deltas.shape:
        raise ValueError(
            f"received must be bool [{n}, {P}], got {received.dtype} {tuple(received.shape)}"
        )
    if not bool(torch.isfinite(master).all()):
        raise ValueError("master must be finite")
    received = received.to(master.device)
    d = torch.where(
        received,
        deltas.to(dtype=master.dtype, device=master.device),
        torch.zeros((), dtype=master.dtype, device=master.device),
    )
    if not bool(torch.isfinite(d).all()):
        raise ValueError("deltas must be finite where received")
    w = _check_weights(weights, n, master)
    num = w @ d
    den = w @ received.to(master.dtype)
    has = den > 0
    return torch.where(has, master + num / torch.where(has, den, torch.ones_like(den)), master)


def merge_whole_state(states: Tensor, weights: Tensor | None = None) -> Tensor:
    """The reference code's merge: the weighted mean of the uploaded whole proxy states.

    Coordinates a client did not receive count as the zeros its proxy holds there.

    Args:
        states: ``[n, P]`` floating trained proxy states, one row per client.
        weights: Optional ``[n]`` client weights ``>= 0``, not all zero; default ones.

    Returns:
        ``[P]``: ``sum_k w_k states[k] / sum_k w_k``, in ``states``' dtype.

    Raises:
        ValueError: Naming the argument, on a wrong shape or dtype, non-finite states, or
            bad weights.
    """
    if states.dim() != 2 or states.shape[0] < 1 or not states.is_floating_point():
        raise ValueError(
            f"states must be a floating [n, P] matrix with n >= 1, got "
            f"{states.dtype} {tuple(states.shape)}"
        )
    if not bool(torch.isfinite(states).all()):
        raise ValueError("states must be finite")
    w = _check_weights(weights, states.shape[0], states)
    return (w @ states) / w.sum()
