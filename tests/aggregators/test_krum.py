"""Tests for fedshield.aggregators.krum (Krum and Multi-Krum, Blanchard et al. 2017)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fedshield.aggregators.krum import krum, krum_aggregation, krum_scores, multi_krum

# Five points in the plane, f = 1, so every score sums the n - f - 2 = 2 smallest squared
# distances to the other rows:
#   r0 = [0, 0]:   to r1 1, r2 4, r3 2, r4 200         -> 1 + 2     = 3
#   r1 = [1, 0]:   to r0 1, r2 5, r3 1, r4 181         -> 1 + 1     = 2
#   r2 = [0, 2]:   to r0 4, r1 5, r3 2, r4 164         -> 2 + 4     = 6
#   r3 = [1, 1]:   to r0 2, r1 1, r2 2, r4 162         -> 1 + 2     = 3
#   r4 = [10, 10]: to r0 200, r1 181, r2 164, r3 162   -> 162 + 164 = 326
U = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [10.0, 10.0]])


@st.composite
def _matrices(draw: st.DrawFn, min_n: int = 3, max_n: int = 9) -> torch.Tensor:
    """Arbitrary finite matrices (ties, repeated rows and zeros included)."""
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(1, 4))
    val = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
    rows = draw(st.lists(st.lists(val, min_size=d, max_size=d), min_size=n, max_size=n))
    return torch.tensor(rows, dtype=torch.float64)


@st.composite
def _generic(draw: st.DrawFn, min_n: int = 3, max_n: int = 12) -> torch.Tensor:
    """Continuous random matrices with unequal row spreads (no ties, almost surely)."""
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = rng.uniform(0.1, 10.0, size=(n, 1))
    return torch.from_numpy(rng.normal(size=(n, d)) * scale + rng.normal(size=d))


def _naive_krum(x: np.ndarray, f: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference: double loop over pairs, Python sort per row."""
    n = x.shape[0]
    scores = []
    for i in range(n):
        dists = sorted(float(np.sum((x[i] - x[j]) ** 2)) for j in range(n) if j != i)
        scores.append(sum(dists[: n - f - 2]))
    order = np.argsort(scores, kind="stable")
    return np.array(scores), x[order[:m]].mean(axis=0)


def _max_f(n: int) -> int:
    return (n - 3) // 2  # largest f with n > 2f + 2


# --------------------------------------------------------------------------- hand-computed


def test_scores_hand_computed() -> None:
    # Execute
    scores = krum_scores(U, num_byzantine=1)

    # Assert: see the table above U
    torch.testing.assert_close(scores, torch.tensor([3.0, 2.0, 6.0, 3.0, 326.0]))


def test_krum_hand_computed() -> None:
    # Execute
    agg = krum_aggregation(U, num_byzantine=1)

    # Assert: r1 has the lowest score (2) and is returned as is
    assert torch.equal(agg.aggregate, U[1])
    assert agg.accepted is not None
    assert agg.accepted.tolist() == [False, True, False, False, False]
    assert torch.equal(krum(U, num_byzantine=1), U[1])


def test_multi_krum_hand_computed() -> None:
    # Execute
    three = krum_aggregation(U, num_byzantine=1, num_selected=3)
    default = multi_krum(U, num_byzantine=1)

    # Assert: m = 3 keeps r1 (2), r0 (3), r3 (3): ([0,0] + [1,0] + [1,1]) / 3 = [2/3, 1/3];
    # the default m = n - f = 4 adds r2 (6): ([0,0] + [1,0] + [0,2] + [1,1]) / 4 = [0.5, 0.75]
    torch.testing.assert_close(three.aggregate, torch.tensor([2 / 3, 1 / 3]))
    assert three.accepted is not None
    assert three.accepted.tolist() == [True, True, False, True, False]
    torch.testing.assert_close(default, torch.tensor([0.5, 0.75]))
    torch.testing.assert_close(multi_krum(U, num_byzantine=1, num_selected=3), three.aggregate)


