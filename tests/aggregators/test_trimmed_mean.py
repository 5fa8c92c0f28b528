"""Tests for fedshield.aggregators.trimmed_mean (coordinate-wise trimmed mean, Yin et al. 2018)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from fedshield.aggregators.trimmed_mean import trimmed_mean

# n = 5, num_trim = 1:
#   column 0: 4, 1, 3, 100, 2 -> sorted 1, 2, 3, 4, 100 -> drop 1 and 100 -> (2 + 3 + 4) / 3 = 3
#   column 1: 0, -50, 2, 1, 3 -> sorted -50, 0, 1, 2, 3 -> drop -50 and 3 -> (0 + 1 + 2) / 3 = 1
U = torch.tensor([[4.0, 0.0], [1.0, -50.0], [3.0, 2.0], [100.0, 1.0], [2.0, 3.0]])


@st.composite
def _matrices(draw: st.DrawFn, min_n: int = 1, max_n: int = 11) -> torch.Tensor:
    """Arbitrary finite float64 matrices (ties, repeated rows and zeros included)."""
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(1, 5))
    val = st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False)
    rows = draw(st.lists(st.lists(val, min_size=d, max_size=d), min_size=n, max_size=n))
    return torch.tensor(rows, dtype=torch.float64)


def _trim(n: int, data: st.DataObject) -> int:
    return data.draw(st.integers(0, (n - 1) // 2))


# --------------------------------------------------------------------------- hand-computed


def test_hand_computed() -> None:
    # Execute / Assert: see the comment above U
    torch.testing.assert_close(trimmed_mean(U, num_trim=1), torch.tensor([3.0, 1.0]))


def test_largest_trim_on_even_n_is_the_median() -> None:
    # Prepare: n = 4, num_trim = 1 keeps the two middle values of each column:
    # column 0 sorted 1, 3, 4, 100 -> (3 + 4) / 2 = 3.5; column 1 sorted -50, 0, 1, 2 -> 0.5
    u = U[:4].clone()

    # Execute / Assert
    torch.testing.assert_close(trimmed_mean(u, num_trim=1), torch.tensor([3.5, 0.5]))


def test_num_trim_zero_is_the_mean() -> None:
    # Execute / Assert: (4 + 1 + 3 + 100 + 2) / 5 = 22, (0 - 50 + 2 + 1 + 3) / 5 = -8.8
    assert torch.equal(trimmed_mean(U, num_trim=0), U.mean(dim=0))
    torch.testing.assert_close(trimmed_mean(U, num_trim=0), torch.tensor([22.0, -8.8]))


def test_outliers_up_to_num_trim_cannot_move_it_outside_the_inliers() -> None:
    # Prepare: 7 inliers in [0, 1], 3 outliers at +-1e30, num_trim = 3
    rng = np.random.default_rng(0)
    inliers = rng.uniform(size=(7, 5))
    x = np.vstack([np.full((2, 5), 1e30), inliers, np.full((1, 5), -1e30)])

    # Execute
    out = trimmed_mean(torch.from_numpy(x), num_trim=3).numpy()

    # Assert
    assert np.all(out >= inliers.min(axis=0)) and np.all(out <= inliers.max(axis=0))


def test_float32_in_float32_out_and_input_untouched() -> None:
    # Prepare
    u = U.clone()

    # Execute
    out = trimmed_mean(u, num_trim=2)

    # Assert: n = 5, num_trim = 2 leaves the median: [3, 1]
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.tensor([3.0, 1.0]))
    assert torch.equal(u, U)


# --------------------------------------------------------------------------- reference


@pytest.mark.parametrize(("n", "k"), [(5, 1), (10, 2), (11, 5), (30, 7), (100, 20)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_scipy_trim_mean(n: int, k: int, dtype: type) -> None:
    # Prepare: scipy cuts int(proportiontocut * n) values at each end; (k + 0.5) / n gives
    # exactly k without floating-point doubt
    x: np.ndarray = np.random.default_rng(n + k).standard_cauchy(size=(n, 129)).astype(dtype)

    # Execute
    ours = trimmed_mean(torch.from_numpy(x), num_trim=k).numpy()

    # Assert
    expected = stats.trim_mean(x.astype(np.float64), (k + 0.5) / n, axis=0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours, expected, rtol=tol, atol=tol * np.abs(x).max())


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(u=_matrices(), data=st.data())
def test_row_permutation_invariance(u: torch.Tensor, data: st.DataObject) -> None:
    # Prepare
    k = _trim(u.shape[0], data)
    perm = torch.tensor(data.draw(st.permutations(range(u.shape[0]))))

    # Execute / Assert: k > 0 sums the same sorted values, so bit-identical
    a, b = trimmed_mean(u, num_trim=k), trimmed_mean(u[perm], num_trim=k)
    if k > 0:
        assert torch.equal(a, b)
    else:
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(u=_matrices(), data=st.data())
def test_identical_rows_give_that_row(u: torch.Tensor, data: st.DataObject) -> None:
    # Prepare
    n = data.draw(st.integers(1, 9))
    same = u[:1].expand(n, -1).clone()

    # Execute
    out = trimmed_mean(same, num_trim=_trim(n, data))

    # Assert
    torch.testing.assert_close(out, u[0], rtol=1e-14, atol=0)


@settings(max_examples=60, deadline=None)
@given(u=_matrices(), data=st.data())
def test_finite_within_range_and_between_the_kept_extremes(
    u: torch.Tensor, data: st.DataObject
) -> None:
    # Prepare
    n = u.shape[0]
    k = _trim(n, data)
    s = torch.sort(u, dim=0).values

    # Execute
    out = trimmed_mean(u, num_trim=k)

    # Assert: an average of s[k..n-k-1], so between those two order statistics
    assert bool(torch.isfinite(out).all())
    assert bool((out >= s[k] - 1e-9 * s[k].abs()).all())
    assert bool((out <= s[n - k - 1] + 1e-9 * s[n - k - 1].abs()).all())


@settings(max_examples=60, deadline=None)
@given(u=_matrices())
def test_num_trim_zero_equals_mean(u: torch.Tensor) -> None:
    # Execute / Assert
    torch.testing.assert_close(trimmed_mean(u, num_trim=0), u.mean(dim=0), rtol=0, atol=0)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.zeros(0, 3), r"empty \(shape \(0, 3\)\)"),
        (torch.zeros(4), r"2-D matrix .*got shape \(4,\)"),
        (torch.tensor([[1.0], [float("nan")], [0.0]]), r"non-finite .*rows \[1\]"),
        (torch.tensor([[1.0], [0.0], [float("inf")]]), r"non-finite .*rows \[2\]"),
    ],
    ids=["empty", "1-D", "nan row", "inf row"],
)
def test_bad_matrix(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        trimmed_mean(updates, num_trim=0)


@pytest.mark.parametrize(
    ("k", "match"),
    [
        (3, r"num_trim = 3 cuts 6 of the n = 5 values .*needs n > 2 \* num_trim"),
        (-1, r"num_trim must be >= 0, got -1"),
        (1.0, r"num_trim must be an integer, got 1.0"),
        (False, r"num_trim must be an integer, got False"),
    ],
    ids=["too large", "negative", "float", "bool"],
)
def test_bad_num_trim(k: object, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        trimmed_mean(U, num_trim=k)  # type: ignore[arg-type]


def test_half_trim_on_even_n_is_rejected() -> None:
    # Execute / Assert: n = 4, num_trim = 2 would leave nothing
    with pytest.raises(ValueError, match=r"num_trim = 2 cuts 4 of the n = 4"):
        trimmed_mean(U[:4], num_trim=2)
