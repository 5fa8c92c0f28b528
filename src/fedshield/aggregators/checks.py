"""Input checks shared by every aggregation rule."""

from __future__ import annotations

import torch
from torch import Tensor


def check_updates(updates: Tensor) -> None:
    """Validate an update matrix.

    Args:
        updates: Expected ``[n_clients, n_params]`` floating tensor, finite, non-empty.

    Raises:
        ValueError: Naming what is wrong.
    """
    if not isinstance(updates, Tensor):
        raise ValueError(f"updates must be a torch.Tensor, got {type(updates).__name__}")
    if updates.dim() != 2:
        raise ValueError(
            f"updates must be a 2-D matrix [n_clients, n_params], got shape {tuple(updates.shape)}"
        )
    if updates.shape[0] == 0 or updates.shape[1] == 0:
        raise ValueError(f"updates is empty (shape {tuple(updates.shape)}): nothing to aggregate")
    if not updates.is_floating_point():
        raise ValueError(f"updates must be floating point, got dtype {updates.dtype}")
    bad_rows = nonfinite_rows(updates)
    if bool(bad_rows.any()):
        bad = bad_rows.nonzero().flatten().tolist()
        raise ValueError(f"updates has non-finite (NaN/Inf) entries in rows {bad}")


def nonfinite_rows(updates: Tensor) -> Tensor:
    """Boolean ``[n]``: which rows of ``updates`` contain a NaN or an Inf.

    A row sum is NaN/Inf whenever the row holds one, so one reduction screens all rows
    (memory-bound, no ``[n, d]`` boolean temporary); only rows whose sum is not finite
    (which includes finite rows whose sum overflows) are checked element by element.
    """
    suspect = ~torch.isfinite(updates.sum(dim=1))
    if not bool(suspect.any()):
        return suspect
    idx = suspect.nonzero().flatten()
    suspect[idx] = ~torch.isfinite(updates[idx]).all(dim=1)
    return suspect


def check_weights(weights: Tensor, n: int) -> Tensor:
    """Validate aggregation weights for ``n`` clients and return them as a 1-D tensor.

    Raises:
        ValueError: Wrong length, negative or non-finite entries, or all zero.
    """
    w = torch.as_tensor(weights)
    if w.dim() != 1 or w.shape[0] != n:
        raise ValueError(f"weights must have shape ({n},), got {tuple(w.shape)}")
    w = w.to(torch.float64 if w.dtype == torch.float64 else torch.float32)
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"weights must be finite and >= 0, got {w.tolist()}")
    if float(w.sum()) <= 0:
        raise ValueError("weights sum to zero: at least one client must have weight > 0")
    return w
