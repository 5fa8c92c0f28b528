"""PDA-PAM: FedRE's perturbation-distribution-aware, layer-wise parameter aggregation.

Xiao et al. "FedRE: Robust and Effective Federated Learning with Privacy Preference."
ICMR 2025, Sec. 3.2.3. The server scores every client's model layer by layer on a public
dataset with PSI boxes: ``S[k, l] = S_l(w_l^k; D)`` (the PSI score of eqs. 3-5; a high
score means the layer's gradient is sensitive to the privacy-sensitive region, hence got
a small budget and much noise on the client, eq. 6). Eq. 10 turns the scores into
per-layer weights over the ``n`` clients of the round::

    alpha[k, l] = exp(S[k, l] / T) / sum_j exp(S[j, l] / T)           (eq. 10, T = 1)

and eq. 11 aggregates every layer with the inverse weights::

    w_l = w~_l - (eta / n) sum_k g~_l^k / alpha[k, l]                 (eq. 11)

so the least PSI-sensitive (least perturbed) clients count most. Here the rule returns the
aggregate update ``sum_k c[k, l] * U[k, layer l]`` of the update matrix ``U`` (rows = local
minus global parameters), with the per-client, per-layer coefficients ``c``:

- ``mode="literal"``: eq. 11 as written, ``c = 1 / (n alpha)`` with ``n = |S_t|`` the
  number of clients in the round (the paper writes ``K``). Since ``sum_k 1/alpha_k >= n^2``
  (Cauchy-Schwarz, with ``sum_k alpha_k = 1``), ``sum_k c[k, l] >= n``: the step is at least
  ``n`` times FedAvg's, and with uniform scores (``alpha = 1/n``) ``c = 1`` and the rule
  *sums* the updates instead of averaging them.
- ``mode="normalized"`` (default): the coefficients are renormalised to sum to one,
  ``c = (1/alpha) / sum_j (1/alpha_j) = softmax(-S / T)`` over clients (a softmin), a convex
  combination with FedAvg's scale; uniform scores give ``c = 1/n`` (FedAvg).

Pitfall (see the spec, ``methods.md`` section 1): a softmax of raw scores depends on their
scale (nearly uniform when ``S`` is small, one-hot when it is large). ``temperature`` divides
the scores and ``standardize=True`` z-scores every layer's column over the clients first
(population std; a constant column becomes zeros, i.e. uniform weights), which makes the
weights invariant to affine rescaling ``a S + b`` (``a > 0``) of a column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import torch
from torch import Tensor

from fedshield.aggregators.checks import check_updates

MODES: tuple[str, ...] = ("literal", "normalized")


def layer_sizes(layer_slices: Sequence[slice], num_params: int) -> list[int]:
    """Sizes of the layers, checking that the slices tile ``[0, num_params)`` in order.

    Args:
        layer_slices: One slice per layer (e.g. ``list(ParamLayout.layers.values())``),
            contiguous, non-empty, step 1, in order, covering the whole row.
        num_params: Row length ``P`` of the update matrix.

    Returns:
        ``[stop - start for each slice]`` (sums to ``num_params``).

    Raises:
        ValueError: Not a sequence of slices, empty, a gap / overlap / reversed or stepped
            slice, or not covering the row exactly.
    """
    if isinstance(layer_slices, slice) or not isinstance(layer_slices, Sequence):
        raise ValueError(
            f"layer_slices must be a sequence of slices, got {type(layer_slices).__name__}"
        )
    if len(layer_slices) == 0:
        raise ValueError("layer_slices is empty: at least one layer is needed")
    sizes: list[int] = []
    expected = 0
    for i, sl in enumerate(layer_slices):
        if not isinstance(sl, slice):
            raise ValueError(f"layer_slices[{i}] must be a slice, got {type(sl).__name__}")
        if sl.step not in (None, 1) or not isinstance(sl.start, int) or sl.start != expected:
            raise ValueError(
                f"layer_slices[{i}] = {sl} must start at {expected} with step 1: the layers "
                "must cover the row contiguously and in order"
            )
        if not isinstance(sl.stop, int) or sl.stop <= sl.start:
            raise ValueError(f"layer_slices[{i}] = {sl} is empty or reversed")
        sizes.append(sl.stop - sl.start)
        expected = sl.stop
    if expected != num_params:
        raise ValueError(
            f"layer_slices cover [0, {expected}) but the rows have {num_params} parameters"
        )
    return sizes


def _check_scores(scores: Tensor) -> Tensor:
    if not isinstance(scores, Tensor):
        raise ValueError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if scores.dim() != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(
            f"scores must be a non-empty 2-D matrix [n_clients, n_layers], "
            f"got shape {tuple(scores.shape)}"
        )
    if scores.dtype == torch.bool or scores.is_complex():
        raise ValueError(f"scores must be real numbers, got dtype {scores.dtype}")
    s = scores.to(torch.float64)
    bad = ~torch.isfinite(s)
    if bool(bad.any()):
        where = bad.nonzero().tolist()
        raise ValueError(f"scores has non-finite entries at [client, layer] {where}")
    return s


def pda_pam_weights(
    scores: Tensor,
    *,
    mode: str = "normalized",
    temperature: float = 1.0,
    standardize: bool = False,
) -> Tensor:
    """Per-client, per-layer aggregation coefficients of PDA-PAM (eqs. 10-11).

    With ``s = S / temperature`` (after z-scoring each column if ``standardize``) and
    ``alpha = softmax(s, dim=0)`` (eq. 10):

    - ``"literal"``: ``c = 1 / (n alpha) = exp(logsumexp(s) - s) / n`` (eq. 11 as written,
      computed in log space; every column sums to ``>= n``, see the module docstring);
    - ``"normalized"``: ``c = softmax(-s, dim=0)`` (columns sum to 1).

    Args:
        scores: ``[n_clients, n_layers]`` finite PSI scores ``S[k, l]`` on the public data.
        mode: ``"normalized"`` (default) or ``"literal"``.
        temperature: ``T > 0`` dividing the scores (eq. 10 has ``T = 1``).
        standardize: Z-score every column over the clients first (population std;
            a constant column gives zeros).

    Returns:
        ``[n_clients, n_layers]`` float64 coefficients ``c``: the aggregate of layer ``l``
        is ``sum_k c[k, l] * U[k, layer l]``.

    Raises:
        ValueError: Unknown mode, bad temperature, scores not a finite non-empty 2-D
            matrix, or (literal mode) a score spread so large that ``1 / alpha``
            overflows float64.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: known modes are {', '.join(MODES)}")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, Real)
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    s = _check_scores(scores)
    if standardize:
        mean = s.mean(dim=0, keepdim=True)
        std = s.std(dim=0, correction=0, keepdim=True)
        centred = s - mean
        s = torch.where(std > 0, centred / torch.where(std > 0, std, 1.0), 0.0)
    s = s / float(temperature)
    if mode == "normalized":
        return torch.softmax(-s, dim=0)
    n = s.shape[0]
    # 1 / alpha_k = sum_j exp(s_j) / exp(s_k) = exp(logsumexp(s) - s_k)
    coeffs = torch.exp(torch.logsumexp(s, dim=0, keepdim=True) - s) / n
    if not bool(torch.isfinite(coeffs).all()):
        raise ValueError(
            "mode='literal': 1 / alpha overflows float64 (the scores of a layer differ by "
            "more than ~700 temperatures); raise temperature or use standardize=True"
        )
    return coeffs


