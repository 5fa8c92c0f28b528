"""FoolsGold: down-weight clients whose update histories look alike (sybils).

Fung, Yoon, Beschastnikh. "The Limitations of Federated Learning in Sybil Settings."
RAID 2020. Reference code: ``DistributedML/FoolsGold`` (``ML/code/model_aggregator.py``,
``deep-fg/fg/foolsgold.py``).

Sybils pushing the same poisoned objective send updates that point the same way round after
round; honest clients with different data do not. From the per-client cumulative histories
``H_i = Σ_rounds Δ_i`` (rows of ``history``):

    cs_ij = cos(H_i, H_j) − [i = j]                    cosine similarity minus identity
    v_i   = max_j cs_ij
    cs_ij ← cs_ij · v_i / v_j       if v_i < v_j      pardoning of honest clients
    w_i   = clip(1 − max_j cs_ij, 0, 1)
    w     ← w / max(w);   w_i = 1 → 0.99
    w_i   ← κ (ln(w_i / (1 − w_i)) + 0.5);   +inf or > 1 → 1,  < 0 → 0

and the aggregate of the round's updates is ``Σ_i w_i Δ_i / Σ_i w_i``.

Choices where the reference code is silent or degenerate:

- Normalisation: the reference's ``ML`` code returns ``Σ w_i Δ_i`` and its ``deep-fg``
  code ``Σ w_i Δ_i / n``; here the weights are normalised, ``Σ w_i Δ_i / Σ w_i``, so the
  aggregate is a convex combination whose scale does not depend on how many clients are
  judged honest. When every weight is 0 the aggregate is the zero update (the reference's
  unnormalised sum is then 0 too).
- A history of norm 0 has cosine 0 with every other history (as scikit-learn's
  ``cosine_similarity``, which the reference uses, gives), so ``cs_ii = −1`` for it.
- Pardoning divides by ``v_j``; where ``v_j = 0`` (only possible when ``v_i < 0``, i.e.
  exactly orthogonal histories) the reference produces ``inf``; here ``cs_ij`` is left
  unchanged there.
- ``1 − max_j cs_ij < 1e-7`` is taken as 0: a cosine that is 1 up to rounding. Otherwise,
  when every client has a duplicate, ``w / max(w)`` would turn rounding noise into weights.
- When every ``w_i`` is 0 before rescaling (all histories have a duplicate), the reference
  divides 0 by 0 and returns NaN weights; here every weight is 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from fedshield.aggregators._similarity import cosine_similarity64
from fedshield.aggregators.base import Aggregation
from fedshield.aggregators.checks import check_updates

#: value a rescaled weight of exactly 1 is replaced with before the logit (reference code)
_ONE_REPLACEMENT = 0.99

#: ``1 − max_j cs_ij`` below this is rounding error of a cosine of 1 and is taken as 0
_SAME_DIRECTION_TOL = 1e-7


def foolsgold_weights(history: Tensor, *, kappa: float = 1.0) -> Tensor:
    """FoolsGold weights from the clients' cumulative update histories.

    Computed in float64 whatever the input dtype (the Gram matrix is accumulated in float64
    over column blocks, without a float64 copy of ``history``); every step follows the
    reference code (see the module docstring for the formula and the degenerate cases).

    Args:
        history: ``[n_clients, n_features]`` per-client cumulative updates ``H_i``. The
            features may be a subset of the parameters (the reference's ``deep-fg`` code
            uses the output layer only).
        kappa: Confidence parameter ``κ > 0`` of the logit (1 in the reference code).

    Returns:
        ``[n_clients]`` weights in ``[0, 1]``, in the dtype of ``history``.

    Raises:
        ValueError: ``history`` is not a finite, non-empty 2-D floating matrix, or
            ``kappa`` is not a finite number > 0.
    """
    _check_history(history)
    kappa = _check_kappa(kappa)
    n = history.shape[0]
    h = history.detach()
    # all pairwise cosines from the float64 Gram matrix; a zero history has cosine 0
    cs = cosine_similarity64(h)
    nonzero = cs.diagonal() > 0
    # cos(H_i, H_i) - 1: exactly 0 for a non-zero history, -1 for a zero one
    cs.diagonal().copy_(torch.where(nonzero, 0.0, -1.0))
    v = cs.max(dim=1).values
    # pardoning: cs_ij *= v_i / v_j where v_i < v_j (never on the diagonal: v_i < v_i fails)
    v_i, v_j = v.unsqueeze(1), v.unsqueeze(0)
    pardon = (v_i < v_j) & (v_j != 0)
    ratio = v_i / torch.where(v_j != 0, v_j, torch.ones_like(v_j))
    cs = torch.where(pardon, cs * ratio, cs)
    w = (1.0 - cs.max(dim=1).values).clamp_(0.0, 1.0)
    # exact duplicates have cos = 1 up to rounding; without this the rescaling below would
    # blow that rounding noise up to weight 1 when every client has a duplicate
    w = torch.where(w < _SAME_DIRECTION_TOL, 0.0, w)
    top = w.max()
    if float(top) == 0.0:
        return torch.zeros(n, dtype=history.dtype, device=history.device)
    w = w / top
    w = torch.where(w == 1.0, _ONE_REPLACEMENT, w)
    positive = w > 0
    safe = torch.where(positive, w, 0.5)  # placeholder where w = 0 (logit -inf -> weight 0)
    logit = kappa * (torch.log(safe / (1.0 - safe)) + 0.5)
    w = torch.where(positive, logit.clamp(0.0, 1.0), 0.0)
    return w.to(history.dtype)


def foolsgold_aggregation(updates: Tensor, *, history: Tensor, kappa: float = 1.0) -> Aggregation:
    """FoolsGold aggregate of this round's updates, weighted from the clients' histories.

    Args:
        updates: ``[n_clients, n_params]`` float update matrix of this round.
        history: ``[n_clients, n_features]`` the same clients' cumulative updates, this
            round included (e.g. from :meth:`FoolsGoldHistory.update`), row ``i`` for the
            client of ``updates`` row ``i``.
        kappa: Confidence parameter ``κ > 0`` of the logit.

    Returns:
        :class:`Aggregation` with ``aggregate`` ``Σ w_i Δ_i / Σ w_i`` (zeros when every
        weight is 0), ``accepted`` ``bool [n]`` (``w_i > 0``) and ``weights`` the
        FoolsGold weights ``w`` in ``[0, 1]``.

    Raises:
        ValueError: Bad update matrix or history (see :func:`check_updates`), a history
            with a different number of rows, or a bad ``kappa``.
    """
    check_updates(updates)
    _check_history(history)
    if history.shape[0] != updates.shape[0]:
        raise ValueError(
            f"history has {history.shape[0]} rows but updates has {updates.shape[0]}: one "
            "history row per client of this round is needed"
        )
    w = foolsgold_weights(history, kappa=kappa).to(dtype=updates.dtype, device=updates.device)
    total = w.sum()
    aggregate = torch.zeros_like(updates[0]) if float(total) <= 0.0 else (w / total) @ updates
    return Aggregation(aggregate=aggregate, accepted=w > 0, weights=w)


def foolsgold(updates: Tensor, *, history: Tensor, kappa: float = 1.0) -> Tensor:
    """FoolsGold aggregate ``Σ w_i Δ_i / Σ w_i`` (see :func:`foolsgold_aggregation`).

    Args:
        updates: ``[n_clients, n_params]`` float update matrix of this round.
        history: ``[n_clients, n_features]`` the same clients' cumulative updates.
        kappa: Confidence parameter ``κ > 0`` of the logit.

    Returns:
        ``[n_params]`` aggregate (zeros when every weight is 0).

    Raises:
        ValueError: As :func:`foolsgold_aggregation`.
    """
    return foolsgold_aggregation(updates, history=history, kappa=kappa).aggregate


class FoolsGoldHistory:
    """Per-client cumulative updates ``H_i`` that FoolsGold weighs clients by.

    Holds one ``[n_params]`` tensor per client id seen so far, in the dtype and on the
    device of the first update matrix it received (later rows are cast to them). Clients
    sampled in a round are updated; the others keep their history.

    Example:
        >>> hist = FoolsGoldHistory()
        >>> h = hist.update(torch.tensor([3, 7]), torch.ones(2, 4))
        >>> agg = foolsgold(torch.ones(2, 4), history=h)
    """

    def __init__(self) -> None:
        self._histories: dict[int, Tensor] = {}
        self._dim: int | None = None
        self._dtype: torch.dtype | None = None
        self._device: torch.device | None = None

    def __len__(self) -> int:
        return len(self._histories)

    @property
    def client_ids(self) -> list[int]:
        """Ids of the clients with a history, in ascending order."""
        return sorted(self._histories)

    def update(self, client_ids: Tensor, updates: Tensor) -> Tensor:
        """Add this round's rows to the clients' histories.

        Args:
            client_ids: ``[n]`` distinct integer client ids, row ``i`` of ``updates`` is
                client ``client_ids[i]``.
            updates: ``[n, n_params]`` float update matrix of the round.

        Returns:
            ``[n, n_params]`` the histories of these clients after the round, in the
            order of ``client_ids`` (a new tensor: later updates do not change it).

        Raises:
            ValueError: Bad update matrix, ids not a 1-D integer tensor of ``n`` distinct
                values, or a parameter count different from earlier rounds'.
        """
        check_updates(updates)
        ids = _check_client_ids(client_ids, updates.shape[0])
        self._check_dim(updates.shape[1])
        if self._dtype is None or self._device is None:
            self._dtype, self._device = updates.dtype, updates.device
        new = updates.detach().to(dtype=self._dtype, device=self._device)
        rows = []
        for cid, row in zip(ids, new, strict=True):  # a loop over clients, not coordinates
            h = self._histories.get(cid)
            if h is None:
                h = row.clone()
                self._histories[cid] = h
            else:
                h.add_(row)
            rows.append(h)
        self._dim = updates.shape[1]
        return torch.stack(rows)  # a copy

    def get(self, client_ids: Tensor) -> Tensor:
        """Histories of known clients, ``[n, n_params]`` in the order of ``client_ids``.

        Raises:
            ValueError: Bad ids, or an id without a history.
        """
        ids = _check_client_ids(client_ids, None)
        missing = [cid for cid in ids if cid not in self._histories]
        if missing:
            raise ValueError(f"no FoolsGold history for client ids {missing}")
        return torch.stack([self._histories[cid] for cid in ids])

    def state_dict(self) -> dict[str, Tensor]:
        """Checkpointable state: ``client_ids`` ``int64 [m]`` (ascending) and
        ``histories`` ``[m, n_params]`` (``[0, 0]`` when empty); copies, not views."""
        ids = self.client_ids
        if not ids:
            return {
                "client_ids": torch.zeros(0, dtype=torch.int64),
                "histories": torch.zeros(0, self._dim or 0),
            }
        return {
            "client_ids": torch.tensor(ids, dtype=torch.int64),
            "histories": torch.stack([self._histories[cid] for cid in ids]),
        }

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Replace the histories with those of :meth:`state_dict`.

        Raises:
            ValueError: Missing keys, mismatched shapes, repeated ids or non-finite
                histories (the current state is then left unchanged).
        """
        missing = {"client_ids", "histories"} - set(state)
        if missing:
            raise ValueError(f"FoolsGold history state is missing {sorted(missing)}")
        hist = state["histories"]
        if not isinstance(hist, Tensor) or hist.dim() != 2:
            raise ValueError("FoolsGold history state: 'histories' must be a 2-D tensor")
        ids = _check_client_ids(state["client_ids"], hist.shape[0])
        if hist.shape[0] == 0:
            self._histories, self._dim, self._dtype, self._device = {}, None, None, None
            return
        _check_history(hist)
        self._histories = {cid: row.clone() for cid, row in zip(ids, hist, strict=True)}
        self._dim, self._dtype, self._device = hist.shape[1], hist.dtype, hist.device

    def _check_dim(self, d: int) -> None:
        if self._dim is not None and d != self._dim:
            raise ValueError(
                f"updates have {d} parameters but the FoolsGold history has {self._dim}"
            )


