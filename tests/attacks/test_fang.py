"""Tests for fedshield.attacks.poisoning.fang (Fang et al., USENIX Security 2020)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.attacks import (
    fang_krum,
    fang_krum_lambda_bound,
    fang_krum_search,
    fang_trimmed_mean,
)

# --------------------------------------------------------------------------- independent reference


def _np_krum(rows: np.ndarray, f: int) -> int:
    """Naive Krum: score(i) = sum of the n - f - 2 smallest ||u_i - u_j||^2, j != i."""
    n = rows.shape[0]
    scores = []
    for i in range(n):
        d = sorted(float(((rows[i] - rows[j]) ** 2).sum()) for j in range(n) if j != i)
        scores.append(sum(d[: n - f - 2]))
    return int(np.argmin(scores))


def _np_bound(g: np.ndarray, c: int) -> float:
    """The paper's lambda upper bound, by brute force (n = m + c rows in all)."""
    m, d = g.shape
    n = m + c
    sums = []
    for i in range(m):
        dist = sorted(float(np.linalg.norm(g[i] - g[j])) for j in range(m) if j != i)
        sums.append(sum(dist[: n - c - 2]))
    term1 = min(sums) / ((n - 2 * c - 1) * math.sqrt(d))
    return term1 + max(float(np.linalg.norm(r)) for r in g) / math.sqrt(d)


def _with_copies(update: np.ndarray, g: np.ndarray, c: int) -> np.ndarray:
    return np.concatenate([np.repeat(update[None, :], c, axis=0), g])


# --------------------------------------------------------------------------- Krum attack


def test_lambda_bound_matches_brute_force() -> None:
    # Prepare
    g = np.random.default_rng(0).normal(size=(12, 20))

    # Execute
    bound = fang_krum_lambda_bound(torch.from_numpy(g), num_byzantine=3)

    # Assert
    assert bound == pytest.approx(_np_bound(g, 3), rel=1e-12)


