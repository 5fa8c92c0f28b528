"""Argument checks shared by the attack functions.

Every check raises :class:`ValueError` with a message that names the argument, the value
received and what is allowed, so that a bad experiment fails before its first round.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from torch import Tensor

from fedshield.aggregators.checks import check_updates


def check_real(
    name: str, value: object, *, positive: bool = False, nonnegative: bool = False
) -> float:
    """Validate a finite real scalar and return it as a Python float.

    Args:
        name: Argument name, used in the message.
        value: The value received.
        positive: Require ``value > 0``.
        nonnegative: Require ``value >= 0``.

    Returns:
        ``float(value)``.

    Raises:
        ValueError: Not a real number (booleans are refused), not finite, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    if positive and out <= 0:
        raise ValueError(f"{name} must be > 0, got {out}")
    if nonnegative and out < 0:
        raise ValueError(f"{name} must be >= 0, got {out}")
    return out


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Validate an integer ``>= minimum`` and return it as a Python int.

    Raises:
        ValueError: Not an integer (booleans are refused) or below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    out = int(value)
    if out < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {out}")
    return out


def check_vector(name: str, value: object) -> None:
    """Validate a single update: a non-empty, finite, floating-point 1-D tensor.

    Raises:
        ValueError: Naming what is wrong.
    """
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != 1:
        raise ValueError(f"{name} must be a 1-D update [n_params], got shape {tuple(value.shape)}")
    if value.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)})")
    if not value.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {value.dtype}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} has non-finite (NaN/Inf) entries")


def check_rows(updates: object) -> None:
    """Validate one update ``[d]`` or an update matrix ``[n, d]``.

    A matrix goes through :func:`fedshield.aggregators.checks.check_updates`.

    Raises:
        ValueError: Naming what is wrong.
    """
    if not isinstance(updates, Tensor):
        raise ValueError(f"updates must be a torch.Tensor, got {type(updates).__name__}")
    if updates.dim() == 1:
        check_vector("updates", updates)
        return
    if updates.dim() != 2:
        raise ValueError(
            "updates must be a 1-D update [n_params] or a 2-D matrix [n_clients, n_params], "
            f"got shape {tuple(updates.shape)}"
        )
    check_updates(updates)


def check_min_rows(benign_updates: Tensor, minimum: int, why: str) -> None:
    """Refuse a benign matrix with fewer than ``minimum`` rows.

    Args:
        benign_updates: A matrix already validated by ``check_updates``.
        minimum: Rows needed.
        why: What needs them, e.g. ``"the coordinate-wise std"``.

    Raises:
        ValueError: Too few rows.
    """
    n = benign_updates.shape[0]
    if n < minimum:
        raise ValueError(f"{why} needs at least {minimum} benign rows, got {n}")
