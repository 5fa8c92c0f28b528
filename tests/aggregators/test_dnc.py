"""Tests for fedshield.aggregators.dnc (Shejwalkar & Houmansadr, NDSS 2021)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.aggregators.dnc import dnc, dnc_aggregation

# mean = [2.75, 2.75]; centred rows [-2.75,-2.75], [-1.75,-2.75], [-2.75,-1.75], [7.25,7.25]
# sum of squared projections: on (1,1)/√2: 5.5²/2 + 2 * 4.5²/2 + 14.5²/2 = 140.5,
# on (1,-1)/√2: 0 + 1/2 + 1/2 + 0 = 1  -> v = (1,1)/√2
# scores <ū_i, v>² = 15.125, 10.125, 10.125, 105.125
U = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0]])


def _planted(seed: int = 0, n: int = 12, f: int = 3, d: int = 60) -> torch.Tensor:
    """Benign N(0, 1) rows; the first f rows shifted by 20 along one shared unit direction."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, d, generator=g)
    w = torch.randn(d, generator=g)
    u[:f] += 20.0 * w / w.norm()
    return u


def test_hand_computed_removes_the_outlier() -> None:
    # Execute: f = 1, d = 2 <= sub_dim: every coordinate, one selection
    res = dnc_aggregation(U, num_byzantine=1)

    # Assert: row 3 has the largest score; mean of the other three = [1/3, 1/3]
    assert res.accepted is not None and res.accepted.tolist() == [True, True, True, False]
    torch.testing.assert_close(res.aggregate, torch.tensor([1 / 3, 1 / 3]), rtol=0, atol=1e-6)
    assert res.weights is None


def test_filter_frac_removes_more_rows() -> None:
    # Execute: c = 2, f = 1 -> removes the 2 highest scores (rows 3 and 0)
    out = dnc(U, num_byzantine=1, filter_frac=2.0)

    # Assert: mean([1, 0], [0, 1])
    torch.testing.assert_close(out, torch.tensor([0.5, 0.5]), rtol=0, atol=1e-6)


def test_fractional_filter_is_floored() -> None:
    # Execute: c * f = 0.5 * 1 -> ⌊0.5⌋ = 0 rows removed
    res = dnc_aggregation(U, num_byzantine=1, filter_frac=0.5)

    # Assert
    assert res.accepted is not None and bool(res.accepted.all())
    torch.testing.assert_close(res.aggregate, U.mean(dim=0))


@pytest.mark.parametrize("sub_dim", [60, 20])
def test_planted_direction_rows_are_removed(sub_dim: int) -> None:
    # Prepare: 3 rows shifted 20 std along one direction (about 20/√3 within 20 of the 60
    # coordinates), 9 benign rows
    u = _planted()

    # Execute
    res = dnc_aggregation(
        u, num_byzantine=3, sub_dim=sub_dim, generator=torch.Generator().manual_seed(0)
    )

    # Assert: exactly the planted rows go; the aggregate is the benign mean
    assert res.accepted is not None
    assert res.accepted.tolist() == [False] * 3 + [True] * 9
    torch.testing.assert_close(res.aggregate, u[3:].mean(dim=0), rtol=1e-5, atol=1e-6)


def test_intersection_over_iterations() -> None:
    # Prepare: row c is the outlier on coordinate c only; with one random coordinate per
    # iteration each iteration removes one of them, and with 30 iterations every row is
    # removed at least once: the intersection is empty -> zero update
    u = 10.0 * torch.eye(3)

    # Execute
    res = dnc_aggregation(
        u, num_byzantine=1, sub_dim=1, num_iters=30, generator=torch.Generator().manual_seed(0)
    )
    one = dnc_aggregation(
        u, num_byzantine=1, sub_dim=1, num_iters=1, generator=torch.Generator().manual_seed(0)
    )

    # Assert
    assert res.accepted is not None and not bool(res.accepted.any())
    assert torch.equal(res.aggregate, torch.zeros(3))
    assert one.accepted is not None and int(one.accepted.sum()) == 2


def test_same_seed_same_result() -> None:
    # Prepare
    u = _planted(seed=1)

    # Execute
    a = dnc_aggregation(u, num_byzantine=3, sub_dim=5, generator=torch.Generator().manual_seed(9))
    b = dnc_aggregation(u, num_byzantine=3, sub_dim=5, generator=torch.Generator().manual_seed(9))

    # Assert
    assert a.accepted is not None and b.accepted is not None
    assert torch.equal(a.accepted, b.accepted)
    assert torch.equal(a.aggregate, b.aggregate)