def test_lambda_bound_hand_computed() -> None:
    # Prepare: m = 4 points on a line in d = 1 at 0, 1, 2, 4 with c = 1 (n = 5):
    # |Gamma_i| = n - c - 2 = 2 nearest: sums 0:(1+2)=3, 1:(1+1)=2, 2:(1+1)=2, 4:(2+3)=5
    # term1 = 2 / ((5 - 2 - 1) * 1) = 1; term2 = max |g_i| = 4
    g = torch.tensor([[0.0], [1.0], [2.0], [4.0]], dtype=torch.float64)

    # Execute / Assert
    assert fang_krum_lambda_bound(g, num_byzantine=1) == pytest.approx(5.0, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_krum_selects_the_malicious_copy(seed: int) -> None:
    # Prepare
    g = np.random.default_rng(seed).normal(size=(20, 50))
    c = 4

    # Execute
    res = fang_krum_search(torch.from_numpy(g), num_byzantine=c)
    out = fang_krum(torch.from_numpy(g), num_byzantine=c)

    # Assert: an independent Krum picks one of the copies; the update is -lambda * s
    assert res.selected
    assert _np_krum(_with_copies(res.update.numpy(), g, c), c) < c
    s = np.sign(g.mean(axis=0))
    np.testing.assert_allclose(res.update.numpy(), -res.lam * s, rtol=0, atol=0)
    assert torch.equal(out, res.update)
    assert res.lambda_init == pytest.approx(_np_bound(g, c), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lambda_is_halved_until_selected(seed: int) -> None:
    # Prepare
    g = np.random.default_rng(seed).normal(size=(20, 50))
    c = 4

    # Execute
    res = fang_krum_search(torch.from_numpy(g), num_byzantine=c)

    # Assert: lam = lambda_0 / 2^k, and every larger lambda tried was rejected by Krum
    assert res.halvings >= 1  # the bound itself is too far out on these matrices
    assert res.lam == res.lambda_init / 2**res.halvings
    s = np.sign(g.mean(axis=0))
    for k in range(res.halvings):
        tried = -(res.lambda_init / 2**k) * s
        assert _np_krum(_with_copies(tried, g, c), c) >= c


def test_explicit_lambda_init() -> None:
    # Prepare
    g = torch.from_numpy(np.random.default_rng(5).normal(size=(12, 30)))

    # Execute
    res = fang_krum_search(g, num_byzantine=2, lambda_init=64.0)

    # Assert
    assert res.lambda_init == 64.0
    assert res.selected
    assert res.lam == 64.0 / 2**res.halvings
    assert _np_krum(_with_copies(res.update.numpy(), g.numpy(), 2), 2) < 2


def test_first_candidate_already_selected() -> None:
    # Prepare: a tiny lambda keeps the copies inside the benign cloud
    g = torch.from_numpy(np.random.default_rng(6).normal(size=(12, 30)))

    # Execute
    res = fang_krum_search(g, num_byzantine=2, lambda_init=1e-3)

    # Assert
    assert res.selected
    assert res.halvings == 0
    assert res.lam == 1e-3


def test_threshold_stops_the_halving_and_returns_the_last_candidate() -> None:
    # Prepare: a tight benign cluster far from the origin; -lambda * s only moves away
    # from it, so Krum never picks the copies, whatever lambda
    g = 5.0 + 0.01 * torch.from_numpy(np.random.default_rng(7).normal(size=(10, 5)))
    threshold = 1e-3

    # Execute
    res = fang_krum_search(g, num_byzantine=2, lambda_init=1.0, threshold=threshold)

    # Assert: 1 / 2^9 = 0.00195 is the last lambda above the threshold
    assert not res.selected
    assert res.halvings == 9
    assert res.lam == 1.0 / 2**9
    assert res.lam / 2 <= threshold < res.lam
    torch.testing.assert_close(res.update, torch.full((5,), -res.lam, dtype=torch.float64))
    assert _np_krum(_with_copies(res.update.numpy(), g.numpy(), 2), 2) >= 2


def test_float32_input_gives_float32_update() -> None:
    # Prepare
    g = torch.from_numpy(np.random.default_rng(8).normal(size=(10, 16)).astype(np.float32))

    # Execute
    out = fang_krum(g, num_byzantine=2)

    # Assert
    assert out.dtype == torch.float32
    assert out.shape == (16,)


@pytest.mark.parametrize(
    ("m", "kwargs", "match"),
    [
        (
            6,
            {"num_byzantine": 4},
            r"num_byzantine = 4 is too large for 6 benign rows: .* at least 7",
        ),
        (6, {"num_byzantine": 0}, r"num_byzantine must be >= 1, got 0"),
        (6, {"num_byzantine": 1, "threshold": 0.0}, r"threshold must be > 0, got 0.0"),
        (6, {"num_byzantine": 1, "lambda_init": float("nan")}, r"lambda_init must be finite"),
        (6, {"num_byzantine": 1, "lambda_init": -1.0}, r"lambda_init must be > 0"),
    ],
    ids=["too many attackers", "no attacker", "zero threshold", "nan lambda", "negative lambda"],
)
def test_krum_bad_arguments(m: int, kwargs: dict[str, object], match: str) -> None:
    # Prepare
    g = torch.randn(m, 4, generator=torch.Generator().manual_seed(0))

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        fang_krum(g, **kwargs)  # type: ignore[arg-type]


def test_krum_bad_matrix() -> None:
    # Prepare
    g = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    g[2, 1] = float("nan")

    # Execute / Assert
    with pytest.raises(ValueError, match=r"non-finite .* rows \[2\]"):
        fang_krum(g, num_byzantine=1)
    with pytest.raises(ValueError, match=r"empty"):
        fang_krum(torch.zeros(0, 3), num_byzantine=1)
    with pytest.raises(ValueError, match=r"too large"):
        fang_krum_lambda_bound(torch.ones(3, 2), num_byzantine=1)


# --------------------------------------------------------------------------- trimmed-mean attack


def _np_intervals(g: np.ndarray, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Per coordinate [lo, hi] of the rule, written out branch by branch."""
    s = np.sign(g.mean(axis=0))
    w_max, w_min = g.max(axis=0), g.min(axis=0)
    lo, hi = np.empty(g.shape[1]), np.empty(g.shape[1])
    for j in range(g.shape[1]):
        if s[j] == -1:
            ends = (w_max[j], b * w_max[j]) if w_max[j] > 0 else (w_max[j] / b, w_max[j])
        else:
            ends = (w_min[j] / b, w_min[j]) if w_min[j] > 0 else (b * w_min[j], w_min[j])
        lo[j], hi[j] = min(ends), max(ends)
    return lo, hi


def _four_branch_matrix(seed: int) -> np.ndarray:
    """Columns covering: s=+1 with w_min>0, s=-1 with w_max<0, s=+1 with w_min<0,
    s=-1 with w_max>0 (then repeated with noise)."""
    rng = np.random.default_rng(seed)
    base = np.array([3.0, -3.0, 0.4, -0.4] * 5)
    return base + rng.uniform(-1.0, 1.0, size=(9, base.size)) * np.array([1.0, 1.0, 2.0, 2.0] * 5)


def test_trimmed_mean_values_lie_in_their_intervals() -> None:
    # Prepare
    g = _four_branch_matrix(0)
    s = np.sign(g.mean(0))
    w_max, w_min = g.max(0), g.min(0)
    assert {(-1, True), (-1, False)} <= set(zip(s[s < 0], w_max[s < 0] > 0, strict=True))
    assert {(1, True), (1, False)} <= set(zip(s[s > 0], w_min[s > 0] > 0, strict=True))
    lo, hi = _np_intervals(g, 2.0)

    # Execute
    out = fang_trimmed_mean(
        torch.from_numpy(g), num_byzantine=50, generator=torch.Generator().manual_seed(1)
    ).numpy()

    # Assert: every value inside its interval, beyond every benign value on the far side
    assert out.shape == (50, g.shape[1])
    assert np.all(out >= lo[None, :] - 1e-12)
    assert np.all(out <= hi[None, :] + 1e-12)
    assert np.all(out[:, s < 0] >= w_max[s < 0])
    assert np.all(out[:, s > 0] <= w_min[s > 0])


def test_trimmed_mean_samples_fill_the_interval() -> None:
    # Prepare
    g = _four_branch_matrix(2)
    lo, hi = _np_intervals(g, 3.0)

    # Execute
    out = fang_trimmed_mean(
        torch.from_numpy(g), num_byzantine=4000, b=3.0, generator=torch.Generator().manual_seed(0)
    ).numpy()

    # Assert: uniform draws reach both ends (4000 draws: gaps ~ 1/4000 of the width)
    width = hi - lo
    assert np.all(out.min(0) - lo < 0.01 * width)
    assert np.all(hi - out.max(0) < 0.01 * width)
    np.testing.assert_allclose(out.mean(0), (lo + hi) / 2, atol=0.03 * width.max())


def test_trimmed_mean_hand_computed_ends() -> None:
    # Prepare: column 0: mean 2 > 0, w_min = 1 > 0 -> [0.5, 1];
    #          column 1: mean -2 < 0, w_max = -1 <= 0 -> [-1, -0.5]
    g = torch.tensor([[1.0, -1.0], [3.0, -3.0]], dtype=torch.float64)

    # Execute
    out = fang_trimmed_mean(g, num_byzantine=200, generator=torch.Generator().manual_seed(3))

    # Assert
    assert bool(((out[:, 0] >= 0.5) & (out[:, 0] <= 1.0)).all())
    assert bool(((out[:, 1] >= -1.0) & (out[:, 1] <= -0.5)).all())


def test_trimmed_mean_is_seeded() -> None:
    # Prepare
    g = torch.from_numpy(_four_branch_matrix(1))

    # Execute
    a = fang_trimmed_mean(g, num_byzantine=3, generator=torch.Generator().manual_seed(4))
    b = fang_trimmed_mean(g, num_byzantine=3, generator=torch.Generator().manual_seed(4))
    c = fang_trimmed_mean(g, num_byzantine=3, generator=torch.Generator().manual_seed(5))

    # Assert
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # each attacker draws its own values
    assert fang_trimmed_mean(g, num_byzantine=0).shape == (0, g.shape[1])


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 6), data=st.data())
def test_trimmed_mean_finite_and_in_range(rows: int, cols: int, data: st.DataObject) -> None:
    # Prepare
    val = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    g = np.array(
        data.draw(
            st.lists(st.lists(val, min_size=cols, max_size=cols), min_size=rows, max_size=rows)
        )
    )
    b = data.draw(st.floats(1.01, 10.0))
    lo, hi = _np_intervals(g, b)

    # Execute
    out = fang_trimmed_mean(
        torch.from_numpy(g), num_byzantine=3, b=b, generator=torch.Generator().manual_seed(0)
    ).numpy()

    # Assert
    assert np.isfinite(out).all()
    slack = 1e-12 * np.maximum(np.abs(lo), np.abs(hi))
    assert np.all(out >= lo - slack)
    assert np.all(out <= hi + slack)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_byzantine": -1}, r"num_byzantine must be >= 0, got -1"),
        ({"num_byzantine": 2, "b": 1.0}, r"b must be > 1, got 1.0"),
        ({"num_byzantine": 2, "b": float("inf")}, r"b must be finite"),
    ],
    ids=["negative attackers", "b = 1", "inf b"],
)
def test_trimmed_mean_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        fang_trimmed_mean(torch.ones(3, 2), **kwargs)  # type: ignore[arg-type]


def test_trimmed_mean_bad_matrix() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=r"non-finite .* rows \[0\]"):
        fang_trimmed_mean(torch.tensor([[float("nan"), 1.0]]), num_byzantine=1)
    with pytest.raises(ValueError, match=r"empty"):
        fang_trimmed_mean(torch.zeros(2, 0), num_byzantine=1)
