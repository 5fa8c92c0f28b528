"""Tests for fedshield.aggregators.bulyan (Bulyan, El Mhamdi et al. 2018)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.aggregators.bulyan import bulyan, bulyan_aggregation

# Seven 1-D updates, f = 1: theta = 7 - 2 = 5 rows are picked, beta = 5 - 2 = 3 averaged.
# Krum rounds (r rows left, k = min(r - 1, max(1, r - f - 2)) nearest squared distances):
#   r=7, k=4: 0 -> 1+4+25+49 = 79; 1 -> 1+1+16+36 = 54; 2 -> 1+4+9+25 = 39;
#             5 -> 4+9+16+25 = 54; 7 -> 4+25+36+49 = 114; 20 -> 1079; -30 -> 4110  => pick 2
#   r=6, k=3: 0 -> 1+25+49 = 75; 1 -> 1+16+36 = 53; 5 -> 4+16+25 = 45; 7 -> 89; ...  => pick 5
#   r=5, k=2: 0 -> 1+49 = 50; 1 -> 1+36 = 37; 7 -> 36+49 = 85; 20 -> 530; -30 -> 1861 => pick 1
#   r=4, k=1: 0 -> 49; 7 -> 49 (tie); 20 -> 169; -30 -> 900. Tie broken by the total squared
#             distance to the rows left: 0 -> 49+400+900 = 1349 < 7 -> 49+169+1369 = 1587
#                                                                                    => pick 0
#   r=3, k=1: 7 -> 169; 20 -> 169 (tie); -30 -> 1369. Totals: 7 -> 169+1369 = 1538 <
#             20 -> 169+2500 = 2669                                                  => pick 7
# Selected values sorted: 0, 1, 2, 5, 7; median 2; distances 2, 1, 0, 3, 5; the beta = 3
# closest are 0, 1, 2 -> (0 + 1 + 2) / 3 = 1.
X7 = torch.tensor([[0.0], [1.0], [2.0], [5.0], [7.0], [20.0], [-30.0]])


@st.composite
def _generic(draw: st.DrawFn) -> torch.Tensor:
    """Continuous random matrices, n >= 3, unequal row spreads (no ties, almost surely)."""
    n = draw(st.integers(3, 16))
    d = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = rng.uniform(0.1, 10.0, size=(n, 1))
    return torch.from_numpy(rng.normal(size=(n, d)) * scale + rng.normal(size=d))


@st.composite
def _matrices(draw: st.DrawFn) -> torch.Tensor:
    """Arbitrary finite matrices (ties, repeated rows and zeros included), n >= 3."""
    n = draw(st.integers(3, 12))
    d = draw(st.integers(1, 4))
    val = st.floats(-1e3, 1e3, width=32, allow_nan=False, allow_infinity=False)
    rows = draw(st.lists(st.lists(val, min_size=d, max_size=d), min_size=n, max_size=n))
    return torch.tensor(rows, dtype=torch.float64)


def _max_f(n: int) -> int:
    return (n - 3) // 4  # largest f with n >= 4f + 3


def _naive_bulyan(x: np.ndarray, f: int) -> tuple[list[int], np.ndarray]:
    """Independent reference: pairwise loops for Krum (ties by total distance, then index),
    a per-coordinate loop with argsort of |value - median| for the trimmed step."""
    n, d = x.shape
    theta, beta = n - 2 * f, n - 4 * f
    sq = [[float(np.sum((x[i] - x[j]) ** 2)) for j in range(n)] for i in range(n)]
    remaining, selected = list(range(n)), []
    for _ in range(theta):
        r = len(remaining)
        k = min(r - 1, max(1, r - f - 2))
        keys = {}
        for i in remaining:
            dists = sorted(sq[i][j] for j in remaining if j != i)
            keys[i] = (sum(dists[:k]), sum(dists), i)
        best = min(remaining, key=keys.__getitem__)
        selected.append(best)
        remaining.remove(best)
    out = np.empty(d)
    for c in range(d):
        col = x[selected, c]
        closest = np.argsort(np.abs(col - np.median(col)), kind="stable")[:beta]
        out[c] = col[closest].mean()
    return sorted(selected), out


# --------------------------------------------------------------------------- hand-computed


def test_hand_computed() -> None:
    # Execute
    agg = bulyan_aggregation(X7, num_byzantine=1)

    # Assert: see the comment above X7
    assert agg.accepted is not None
    assert agg.accepted.tolist() == [True, True, True, True, True, False, False]
    torch.testing.assert_close(agg.aggregate, torch.tensor([1.0]))
    torch.testing.assert_close(bulyan(X7, num_byzantine=1), torch.tensor([1.0]))


def test_hand_computed_window_per_coordinate() -> None:
    # Prepare: second column chosen so that the window moves: the same 5 rows are selected
    # (column 2 is tiny next to column 1's spread), selected column-2 values 0, 10, 11, 12, 30
    # (rows 0..4): median 11, distances 11, 1, 0, 1, 19 -> 10, 11, 12 -> 11
    x = X7.clone().repeat(1, 2)
    x[:, 1] = torch.tensor([0.0, 10.0, 11.0, 12.0, 30.0, 0.5, 0.25]) * 1e-3

    # Execute
    out = bulyan(x, num_byzantine=1)

    # Assert
    torch.testing.assert_close(out, torch.tensor([1.0, 11e-3]))


def test_no_byzantine_is_the_mean_of_all_rows() -> None:
    # Prepare: f = 0 -> theta = beta = n
    u = torch.tensor([[1.0, 2.0], [3.0, 5.0], [8.0, -1.0]])

    # Execute
    agg = bulyan_aggregation(u, num_byzantine=0)

    # Assert: (1 + 3 + 8) / 3 = 4, (2 + 5 - 1) / 3 = 2
    torch.testing.assert_close(agg.aggregate, torch.tensor([4.0, 2.0]))
    assert agg.accepted is not None
    assert agg.accepted.all()


def test_far_outliers_are_not_selected() -> None:
    # Prepare: 9 inliers in [0, 1]^3 and f = 2 outliers far apart from each other
    rng = np.random.default_rng(5)
    inliers = rng.uniform(size=(9, 3))
    x = np.vstack([[[1e5, 0.0, 0.0]], inliers, [[0.0, -1e5, 1e5]]])

    # Execute
    agg = bulyan_aggregation(torch.from_numpy(x), num_byzantine=2)

    # Assert: theta = 7 of the 9 inliers are kept, the result lies among the inliers
    assert agg.accepted is not None
    assert not bool(agg.accepted[0]) and not bool(agg.accepted[-1])
    assert int(agg.accepted.sum()) == 7
    out = agg.aggregate.numpy()
    assert np.all(out >= inliers.min(axis=0)) and np.all(out <= inliers.max(axis=0))


def test_float32_in_float32_out_and_input_untouched() -> None:
    # Prepare
    u = X7.clone()

    # Execute
    out = bulyan(u, num_byzantine=1)

    # Assert
    assert out.dtype == torch.float32
    assert torch.equal(u, X7)


# --------------------------------------------------------------------------- reference


@pytest.mark.parametrize(
    ("n", "f"),
    [(3, 0), (7, 1), (9, 1), (11, 2), (19, 4), (30, 3), (43, 10)],
    ids=lambda v: str(v),
)
def test_matches_naive_implementation(n: int, f: int) -> None:
    # Prepare: covers beta > 2f ((7,1), (9,1), (30,3)) and beta <= 2f ((11,2), (19,4), (43,10))
    rng = np.random.default_rng(n * 100 + f)
    x = rng.normal(size=(n, 9)) * rng.uniform(0.2, 5.0, size=(n, 1))
    ref_selected, ref = _naive_bulyan(x, f)

    # Execute
    agg = bulyan_aggregation(torch.from_numpy(x), num_byzantine=f)

    # Assert
    assert agg.accepted is not None
    assert agg.accepted.nonzero().flatten().tolist() == ref_selected
    np.testing.assert_allclose(agg.aggregate.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_matches_naive_implementation_float32_large_n() -> None:
    # Prepare: n = 63, f = 15 (4f + 3 = 63): theta = 33, beta = 3
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(63, 40)) * rng.uniform(0.5, 2.0, size=(63, 1))).astype(np.float32)
    ref_selected, ref = _naive_bulyan(x.astype(np.float64), 15)

    # Execute
    agg = bulyan_aggregation(torch.from_numpy(x), num_byzantine=15)

    # Assert
    assert agg.accepted is not None
    assert agg.accepted.nonzero().flatten().tolist() == ref_selected
    np.testing.assert_allclose(agg.aggregate.numpy(), ref, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- properties


@settings(max_examples=50, deadline=None)
@given(u=_generic(), data=st.data())
def test_value_is_row_permutation_invariant(u: torch.Tensor, data: st.DataObject) -> None:
    # Prepare
    n = u.shape[0]
    f = data.draw(st.integers(0, _max_f(n)))
    perm = torch.tensor(data.draw(st.permutations(range(n))))

    # Execute
    a = bulyan_aggregation(u, num_byzantine=f)
    b = bulyan_aggregation(u[perm], num_byzantine=f)

    # Assert: same rows selected, same value
    assert a.accepted is not None and b.accepted is not None
    assert torch.equal(a.accepted[perm], b.accepted)
    torch.testing.assert_close(a.aggregate, b.aggregate, rtol=1e-12, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(u=_generic(), data=st.data())
def test_matches_naive_implementation_on_random_shapes(
    u: torch.Tensor, data: st.DataObject
) -> None:
    # Prepare
    f = data.draw(st.integers(0, _max_f(u.shape[0])))
    ref_selected, ref = _naive_bulyan(u.numpy(), f)

    # Execute
    agg = bulyan_aggregation(u, num_byzantine=f)

    # Assert
    assert agg.accepted is not None
    assert agg.accepted.nonzero().flatten().tolist() == ref_selected
    np.testing.assert_allclose(agg.aggregate.numpy(), ref, rtol=1e-12, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(u=_matrices(), data=st.data())
def test_finite_keeps_theta_rows_and_stays_in_their_range(
    u: torch.Tensor, data: st.DataObject
) -> None:
    # Prepare
    n = u.shape[0]
    f = data.draw(st.integers(0, _max_f(n)))

    # Execute
    agg = bulyan_aggregation(u, num_byzantine=f)

    # Assert
    assert agg.accepted is not None
    assert int(agg.accepted.sum()) == n - 2 * f
    kept = u[agg.accepted]
    assert bool(torch.isfinite(agg.aggregate).all())
    assert bool((agg.aggregate >= kept.min(dim=0).values - 1e-9).all())
    assert bool((agg.aggregate <= kept.max(dim=0).values + 1e-9).all())


@settings(max_examples=40, deadline=None)
@given(u=_matrices(), data=st.data())
def test_identical_rows_give_that_row(u: torch.Tensor, data: st.DataObject) -> None:
    # Prepare
    n = u.shape[0]
    same = u[:1].expand(n, -1).clone()

    # Execute
    out = bulyan(same, num_byzantine=data.draw(st.integers(0, _max_f(n))))

    # Assert
    torch.testing.assert_close(out, u[0], rtol=1e-14, atol=0)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.zeros(0, 3), r"empty \(shape \(0, 3\)\)"),
        (torch.zeros(7), r"2-D matrix .*got shape \(7,\)"),
        (torch.cat([X7[:3], torch.tensor([[float("nan")]]), X7[4:]]), r"non-finite .*rows \[3\]"),
        (torch.cat([X7[:6], torch.tensor([[float("inf")]])]), r"non-finite .*rows \[6\]"),
    ],
    ids=["empty", "1-D", "nan row", "inf row"],
)
def test_bad_matrix(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        bulyan(updates, num_byzantine=0)


@pytest.mark.parametrize(
    ("f", "match"),
    [
        (2, r"num_byzantine = 2 is too large for n = 7 .*n >= 4f \+ 3 = 11 \(Bulyan"),
        (-1, r"num_byzantine must be >= 0, got -1"),
        (0.5, r"num_byzantine must be an integer, got 0.5"),
    ],
    ids=["too large", "negative", "float"],
)
def test_bad_num_byzantine(f: object, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        bulyan(X7, num_byzantine=f)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        bulyan_aggregation(X7, num_byzantine=f)  # type: ignore[arg-type]


def test_one_row_short_of_the_assumption() -> None:
    # Execute / Assert: n = 10 < 4 * 2 + 3 = 11
    with pytest.raises(ValueError, match=r"n = 10 .*n >= 4f \+ 3 = 11"):
        bulyan(torch.randn(10, 2), num_byzantine=2)
