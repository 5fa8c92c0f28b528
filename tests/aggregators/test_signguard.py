"""Tests for fedshield.aggregators.signguard (Xu et al., ICDCS 2022)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.aggregators.signguard import signguard, signguard_aggregation

# d = 4, coord_fraction = 1 -> every coordinate, no randomness
#   row  values        norm  norm/median  sign features (pos, zero, neg)
#   r0   [1, 1, 1, 1]    2     1            (1, 0, 0)
#   r1   [.5 x 4]        1     .5           (1, 0, 0)
#   r2   [1.5 x 4]       3     1.5          (1, 0, 0)
#   r3   [-1 x 4]        2     1            (0, 0, 1)   <- other sign cluster
#   r4   [10 x 4]       20    10            (1, 0, 0)   <- above 3 x median
# norms sorted 1, 2, 2, 3, 20: median 2 (both medians)
# bandwidth: distance to the 2nd neighbour (self included): 0 for the (1,0,0) points,
#   √2 for r3 -> √2 / 5 = .283; MeanShift: {r0, r1, r2, r4} and {r3}
# accepted = {r0, r1, r2}; clipped to norm 2: r0, r1 unchanged, r2 * 2/3 = [1 x 4]
# aggregate = ([1] + [.5] + [1]) / 3 = 2.5 / 3 per coordinate
U = torch.tensor(
    [
        [1.0, 1.0, 1.0, 1.0],
        [0.5, 0.5, 0.5, 0.5],
        [1.5, 1.5, 1.5, 1.5],
        [-1.0, -1.0, -1.0, -1.0],
        [10.0, 10.0, 10.0, 10.0],
    ]
)


def _honest_flipped_huge(seed: int = 0, d: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """8 honest rows (mean 1, std 1: ~84% positive), 2 sign-flipped copies of honest rows,
    1 honest row scaled by 10 and 1 scaled by 0.01."""
    g = torch.Generator().manual_seed(seed)
    honest = 1.0 + torch.randn(8, d, generator=g)
    flipped = -(1.0 + torch.randn(2, d, generator=g))
    huge = 10.0 * (1.0 + torch.randn(1, d, generator=g))
    tiny = 0.01 * (1.0 + torch.randn(1, d, generator=g))
    mask = torch.tensor([True] * 8 + [False] * 4)
    return torch.cat([honest, flipped, huge, tiny]), mask


def test_hand_computed() -> None:
    # Execute
    res = signguard_aggregation(U, coord_fraction=1.0)

    # Assert: see the table above U
    assert res.accepted is not None
    assert res.accepted.tolist() == [True, True, True, False, False]
    torch.testing.assert_close(res.aggregate, torch.full((4,), 2.5 / 3), rtol=0, atol=1e-6)
    assert res.weights is None


def test_flipped_signs_and_huge_or_tiny_norms_are_rejected() -> None:
    # Prepare
    u, honest = _honest_flipped_huge()
    norms = u.norm(dim=1)
    clip = float(norms.median())  # lower median of all 12 norms
    expected = torch.stack(
        [u[i] * min(1.0, clip / float(norms[i])) for i in range(12) if honest[i]]
    ).mean(dim=0)

    # Execute
    res = signguard_aggregation(u, generator=torch.Generator().manual_seed(0))

    # Assert
    assert res.accepted is not None
    assert res.accepted.tolist() == honest.tolist()
    torch.testing.assert_close(res.aggregate, expected, rtol=1e-5, atol=1e-6)
    assert float(res.aggregate.norm()) <= clip * (1 + 1e-6)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rejection_does_not_depend_on_the_coordinate_draw(seed: int) -> None:
    # Prepare
    u, honest = _honest_flipped_huge(seed=seed)

    # Execute
    res = signguard_aggregation(u, generator=torch.Generator().manual_seed(seed + 100))

    # Assert
    assert res.accepted is not None and res.accepted.tolist() == honest.tolist()


@pytest.mark.parametrize(
    ("last", "accepted", "expected"),
    [
        # norms 1, 2, 4, 8.5: filter median (2 + 4)/2 = 3 -> 8.5/3 = 2.83 <= 3 passes;
        # clip at the lower median 2: 1, 2, 2, 2 -> mean 7/4
        (8.5, [True, True, True, True], 1.75),
        # norms 1, 2, 4, 9.5: 9.5/3 = 3.17 > 3 is rejected; clipped 1, 2, 2 -> mean 5/3
        (9.5, [True, True, True, False], 5 / 3),
    ],
)
def test_even_n_medians(last: float, accepted: list[bool], expected: float) -> None:
    # Prepare: d = 1 (the sign subset is the one coordinate); every sign feature equal
    u = torch.tensor([[1.0], [2.0], [4.0], [last]])

    # Execute
    res = signguard_aggregation(u)

    # Assert
    assert res.accepted is not None and res.accepted.tolist() == accepted
    torch.testing.assert_close(res.aggregate, torch.tensor([expected]), rtol=0, atol=1e-6)


def test_norm_bounds_are_used() -> None:
    # Prepare: with U, bounds (0.6, 1.2) also drop r1 (.5) and r2 (1.5)
    # accepted = {r0}: aggregate [1, 1, 1, 1]

    # Execute
    res = signguard_aggregation(U, norm_bounds=(0.6, 1.2), coord_fraction=1.0)

    # Assert
    assert res.accepted is not None
    assert res.accepted.tolist() == [True, False, False, False, False]
    torch.testing.assert_close(res.aggregate, torch.ones(4), rtol=0, atol=1e-6)


def test_two_rows_with_different_signs_are_both_kept() -> None:
    # Prepare: features (1, 0, 0) and (.5, 0, .5); the quantile estimate is 0 for n = 2,
    # the fallback bandwidth is their distance, MeanShift merges them; norms equal
    u = torch.tensor([[1.0, 1.0], [1.0, -1.0]])

    # Execute
    res = signguard_aggregation(u)

    # Assert: mean([1, 1], [1, -1])
    assert res.accepted is not None and res.accepted.tolist() == [True, True]
    torch.testing.assert_close(res.aggregate, torch.tensor([1.0, 0.0]))


def test_all_zero_rows_give_zero_without_nan() -> None:
    # Execute
    res = signguard_aggregation(torch.zeros(4, 5))

    # Assert: the median norm is 0, every row is within [0, 0] and clipped to 0
    assert torch.equal(res.aggregate, torch.zeros(5))
    assert res.accepted is not None and bool(res.accepted.all())


def test_no_row_passing_both_filters_gives_zero_update() -> None:
    # Prepare: sign clusters {r0, r1, r2} (positive, the larger) and {r3, r4} (negative);
    # norms 10, 10, .05, 1, 1 -> median 1: the positive rows are out by norm (10 > 3,
    # .05 < .1) and the negative rows pass the norm filter only
    u = torch.tensor([[10.0], [10.0], [0.05], [-1.0], [-1.0]])

    # Execute
    res = signguard_aggregation(u)

    # Assert
    assert res.accepted is not None and not bool(res.accepted.any())
    assert torch.equal(res.aggregate, torch.zeros(1))


def test_same_seed_same_result() -> None:
    # Prepare
    u, _ = _honest_flipped_huge(seed=4, d=200)

    # Execute
    a = signguard_aggregation(u, generator=torch.Generator().manual_seed(5))
    b = signguard_aggregation(u, generator=torch.Generator().manual_seed(5))

    # Assert
    assert a.accepted is not None and b.accepted is not None
    assert torch.equal(a.accepted, b.accepted)
    assert torch.equal(a.aggregate, b.aggregate)


# --------------------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(
    row=st.lists(
        st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=32),
        min_size=1,
        max_size=12,
    ),
    n=st.integers(1, 8),
    seed=st.integers(0, 2**31),
)
def test_identical_rows_give_that_row(row: list[float], n: int, seed: int) -> None:
    # Prepare
    r = torch.tensor(row, dtype=torch.float64)

    # Execute
    res = signguard_aggregation(r.repeat(n, 1), generator=torch.Generator().manual_seed(seed))

    # Assert
    torch.testing.assert_close(res.aggregate, r, rtol=1e-12, atol=1e-12)
    assert res.accepted is not None and bool(res.accepted.all())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 10),
    d=st.integers(1, 30),
    seed=st.integers(0, 2**31),
    frac=st.sampled_from([0.1, 0.5, 1.0]),
)
def test_output_finite_and_within_median_norm(n: int, d: int, seed: int, frac: float) -> None:
    # Prepare: Gaussian rows with some exact zeros
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, d, generator=g) * (torch.rand(n, d, generator=g) > 0.2)

    # Execute
    res = signguard_aggregation(u, generator=g, coord_fraction=frac)

    # Assert: a mean of rows clipped to the (lower) median norm
    assert bool(torch.isfinite(res.aggregate).all())
    assert float(res.aggregate.norm()) <= float(u.norm(dim=1).median()) * (1 + 1e-5) + 1e-7
    assert res.accepted is not None and res.accepted.shape == (n,)


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
        signguard(updates)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm_bounds": (1.5, 3.0)}, r"0 <= low <= 1 <= high .* got \(1.5, 3.0\)"),
        ({"norm_bounds": (0.1, 0.9)}, r"0 <= low <= 1 <= high"),
        ({"norm_bounds": (-0.1, 3.0)}, r"0 <= low <= 1 <= high"),
        ({"norm_bounds": (0.1, float("inf"))}, r"0 <= low <= 1 <= high \(finite\)"),
        ({"norm_bounds": (0.1,)}, r"norm_bounds must be a pair of numbers"),
        ({"norm_bounds": 3.0}, r"norm_bounds must be a pair of numbers"),
        ({"coord_fraction": 0.0}, r"coord_fraction must be in \(0, 1\], got 0.0"),
        ({"coord_fraction": 1.5}, r"coord_fraction must be in \(0, 1\], got 1.5"),
        ({"coord_fraction": float("nan")}, r"coord_fraction must be in \(0, 1\]"),
    ],
    ids=["low>1", "high<1", "low<0", "inf", "short", "scalar", "frac 0", "frac>1", "frac nan"],
)
def test_bad_options(kwargs: dict[str, object], match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        signguard(U, **kwargs)  # type: ignore[arg-type]