def pda_pam(
    updates: Tensor,
    scores: Tensor,
    layer_slices: Sequence[slice],
    *,
    mode: str = "normalized",
    temperature: float = 1.0,
    standardize: bool = False,
) -> Tensor:
    """PDA-PAM aggregate of the update matrix (Xiao et al. 2025, eqs. 10-11).

    ``agg[layer l] = sum_k c[k, l] * U[k, layer l]`` with ``c`` from
    :func:`pda_pam_weights`. Vectorised: ``c`` is expanded to coordinates with
    ``repeat_interleave`` of the layer sizes and ``(c_full * U).sum(0)`` is returned.
    The server then applies ``w = w~ + eta * agg`` (``U`` holds local minus global
    parameters, i.e. ``-g`` up to the local learning rate).

    Args:
        updates: ``[n_clients, n_params]`` float update matrix.
        scores: ``[n_clients, n_layers]`` PSI scores of each client's layers on the
            server's public data (``n_layers = len(layer_slices)``).
        layer_slices: Slice of each layer in a row, contiguous and in order (e.g.
            ``list(ParamLayout.layers.values())``).
        mode: ``"normalized"`` (default, coefficients sum to 1 per layer) or
            ``"literal"`` (eq. 11 as written, ``c = 1/(n alpha)``: at least ``n`` times
            FedAvg's step).
        temperature: Softmax temperature ``T > 0`` of eq. 10.
        standardize: Z-score each layer's scores over the clients first.

    Returns:
        ``[n_params]`` aggregate, dtype of ``updates``.

    Raises:
        ValueError: Bad update matrix, bad layer slices, scores of the wrong shape or
            non-finite, or bad ``mode`` / ``temperature``.
    """
    check_updates(updates)
    n, p = updates.shape
    sizes = layer_sizes(layer_slices, p)
    if not isinstance(scores, Tensor) or tuple(scores.shape) != (n, len(sizes)):
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(
            f"scores must have shape (n_clients, n_layers) = ({n}, {len(sizes)}), got {shape}"
        )
    coeffs = pda_pam_weights(scores, mode=mode, temperature=temperature, standardize=standardize)
    repeats = torch.tensor(sizes, device=updates.device)
    c_full = torch.repeat_interleave(
        coeffs.to(device=updates.device, dtype=updates.dtype), repeats, dim=1
    )
    return (c_full * updates).sum(dim=0)


__all__ = ["MODES", "layer_sizes", "pda_pam", "pda_pam_weights"]
