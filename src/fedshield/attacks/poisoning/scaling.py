"""Boosting / model replacement, and the norm projection of constrain-and-scale and PGD.

Bagdasaryan, Veit, Hua, Estrin, Shmatikov. "How To Backdoor Federated Learning."
AISTATS 2020. With the server step ``G^{t+1} = G^t + (eta / n) sum_i (L_i - G^t)``, an
attacker who wants the global model to become its backdoored model ``X`` uploads

    L~ = gamma (X - G^t) + G^t,        gamma = n / eta

so that, when the benign updates roughly cancel, ``G^{t+1} ~= X``. On the update matrix
(rows ``Delta = L - G^t``) this is plain scaling: ``Delta~ = gamma * Delta``
(:func:`scale_update`, :func:`model_replacement_factor`).

Against a server that bounds update norms (Sun, Kairouz, Suresh, McMahan. "Can You Really
Backdoor Federated Learning?" 2019), the attacker keeps its upload inside the bound:
Bagdasaryan et al.'s constrain-and-scale scales up to the bound, and the PGD attack of
Wang et al. ("Attack of the Tails: Yes, You Really Can Backdoor Federated Learning."
NeurIPS 2020) projects onto the L2 ball after each step. Both use the projection

    proj_r(u) = u * min(1, r / ||u||_2)        (each row separately)

(:func:`project_norm`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fedshield.attacks._checks import check_int, check_real, check_rows


def scale_update(updates: Tensor, *, factor: float) -> Tensor:
    """Boost updates by a constant factor (model replacement in update space).

    Args:
        updates: ``[d]`` one update or ``[n, d]`` update matrix (float, finite).
        factor: ``gamma > 0``; :func:`model_replacement_factor` gives Bagdasaryan et al.'s
            ``n / eta``.

    Returns:
        ``factor * updates``, same shape and dtype (a new tensor). A huge factor can
        overflow the dtype to +-inf; a server-side check is expected to reject such rows.

    Raises:
        ValueError: Bad ``updates`` or ``factor`` not a finite number > 0.
    """
    check_rows(updates)
    gamma = check_real("factor", factor, positive=True)
    return updates * gamma


def model_replacement_factor(num_clients: int, server_lr: float = 1.0) -> float:
    """Bagdasaryan et al.'s boosting factor ``gamma = n / eta``.

    Args:
        num_clients: ``n``, the number of updates the server averages in the round.
        server_lr: ``eta``, the server learning rate in
            ``G^{t+1} = G^t + (eta / n) sum_i (L_i - G^t)`` (FedAvg: 1).

    Returns:
        ``num_clients / server_lr``.

    Raises:
        ValueError: ``num_clients < 1`` or ``server_lr`` not a finite number > 0.
    """
    n = check_int("num_clients", num_clients, minimum=1)
    eta = check_real("server_lr", server_lr, positive=True)
    return n / eta


def project_norm(updates: Tensor, *, max_norm: float) -> Tensor:
    """Project each row onto the L2 ball of radius ``max_norm`` centred at 0.

    ``proj_r(u) = u * min(1, r / ||u||_2)``: rows already inside the ball (zero rows
    included) are returned unchanged, the others are scaled down to norm ``r`` (up to
    rounding) in the same direction. Rows whose squared norm overflows the dtype are
    rescaled by their largest entry first, so they are projected correctly too.

    Args:
        updates: ``[d]`` one update or ``[n, d]`` update matrix (float, finite).
        max_norm: Radius ``r >= 0`` (0 maps every row to zeros).

    Returns:
        Tensor of the same shape and dtype (a new tensor).

    Raises:
        ValueError: Bad ``updates`` or ``max_norm`` negative or not finite.
    """
    check_rows(updates)
    r = check_real("max_norm", max_norm, nonnegative=True)
    rows = updates.unsqueeze(0) if updates.dim() == 1 else updates
    norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
    factor = torch.where(norms > r, r / norms, torch.ones_like(norms))
    out = rows * factor
    overflow = ~torch.isfinite(norms.squeeze(1))
    if bool(overflow.any()):
        big = rows[overflow]
        unit = big / big.abs().amax(dim=1, keepdim=True)  # entries in [-1, 1]
        out[overflow] = unit * (r / torch.linalg.vector_norm(unit, dim=1, keepdim=True))
    return out.squeeze(0) if updates.dim() == 1 else out


__all__ = ["model_replacement_factor", "project_norm", "scale_update"]
