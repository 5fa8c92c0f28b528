"""Tests for fedshield.aggregators.geometric_median (RFA's smoothed Weiszfeld, Pillutla et al.
2022)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.aggregators.geometric_median import geometric_median


def _tight(u: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """Run to a tight tolerance (eps = 1e-12, up to 10,000 iterations)."""
    return geometric_median(u, w, eps=1e-12, max_iter=10_000)


@st.composite
def _generic(draw: st.DrawFn, min_n: int = 1, max_n: int = 10) -> torch.Tensor:
    """Continuous random float64 matrices with unequal row spreads."""
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = rng.uniform(0.1, 10.0, size=(n, 1))
    return torch.from_numpy(rng.normal(size=(n, d)) * scale + rng.normal(size=d))


@st.composite
def _matrices(draw: st.DrawFn) -> torch.Tensor:
    """Arbitrary finite float64 matrices (ties, repeated rows and zeros included)."""
    n = draw(st.integers(1, 8))
    d = draw(st.integers(1, 4))
    val = st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False)
    rows = draw(st.lists(st.lists(val, min_size=d, max_size=d), min_size=n, max_size=n))
    return torch.tensor(rows, dtype=torch.float64)


def _objective(x: np.ndarray, v: np.ndarray, w: np.ndarray | None = None) -> float:
    a = np.full(len(x), 1.0 / len(x)) if w is None else w / w.sum()
    return float(np.sum(a * np.linalg.norm(x - v, axis=1)))


def _numpy_weiszfeld(x: np.ndarray, w: np.ndarray, iters: int = 20_000) -> np.ndarray:
    """Independent reference: plain Weiszfeld in float64, stopped on the iterate's change."""
    v = np.average(x, axis=0, weights=w)
    for _ in range(iters):
        dist = np.maximum(np.sqrt(((x - v) ** 2).sum(axis=1)), 1e-300)
        new = (w / dist) @ x / np.sum(w / dist)
        if np.linalg.norm(new - v) <= 1e-15 * (1.0 + np.linalg.norm(v)):
            return new
        v = new
    return v


# --------------------------------------------------------------------------- hand-computed


def test_one_weiszfeld_step_hand_computed() -> None:
    # Prepare: points 0, 1, 10. Start at the mean 11/3; distances 11/3, 8/3, 19/3;
    # v1 = (0*3/11 + 1*3/8 + 10*3/19) / (3/11 + 3/8 + 3/19) = (99/152) / (449/1672) = 1089/449
    x = torch.tensor([[0.0], [1.0], [10.0]], dtype=torch.float64)

    # Execute
    one = geometric_median(x, max_iter=1)
    converged = geometric_median(x)

    # Assert: and in 1-D with odd n the geometric median is the middle point, 1
    torch.testing.assert_close(one, torch.tensor([1089 / 449], dtype=torch.float64))
    torch.testing.assert_close(
        converged, torch.tensor([1.0], dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_symmetric_points_give_the_centre() -> None:
    # Prepare: the corners of a square; by symmetry the geometric median is the centre [1, 2],
    # which is also the starting mean, so the weights stay equal
    x = torch.tensor([[0.0, 1.0], [2.0, 1.0], [0.0, 3.0], [2.0, 3.0]])

    # Execute / Assert
    torch.testing.assert_close(geometric_median(x), torch.tensor([1.0, 2.0]))


def test_heavier_point_wins() -> None:
    # Prepare: weights 3 and 1 on the points 0 and 1: 3|v| + |v - 1| is minimised at v = 0
    x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)

    # Execute
    out = geometric_median(x, torch.tensor([3.0, 1.0]))

    # Assert: the smoothing floor eps = 1e-6 stops it within a few eps of 0
    torch.testing.assert_close(out, torch.tensor([0.0], dtype=torch.float64), atol=1e-5, rtol=0)


def test_single_row_and_float32() -> None:
    # Prepare
    x = torch.tensor([[1.5, -2.0, 3.0]])

    # Execute
    out = geometric_median(x)

    # Assert
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x[0])


def test_inputs_not_modified() -> None:
    # Prepare
    x = torch.tensor([[0.0, 1.0], [4.0, 0.0], [1.0, 7.0]])
    w = torch.tensor([1.0, 2.0, 3.0])
    x0, w0 = x.clone(), w.clone()

    # Execute
    geometric_median(x, w)

    # Assert
    assert torch.equal(x, x0) and torch.equal(w, w0)


# --------------------------------------------------------------------------- reference


@pytest.mark.parametrize(("n", "d", "seed"), [(3, 2, 0), (7, 5, 1), (20, 30, 2), (51, 4, 3)])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_numpy_weiszfeld(n: int, d: int, seed: int, weighted: bool) -> None:
    # Prepare
    rng = np.random.default_rng(seed)
    x = rng.standard_t(2.0, size=(n, d)) * rng.uniform(0.5, 2.0, size=(n, 1))
    w = rng.integers(1, 100, size=n).astype(np.float64) if weighted else np.ones(n)
    ref = _numpy_weiszfeld(x, w)
    weights = torch.from_numpy(w) if weighted else None

    # Execute
    tight = _tight(torch.from_numpy(x), weights).numpy()
    default = geometric_median(torch.from_numpy(x), weights).numpy()

    # Assert: tight tolerance reaches the reference point; the default tolerance reaches its
    # objective value to about eps (the objective is flat near the optimum)
    scale = np.abs(x).max()
    np.testing.assert_allclose(tight, ref, rtol=0, atol=1e-6 * scale)
    assert _objective(x, default, w) <= _objective(x, ref, w) * (1 + 1e-5)