def test_tie_is_broken_by_total_distance_in_any_row_order() -> None:
    # Prepare: n = 3, f = 0 -> 1 nearest neighbour. [0] and [1] are mutual nearest
    # neighbours, both score 1; totals: [0] -> 1 + 25 = 26, [1] -> 1 + 16 = 17, so [1] wins
    a = torch.tensor([[0.0], [1.0], [5.0]])
    b = torch.tensor([[1.0], [0.0], [5.0]])

    # Execute / Assert
    torch.testing.assert_close(krum_scores(a, num_byzantine=0), torch.tensor([1.0, 1.0, 16.0]))
    assert torch.equal(krum(a, num_byzantine=0), torch.tensor([1.0]))
    assert torch.equal(krum(b, num_byzantine=0), torch.tensor([1.0]))


def test_far_outliers_are_never_selected() -> None:
    # Prepare: 6 inliers in the unit cube, f = 2 outliers a million away
    rng = np.random.default_rng(3)
    inliers = rng.uniform(size=(6, 4))
    outliers = np.array([[1e6, 0, 0, 0], [0, -1e6, 3e5, 0]])
    x = torch.from_numpy(np.vstack([outliers[:1], inliers, outliers[1:]]))

    # Execute
    agg = krum_aggregation(x, num_byzantine=2, num_selected=6)

    # Assert: Multi-Krum with m = n - f keeps exactly the inliers
    assert agg.accepted is not None
    assert agg.accepted.tolist() == [False] + [True] * 6 + [False]
    np.testing.assert_allclose(agg.aggregate.numpy(), inliers.mean(axis=0), rtol=1e-12)


def test_float32_in_float32_out_and_input_untouched() -> None:
    # Prepare
    u = U.clone()

    # Execute
    out = multi_krum(u, num_byzantine=1)

    # Assert
    assert out.dtype == torch.float32
    assert torch.equal(u, U)


# --------------------------------------------------------------------------- reference


