"""Tests for fedshield.attacks.poisoning.alie (A Little Is Enough)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from fedshield.attacks import alie, alie_z

# 3 rows: mean [3, 6]; unbiased std: sqrt(((-2)^2 + 0 + 2^2) / 2) = 2 and sqrt(32 / 2) = 4
U = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]], dtype=torch.float64)


@st.composite
def _int_matrices(draw: st.DrawFn) -> torch.Tensor:
    """Integer-valued rows (>= 2): sums are exact, so statistics do not depend on order."""
    n = draw(st.integers(2, 7))
    d = draw(st.integers(1, 6))
    val = st.integers(-1000, 1000)
    rows = draw(st.lists(st.lists(val, min_size=d, max_size=d), min_size=n, max_size=n))
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize(
    ("n", "f", "z"),
    [(50, 12, 0.583), (20, 4, 0.385), (100, 20, 0.496)],
)
def test_published_z(n: int, f: int, z: float) -> None:
    # Execute / Assert: the values Baruch et al. / the spec list, to 3 decimals
    assert round(alie_z(n, f), 3) == z


def test_z_50_12_matches_scipy_independently() -> None:
    # Prepare: s = floor(50/2 + 1) - 12 = 14; (n - s)/n = 36/50 = 0.72
    expected = float(norm.ppf(0.72))

    # Execute / Assert
    assert alie_z(50, 12) == pytest.approx(expected, rel=0, abs=1e-15)
    assert expected == pytest.approx(0.5828415, abs=1e-7)


def test_z_without_attackers_and_odd_n() -> None:
    # Prepare: n = 7, f = 1: s = floor(4.5) - 1 = 3; (7 - 3)/7
    expected = float(norm.ppf(4 / 7))

    # Execute / Assert
    assert alie_z(7, 1) == pytest.approx(expected, abs=1e-15)
    assert alie_z(4, 0) == pytest.approx(float(norm.ppf(1 / 4)), abs=1e-15)  # s = 3


def test_hand_computed_with_explicit_z() -> None:
    # Execute: mu - 0.5 * sigma = [3 - 1, 6 - 2]
    out = alie(U, num_clients=10, num_byzantine=2, z=0.5)

    # Assert
    torch.testing.assert_close(out, torch.tensor([2.0, 4.0], dtype=torch.float64))


def test_z_from_n_and_f_matches_numpy_unbiased_std() -> None:
    # Prepare
    rng = np.random.default_rng(3)
    g = rng.normal(size=(9, 17))
    z = float(norm.ppf(13 / 20))  # (20, 4)
    expected = g.mean(axis=0) - z * g.std(axis=0, ddof=1)

    # Execute
    out = alie(torch.from_numpy(g), num_clients=20, num_byzantine=4)

    # Assert
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)


def test_float32_and_input_not_modified() -> None:
    # Prepare
    u = U.float()
    before = u.clone()

    # Execute
    out = alie(u, num_clients=50, num_byzantine=12)

    # Assert
    assert out.dtype == torch.float32
    assert torch.equal(u, before)
    z = float(norm.ppf(0.72))
    torch.testing.assert_close(out, torch.tensor([3.0 - 2.0 * z, 6.0 - 4.0 * z]))


@settings(max_examples=50, deadline=None)
@given(u=_int_matrices(), seed=st.integers(0, 2**31))
def test_permutation_invariant_and_finite(u: torch.Tensor, seed: int) -> None:
    # Prepare
    perm = torch.randperm(u.shape[0], generator=torch.Generator().manual_seed(seed))

    # Execute
    a = alie(u, num_clients=20, num_byzantine=4)
    b = alie(u[perm], num_clients=20, num_byzantine=4)

    # Assert
    assert a.shape == (u.shape[1],)
    assert bool(torch.isfinite(a).all())
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(2, 6),
    cols=st.integers(1, 5),
    data=st.data(),
)
def test_finite_for_finite_float_inputs(rows: int, cols: int, data: st.DataObject) -> None:
    # Prepare
    val = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    u = torch.tensor(
        data.draw(
            st.lists(st.lists(val, min_size=cols, max_size=cols), min_size=rows, max_size=rows)
        ),
        dtype=torch.float64,
    )

    # Execute
    out = alie(u, num_clients=50, num_byzantine=12)

    # Assert: mu - z sigma lies within z sigma of the mean
    assert bool(torch.isfinite(out).all())
    assert bool(((out - u.mean(0)).abs() <= 0.6 * u.std(0) + 1e-6).all())


@pytest.mark.parametrize(
    ("n", "f", "match"),
    [
        (10, 10, r"num_byzantine = 10 must be smaller than num_clients = 10"),
        (10, 12, r"num_byzantine = 12 must be smaller than num_clients = 10"),
        (
            10,
            6,
            r"undefined for num_clients = 10, num_byzantine = 6: s = .* = 0 .* outside \(0, 1\)",
        ),
        (1, 0, r"undefined .* = 1 gives \(n - s\)/n = 0.0, outside \(0, 1\)"),
        (0, 0, r"num_clients must be >= 1, got 0"),
        (10, -1, r"num_byzantine must be >= 0, got -1"),
        (10.0, 2, r"num_clients must be an integer, got 10.0"),
    ],
    ids=["f == n", "f > n", "attacker majority", "n = 1", "n = 0", "negative f", "float n"],
)
def test_bad_n_f(n: int, f: int, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        alie_z(n, f)
    with pytest.raises(ValueError, match=match.split(":")[0]):
        alie(U, num_clients=n, num_byzantine=f)


def test_explicit_z_still_checks_n_f_and_finiteness() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=r"num_byzantine = 5 must be smaller than num_clients = 5"):
        alie(U, num_clients=5, num_byzantine=5, z=1.0)
    with pytest.raises(ValueError, match=r"z must be finite, got nan"):
        alie(U, num_clients=5, num_byzantine=1, z=math.nan)


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (U[:1], r"ALIE's coordinate-wise std needs at least 2 benign rows, got 1"),
        (torch.zeros(0, 2), r"empty"),
        (torch.tensor([[1.0, 2.0], [3.0, float("nan")]]), r"non-finite .* rows \[1\]"),
        (torch.ones(4), r"2-D matrix"),
    ],
    ids=["one row", "empty", "nan row", "1-D"],
)
def test_bad_matrix(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        alie(updates, num_clients=20, num_byzantine=4)
