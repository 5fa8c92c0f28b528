"""Tests for fedshield.aggregators.mean (FedAvg's weighted mean) and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield import aggregators
from fedshield.aggregators import AGGREGATORS, AggregationContext, mean
from fedshield.config.schema import DefenseConfig

U = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])


@st.composite
def _updates_and_weights(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    n = draw(st.integers(1, 6))
    d = draw(st.integers(1, 5))
    val = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=32)
    rows = draw(st.lists(st.lists(val, min_size=d, max_size=d), min_size=n, max_size=n))
    w = draw(st.lists(st.floats(0.0625, 100, width=32), min_size=n, max_size=n))
    return torch.tensor(rows, dtype=torch.float64), torch.tensor(w, dtype=torch.float64)


def test_weighted_mean_hand_computed() -> None:
    # Prepare: (1*[1,2] + 2*[3,4] + 1*[5,6]) / 4 = [12, 16] / 4
    w = torch.tensor([1.0, 2.0, 1.0])

    # Execute
    out = mean(U, w)

    # Assert
    torch.testing.assert_close(out, torch.tensor([3.0, 4.0]), rtol=0, atol=1e-6)


def test_weighted_mean_integer_sample_counts() -> None:
    # Prepare: (10*[1,2] + 0*[3,4] + 30*[5,6]) / 40 = [160, 200] / 40
    w = torch.tensor([10, 0, 30])

    # Execute
    out = mean(U, w)

    # Assert
    torch.testing.assert_close(out, torch.tensor([4.0, 5.0]), rtol=0, atol=1e-6)
    assert out.dtype == torch.float32


def test_uniform_mean() -> None:
    # Execute
    out = mean(U)

    # Assert
    torch.testing.assert_close(out, torch.tensor([3.0, 4.0]), rtol=0, atol=0)
    assert out.shape == (2,)


def test_single_row_is_returned() -> None:
    # Execute
    out = mean(U[1:2], torch.tensor([5.0]))

    # Assert
    torch.testing.assert_close(out, torch.tensor([3.0, 4.0]), rtol=0, atol=0)


def test_inputs_not_modified() -> None:
    # Prepare
    u, w = U.clone(), torch.tensor([1.0, 2.0, 1.0])

    # Execute
    mean(u, w)

    # Assert
    assert torch.equal(u, U)
    assert torch.equal(w, torch.tensor([1.0, 2.0, 1.0]))


def test_float64_stays_float64() -> None:
    # Execute
    out = mean(U.double(), torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))

    # Assert
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.tensor([3.5, 4.5], dtype=torch.float64))


@settings(max_examples=60, deadline=None)
@given(data=_updates_and_weights(), scale=st.floats(1e-3, 1e3))
def test_weights_scale_invariance(data: tuple[torch.Tensor, torch.Tensor], scale: float) -> None:
    # Prepare
    u, w = data

    # Execute
    a = mean(u, w)
    b = mean(u, w * scale)

    # Assert
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(data=_updates_and_weights(), seed=st.integers(0, 2**31))
def test_permutation_invariance(data: tuple[torch.Tensor, torch.Tensor], seed: int) -> None:
    # Prepare
    u, w = data
    perm = torch.randperm(u.shape[0], generator=torch.Generator().manual_seed(seed))

    # Execute
    a = mean(u, w)
    b = mean(u[perm], w[perm])
    c = mean(u)
    d = mean(u[perm])

    # Assert
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(c, d, rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(data=_updates_and_weights())
def test_result_lies_within_the_rows(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    # Prepare
    u, w = data

    # Execute
    out = mean(u, w)

    # Assert: a convex combination stays inside the coordinate-wise range
    assert bool((out >= u.min(dim=0).values - 1e-9).all())
    assert bool((out <= u.max(dim=0).values + 1e-9).all())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_average(seed: int) -> None:
    # Prepare
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(17, 33)).astype(np.float32)
    w = rng.integers(1, 600, size=17).astype(np.float32)

    # Execute
    ours = mean(torch.from_numpy(u), torch.from_numpy(w))
    ours_uniform = mean(torch.from_numpy(u))

    # Assert: float32 accumulation of 17 terms, tolerance well above rounding
    np.testing.assert_allclose(ours.numpy(), np.average(u, axis=0, weights=w), rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours_uniform.numpy(), np.average(u, axis=0), rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.zeros(0, 3), r"empty \(shape \(0, 3\)\)"),
        (torch.zeros(3, 0), r"empty \(shape \(3, 0\)\)"),
        (torch.zeros(3), r"2-D matrix .*got shape \(3,\)"),
        (torch.zeros(2, 2, 2), r"2-D matrix .*got shape \(2, 2, 2\)"),
        (torch.ones(2, 2, dtype=torch.int64), r"floating point, got dtype torch.int64"),
        (np.ones((2, 2)), r"torch.Tensor, got ndarray"),
    ],
    ids=["no rows", "no columns", "1-D", "3-D", "integer", "numpy"],
)
def test_bad_matrix(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        mean(updates)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_row_is_named(bad: float) -> None:
    # Prepare
    u = U.clone()
    u[1, 0] = bad

    # Execute / Assert
    with pytest.raises(ValueError, match=r"non-finite .* rows \[1\]"):
        mean(u)
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        mean(u, torch.ones(3))


def test_several_non_finite_rows_are_all_named() -> None:
    # Prepare
    u = torch.zeros(4, 2)
    u[0, 1] = float("nan")
    u[3, 0] = float("inf")

    # Execute / Assert
    with pytest.raises(ValueError, match=r"rows \[0, 3\]"):
        mean(u)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (torch.ones(2), r"shape \(3,\), got \(2,\)"),
        (torch.ones(4), r"shape \(3,\), got \(4,\)"),
        (torch.ones(3, 1), r"shape \(3,\), got \(3, 1\)"),
        (torch.tensor([1.0, -1.0, 2.0]), r">= 0, got \[1.0, -1.0, 2.0\]"),
        (torch.tensor([1.0, float("nan"), 2.0]), r"finite and >= 0"),
        (torch.tensor([1.0, float("inf"), 2.0]), r"finite and >= 0"),
        (torch.zeros(3), r"weights sum to zero"),
    ],
    ids=["short", "long", "2-D", "negative", "nan", "inf", "all zero"],
)
def test_bad_weights(weights: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        mean(U, weights)


# --------------------------------------------------------------------------- registry


def test_registry_mean_rule_is_the_weighted_mean() -> None:
    # Prepare
    w = torch.tensor([1.0, 2.0, 1.0])
    ctx = AggregationContext(
        num_byzantine=0,
        defense=DefenseConfig(),
        generator=torch.Generator(),
        global_params=torch.zeros(2),
        client_ids=torch.arange(3),
    )

    # Execute
    out = aggregators.get("mean")(U, w, ctx)

    # Assert: the rule adapter runs the pure function and keeps every row
    assert AGGREGATORS["mean"] is aggregators.get("mean")
    torch.testing.assert_close(out.aggregate, mean(U, w))
    assert out.accepted is None


def test_registry_names_the_whole_catalogue() -> None:
    assert set(AGGREGATORS) == {
        "mean", "krum", "multi_krum", "median", "trimmed_mean", "bulyan",
        "geometric_median", "centered_clipping", "norm_bound", "fltrust", "pda_pam", "foolsgold",
        "flame", "dnc", "signguard",
    }  # fmt: skip


def test_unknown_aggregator_lists_known_names() -> None:
    # Execute / Assert
    known = ", ".join(sorted(AGGREGATORS))
    with pytest.raises(ValueError, match=rf"'krumm'.*known aggregators are {known}$"):
        aggregators.get("krumm")