# --------------------------------------------------------------------------- properties


@settings(max_examples=50, deadline=None)
@given(u=_generic(), data=st.data())
def test_row_permutation_invariance(u: torch.Tensor, data: st.DataObject) -> None:
    # Prepare
    n = u.shape[0]
    perm = torch.tensor(data.draw(st.permutations(range(n))))
    w = torch.from_numpy(np.random.default_rng(n).uniform(0.5, 2.0, size=n))

    # Execute
    a = _tight(u, w)
    b = _tight(u[perm], w[perm])

    # Assert
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6 * float(u.abs().max()))


@settings(max_examples=50, deadline=None)
@given(u=_matrices(), n=st.integers(1, 6))
def test_identical_rows_give_that_row(u: torch.Tensor, n: int) -> None:
    # Prepare
    same = u[:1].expand(n, -1).clone()

    # Execute / Assert
    torch.testing.assert_close(geometric_median(same), u[0], rtol=1e-14, atol=0)


@settings(max_examples=50, deadline=None)
@given(u=_matrices())
def test_finite_and_within_the_bounding_box(u: torch.Tensor) -> None:
    # Execute
    out = geometric_median(u)

    # Assert: every iterate is a convex combination of the rows
    slack = 1e-12 * float(u.abs().max())
    assert bool(torch.isfinite(out).all())
    assert bool((out >= u.min(dim=0).values - slack).all())
    assert bool((out <= u.max(dim=0).values + slack).all())


@settings(max_examples=50, deadline=None)
@given(u=_generic(min_n=2, max_n=9), seed=st.integers(0, 2**32 - 1))
def test_one_outlier_moves_it_a_bounded_amount(u: torch.Tensor, seed: int) -> None:
    # Prepare: the rows of u are inliers within r of their mean z; one more row goes 100 r and
    # 10^4 r away in a random direction. Minsker (2015, Lemma 2.1) with alpha = 1/n: if
    # ||GM - z|| > C r, C = (1 - alpha) / sqrt(1 - 2 alpha), more than alpha*n = 1 rows would
    # be farther than r from z. So both medians stay within C r of z, wherever the outlier is.
    x = u.numpy()
    z = x.mean(axis=0)
    r = max(float(np.linalg.norm(x - z, axis=1).max()), 1e-3)
    raw = np.random.default_rng(seed).normal(size=x.shape[1])
    direction = np.asarray(raw / np.linalg.norm(raw))
    n = x.shape[0] + 1
    c = (1 - 1 / n) / float(np.sqrt(1 - 2 / n))

    # Execute
    near = geometric_median(torch.from_numpy(np.vstack([x, z + 1e2 * r * direction]))).numpy()
    far = geometric_median(torch.from_numpy(np.vstack([x, z + 1e4 * r * direction]))).numpy()

    # Assert: 1% slack for the stopping tolerance
    assert np.linalg.norm(near - z) <= 1.01 * c * r
    assert np.linalg.norm(far - z) <= 1.01 * c * r
    assert np.linalg.norm(far - near) <= 2.02 * c * r


@settings(max_examples=40, deadline=None)
@given(u=_generic(), scale=st.floats(1e-3, 1e3))
def test_weight_scale_invariance_and_zero_weight_drops_a_row(u: torch.Tensor, scale: float) -> None:
    # Prepare
    n = u.shape[0]
    w = torch.from_numpy(np.random.default_rng(n).uniform(0.5, 2.0, size=n))

    # Execute / Assert
    torch.testing.assert_close(_tight(u, w), _tight(u, w * scale))
    if n > 1:
        w0 = w.clone()
        w0[0] = 0.0
        torch.testing.assert_close(
            _tight(u, w0),
            _tight(u[1:], w[1:]),
            rtol=1e-6,
            atol=1e-6 * float(u.abs().max()),
        )


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.zeros(0, 3), r"empty \(shape \(0, 3\)\)"),
        (torch.zeros(3), r"2-D matrix .*got shape \(3,\)"),
        (torch.tensor([[1.0], [float("nan")]]), r"non-finite .*rows \[1\]"),
        (torch.tensor([[float("inf")], [1.0]]), r"non-finite .*rows \[0\]"),
    ],
    ids=["empty", "1-D", "nan row", "inf row"],
)
def test_bad_matrix(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        geometric_median(updates)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": 0.0}, r"eps must be a finite number > 0, got 0.0"),
        ({"eps": -1e-6}, r"eps must be a finite number > 0"),
        ({"eps": float("nan")}, r"eps must be a finite number > 0, got nan"),
        ({"eps": "small"}, r"eps must be a finite number > 0, got 'small'"),
        ({"max_iter": 0}, r"max_iter must be an integer >= 1, got 0"),
        ({"max_iter": 2.5}, r"max_iter must be an integer >= 1, got 2.5"),
        ({"weights": torch.ones(2)}, r"weights must have shape \(3,\), got \(2,\)"),
        ({"weights": torch.tensor([1.0, -1.0, 1.0])}, r"finite and >= 0"),
        ({"weights": torch.zeros(3)}, r"weights sum to zero"),
    ],
    ids=["eps 0", "eps < 0", "eps nan", "eps str", "max_iter 0", "max_iter float",
         "weights short", "weights negative", "weights zero"],
)  # fmt: skip
def test_bad_options(kwargs: dict[str, object], match: str) -> None:
    # Prepare
    x = torch.tensor([[0.0, 1.0], [4.0, 0.0], [1.0, 7.0]])

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        geometric_median(x, **kwargs)  # type: ignore[arg-type]
