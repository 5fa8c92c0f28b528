"""Tests for fedshield.privacy.audit: Clopper-Pearson intervals, the held-out epsilon lower
bound (against hand-computed values and a Gaussian mechanism of known epsilon), canaries,
their scores, and the CanaryAudit hook in a hand-driven round loop."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.optimize import brentq

from fedshield.aggregators import mean
from fedshield.config import from_dict
from fedshield.engine.hooks import ClientUpdates, RoundContext
from fedshield.engine.layout import ParamLayout
from fedshield.privacy.audit import (
    METHOD,
    AuditResult,
    CanaryAudit,
    canary_scores,
    clopper_pearson,
    epsilon_lower_bound,
    make_canaries,
)

D = 512
N_REAL = 10


def gaussian_epsilon(sigma: float, delta: float) -> float:
    """Exact epsilon of the Gaussian mechanism with sensitivity 1 and noise ``sigma``.

    Balle & Wang (ICML 2018), Dong, Roth & Su (2019): the mechanism is (eps, delta)-DP iff
    ``Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) <= delta`` with ``mu = 1/sigma``.
    """
    mu = 1.0 / sigma

    def excess(eps: float) -> float:
        return (
            float(
                stats.norm.cdf(-eps / mu + mu / 2)
                - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2)
            )
            - delta
        )

    return float(brentq(excess, 0.0, 500.0, xtol=1e-12))


# --------------------------------------------------------------------------- clopper_pearson


def test_clopper_pearson_known_values() -> None:
    # Execute
    zero = clopper_pearson(0, 10)
    half = clopper_pearson(5, 10)
    full = clopper_pearson(10, 10)

    # Assert: 0/10 upper = 1 - 0.025^(1/10); 5/10 is the textbook (0.187, 0.813)
    assert zero[0] == 0.0
    assert zero[1] == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-12)
    assert zero[1] == pytest.approx(0.3085, abs=1e-4)
    assert half == pytest.approx((0.1871, 0.8129), abs=1e-4)
    assert full[1] == 1.0
    assert full[0] == pytest.approx(0.025 ** (1 / 10), abs=1e-12)


@pytest.mark.parametrize(
    ("k", "n", "alpha"),
    [(0, 1, 0.05), (1, 1, 0.05), (3, 17, 0.05), (40, 100, 0.01), (999, 1000, 0.1), (7, 9, 0.5)],
)
def test_clopper_pearson_matches_scipy_binomtest(k: int, n: int, alpha: float) -> None:
    # Prepare: an independent implementation of the exact interval
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="exact")

    # Execute
    lo, hi = clopper_pearson(k, n, alpha=alpha)

    # Assert
    assert lo == pytest.approx(ref.low, abs=1e-10)
    assert hi == pytest.approx(ref.high, abs=1e-10)


@pytest.mark.parametrize(
    ("k", "n", "alpha", "match"),
    [
        (0, 0, 0.05, r"trials must be >= 1"),
        (-1, 5, 0.05, r"successes must be in \[0, trials\]"),
        (6, 5, 0.05, r"successes must be in \[0, trials\]"),
        (1.0, 5, 0.05, r"successes must be an integer"),
        (1, 5, 0.0, r"alpha must be in \(0, 1\)"),
        (1, 5, 1.0, r"alpha must be in \(0, 1\)"),
    ],
)
def test_clopper_pearson_rejects_bad_arguments(k: Any, n: int, alpha: float, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        clopper_pearson(k, n, alpha=alpha)


# --------------------------------------------------------------------------- epsilon bound


def test_perfect_separation_hand_computed() -> None:
    # Prepare: 20 "in" scores at 1, 20 "out" at 0; the odd-indexed 10 of each evaluate.
    # At t = 0: TPR = 10/10, FPR = 0/10, so TPR_lo = 0.025^(1/10), FPR_hi = 1 - TPR_lo.
    delta = 1e-3
    tpr_lo = 0.025 ** (1 / 10)
    expected = math.log((tpr_lo - delta) / (1 - tpr_lo))

    # Execute
    res = epsilon_lower_bound(np.ones(20), np.zeros(20), delta=delta)

    # Assert
    assert res.epsilon_lb == pytest.approx(expected, abs=1e-12)
    assert (res.threshold, res.tpr, res.fpr) == (0.0, 1.0, 0.0)
    assert (res.num_in, res.num_out, res.alpha, res.method) == (20, 20, 0.05, METHOD)


def test_symmetric_inequality_is_used() -> None:
    # Prepare: in = all 1; out = 0, 0, 1, 1, ... so each half of "out" is half ones.
    # At t = 0 on the evaluation half: TPR = 200/200, FPR = 100/200; the complement
    # inequality (1 - FPR) <= e^eps (1 - TPR) + delta is the informative one.
    s_in = np.ones(400)
    s_out = np.array([0.0, 0.0, 1.0, 1.0] * 100)
    delta = 1e-4
    tpr_lo, _ = clopper_pearson(200, 200)
    _, fpr_hi = clopper_pearson(100, 200)
    eps_direct = math.log((tpr_lo - delta) / fpr_hi)
    eps_complement = math.log((1 - fpr_hi - delta) / (1 - tpr_lo))

    # Execute
    res = epsilon_lower_bound(s_in, s_out, delta=delta)

    # Assert
    assert eps_complement > eps_direct + 1
    assert res.epsilon_lb == pytest.approx(eps_complement, abs=1e-12)
    assert (res.threshold, res.tpr, res.fpr) == (0.0, 1.0, 0.5)


def test_threshold_depends_only_on_the_selection_half() -> None:
    # Prepare
    rng = np.random.default_rng(3)
    s_in, s_out = rng.normal(2.0, 1.0, 2000), rng.normal(0.0, 1.0, 2000)
    shifted_in = s_in.copy()
    shifted_in[1::2] += 0.5  # only the evaluation half moves

    # Execute
    base = epsilon_lower_bound(s_in, s_out, delta=1e-5)
    moved = epsilon_lower_bound(shifted_in, s_out, delta=1e-5)

    # Assert: same threshold, a bound that follows the evaluation data
    assert moved.threshold == base.threshold
    assert moved.tpr > base.tpr
    assert moved.epsilon_lb > base.epsilon_lb


def test_same_distribution_false_positive_rate_is_at_most_alpha() -> None:
    # Prepare: in and out from the same law, so the true epsilon is 0 (delta = 0). With a
    # lax alpha = 0.5 the guarantee P(eps_lb > 0) <= 0.5 is tight enough to catch a bound
    # that maximises over thresholds on the data it evaluates (that one reports eps > 0 in
    # most of these runs).
    alpha, runs, n = 0.5, 100, 400

    # Execute
    positive = 0
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        res = epsilon_lower_bound(rng.normal(size=n), rng.normal(size=n), delta=0.0, alpha=alpha)
        positive += res.epsilon_lb > 0

    # Assert
    assert positive / runs <= alpha


def test_dp_accounting_agrees_with_the_analytic_gaussian_epsilon() -> None:
    # Prepare
    dp_accounting = pytest.importorskip("dp_accounting")

    for sigma in (0.3, 1.0, 50.0):
        accountant = dp_accounting.pld.PLDAccountant()
        accountant.compose(dp_accounting.GaussianDpEvent(sigma))

        # Execute
        eps_pld = accountant.get_epsilon(1e-5)

        # Assert: PLD is an upper bound that is tight here
        exact = gaussian_epsilon(sigma, 1e-5)
        assert exact <= eps_pld <= exact * 1.001 + 1e-6


@pytest.mark.parametrize(
    ("sigma", "at_least", "at_most"),
    [(0.3, 4.0, None), (1.0, 1.0, None), (50.0, 0.0, 0.02)],
    ids=["weak privacy", "sigma 1", "strong privacy"],
)
def test_gaussian_mechanism_bound_is_sound_and_tight_enough(
    sigma: float, at_least: float, at_most: float | None
) -> None:
    # Prepare: one Gaussian mechanism, scores = its outputs with the target in (mean 1) or
    # out (mean 0); 20k trials each, seeded
    delta = 1e-5
    true_eps = gaussian_epsilon(sigma, delta)
    g = torch.Generator().manual_seed(11)
    s_in = 1.0 + sigma * torch.randn(20_000, generator=g, dtype=torch.float64)
    s_out = sigma * torch.randn(20_000, generator=g, dtype=torch.float64)

    # Execute
    res = epsilon_lower_bound(s_in, s_out, delta=delta)

    # Assert: below the truth (soundness), and as large as 20k trials allow
    assert res.epsilon_lb <= true_eps
    assert res.epsilon_lb >= at_least
    if at_most is not None:
        assert res.epsilon_lb <= at_most


def test_tensor_and_numpy_inputs_agree() -> None:
    # Prepare
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.5, 300), rng.normal(0.0, 0.5, 301)

    # Execute
    from_numpy = epsilon_lower_bound(a, b, delta=1e-5, alpha=0.1)
    from_torch = epsilon_lower_bound(
        torch.from_numpy(a), torch.from_numpy(b), delta=1e-5, alpha=0.1
    )

    # Assert
    assert from_numpy == from_torch
    assert isinstance(from_numpy, AuditResult)
    assert from_numpy.epsilon_lb > 0


@pytest.mark.parametrize(
    ("s_in", "s_out", "kwargs", "match"),
    [
        (np.ones(1), np.zeros(4), {}, r"scores_in needs at least 2 scores"),
        (np.ones(4), np.zeros((2, 2)), {}, r"scores_out must be 1-D"),
        (np.array([1.0, np.nan]), np.zeros(4), {}, r"scores_in has non-finite"),
        (np.ones(4), np.zeros(4), {"delta": 1.0}, r"delta must be in \[0, 1\)"),
        (np.ones(4), np.zeros(4), {"delta": -0.1}, r"delta must be in \[0, 1\)"),
        (np.ones(4), np.zeros(4), {"delta": 0.0, "alpha": 0.0}, r"alpha must be in \(0, 1\)"),
    ],
)
def test_epsilon_lower_bound_rejects_bad_input(
    s_in: np.ndarray, s_out: np.ndarray, kwargs: dict[str, float], match: str
) -> None:
    # Prepare
    kw: dict[str, float] = {"delta": 1e-5, **kwargs}

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        epsilon_lower_bound(s_in, s_out, **kw)


# --------------------------------------------------------------------------- canaries


def test_make_canaries_norm_shape_and_reproducibility() -> None:
    # Execute
    a = make_canaries(5, 100, norm=3.0, generator=torch.Generator().manual_seed(0))
    b = make_canaries(5, 100, norm=3.0, generator=torch.Generator().manual_seed(0))
    c = make_canaries(5, 100, norm=3.0, generator=torch.Generator().manual_seed(1))

    # Assert
    assert a.shape == (5, 100) and a.dtype == torch.float32
    torch.testing.assert_close(a.norm(dim=1), torch.full((5,), 3.0), rtol=0, atol=1e-5)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_make_canaries_are_isotropic() -> None:
    # Prepare: uniform on the sphere of radius 2 in R^3 has mean 0 and E[c c^T] = 4/3 I
    g = torch.Generator().manual_seed(5)

    # Execute
    c = make_canaries(20_000, 3, norm=2.0, generator=g).double()

    # Assert
    torch.testing.assert_close(
        c.mean(dim=0), torch.zeros(3, dtype=torch.float64), atol=0.03, rtol=0
    )
    second = c.T @ c / c.shape[0]
    torch.testing.assert_close(second, torch.eye(3, dtype=torch.float64) * 4 / 3, atol=0.05, rtol=0)


@pytest.mark.parametrize(
    ("num", "dim", "norm", "match"),
    [(0, 3, 1.0, r"num must be"), (2, 0, 1.0, r"dim must be"), (2, 3, 0.0, r"norm must be")],
)
def test_make_canaries_rejects_bad_arguments(num: int, dim: int, norm: float, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        make_canaries(num, dim, norm=norm, generator=torch.Generator())


def test_canary_scores_hand_computed() -> None:
    # Prepare: aggregate (3, 4) has norm 5
    agg = torch.tensor([3.0, 4.0])
    canaries = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, -4.0], [4.0, -3.0]])

    # Execute
    s = canary_scores(agg, canaries)
    scaled = canary_scores(agg * 7.5, canaries * 0.1)
    zero = canary_scores(torch.zeros(2), canaries)

    # Assert: cosines, invariant to the scale of either side
    torch.testing.assert_close(s, torch.tensor([0.6, 0.8, -1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(scaled, s)
    assert torch.equal(zero, torch.zeros(4, dtype=torch.float64))


def test_canary_scores_rejects_bad_input() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=r"aggregate \[d\] and canaries \[k, d\]"):
        canary_scores(torch.zeros(3), torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"non-zero"):
        canary_scores(torch.ones(2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"finite"):
        canary_scores(torch.tensor([1.0, float("nan")]), torch.ones(1, 2))


# --------------------------------------------------------------------------- CanaryAudit


def _ctx(r: int) -> RoundContext:
    return RoundContext(
        round=r,
        num_rounds=100,
        config=from_dict({}),
        layout=ParamLayout.from_module(torch.nn.Linear(D, 1, bias=False)),
        global_params=torch.zeros(D),
        sampled=torch.arange(N_REAL),
        reporting=torch.arange(N_REAL),
        lr=0.1,
        generator=torch.Generator().manual_seed(1000 + r),
    )


def _real(r: int, scale: float = 0.01) -> ClientUpdates:
    g = torch.Generator().manual_seed(r)
    return ClientUpdates(
        client_ids=torch.arange(N_REAL),
        updates=scale * torch.randn(N_REAL, D, generator=g),
        weights=torch.arange(1, N_REAL + 1, dtype=torch.float32),
        num_samples=torch.arange(1, N_REAL + 1),
        loss=torch.full((N_REAL,), 2.0),
    )


def _run_rounds(
    hook: CanaryAudit, rounds: range, *, noise_std: float = 0.0
) -> list[tuple[RoundContext, ClientUpdates]]:
    """A fake round loop: canaries in, weighted mean, optional central noise, scores."""
    out = []
    for r in rounds:
        ctx = _ctx(r)
        updates = hook.after_local_training(ctx, _real(r))
        aggregate = mean(updates.updates, updates.weights)
        if noise_std > 0:
            g = torch.Generator().manual_seed(10_000 + r)
            aggregate = aggregate + noise_std * torch.randn(D, generator=g)
        returned = hook.after_aggregation(ctx, aggregate)
        assert torch.equal(returned, aggregate)
        hook.on_round_end(ctx, {})
        out.append((ctx, updates))
    return out


def test_inserted_canaries_are_appended_as_negative_id_rows() -> None:
    # Prepare
    hook = CanaryAudit(num_canaries=8, norm=1.5, seed=3)
    real = _real(0)
    ctx = _ctx(0)
    expected = torch.nonzero(hook.inserted_in(0)).flatten()

    # Execute
    out = hook.after_local_training(ctx, real)

    # Assert: real rows untouched and first; one row per inserted canary after them
    k = len(expected)
    assert 0 < k < 8
    assert len(out) == N_REAL + k
    assert ctx.metrics["audit_canaries_inserted"] == k
    assert torch.equal(out.updates[:N_REAL], real.updates)
    assert torch.equal(out.client_ids[:N_REAL], real.client_ids)
    assert torch.equal(out.client_ids[N_REAL:], -1 - expected)
    assert hook.canaries is not None
    assert torch.equal(out.updates[N_REAL:], hook.canaries[expected])
    assert out.updates.dtype == torch.float32
    torch.testing.assert_close(out.weights[N_REAL:], torch.full((k,), 5.5))  # mean of 1..10
    assert torch.equal(out.num_samples[N_REAL:], torch.ones(k, dtype=torch.int64))
    assert torch.equal(out.loss[N_REAL:], torch.zeros(k))


def test_canary_rows_pass_dp_clipping_unchanged() -> None:
    # Prepare: clipping to the canary norm, row * min(1, C / ||row||)
    clip = 1.5
    hook = CanaryAudit(num_canaries=8, norm=clip, seed=3)
    out = hook.after_local_training(_ctx(0), _real(0))
    rows = out.updates[N_REAL:]

    # Execute
    clipped = rows * (clip / rows.norm(dim=1, keepdim=True)).clamp(max=1.0)

    # Assert
    torch.testing.assert_close(clipped, rows, rtol=0, atol=1e-6)


def test_weight_is_one_without_real_rows() -> None:
    # Prepare
    hook = CanaryAudit(num_canaries=6, norm=1.0, seed=0)
    empty = ClientUpdates(
        client_ids=torch.zeros(0, dtype=torch.int64),
        updates=torch.zeros(0, D),
        weights=torch.zeros(0),
        num_samples=torch.zeros(0, dtype=torch.int64),
        loss=torch.zeros(0),
    )

    # Execute
    out = hook.after_local_training(_ctx(0), empty)

    # Assert
    assert len(out) == int(hook.inserted_in(0).sum()) > 0
    assert bool((out.client_ids < 0).all())
    assert torch.equal(out.weights, torch.ones(len(out)))


def test_pattern_is_reproducible_and_leaves_ctx_generator_alone() -> None:
    # Prepare
    a, b, other = (CanaryAudit(num_canaries=10, norm=1.0, seed=s) for s in (7, 7, 8))
    ctx = _ctx(4)
    before = ctx.generator.get_state()

    # Execute
    out_a = a.after_local_training(ctx, _real(4))
    out_b = b.after_local_training(_ctx(4), _real(4))
    out_other = other.after_local_training(_ctx(4), _real(4))

    # Assert
    assert torch.equal(ctx.generator.get_state(), before)
    assert torch.equal(out_a.client_ids, out_b.client_ids)
    assert torch.equal(out_a.updates, out_b.updates)
    patterns = torch.stack([a.inserted_in(r) for r in range(20)])
    assert torch.equal(patterns, torch.stack([b.inserted_in(r) for r in range(20)]))
    assert not torch.equal(patterns, torch.stack([other.inserted_in(r) for r in range(20)]))
    assert not torch.equal(out_a.updates[N_REAL:], out_other.updates[N_REAL:])


def test_round_without_local_training_counts_as_not_inserted() -> None:
    # Prepare: round 0 runs normally; round 1 only reaches after_aggregation (nobody
    # reported, yet a later hook released an aggregate), so no canary was in it
    hook = CanaryAudit(num_canaries=8, norm=1.0, seed=3)
    _run_rounds(hook, range(1))
    assert bool(hook.inserted_in(1).any())

    # Execute
    hook.after_aggregation(_ctx(1), torch.ones(D))

    # Assert
    _, inserted, rounds = hook.trials()
    assert torch.equal(inserted[:8], hook.inserted_in(0))
    assert not bool(inserted[8:].any())
    assert torch.equal(rounds, torch.tensor([0] * 8 + [1] * 8))


def test_insertion_frequency_matches_insert_prob() -> None:
    # Prepare
    hook = CanaryAudit(num_canaries=20, norm=1.0, insert_prob=0.3, seed=1)

    # Execute
    rate = torch.stack([hook.inserted_in(r) for r in range(500)]).double().mean()

    # Assert: 10,000 Bernoulli(0.3) draws, sd 0.0046
    assert abs(float(rate) - 0.3) < 0.02


def test_inserted_canaries_score_high_under_the_plain_mean() -> None:
    # Prepare
    hook = CanaryAudit(num_canaries=8, norm=1.0, seed=2)

    # Execute
    _run_rounds(hook, range(30))
    scores, inserted, rounds = hook.trials()
    res = hook.result(delta=1e-5)

    # Assert: in ~ 1/sqrt(#inserted), out ~ N(0, 1/D); perfectly separated, so the bound is
    # the largest one ~60 evaluation trials per side support
    assert scores.shape == inserted.shape == rounds.shape == (240,)
    assert torch.equal(rounds, torch.arange(30).repeat_interleave(8))
    assert float(scores[inserted].min()) > 0.25
    assert float(scores[~inserted].abs().max()) < 0.2
    assert res.epsilon_lb > 2.0
    assert res.num_in + res.num_out == 240


def test_heavy_central_noise_hides_the_canaries() -> None:
    # Prepare
    hook = CanaryAudit(num_canaries=8, norm=1.0, seed=2)

    # Execute: noise norm ~ 22, a canary adds ~ 1/14 to the mean
    _run_rounds(hook, range(30), noise_std=1.0)
    res = hook.result(delta=1e-5)

    # Assert
    assert res.epsilon_lb < 0.5


def test_state_dict_resume_is_exact() -> None:
    # Prepare: an uninterrupted run, and one stopped after 4 rounds and resumed in a new
    # hook from a serialised checkpoint
    full = CanaryAudit(num_canaries=6, norm=1.0, seed=9)
    _run_rounds(full, range(10))
    first = CanaryAudit(num_canaries=6, norm=1.0, seed=9)
    _run_rounds(first, range(4))
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = CanaryAudit(num_canaries=6, norm=1.0, seed=9)

    # Execute
    resumed.load_state_dict(torch.load(buf, weights_only=False))
    tail = _run_rounds(resumed, range(4, 10))

    # Assert
    for x, y in zip(full.trials(), resumed.trials(), strict=True):
        assert torch.equal(x, y)
    assert full.canaries is not None and resumed.canaries is not None
    assert torch.equal(full.canaries, resumed.canaries)
    assert full.result(delta=1e-5) == resumed.result(delta=1e-5)
    assert tail[-1][1].client_ids.min() < 0


def test_empty_state_round_trip() -> None:
    # Prepare
    hook = CanaryAudit(num_canaries=3, norm=1.0, seed=0)

    # Execute
    other = CanaryAudit(num_canaries=3, norm=1.0, seed=0)
    other.load_state_dict(hook.state_dict())

    # Assert
    assert other.canaries is None
    assert all(len(t) == 0 for t in other.trials())


def test_load_state_dict_rejects_another_configuration() -> None:
    # Prepare
    hook = CanaryAudit(num_canaries=4, norm=1.0, seed=0)
    _run_rounds(hook, range(2))
    state = hook.state_dict()

    # Execute / Assert
    with pytest.raises(ValueError, match=r"saved with .*'seed': 0.*this hook has .*'seed': 1"):
        CanaryAudit(num_canaries=4, norm=1.0, seed=1).load_state_dict(state)


def test_result_needs_trials_on_both_sides() -> None:
    # Prepare
    hook = CanaryAudit(num_canaries=2, norm=1.0, seed=0)

    # Execute / Assert
    with pytest.raises(ValueError, match=r"at least 2 inserted and 2 not-inserted trials"):
        hook.result(delta=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_canaries": 0, "norm": 1.0, "seed": 0}, r"num_canaries must be"),
        ({"num_canaries": 2, "norm": -1.0, "seed": 0}, r"norm must be"),
        ({"num_canaries": 2, "norm": 1.0, "seed": 0, "insert_prob": 1.0}, r"insert_prob"),
        ({"num_canaries": 2, "norm": 1.0, "seed": -1}, r"seed must be"),
    ],
)
def test_canary_audit_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        CanaryAudit(**kwargs)