@pytest.mark.parametrize(("n", "f", "seed"), [(5, 1, 0), (9, 3, 1), (12, 2, 2), (20, 8, 3)])
def test_matches_naive_loop_implementation(n: int, f: int, seed: int) -> None:
    # Prepare
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 7)) * rng.uniform(0.5, 3.0, size=(n, 1))
    ref_scores, _ = _naive_krum(x, f, 1)

    for m in (1, 2, n - f, n):
        # Execute
        ours = multi_krum(torch.from_numpy(x), num_byzantine=f, num_selected=m)

        # Assert
        np.testing.assert_allclose(ours.numpy(), _naive_krum(x, f, m)[1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        krum_scores(torch.from_numpy(x), num_byzantine=f).numpy(), ref_scores, rtol=1e-9
    )


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(u=_matrices(), data=st.data())
def test_krum_returns_an_input_row_exactly(u: torch.Tensor, data: st.DataObject) -> None:
    # Prepare
    f = data.draw(st.integers(0, _max_f(u.shape[0])))

    # Execute
    agg = krum_aggregation(u, num_byzantine=f)

    # Assert
    assert agg.accepted is not None
    (i,) = agg.accepted.nonzero().flatten().tolist()
    assert torch.equal(agg.aggregate, u[i])
    assert agg.aggregate.data_ptr() != u[i].data_ptr()


@settings(max_examples=60, deadline=None)
@given(u=_generic(), data=st.data())
def test_krum_value_is_row_permutation_invariant(u: torch.Tensor, data: st.DataObject) -> None:
    # Prepare
    n = u.shape[0]
    f = data.draw(st.integers(0, _max_f(n)))
    perm = torch.tensor(data.draw(st.permutations(range(n))))
    best_two = krum_scores(u, num_byzantine=f).sort().values[:2]
    assume(float(best_two[1] - best_two[0]) > 1e-9 * float(best_two[1]))  # a unique winner

    # Execute
    a = krum(u, num_byzantine=f)
    b = krum(u[perm], num_byzantine=f)
    c = multi_krum(u, num_byzantine=f)
    d = multi_krum(u[perm], num_byzantine=f)

    # Assert
    assert torch.equal(a, b)
    torch.testing.assert_close(c, d, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(u=_matrices(), data=st.data())
def test_multi_krum_finite_in_range_and_selects_m(u: torch.Tensor, data: st.DataObject) -> None:
    # Prepare
    n = u.shape[0]
    f = data.draw(st.integers(0, _max_f(n)))
    m = data.draw(st.integers(1, n))

    # Execute
    agg = krum_aggregation(u, num_byzantine=f, num_selected=m)

    # Assert
    assert agg.accepted is not None
    assert int(agg.accepted.sum()) == m
    assert bool(torch.isfinite(agg.aggregate).all())
    assert bool((agg.aggregate >= u.min(dim=0).values - 1e-9).all())
    assert bool((agg.aggregate <= u.max(dim=0).values + 1e-9).all())


@settings(max_examples=40, deadline=None)
@given(u=_matrices())
def test_all_selected_is_the_mean(u: torch.Tensor) -> None:
    # Execute
    out = multi_krum(u, num_byzantine=0, num_selected=u.shape[0])

    # Assert
    torch.testing.assert_close(out, u.mean(dim=0), rtol=1e-12, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(u=_matrices())
def test_identical_rows_give_that_row(u: torch.Tensor) -> None:
    # Prepare
    same = u[:1].expand(u.shape[0], -1).clone()

    # Execute / Assert
    assert torch.equal(krum(same, num_byzantine=0), u[0])
    torch.testing.assert_close(multi_krum(same, num_byzantine=0), u[0], rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.zeros(0, 3), r"empty \(shape \(0, 3\)\)"),
        (torch.zeros(5), r"2-D matrix .*got shape \(5,\)"),
        (torch.tensor([[0.0], [1.0], [float("nan")], [2.0]]), r"non-finite .* rows \[2\]"),
        (torch.tensor([[0.0], [float("inf")], [1.0], [2.0]]), r"non-finite .* rows \[1\]"),
        (torch.tensor([[0.0], [float("-inf")], [1.0], [2.0]]), r"non-finite .* rows \[1\]"),
    ],
    ids=["empty", "1-D", "nan row", "inf row", "-inf row"],
)
def test_bad_matrix(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    for rule in (krum, multi_krum, krum_scores, krum_aggregation):
        with pytest.raises(ValueError, match=match):
            rule(updates, num_byzantine=0)


@pytest.mark.parametrize(
    ("f", "match"),
    [
        (2, r"num_byzantine = 2 is too large for n = 5 .*n > 2f \+ 2 = 6 \(Krum"),
        (7, r"num_byzantine = 7 is too large for n = 5 .*n > 2f \+ 2 = 16 \(Krum"),
        (-1, r"num_byzantine must be >= 0, got -1"),
        (1.0, r"num_byzantine must be an integer, got 1.0"),
        (True, r"num_byzantine must be an integer, got True"),
    ],
    ids=["n == 2f + 2 - 1", "far too large", "negative", "float", "bool"],
)
def test_bad_num_byzantine(f: object, match: str) -> None:
    # Execute / Assert
    for rule in (krum, multi_krum, krum_scores, krum_aggregation):
        with pytest.raises(ValueError, match=match):
            rule(U, num_byzantine=f)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("m", "match"),
    [
        (0, r"num_selected must be in 1..n = 1..5, got 0"),
        (6, r"num_selected must be in 1..n = 1..5, got 6"),
        (2.0, r"num_selected must be an integer, got 2.0"),
    ],
)
def test_bad_num_selected(m: object, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        krum(U, num_byzantine=1, num_selected=m)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        multi_krum(U, num_byzantine=1, num_selected=m)  # type: ignore[arg-type]
