"""Tests for fedshield.aggregators.norm_bound (norm bounding, Sun et al. 2019)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.aggregators.norm_bound import clip_rows, norm_bound

# Row norms: ||[3, 4]|| = 5, ||[0, 1]|| = 1, ||[6, 8]|| = 10
U = torch.tensor([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]])


@st.composite
def _matrices(draw: st.DrawFn, min_n: int = 1, max_n: int = 8) -> torch.Tensor:
    """Arbitrary finite float64 matrices (ties, repeated rows and zero rows included)."""
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(1, 4))
    val = st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False)
    rows = draw(st.lists(st.lists(val, min_size=d, max_size=d), min_size=n, max_size=n))
    return torch.tensor(rows, dtype=torch.float64)


def _numpy_norm_bound(x: np.ndarray, w: np.ndarray, bound: float) -> np.ndarray:
    """Independent reference: a loop over rows."""
    clipped = []
    for row in x:
        norm = np.linalg.norm(row)
        clipped.append(row if norm <= bound else row * (bound / norm))
    return np.average(np.array(clipped), axis=0, weights=w)


# --------------------------------------------------------------------------- hand-computed


def test_clip_rows_hand_computed() -> None:
    # Execute: bound 5 -> [3, 4] and [0, 1] unchanged, [6, 8] * 5/10 = [3, 4]
    out = clip_rows(U, 5.0)

    # Assert
    torch.testing.assert_close(out, torch.tensor([[3.0, 4.0], [0.0, 1.0], [3.0, 4.0]]))


def test_norm_bound_hand_computed() -> None:
    # Execute / Assert: bound 5: ([3, 4] + [0, 1] + [3, 4]) / 3 = [2, 3];
    # weights 1, 2, 1: ([3, 4] + 2 [0, 1] + [3, 4]) / 4 = [6, 10] / 4 = [1.5, 2.5]
    torch.testing.assert_close(norm_bound(U, max_norm=5.0), torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(
        norm_bound(U, torch.tensor([1.0, 2.0, 1.0]), max_norm=5.0), torch.tensor([1.5, 2.5])
    )


def test_default_bound_is_the_median_norm() -> None:
    # Prepare: norms 5, 1, 10 -> median 5 (the case above); with a fourth row [0, 0] the
    # norms are 0, 1, 5, 10 -> bound (1 + 5) / 2 = 3: [3, 4] -> [1.8, 2.4], [6, 8] -> [1.8, 2.4]
    # mean = ([1.8, 2.4] + [0, 1] + [1.8, 2.4] + [0, 0]) / 4 = [0.9, 1.45]
    u4 = torch.cat([U, torch.zeros(1, 2)])

    # Execute / Assert
    torch.testing.assert_close(norm_bound(U), torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(norm_bound(u4), torch.tensor([0.9, 1.45]))


def test_per_row_bounds() -> None:
    # Execute: bounds 1, 1, 20 -> [3, 4] / 5 = [0.6, 0.8], [0, 1] and [6, 8] unchanged
    out = clip_rows(U, torch.tensor([1.0, 1.0, 20.0]))

    # Assert
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.0, 1.0], [6.0, 8.0]]))


def test_zero_rows_stay_zero_even_when_the_median_norm_is_zero() -> None:
    # Prepare: norms 0, 0, 5 -> bound 0; the zero rows are kept (0 <= 0), [3, 4] -> 0
    u = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])

    # Execute / Assert
    torch.testing.assert_close(norm_bound(u), torch.zeros(2))


def test_inputs_not_modified_and_dtype_kept() -> None:
    # Prepare
    u = U.clone()

    # Execute
    out = clip_rows(u, 1.0)
    agg = norm_bound(u, torch.tensor([1, 2, 3]), max_norm=2.0)

    # Assert
    assert torch.equal(u, U)
    assert out.dtype == torch.float32 and agg.dtype == torch.float32


# --------------------------------------------------------------------------- reference


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_loop(seed: int) -> None:
    # Prepare
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(13, 40)) * rng.uniform(0.1, 5.0, size=(13, 1))
    w = rng.integers(1, 500, size=13).astype(np.float64)
    norms = np.linalg.norm(x, axis=1)

    # Execute
    ours = norm_bound(torch.from_numpy(x), torch.from_numpy(w), max_norm=3.0).numpy()
    ours_median = norm_bound(torch.from_numpy(x)).numpy()

    # Assert
    np.testing.assert_allclose(ours, _numpy_norm_bound(x, w, 3.0), rtol=1e-12, atol=1e-12)
    expected = _numpy_norm_bound(x, np.ones(13), float(np.median(norms)))
    np.testing.assert_allclose(ours_median, expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(u=_matrices(), bound=st.floats(1e-3, 1e6))
def test_clipped_rows_are_within_the_bound_and_keep_direction(
    u: torch.Tensor, bound: float
) -> None:
    # Execute
    out = clip_rows(u, bound)

    # Assert
    norms, new_norms = u.norm(dim=1), out.norm(dim=1)
    assert bool((new_norms <= bound * (1 + 1e-12)).all())
    inside = norms <= bound
    assert torch.equal(out[inside], u[inside])
    # a clipped row is a positive multiple of the original: same direction, norm = bound
    scale = (bound / norms[~inside]).unsqueeze(1)
    torch.testing.assert_close(out[~inside], u[~inside] * scale, rtol=1e-12, atol=0)


@settings(max_examples=60, deadline=None)
@given(u=_matrices(), data=st.data())
def test_row_permutation_invariance(u: torch.Tensor, data: st.DataObject) -> None:
    # Prepare
    n = u.shape[0]
    perm = torch.tensor(data.draw(st.permutations(range(n))))
    w = torch.arange(1.0, n + 1, dtype=torch.float64)

    # Execute
    a, b = norm_bound(u, w), norm_bound(u[perm], w[perm])

    # Assert
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * max(1.0, float(u.abs().max())))


@settings(max_examples=60, deadline=None)
@given(u=_matrices(), bound=st.floats(1e-3, 1e6))
def test_aggregate_is_finite_and_its_norm_at_most_the_bound(u: torch.Tensor, bound: float) -> None:
    # Execute
    out = norm_bound(u, max_norm=bound)

    # Assert: a convex combination of vectors of norm <= bound
    assert bool(torch.isfinite(out).all())
    assert float(out.norm()) <= bound * (1 + 1e-9)


@settings(max_examples=40, deadline=None)
@given(u=_matrices())
def test_large_bound_is_the_mean(u: torch.Tensor) -> None:
    # Execute / Assert
    bound = float(u.norm(dim=1).max()) + 1.0
    torch.testing.assert_close(norm_bound(u, max_norm=bound), u.mean(dim=0), rtol=1e-12, atol=1e-9)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.zeros(0, 2), r"empty \(shape \(0, 2\)\)"),
        (torch.zeros(2), r"2-D matrix .*got shape \(2,\)"),
        (torch.tensor([[1.0, float("nan")], [0.0, 0.0]]), r"non-finite .*rows \[0\]"),
        (torch.tensor([[1.0, 0.0], [float("inf"), 0.0]]), r"non-finite .*rows \[1\]"),
    ],
    ids=["empty", "1-D", "nan row", "inf row"],
)
def test_bad_matrix(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        norm_bound(updates)
    with pytest.raises(ValueError, match=match):
        clip_rows(updates, 1.0)


@pytest.mark.parametrize(
    ("bound", "match"),
    [
        (0.0, r"max_norm must be a finite number > 0, got 0.0"),
        (-1.0, r"max_norm must be a finite number > 0, got -1.0"),
        (float("nan"), r"max_norm must be a finite number > 0, got nan"),
        (float("inf"), r"max_norm must be a finite number > 0, got inf"),
        ("5", r"max_norm must be a finite number > 0, got '5'"),
        (torch.ones(2), r"max_norm must be a number or have shape \(3,\), got shape \(2,\)"),
        (torch.tensor([1.0, 0.0, 1.0]), r"max_norm must be finite and > 0"),
    ],
    ids=["zero", "negative", "nan", "inf", "str", "wrong shape", "zero entry"],
)
def test_bad_bound(bound: object, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        clip_rows(U, bound)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        norm_bound(U, max_norm=bound)  # type: ignore[arg-type]


def test_bad_weights() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=r"weights must have shape \(3,\), got \(2,\)"):
        norm_bound(U, torch.ones(2))
    with pytest.raises(ValueError, match=r"weights sum to zero"):
        norm_bound(U, torch.zeros(3))