def _check_history(history: Tensor) -> None:
    """Validate a history matrix, naming it in the error."""
    try:
        check_updates(history)
    except ValueError as err:
        raise ValueError(f"FoolsGold history: {err}") from None


def _check_kappa(kappa: float) -> float:
    if isinstance(kappa, bool) or not isinstance(kappa, int | float):
        raise ValueError(f"kappa must be a number, got {kappa!r}")
    if not math.isfinite(kappa) or kappa <= 0:
        raise ValueError(f"kappa must be finite and > 0, got {kappa}")
    return float(kappa)


def _check_client_ids(client_ids: Tensor, n: int | None) -> list[int]:
    """Validate ``[n]`` distinct integer client ids and return them as a list."""
    if not isinstance(client_ids, Tensor):
        raise ValueError(f"client_ids must be a torch.Tensor, got {type(client_ids).__name__}")
    if client_ids.dim() != 1 or (n is not None and client_ids.shape[0] != n):
        want = f"({n},)" if n is not None else "(n,)"
        raise ValueError(f"client_ids must have shape {want}, got {tuple(client_ids.shape)}")
    if client_ids.is_floating_point() or client_ids.is_complex() or client_ids.dtype == torch.bool:
        raise ValueError(f"client_ids must be integers, got dtype {client_ids.dtype}")
    ids = [int(c) for c in client_ids.tolist()]
    if len(set(ids)) != len(ids):
        repeated = sorted({c for c in ids if ids.count(c) > 1})
        raise ValueError(f"client_ids must be distinct, got repeated ids {repeated}")
    return ids


__all__ = ["FoolsGoldHistory", "foolsgold", "foolsgold_aggregation", "foolsgold_weights"]
