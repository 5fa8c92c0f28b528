"""FedRE's layer-wise local DP: budget allocation, per-layer clipping and Gaussian noise.

Xiao et al. "FedRE: Robust and Effective Federated Learning with Privacy Preference."
ICMR 2025, Sec. 3.2.2. A client with total budget ``(epsilon, delta)`` and PSI scores
``S_l > 0`` of its ``L`` layers (eqs. 3-5; high = the layer's gradient is sensitive to the
privacy-sensitive region) perturbs its update ``g = (g_1, ..., g_L)`` layer by layer::

    eps_l   = epsilon * (1 / S_l) / sum_t (1 / S_t)                        (eq. 6)
    g_l^c   = g_l * min(1, C_l / ||g_l||_2)                                (eq. 7)
    g~_l    = g_l^c + N(0, C_l^2 sigma_l^2 I)                              (eq. 8)
    sigma_l = sqrt(2 T ln(1 / delta_l)) / eps_l,   sum_l delta_l = delta   (eq. 9)

Eq. 9 is the noise multiplier of Wei et al. ("Federated Learning with Differential
Privacy: Algorithms and Performance Analysis." IEEE TIFS 15, 2020) for ``T`` rounds; by
simple composition (Dwork et al.) the paper claims the whole update is
``(sum_l eps_l, sum_l delta_l) = (epsilon, delta)``-LDP (Corollary 1). The paper only
requires ``sum_l delta_l = delta``; :func:`split_delta` splits it uniformly,
``delta_l = delta / L``. :func:`fedre_accounting` reports that claimed total next to the
epsilon an RDP accountant (``dp_accounting``) gives for the same noise.

The uniform-layer baseline ("LDP-Fed" variant ``uniform_layer_gaussian`` of the spec) uses
the same clip and noise with ``eps_l = epsilon / L`` (:func:`uniform_budget`).

Pitfalls (spec ``methods.md`` section 1):

- Eq. 9 taken literally gives very large noise: ``L = 50, T = 100, epsilon = 50,
  delta = 1e-5`` gives ``sigma_l ~ 55``, a noise std of ~8 per coordinate at
  ``C_l = 0.15``. The override of sigma lives at the hook level (these functions take any
  ``sigma``); record the value actually used.
- The paper's text says FedRE "allocates more privacy budget" to critical regions, which
  contradicts eq. 6 (a more PSI-sensitive layer gets a *smaller* ``eps_l``, i.e. more
  noise). These functions follow eq. 6.
- ``t`` is reused in the paper for rounds, layers (eq. 6) and clients (eqs. 10-11).

Everything is a pure function of tensors; randomness comes from an explicit
``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral

import torch
from dp_accounting import dp_event
from dp_accounting.privacy_accountant import NeighboringRelation
from torch import Tensor

from fedshield.aggregators.checks import check_updates
from fedshield.aggregators.pda_pam import layer_sizes
from fedshield.privacy.accounting import _library_accountant
from fedshield.privacy.mechanisms import (
    _check_delta,
    _positive_finite,
    clip_updates,
    gaussian_noise,
)


def _check_count(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _real_tensor(values: Tensor | float | Sequence[float], name: str) -> Tensor:
    """``values`` as a float64 tensor (no validation of the entries)."""
    t = torch.as_tensor(values)
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must hold real numbers, got dtype {t.dtype}")
    return t.to(torch.float64)


def _check_layer_vector(
    values: Tensor, name: str, *, positive: bool, allow_2d: bool = True
) -> Tensor:
    """Validate a per-layer ``[L]`` (or per-client ``[K, L]``) float64 tensor."""
    if values.dim() not in ((1, 2) if allow_2d else (1,)) or values.numel() == 0:
        shapes = "[L] or [K, L]" if allow_2d else "[L]"
        raise ValueError(f"{name} must be a non-empty {shapes} tensor, got {tuple(values.shape)}")
    bad = ~torch.isfinite(values) | ((values <= 0) if positive else (values < 0))
    if bool(bad.any()):
        idx = bad.nonzero()
        first = idx[0].tolist()
        layer = first[-1]
        where = f"layer {layer}" if values.dim() == 1 else f"client {first[0]}, layer {layer}"
        bound = "> 0" if positive else ">= 0"
        raise ValueError(
            f"{name} must be finite and {bound}: {where} has {values[tuple(first)].item()!r} "
            f"({idx.shape[0]} bad entries)"
        )
    return values


# --------------------------------------------------------------------------- budget


def allocate_budget(scores: Tensor, epsilon: float) -> Tensor:
    """Eq. 6: split ``epsilon`` over layers inversely to their PSI scores.

    ``eps_l = epsilon * (1 / S_l) / sum_t (1 / S_t)``: the budgets sum to ``epsilon`` and
    ``eps_l * S_l`` is the same for every layer, so a more PSI-sensitive layer gets a
    smaller budget (more noise).

    Args:
        scores: PSI scores ``S_l``, ``[L]`` or ``[K, L]`` (one row per client, allocated
            row-wise); finite and > 0.
        epsilon: Total budget of one client, finite and > 0.

    Returns:
        float64 tensor of ``scores``' shape.

    Raises:
        ValueError: Bad ``epsilon``, or scores not ``[L]`` / ``[K, L]``, empty, non-finite
            or ``<= 0`` (naming the first offending layer).
    """
    eps = _positive_finite(epsilon, "epsilon")
    s = _check_layer_vector(_real_tensor(scores, "scores"), "scores", positive=True)
    inv = 1.0 / s
    return eps * inv / inv.sum(dim=-1, keepdim=True)


def uniform_budget(num_layers: int, epsilon: float) -> Tensor:
    """The uniform-layer baseline: ``eps_l = epsilon / L`` (``uniform_layer_gaussian``).

    Args:
        num_layers: ``L >= 1``.
        epsilon: Total budget, finite and > 0.

    Returns:
        ``[L]`` float64.

    Raises:
        ValueError: Bad ``num_layers`` or ``epsilon``.
    """
    eps = _positive_finite(epsilon, "epsilon")
    n = _check_count(num_layers, "num_layers", 1)
    return torch.full((n,), eps / n, dtype=torch.float64)


def split_delta(delta: float, num_layers: int) -> Tensor:
    """Uniform split ``delta_l = delta / L``, so that ``sum_l delta_l = delta``.

    The paper only requires ``sum_l delta_l = delta`` (Corollary 1); the uniform split is
    this implementation's choice.

    Args:
        delta: Total delta in (0, 1).
        num_layers: ``L >= 1``.

    Returns:
        ``[L]`` float64.

    Raises:
        ValueError: Bad ``delta`` or ``num_layers``.
    """
    d = _check_delta(delta)
    n = _check_count(num_layers, "num_layers", 1)
    return torch.full((n,), d / n, dtype=torch.float64)


def fedre_sigma(eps_l: Tensor, delta_l: Tensor, rounds: int) -> Tensor:
    """Eq. 9: noise multiplier ``sigma_l = sqrt(2 T ln(1 / delta_l)) / eps_l``.

    The noise std of layer ``l`` is ``C_l * sigma_l`` (eq. 8). Shapes broadcast (e.g.
    ``eps_l`` ``[K, L]`` with ``delta_l`` ``[L]``).

    Args:
        eps_l: Per-layer budgets, finite and > 0.
        delta_l: Per-layer deltas in (0, 1).
        rounds: Number of rounds ``T >= 1``.

    Returns:
        float64 tensor of the broadcast shape.

    Raises:
        ValueError: Out-of-range input or shapes that do not broadcast.
    """
    t = _check_count(rounds, "rounds", 1)
    e = _check_layer_vector(_real_tensor(eps_l, "eps_l"), "eps_l", positive=True)
    d = _check_layer_vector(_real_tensor(delta_l, "delta_l"), "delta_l", positive=True)
    if bool((d >= 1).any()):
        raise ValueError(f"delta_l must be in (0, 1), got {d.tolist()}")
    try:
        torch.broadcast_shapes(e.shape, d.shape)
    except RuntimeError as err:
        raise ValueError(
            f"eps_l {tuple(e.shape)} and delta_l {tuple(d.shape)} do not broadcast"
        ) from err
    return torch.sqrt(2.0 * t * torch.log(1.0 / d)) / e


# --------------------------------------------------------------------------- clip + noise


def _check_clip(clip: Tensor | float, num_layers: int) -> Tensor:
    """``clip`` as a ``[L]`` float64 tensor of finite values > 0."""
    c = _real_tensor(clip, "clip")
    if c.dim() == 0:
        c = c.expand(num_layers)
    if tuple(c.shape) != (num_layers,):
        raise ValueError(
            f"clip must be a number or a [L] = [{num_layers}] tensor, got {tuple(c.shape)}"
        )
    return _check_layer_vector(c.clone(), "clip", positive=True, allow_2d=False)


def layer_norms(updates: Tensor, layer_slices: Sequence[slice]) -> Tensor:
    """L2 norm of every layer block of every row.

    Args:
        updates: ``[n, P]`` float update matrix.
        layer_slices: Slice of each layer, contiguous and in order, covering ``[0, P)``.

    Returns:
        ``[n, L]`` norms ``||U[k, layer l]||_2``, dtype of ``updates``.

    Raises:
        ValueError: Bad update matrix or layer slices.
    """
    check_updates(updates)
    layer_sizes(layer_slices, updates.shape[1])
    return torch.stack(
        [torch.linalg.vector_norm(updates[:, sl], dim=1) for sl in layer_slices], dim=1
    )


def clip_layers(updates: Tensor, layer_slices: Sequence[slice], clip: Tensor | float) -> Tensor:
    """Eq. 7 per row and per layer: ``g_l <- g_l * min(1, C_l / ||g_l||_2)``.

    Each layer block is clipped with :func:`fedshield.privacy.mechanisms.clip_updates`
    (zero blocks stay zero, over/underflowing norms are handled); the input is not
    modified.

    Args:
        updates: ``[n, P]`` float update matrix.
        layer_slices: Slice of each layer, contiguous and in order, covering ``[0, P)``.
        clip: ``C_l``: one number for every layer or a ``[L]`` tensor; finite and > 0.

    Returns:
        ``[n, P]`` new matrix, dtype of ``updates``.

    Raises:
        ValueError: Bad update matrix, layer slices or clip.
    """
    check_updates(updates)
    sizes = layer_sizes(layer_slices, updates.shape[1])
    c = _check_clip(clip, len(sizes))
    out = torch.empty_like(updates)
    for sl, c_l in zip(layer_slices, c.tolist(), strict=True):
        out[:, sl] = clip_updates(updates[:, sl], clip_norm=c_l)
    return out


def perturb_layers(
    updates: Tensor,
    layer_slices: Sequence[slice],
    clip: Tensor | float,
    sigma: Tensor,
    *,
    generator: torch.Generator,
) -> Tensor:
    """Eqs. 7-8: clip every layer to ``C_l`` and add ``N(0, (C_l sigma_l)^2)`` per coordinate.

    The per-coordinate std row (or matrix) is built by ``repeat_interleave`` of the
    per-layer std ``C_l sigma_l`` over the layer sizes; the noise is one draw of
    :func:`fedshield.privacy.mechanisms.gaussian_noise` of the matrix's shape.

    Args:
        updates: ``[n, P]`` float update matrix (one row per client).
        layer_slices: Slice of each layer, contiguous and in order, covering ``[0, P)``.
        clip: ``C_l``: a number or ``[L]``; finite and > 0.
        sigma: Noise multipliers ``sigma_l``: ``[L]`` (same for every row) or ``[n, L]``
            (per client); finite and >= 0 (e.g. from :func:`fedre_sigma`, or an override).
        generator: Source of randomness (its device must be ``updates``' device).

    Returns:
        ``[n, P]`` perturbed matrix, dtype of ``updates``.

    Raises:
        ValueError: Bad update matrix, layer slices, clip, sigma or generator.
    """
    clipped = clip_layers(updates, layer_slices, clip)
    n, _ = updates.shape
    sizes = layer_sizes(layer_slices, updates.shape[1])
    num_layers = len(sizes)
    s = _check_layer_vector(_real_tensor(sigma, "sigma"), "sigma", positive=False)
    if tuple(s.shape) not in ((num_layers,), (n, num_layers)):
        raise ValueError(
            f"sigma must have shape [L] = ({num_layers},) or [n, L] = ({n}, {num_layers}), "
            f"got {tuple(s.shape)}"
        )
    std = _check_clip(clip, num_layers) * s  # [L] or [n, L]
    repeats = torch.tensor(sizes)
    std_full = torch.repeat_interleave(std, repeats, dim=-1).to(
        device=updates.device, dtype=updates.dtype
    )
    noise = gaussian_noise(tuple(updates.shape), std=1.0, generator=generator, dtype=updates.dtype)
    return clipped + noise * std_full


# --------------------------------------------------------------------------- accounting


def fedre_accounting(
    eps_l: Tensor,
    delta_l: Tensor,
    sigma: Tensor,
    rounds: int,
    *,
    sensitivity_scale: float = 1.0,
) -> dict[str, float]:
    """The paper's claimed guarantee of one client next to an RDP accountant's epsilon.

    - ``claimed_epsilon = sum_l eps_l`` and ``claimed_delta = sum_l delta_l``: simple
      composition as in Corollary 1 (which takes each layer's eq. 9 noise as
      ``(eps_l, delta_l)``-LDP over all ``T`` rounds).
    - ``rdp_epsilon``: ``dp_accounting``'s RDP accountant (default orders, add/remove-one
      relation, as :mod:`fedshield.privacy.accounting`) for the ``T``-fold composition of
      the ``L`` Gaussian mechanisms with noise multipliers ``sigma_l / sensitivity_scale``,
      at ``delta = claimed_delta``. With ``sensitivity_scale = 1`` (default) the
      sensitivity of layer ``l`` is ``C_l`` (the paper's reading, noise std / sensitivity
      = ``sigma_l``); ``sensitivity_scale = 2`` uses the diameter ``2 C_l`` of the clipping
      ball, the replace-one sensitivity of a locally released clipped block.

    Args:
        eps_l: ``[L]`` per-layer budgets of one client, finite and > 0.
        delta_l: ``[L]`` per-layer deltas, > 0 with ``sum < 1``.
        sigma: ``[L]`` noise multipliers actually used, finite and >= 0 (0: ``inf``).
        rounds: ``T >= 1``, the number of releases of the client.
        sensitivity_scale: Sensitivity of layer ``l`` in units of ``C_l``, finite > 0.

    Returns:
        ``{"claimed_epsilon", "claimed_delta", "rdp_epsilon", "rounds"}``.

    Raises:
        ValueError: Out-of-range input or shapes that are not one ``[L]``.
    """
    t = _check_count(rounds, "rounds", 1)
    scale = _positive_finite(sensitivity_scale, "sensitivity_scale")
    e = _check_layer_vector(_real_tensor(eps_l, "eps_l"), "eps_l", positive=True, allow_2d=False)
    d = _check_layer_vector(
        _real_tensor(delta_l, "delta_l"), "delta_l", positive=True, allow_2d=False
    )
    s = _check_layer_vector(_real_tensor(sigma, "sigma"), "sigma", positive=False, allow_2d=False)
    if not e.shape == d.shape == s.shape:
        raise ValueError(
            f"eps_l {tuple(e.shape)}, delta_l {tuple(d.shape)} and sigma {tuple(s.shape)} "
            "must all have shape [L]"
        )
    total_delta = _check_delta(float(d.sum()))
    claimed_epsilon = float(e.sum())
    if bool((s == 0).any()):
        rdp_epsilon = math.inf
    else:
        per_round = dp_event.ComposedDpEvent(
            [dp_event.GaussianDpEvent(z / scale) for z in s.tolist()]
        )
        lib = _library_accountant("rdp", NeighboringRelation.ADD_OR_REMOVE_ONE)
        lib.compose(dp_event.SelfComposedDpEvent(per_round, t))
        rdp_epsilon = float(lib.get_epsilon(total_delta))
    return {
        "claimed_epsilon": claimed_epsilon,
        "claimed_delta": total_delta,
        "rdp_epsilon": rdp_epsilon,
        "rounds": t,
    }


__all__ = [
    "allocate_budget",
    "clip_layers",
    "fedre_accounting",
    "fedre_sigma",
    "layer_norms",
    "perturb_layers",
    "split_delta",
    "uniform_budget",
]
