"""Tests for fedshield.aggregators.median (coordinate-wise median, Yin et al. 2018) and the
shared per-coordinate sort."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.aggregators.median import median, middle_of_sorted, sort_columns


@st.composite
def _matrices(draw: st.DrawFn, min_n: int = 1, max_n: int = 9) -> torch.Tensor:
    """Arbitrary finite matrices (ties, repeated rows, zeros, subnormals included)."""
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(1, 5))
    big = 2.0**100  # about 1.3e30; exactly representable, so (a + b) / 2 cannot overflow
    val = st.floats(-big, big, width=32, allow_nan=False, allow_infinity=False)
    rows = draw(st.lists(st.lists(val, min_size=d, max_size=d), min_size=n, max_size=n))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return torch.tensor(rows, dtype=dtype)


# --------------------------------------------------------------------------- hand-computed


def test_odd_n_hand_computed() -> None:
    # Prepare: column 0 sorted 1, 2, 3 -> 2; column 1 sorted -1, 5, 7 -> 5
    u = torch.tensor([[1.0, 5.0], [3.0, -1.0], [2.0, 7.0]])

    # Execute / Assert
    assert torch.equal(median(u), torch.tensor([2.0, 5.0]))


def test_even_n_is_mean_of_the_two_middle_values() -> None:
    # Prepare: column 0 sorted 1, 2, 3, 10 -> (2 + 3) / 2 = 2.5;
    # column 1 sorted -1, 0, 6, 9 -> (0 + 6) / 2 = 3 (torch.median would give 2 and 0)
    u = torch.tensor([[1.0, 6.0], [3.0, -1.0], [2.0, 9.0], [10.0, 0.0]])

    # Execute / Assert
    assert torch.equal(median(u), torch.tensor([2.5, 3.0]))


def test_single_row_and_two_rows() -> None:
    # Prepare
    u = torch.tensor([[1.0, -4.0], [2.0, 8.0]])

    # Execute / Assert: (1 + 2) / 2 = 1.5, (-4 + 8) / 2 = 2
    assert torch.equal(median(u[:1]), u[0])
    assert torch.equal(median(u), torch.tensor([1.5, 2.0]))


def test_minority_of_outliers_cannot_move_it_outside_the_inliers() -> None:
    # Prepare: 4 inliers in [0, 1], 3 rows at +-1e30
    rng = np.random.default_rng(0)
    inliers = rng.uniform(size=(4, 6))
    x = np.vstack([inliers, np.full((2, 6), 1e30), np.full((1, 6), -1e30)])

    # Execute
    out = median(torch.from_numpy(x)).numpy()

    # Assert
    assert np.all(out >= inliers.min(axis=0)) and np.all(out <= inliers.max(axis=0))


def test_float32_in_float32_out_and_input_untouched() -> None:
    # Prepare
    u = torch.tensor([[3.0, 1.0], [1.0, 2.0], [2.0, 0.0]])
    before = u.clone()

    # Execute
    out = median(u)

    # Assert
    assert out.dtype == torch.float32
    assert torch.equal(u, before)


# --------------------------------------------------------------------------- reference


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_numpy_median(n: int, dtype: type) -> None:
    # Prepare
    x: np.ndarray = np.random.default_rng(n).normal(size=(n, 257)).astype(dtype)

    # Execute
    ours = median(torch.from_numpy(x)).numpy()

    # Assert: same values, same (a + b) / 2 rounding for even n
    np.testing.assert_array_equal(ours, np.median(x, axis=0))


def test_large_matrix_uses_threads_and_still_matches_numpy() -> None:
    # Prepare: 8 x 2^17 = 2^20 elements reaches the threaded sort path
    x = np.random.default_rng(1).normal(size=(8, 1 << 17)).astype(np.float32)

    # Execute
    ours = median(torch.from_numpy(x)).numpy()

    # Assert
    np.testing.assert_array_equal(ours, np.median(x, axis=0))


@pytest.mark.parametrize("rows", [None, [4, 0, 2]])
@pytest.mark.parametrize("d", [5, 1 << 17])
def test_sort_columns_matches_numpy_sort(rows: list[int] | None, d: int) -> None:
    # Prepare
    x = np.random.default_rng(d).normal(size=(6, d)).astype(np.float32)
    idx = None if rows is None else torch.tensor(rows)

    # Execute
    s = sort_columns(torch.from_numpy(x), idx)

    # Assert
    expected = np.sort(x if rows is None else x[rows], axis=0)
    np.testing.assert_array_equal(s.numpy(), expected)


def test_sort_columns_torch_fallback_for_bfloat16() -> None:
    # Prepare
    u = torch.tensor([[3.0, -1.0], [1.0, 2.0], [2.0, 0.5], [0.0, 8.0]], dtype=torch.bfloat16)

    # Execute
    s = sort_columns(u, torch.tensor([0, 1, 3]))

    # Assert: rows 0, 1, 3 -> column 0: 0, 1, 3; column 1: -1, 2, 8
    assert torch.equal(s, torch.tensor([[0.0, -1.0], [1.0, 2.0], [3.0, 8.0]]).bfloat16())
    assert torch.equal(middle_of_sorted(s), torch.tensor([1.0, 2.0]).bfloat16())


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(u=_matrices(), data=st.data())
def test_row_permutation_invariance(u: torch.Tensor, data: st.DataObject) -> None:
    # Prepare
    perm = torch.tensor(data.draw(st.permutations(range(u.shape[0]))))

    # Execute / Assert: the sorted columns are the same, so the result is bit-identical
    assert torch.equal(median(u), median(u[perm]))


@settings(max_examples=60, deadline=None)
@given(u=_matrices())
def test_identical_rows_give_that_row(u: torch.Tensor) -> None:
    # Prepare
    for n in (1, 2, 5):
        same = u[:1].expand(n, -1).clone()

        # Execute / Assert
        assert torch.equal(median(same), u[0])


@settings(max_examples=60, deadline=None)
@given(u=_matrices())
def test_finite_and_within_the_column_range(u: torch.Tensor) -> None:
    # Execute
    out = median(u)

    # Assert
    assert out.shape == (u.shape[1],)
    assert bool(torch.isfinite(out).all())
    assert bool((out >= u.min(dim=0).values).all())
    assert bool((out <= u.max(dim=0).values).all())


@settings(max_examples=60, deadline=None)
@given(u=_matrices())
def test_equals_numpy_median_on_arbitrary_values(u: torch.Tensor) -> None:
    # Execute / Assert
    np.testing.assert_array_equal(median(u).numpy(), np.median(u.numpy(), axis=0))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.zeros(0, 3), r"empty \(shape \(0, 3\)\)"),
        (torch.zeros(3, 0), r"empty \(shape \(3, 0\)\)"),
        (torch.zeros(3), r"2-D matrix .*got shape \(3,\)"),
        (torch.tensor([[1.0, 2.0], [float("nan"), 0.0], [0.0, 0.0]]), r"non-finite .*rows \[1\]"),
        (torch.tensor([[1.0, float("inf")], [0.0, 0.0], [0.0, 0.0]]), r"non-finite .*rows \[0\]"),
    ],
    ids=["no rows", "no columns", "1-D", "nan row", "inf row"],
)
def test_bad_matrix(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        median(updates)
