"""Tests for fedshield.attacks.poisoning.ipm (inner product manipulation)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.attacks import ipm

U = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, -12.0]])


@st.composite
def _int_matrices(draw: st.DrawFn) -> torch.Tensor:
    """Integer-valued rows: their sums are exact, so the mean does not depend on order."""
    n = draw(st.integers(1, 7))
    d = draw(st.integers(1, 6))
    val = st.integers(-1000, 1000)
    rows = draw(st.lists(st.lists(val, min_size=d, max_size=d), min_size=n, max_size=n))
    return torch.tensor(rows, dtype=torch.float64)


def test_hand_computed() -> None:
    # Prepare: mean = [9, -6] / 3 = [3, -2]; -0.5 * mean = [-1.5, 1]

    # Execute
    out = ipm(U, epsilon=0.5)

    # Assert
    torch.testing.assert_close(out, torch.tensor([-1.5, 1.0]), rtol=0, atol=1e-6)


def test_large_epsilon_hand_computed() -> None:
    # Execute
    out = ipm(U.double(), epsilon=100.0)

    # Assert
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.tensor([-300.0, 200.0], dtype=torch.float64))


def test_input_not_modified() -> None:
    # Prepare
    u = U.clone()

    # Execute
    ipm(u, epsilon=0.1)

    # Assert
    assert torch.equal(u, U)


@settings(max_examples=50, deadline=None)
@given(u=_int_matrices(), eps=st.floats(1e-3, 1e3), seed=st.integers(0, 2**31))
def test_permutation_invariant_and_finite(u: torch.Tensor, eps: float, seed: int) -> None:
    # Prepare
    perm = torch.randperm(u.shape[0], generator=torch.Generator().manual_seed(seed))

    # Execute
    a = ipm(u, epsilon=eps)
    b = ipm(u[perm], epsilon=eps)

    # Assert
    assert a.shape == (u.shape[1],)
    assert bool(torch.isfinite(a).all())
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a, -eps * u.mean(dim=0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("epsilon", "match"),
    [
        (float("nan"), r"epsilon must be finite, got nan"),
        (float("inf"), r"epsilon must be finite, got inf"),
        (0.0, r"epsilon must be > 0, got 0.0"),
        (-1.0, r"epsilon must be > 0, got -1.0"),
    ],
    ids=["nan", "inf", "zero", "negative"],
)
def test_bad_epsilon(epsilon: float, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        ipm(U, epsilon=epsilon)


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.zeros(0, 2), r"empty"),
        (torch.ones(3), r"2-D matrix"),
        (torch.tensor([[1.0, 2.0], [float("nan"), 0.0]]), r"non-finite .* rows \[1\]"),
    ],
    ids=["empty", "1-D", "nan row"],
)
def test_bad_matrix(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        ipm(updates, epsilon=0.1)
