"""Empirical privacy auditing: a statistically valid lower bound on epsilon from a
distinguishing test, and canary clients that run such a test inside a federated run.

Jagielski, Ullman, Oprea. "Auditing Differentially Private Machine Learning: How Private
is Private SGD?" NeurIPS 2020.
Nasr, Song, Thakurta, Papernot, Carlini. "Adversary Instantiation: Lower Bounds for
Differentially Private Machine Learning." IEEE S&P 2021.
Steinke, Nasr, Jagielski. "Privacy Auditing with One (1) Training Run." NeurIPS 2023.
Andrew, Kairouz, Oh, Oprea, McMahan, Suriyakumar. "One-shot Empirical Privacy Estimation
for Federated Learning." ICLR 2024.

**From a test to a bound.** A mechanism ``M`` is (eps, delta)-DP when for neighbouring
inputs ``D`` (canary in) and ``D'`` (canary out) and every event ``S``,
``P[M(D) in S] <= e^eps P[M(D') in S] + delta`` and the same with ``D`` and ``D'``
swapped. With a score (any post-processing of the output) and a threshold ``t``, let
``S = {score > t}``, ``TPR = P_in(score > t)`` and ``FPR = P_out(score > t)``. Then::

    TPR     <= e^eps FPR       + delta   =>  eps >= ln((TPR - delta) / FPR)
    1 - FPR <= e^eps (1 - TPR) + delta   =>  eps >= ln((1 - FPR - delta) / (1 - TPR))

Only samples of the scores are observed, so both rates are replaced by Clopper-Pearson
bounds in the direction that keeps the inequality valid: a lower bound ``TPR_lo`` on the
TPR and an upper bound ``FPR_hi`` on the FPR (the second inequality uses
``(1 - FPR)_lo = 1 - FPR_hi`` and ``(1 - TPR)_hi = 1 - TPR_lo``, the same two bounds)::

    eps_lb(t) = max(0, ln((TPR_lo - delta) / FPR_hi), ln((1 - FPR_hi - delta) / (1 - TPR_lo)))

**Confidence.** ``TPR_lo`` and ``FPR_hi`` are one-sided bounds each at confidence
``1 - alpha/2`` (the two ends of the two-sided exact interval at confidence ``1 - alpha``
of :func:`clopper_pearson`); by a union bound both hold together with probability at least
``1 - alpha``, and then both inequalities hold at ``t``, so ``eps >= eps_lb(t)`` with
probability at least ``1 - alpha``. Taking the best of many thresholds on the same data
would void that guarantee (a multiple comparison), so :func:`epsilon_lower_bound` splits
the trials: the threshold is **chosen on a held-out half** (the even-indexed scores of each
group, maximising the same bound there) and the bound is **evaluated once, on the other
half** (the odd-indexed scores), where the threshold is a fixed number independent of the
data. This costs half the samples but no Bonferroni factor, and is exact for any number of
candidate thresholds. The guarantee assumes the trials are independent draws.

**Canaries in federated learning** (Andrew et al.). :class:`CanaryAudit` adds ``k``
synthetic clients whose update is a fixed random direction of norm ``C`` (the DP clip norm,
so clipping leaves them unchanged); each round each canary takes part independently with
probability ``p``. The server-visible test statistic is the cosine between the round's
released aggregate (after the central DP noise) and each canary direction::

    score(r, c) = <Delta_r, c> / (||Delta_r|| ||c||)

Pooling all (round, canary) trials, ``in`` = inserted and ``out`` = not inserted, gives
:func:`epsilon_lower_bound` of the per-round, per-client mechanism.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from fedshield.engine.hooks import ClientUpdates, Hook, RoundContext
from fedshield.engine.seeding import Stream, torch_generator

#: the method name recorded in :class:`AuditResult`
METHOD = "clopper_pearson_holdout"


@dataclass(frozen=True)
class AuditResult:
    """An empirical lower bound on epsilon and the test that gave it.

    Attributes:
        epsilon_lb: ``eps`` such that the mechanism is not (eps', delta)-DP for any
            ``eps' < epsilon_lb``, with confidence ``1 - alpha``; ``>= 0``.
        threshold: Score threshold of the test (``score > threshold`` means "in"), chosen
            on the selection half.
        tpr: Empirical true-positive rate at ``threshold`` on the evaluation half.
        fpr: Empirical false-positive rate at ``threshold`` on the evaluation half.
        num_in: Number of "in" scores given (half of them, rounded down, evaluate).
        num_out: Number of "out" scores given (half of them, rounded down, evaluate).
        alpha: ``1 - confidence`` of the bound.
        method: How the bound was computed (:data:`METHOD`).
    """

    epsilon_lb: float
    threshold: float
    tpr: float
    fpr: float
    num_in: int
    num_out: int
    alpha: float
    method: str


# --------------------------------------------------------------------------- statistics


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float):
        raise ValueError(f"alpha must be a number, got {alpha!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return float(alpha)


def _check_delta(delta: float) -> float:
    if isinstance(delta, bool) or not isinstance(delta, int | float):
        raise ValueError(f"delta must be a number, got {delta!r}")
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    return float(delta)


def _cp_bounds(successes: np.ndarray, trials: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Clopper-Pearson interval ends (each a one-sided bound at ``1 - alpha/2``)."""
    k = successes.astype(np.float64)
    n = float(trials)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = stats.beta.ppf(alpha / 2, k, n - k + 1)
        hi = stats.beta.ppf(1 - alpha / 2, k + 1, n - k)
    lo = np.where(k <= 0, 0.0, lo)
    hi = np.where(k >= n, 1.0, hi)
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def clopper_pearson(successes: int, trials: int, *, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided binomial confidence interval (Clopper & Pearson, 1934).

    ``lower = Beta^-1(alpha/2; k, n-k+1)``, ``upper = Beta^-1(1-alpha/2; k+1, n-k)``, with
    ``lower = 0`` for ``k = 0`` and ``upper = 1`` for ``k = n``. Each end on its own is a
    one-sided bound at confidence ``1 - alpha/2``.

    Args:
        successes: ``k``, number of successes, ``0 <= k <= n``.
        trials: ``n >= 1``, number of trials.
        alpha: ``1 -`` confidence of the two-sided interval, in ``(0, 1)``.

    Returns:
        ``(lower, upper)`` bounds on the success probability.

    Raises:
        ValueError: Non-integer counts, ``n < 1``, ``k`` outside ``[0, n]``, or a bad alpha.
    """
    for name, v in (("successes", successes), ("trials", trials)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    k, n = int(successes), int(trials)
    if n < 1:
        raise ValueError(f"trials must be >= 1, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"successes must be in [0, trials] = [0, {n}], got {k}")
    a = _check_alpha(alpha)
    lo, hi = _cp_bounds(np.array([k]), n, a)
    return float(lo[0]), float(hi[0])


def _as_scores(x: Tensor | np.ndarray, name: str) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.shape[0] < 2:
        raise ValueError(
            f"{name} needs at least 2 scores (one to choose the threshold, one to evaluate), "
            f"got {arr.shape[0]}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite scores")
    return arr


def _bounds_at(
    s_in: np.ndarray, s_out: np.ndarray, thresholds: np.ndarray, delta: float, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``eps_lb(t)`` (>= 0) and the empirical TPR, FPR at each threshold ``t``."""
    sorted_in, sorted_out = np.sort(s_in), np.sort(s_out)
    n_in, n_out = len(s_in), len(s_out)
    # number of scores > t = n - (number of scores <= t)
    k_in = n_in - np.searchsorted(sorted_in, thresholds, side="right")
    k_out = n_out - np.searchsorted(sorted_out, thresholds, side="right")
    tpr_lo, _ = _cp_bounds(k_in, n_in, alpha)
    _, fpr_hi = _cp_bounds(k_out, n_out, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        # fpr_hi > 0 and tpr_lo < 1 always (n >= 1), so the denominators are positive
        eps1 = np.log(np.maximum(tpr_lo - delta, 0.0) / fpr_hi)
        eps2 = np.log(np.maximum(1.0 - fpr_hi - delta, 0.0) / (1.0 - tpr_lo))
    eps = np.maximum(np.maximum(eps1, eps2), 0.0)
    return eps, k_in / n_in, k_out / n_out


def epsilon_lower_bound(
    scores_in: Tensor | np.ndarray,
    scores_out: Tensor | np.ndarray,
    *,
    delta: float,
    alpha: float = 0.05,
) -> AuditResult:
    """Lower bound on epsilon, valid with confidence ``1 - alpha``, from a threshold test.

    The test says "in" when ``score > t``. The trials are split: the even-indexed scores of
    each group (``scores[0::2]``) choose ``t`` among their own values, maximising ``eps_lb``
    (module docstring) on that half; the odd-indexed scores (``scores[1::2]``) evaluate
    ``eps_lb(t)`` once, with Clopper-Pearson bounds ``TPR_lo``, ``FPR_hi`` each one-sided at
    confidence ``1 - alpha/2``. Because ``t`` does not depend on the evaluation half, no
    multiple-comparison correction is needed and the union bound gives ``1 - alpha``. The
    order of the scores must not depend on their values (any fixed trial order does).

    Args:
        scores_in: ``[n_in]`` scores of trials where the target was in (``n_in >= 2``).
        scores_out: ``[n_out]`` scores of trials where it was out (``n_out >= 2``).
        delta: The delta of the (eps, delta)-DP claim being audited, in ``[0, 1)``.
        alpha: ``1 -`` confidence, in ``(0, 1)``.

    Returns:
        The :class:`AuditResult` (``epsilon_lb >= 0``).

    Raises:
        ValueError: Scores that are not 1-D finite reals, fewer than 2 per group, or a bad
            delta or alpha.
    """
    d = _check_delta(delta)
    a = _check_alpha(alpha)
    s_in = _as_scores(scores_in, "scores_in")
    s_out = _as_scores(scores_out, "scores_out")
    sel_in, sel_out = s_in[0::2], s_out[0::2]
    ev_in, ev_out = s_in[1::2], s_out[1::2]

    candidates = np.unique(np.concatenate([sel_in, sel_out]))
    eps_sel, _, _ = _bounds_at(sel_in, sel_out, candidates, d, a)
    t = candidates[int(np.argmax(eps_sel))]  # first of the best on the selection half

    eps, tpr, fpr = _bounds_at(ev_in, ev_out, np.array([t]), d, a)
    return AuditResult(
        epsilon_lb=float(eps[0]),
        threshold=float(t),
        tpr=float(tpr[0]),
        fpr=float(fpr[0]),
        num_in=len(s_in),
        num_out=len(s_out),
        alpha=a,
        method=METHOD,
    )


# --------------------------------------------------------------------------- canaries


def make_canaries(num: int, dim: int, *, norm: float, generator: torch.Generator) -> Tensor:
    """Independent directions uniform on the sphere, scaled to ``norm``.

    ``c = norm * z / ||z||`` with ``z ~ N(0, I_dim)`` (the normalised Gaussian is uniform on
    the sphere).

    Args:
        num: Number of canaries, ``>= 1``.
        dim: Dimension (number of model parameters), ``>= 1``.
        norm: L2 norm of every canary, finite and ``> 0``.
        generator: CPU generator for the draw.

    Returns:
        ``float32 [num, dim]`` canaries, each of L2 norm ``norm``.

    Raises:
        ValueError: Bad ``num``, ``dim`` or ``norm``.
    """
    _check_count(num, "num")
    _check_count(dim, "dim")
    c = _check_norm(norm)
    z = torch.randn(num, dim, generator=generator, dtype=torch.float64)
    z = z / z.norm(dim=1, keepdim=True)
    return (c * z).to(torch.float32)


def canary_scores(aggregate: Tensor, canaries: Tensor) -> Tensor:
    """Cosine between the released aggregate and each canary direction.

    ``score_c = <aggregate, c> / (||aggregate|| ||c||)``, 0 for a zero aggregate.

    The cosine rather than the inner product with the unit direction: the norm of the
    aggregate changes from round to round (learning rate, number of clients, noise), while
    the cosine of a canary that was not inserted, being uniform and independent of the
    aggregate, has the same distribution in every round (mean 0, variance ``1/dim``). The
    "out" trials of all rounds are then identically distributed, so pooling them and
    thresholding once across rounds loses nothing to scale drift.

    Args:
        aggregate: ``[d]`` the aggregate a server sees (after central DP noise).
        canaries: ``[k, d]`` canary updates (any non-zero norm).

    Returns:
        ``float64 [k]`` cosines in ``[-1, 1]``.

    Raises:
        ValueError: Shapes that do not match, a zero canary, or non-finite values.
    """
    if aggregate.dim() != 1 or canaries.dim() != 2 or canaries.shape[1] != aggregate.shape[0]:
        raise ValueError(
            f"need aggregate [d] and canaries [k, d], got {tuple(aggregate.shape)} and "
            f"{tuple(canaries.shape)}"
        )
    a = aggregate.detach().to(torch.float64)
    c = canaries.detach().to(device=a.device, dtype=torch.float64)
    if not bool(torch.isfinite(a).all()) or not bool(torch.isfinite(c).all()):
        raise ValueError("aggregate and canaries must be finite")
    c_norm = c.norm(dim=1)
    if bool((c_norm == 0).any()):
        raise ValueError("canaries must be non-zero")
    a_norm = a.norm()
    if float(a_norm) == 0.0:
        return torch.zeros(c.shape[0], dtype=torch.float64)
    return ((c @ a) / (c_norm * a_norm)).clamp(-1.0, 1.0).cpu()


def _check_count(v: int, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return v


def _check_norm(norm: float) -> float:
    if isinstance(norm, bool) or not isinstance(norm, int | float):
        raise ValueError(f"norm must be a number, got {norm!r}")
    if not math.isfinite(norm) or norm <= 0:
        raise ValueError(f"norm must be finite and > 0, got {norm}")
    return float(norm)


class CanaryAudit(Hook):
    """Canary clients and the pooled audit of the released aggregates (Andrew et al., 2024).

    In each round every canary ``c`` is inserted independently with probability
    ``insert_prob``; an inserted canary adds one row (its fixed update, of norm ``norm``) to
    the update matrix in :meth:`after_local_training`. In :meth:`after_aggregation` the
    cosine between the round's aggregate and every canary, inserted or not, is recorded as
    one trial. :meth:`result` pools all (round, canary) trials into
    :func:`epsilon_lower_bound`.

    Place it **after** the DP hook: its rows then reach the server like real uploads (set
    ``norm`` to the clip norm so clipping leaves them as they are), and the aggregate it
    scores already carries the central noise, i.e. it is exactly what the server releases.
    Canaries removed by a robust rule or a filtering hook still count as inserted: the audit
    is of the whole pipeline.

    What is bounded: each trial looks at one round's release with one canary in or out, so
    the bound is on the epsilon of a single round for a single client (under central DP with
    multiplier ``z``: the Gaussian mechanism with multiplier ``z``, no sampling
    amplification, since the trial is conditioned on the insertion). It is therefore a
    sanity check against the accountant (``epsilon_lb`` above the one-round epsilon, let
    alone the whole run's, means the implementation leaks more than claimed), not an
    estimate of the whole run's epsilon. The confidence treats the trials as independent;
    canaries of one round share that round's noise, but random directions in high dimension
    are nearly orthogonal, so their cosines are nearly independent (Andrew et al.).

    Random draws (the canaries, each round's insertion pattern) come from the hook's own
    ``seed`` on the ``Stream.AUDIT`` stream keyed by the round, never from ``ctx.generator``,
    so adding the audit does not change what other hooks draw, and a resumed run inserts
    what the uninterrupted one would. A round in which :meth:`after_local_training` did not
    run (nobody reported) records no trial; if :meth:`after_aggregation` runs anyway, its
    canaries count as not inserted, because none were.

    Canary rows have **negative client ids** ``-1 - c`` (canary ``c``), weight = the mean
    weight of the real rows (1.0 when there are none), ``num_samples`` 1 and loss 0. They are
    not clients: anything that counts clients, tracks per-client history or computes
    detection statistics must keep only ``client_ids >= 0`` (the real rows keep their ids
    and order, and the canaries are appended after them).

    Args:
        num_canaries: Number of canaries ``k >= 1``.
        norm: L2 norm of every canary update (the DP clip norm).
        insert_prob: Probability that a canary is inserted in a round, in ``(0, 1)``.
        seed: Seed of the canaries and of the insertion patterns.

    Raises:
        ValueError: A bad argument.
    """

    name = "canary_audit"

    def __init__(
        self, *, num_canaries: int, norm: float, insert_prob: float = 0.5, seed: int
    ) -> None:
        self.num_canaries = _check_count(num_canaries, "num_canaries")
        self.norm = _check_norm(norm)
        if isinstance(insert_prob, bool) or not isinstance(insert_prob, int | float):
            raise ValueError(f"insert_prob must be a number, got {insert_prob!r}")
        if not 0.0 < insert_prob < 1.0:
            raise ValueError(f"insert_prob must be in (0, 1), got {insert_prob}")
        self.insert_prob = float(insert_prob)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
        self.seed = seed
        self.canaries: Tensor | None = None
        self._scores: list[Tensor] = []
        self._inserted: list[Tensor] = []
        self._rounds: list[int] = []
        self._pending: tuple[int, Tensor] | None = None  # (round, inserted) of this round

    # ------------------------------------------------------------------ draws
    def inserted_in(self, r: int) -> Tensor:
        """``bool [num_canaries]``: which canaries are inserted in round ``r``."""
        g = torch_generator(self.seed, Stream.AUDIT, 1, r)
        return torch.rand(self.num_canaries, generator=g, dtype=torch.float64) < self.insert_prob

    def _canaries(self, dim: int) -> Tensor:
        if self.canaries is None:
            g = torch_generator(self.seed, Stream.AUDIT, 0)
            self.canaries = make_canaries(self.num_canaries, dim, norm=self.norm, generator=g)
        elif self.canaries.shape[1] != dim:
            raise ValueError(
                f"canaries have {self.canaries.shape[1]} parameters but the updates have {dim}"
            )
        return self.canaries

    # ------------------------------------------------------------------ hook
    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Append one row per canary inserted this round (ids ``-1 - c``)."""
        canaries = self._canaries(int(updates.updates.shape[1]))
        mask = self.inserted_in(ctx.round)
        self._pending = (ctx.round, mask)
        idx = torch.nonzero(mask).flatten()
        k = int(idx.numel())
        ctx.metrics["audit_canaries_inserted"] = k
        if k == 0:
            return updates
        real = updates.client_ids >= 0
        w = updates.weights[real]
        weight = w.to(torch.float64).mean().item() if w.numel() > 0 else 1.0
        dev = updates.updates.device
        return ClientUpdates(
            client_ids=torch.cat([updates.client_ids, (-1 - idx).to(updates.client_ids)]),
            updates=torch.cat([updates.updates, canaries[idx].to(updates.updates)]),
            weights=torch.cat(
                [updates.weights, torch.full((k,), weight, dtype=updates.weights.dtype, device=dev)]
            ),
            num_samples=torch.cat(
                [updates.num_samples, torch.ones(k, dtype=updates.num_samples.dtype, device=dev)]
            ),
            loss=torch.cat([updates.loss, torch.zeros(k, dtype=updates.loss.dtype, device=dev)]),
        )

    def after_aggregation(self, ctx: RoundContext, aggregate: Tensor) -> Tensor:
        """Record one trial per canary (score, inserted); the aggregate is returned as is."""
        canaries = self._canaries(int(aggregate.shape[0]))
        self._scores.append(canary_scores(aggregate, canaries))
        pending = self._pending
        if pending is not None and pending[0] == ctx.round:
            inserted = pending[1]
        else:
            inserted = torch.zeros(self.num_canaries, dtype=torch.bool)
        self._inserted.append(inserted)
        self._pending = None
        self._rounds.append(ctx.round)
        return aggregate

    # ------------------------------------------------------------------ results
    def trials(self) -> tuple[Tensor, Tensor, Tensor]:
        """All recorded trials, in (round, canary) order.

        Returns:
            ``(scores float64 [T], inserted bool [T], rounds int64 [T])`` with
            ``T = num_canaries * rounds recorded``.
        """
        if not self._scores:
            empty = torch.zeros(0)
            return empty.double(), empty.bool(), empty.long()
        rounds = torch.tensor(self._rounds, dtype=torch.int64).repeat_interleave(self.num_canaries)
        return torch.cat(self._scores), torch.cat(self._inserted), rounds

    def result(self, delta: float, alpha: float = 0.05) -> AuditResult:
        """:func:`epsilon_lower_bound` of all trials pooled (in = inserted).

        Raises:
            ValueError: Fewer than 2 inserted or 2 not-inserted trials so far.
        """
        scores, inserted, _ = self.trials()
        if int(inserted.sum()) < 2 or int((~inserted).sum()) < 2:
            raise ValueError(
                f"the audit needs at least 2 inserted and 2 not-inserted trials, has "
                f"{int(inserted.sum())} and {int((~inserted).sum())} "
                f"({len(self._rounds)} rounds recorded)"
            )
        return epsilon_lower_bound(scores[inserted], scores[~inserted], delta=delta, alpha=alpha)

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """Configuration, canaries and every trial so far (tensors and plain values)."""
        scores, inserted, _ = self.trials()
        return {
            "num_canaries": self.num_canaries,
            "norm": self.norm,
            "insert_prob": self.insert_prob,
            "seed": self.seed,
            "canaries": None if self.canaries is None else self.canaries.clone(),
            "scores": scores.clone(),
            "inserted": inserted.clone(),
            "rounds": torch.tensor(self._rounds, dtype=torch.int64),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises:
            ValueError: A state saved with another configuration, or inconsistent trials.
        """
        mine = {
            "num_canaries": self.num_canaries,
            "norm": self.norm,
            "insert_prob": self.insert_prob,
            "seed": self.seed,
        }
        saved = {key: state.get(key) for key in mine}
        if saved != mine:
            raise ValueError(f"audit state was saved with {saved}, this hook has {mine}")
        k = self.num_canaries
        scores, inserted = state["scores"], state["inserted"]
        rounds = [int(r) for r in state["rounds"].tolist()]
        if scores.shape != (k * len(rounds),) or inserted.shape != scores.shape:
            raise ValueError(
                f"audit state has {tuple(scores.shape)} scores and {tuple(inserted.shape)} "
                f"flags for {len(rounds)} rounds of {k} canaries"
            )
        canaries = state["canaries"]
        if canaries is not None and (canaries.dim() != 2 or canaries.shape[0] != k):
            raise ValueError(f"audit state has canaries of shape {tuple(canaries.shape)}")
        self.canaries = None if canaries is None else canaries.clone()
        self._scores = list(scores.to(torch.float64).clone().split(k)) if rounds else []
        self._inserted = list(inserted.to(torch.bool).clone().split(k)) if rounds else []
        self._rounds = rounds


__all__ = [
    "METHOD",
    "AuditResult",
    "CanaryAudit",
    "canary_scores",
    "clopper_pearson",
    "epsilon_lower_bound",
    "make_canaries",
]