def test_zero_byzantine_keeps_everything() -> None:
    # Execute
    res = dnc_aggregation(U, num_byzantine=0)

    # Assert
    assert res.accepted is not None and bool(res.accepted.all())
    torch.testing.assert_close(res.aggregate, U.mean(dim=0))


def test_float64_stays_float64() -> None:
    # Execute
    out = dnc(U.double(), num_byzantine=1)

    # Assert
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.tensor([1 / 3, 1 / 3], dtype=torch.float64))


# --------------------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(3, 9),
    d=st.integers(1, 12),
    sub_dim=st.integers(1, 12),
    seed=st.integers(0, 2**31),
    data=st.data(),
)
def test_permutation_equivariance(
    n: int, d: int, sub_dim: int, seed: int, data: st.DataObject
) -> None:
    # Prepare: Gaussian rows (no tied scores: n >= 3, with n = 2 the two centred rows are
    # opposite and always tie); the same coordinate seed for both calls
    f = data.draw(st.integers(0, n - 1))
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, d, generator=g, dtype=torch.float64)
    perm = torch.randperm(n, generator=g)

    # Execute
    a = dnc_aggregation(
        u, num_byzantine=f, sub_dim=sub_dim, generator=torch.Generator().manual_seed(seed)
    )
    b = dnc_aggregation(
        u[perm], num_byzantine=f, sub_dim=sub_dim, generator=torch.Generator().manual_seed(seed)
    )

    # Assert
    assert bool(torch.isfinite(a.aggregate).all())
    assert a.accepted is not None and b.accepted is not None
    assert torch.equal(a.accepted[perm], b.accepted)
    torch.testing.assert_close(a.aggregate, b.aggregate, rtol=1e-9, atol=1e-9)
    assert int(a.accepted.sum()) <= n - f


@settings(max_examples=40, deadline=None)
@given(
    row=st.lists(
        st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=32),
        min_size=1,
        max_size=8,
    ),
    n=st.integers(2, 8),
    seed=st.integers(0, 2**31),
)
def test_identical_rows_give_that_row(row: list[float], n: int, seed: int) -> None:
    # Prepare
    r = torch.tensor(row, dtype=torch.float64)

    # Execute
    res = dnc_aggregation(
        r.repeat(n, 1),
        num_byzantine=n - 1,
        sub_dim=3,
        generator=torch.Generator().manual_seed(seed),
    )

    # Assert: all scores tie; the lowest-index row is kept
    torch.testing.assert_close(res.aggregate, r, rtol=1e-12, atol=1e-12)
    assert res.accepted is not None and res.accepted.tolist() == [True] + [False] * (n - 1)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.zeros(0, 2), r"empty \(shape \(0, 2\)\)"),
        (torch.zeros(3), r"2-D matrix .*got shape \(3,\)"),
        (torch.tensor([[1.0, 0.0], [float("nan"), 0.0]]), r"non-finite .* rows \[1\]"),
    ],
    ids=["empty", "1-D", "nan row"],
)
def test_bad_updates(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        dnc(updates, num_byzantine=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"num_byzantine": 4},
            r"DnC: num_byzantine = 4 is too large for n = 4 updates: this rule needs "
            r"n > filter_frac \* num_byzantine = 1 \* 4",
        ),
        (
            {"num_byzantine": 2, "filter_frac": 2.0},
            r"DnC: num_byzantine = 2 is too large .* = 2 \* 2",
        ),
        ({"num_byzantine": -1}, r"DnC: num_byzantine must be >= 0, got -1"),
        ({"num_byzantine": 1.5}, r"DnC: num_byzantine must be an integer, got 1.5"),
        ({"num_byzantine": True}, r"DnC: num_byzantine must be an integer, got True"),
        ({"num_byzantine": 1, "sub_dim": 0}, r"sub_dim must be an integer >= 1, got 0"),
        ({"num_byzantine": 1, "num_iters": 0}, r"num_iters must be an integer >= 1, got 0"),
        ({"num_byzantine": 1, "filter_frac": -1.0}, r"filter_frac must be finite and >= 0"),
        ({"num_byzantine": 1, "filter_frac": float("nan")}, r"filter_frac must be finite"),
    ],
    ids=["f = n", "c f = n", "negative f", "float f", "bool f", "sub_dim", "iters", "c<0", "c nan"],
)
def test_bad_options(kwargs: dict[str, object], match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        dnc(U, **kwargs)  # type: ignore[arg-type]
