"""Tests for fedshield.aggregators.fltrust (Cao et al., NDSS 2021)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.aggregators.fltrust import fltrust, fltrust_aggregation

# g0 = [2, 0], ||g0|| = 2
#   u0 = [ 2, 0]: cos = 1            TS = 1    ĝ0 = 2/2 * [2, 0] = [2, 0]
#   u1 = [ 3, 4]: cos = 6/(5*2) = .6 TS = .6   ĝ1 = 2/5 * [3, 4] = [1.2, 1.6]
#   u2 = [-1, 0]: cos = -1           TS = 0
#   g = (1*[2, 0] + .6*[1.2, 1.6]) / 1.6 = [2.72, 0.96] / 1.6 = [1.7, 0.6]
U = torch.tensor([[2.0, 0.0], [3.0, 4.0], [-1.0, 0.0]])
G0 = torch.tensor([2.0, 0.0])


@st.composite
def _rows_and_server(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    n = draw(st.integers(1, 7))
    d = draw(st.integers(1, 6))
    val = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=32)
    rows = draw(st.lists(st.lists(val, min_size=d, max_size=d), min_size=n, max_size=n))
    g0 = draw(st.lists(val, min_size=d, max_size=d).filter(lambda v: any(abs(x) > 1e-3 for x in v)))
    return torch.tensor(rows, dtype=torch.float64), torch.tensor(g0, dtype=torch.float64)


def _numpy_fltrust(u: np.ndarray, g0: np.ndarray) -> np.ndarray:
    """Independent loop implementation of the paper's formula."""
    num = np.zeros_like(g0)
    den = 0.0
    for row in u:
        norm = np.linalg.norm(row)
        if norm == 0:
            continue
        ts = max(0.0, float(row @ g0) / (norm * np.linalg.norm(g0)))
        num += ts * (np.linalg.norm(g0) / norm) * row
        den += ts
    return num / den if den > 0 else np.zeros_like(g0)


def test_hand_computed() -> None:
    # Execute
    res = fltrust_aggregation(U, server_update=G0)

    # Assert: see the arithmetic above U
    torch.testing.assert_close(res.aggregate, torch.tensor([1.7, 0.6]), rtol=0, atol=1e-6)
    assert res.weights is not None
    torch.testing.assert_close(res.weights, torch.tensor([1.0, 0.6, 0.0]), rtol=0, atol=1e-6)
    assert res.accepted is not None
    assert res.accepted.tolist() == [True, True, False]
    torch.testing.assert_close(fltrust(U, server_update=G0), res.aggregate, rtol=0, atol=0)


def test_anti_aligned_row_has_no_influence() -> None:
    # Prepare: make the anti-aligned row 1000 times larger
    u = U.clone()
    u[2] = torch.tensor([-1000.0, 500.0])

    # Execute
    out = fltrust(u, server_update=G0)

    # Assert: cos([-1000, 500], [2, 0]) < 0, so TS = 0 and the result is unchanged
    torch.testing.assert_close(out, torch.tensor([1.7, 0.6]), rtol=0, atol=1e-6)


def test_every_row_anti_aligned_gives_zero_update() -> None:
    # Prepare: cos = -1 and cos = 0 -> every TS = 0
    u = torch.tensor([[-1.0, 0.0], [0.0, 3.0]])

    # Execute
    res = fltrust_aggregation(u, server_update=G0)

    # Assert
    assert torch.equal(res.aggregate, torch.zeros(2))
    assert res.accepted is not None and not bool(res.accepted.any())
    assert res.weights is not None and torch.equal(res.weights, torch.zeros(2))


def test_zero_row_gets_trust_zero_without_nan() -> None:
    # Prepare: rows [0, 0] and [1, 0]; TS = [0, 1]; ĝ1 = 2/1 * [1, 0] = [2, 0]
    u = torch.tensor([[0.0, 0.0], [1.0, 0.0]])

    # Execute
    res = fltrust_aggregation(u, server_update=G0)

    # Assert
    torch.testing.assert_close(res.aggregate, torch.tensor([2.0, 0.0]), rtol=0, atol=0)
    assert res.weights is not None and res.weights.tolist() == [0.0, 1.0]


def test_large_norm_is_rescaled_to_server_norm() -> None:
    # Prepare: the same direction at norms 1 and 1e6; both rescaled to ||g0|| = 2
    u = torch.tensor([[0.6, 0.8], [0.6e6, 0.8e6]])
    g0 = torch.tensor([0.0, 2.0])

    # Execute
    out = fltrust(u, server_update=g0)

    # Assert: both ĝ = 2 * [0.6, 0.8] = [1.2, 1.6], TS equal -> the mean is [1.2, 1.6]
    torch.testing.assert_close(out, torch.tensor([1.2, 1.6]), rtol=1e-6, atol=1e-6)


def test_float64_stays_float64_and_server_update_is_cast() -> None:
    # Execute
    out = fltrust(U.double(), server_update=G0)  # float32 g0 with float64 updates

    # Assert
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.tensor([1.7, 0.6], dtype=torch.float64))


def test_inputs_not_modified() -> None:
    # Prepare
    u, g0 = U.clone(), G0.clone()

    # Execute
    fltrust(u, server_update=g0)

    # Assert
    assert torch.equal(u, U)
    assert torch.equal(g0, G0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_loop(seed: int) -> None:
    # Prepare: random rows, some pointing away from g0
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(9, 20))
    g0 = rng.normal(size=20)

    # Execute
    ours = fltrust(torch.from_numpy(u), server_update=torch.from_numpy(g0))

    # Assert
    np.testing.assert_allclose(ours.numpy(), _numpy_fltrust(u, g0), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(data=_rows_and_server(), seed=st.integers(0, 2**31))
def test_permutation_invariance(data: tuple[torch.Tensor, torch.Tensor], seed: int) -> None:
    # Prepare
    u, g0 = data
    perm = torch.randperm(u.shape[0], generator=torch.Generator().manual_seed(seed))

    # Execute
    a = fltrust_aggregation(u, server_update=g0)
    b = fltrust_aggregation(u[perm], server_update=g0)

    # Assert
    assert torch.isfinite(a.aggregate).all()
    torch.testing.assert_close(a.aggregate, b.aggregate, rtol=1e-9, atol=1e-9)
    assert a.accepted is not None and b.accepted is not None
    assert torch.equal(a.accepted[perm], b.accepted)
    assert a.weights is not None and b.weights is not None
    torch.testing.assert_close(a.weights[perm], b.weights, rtol=0, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(data=_rows_and_server())
def test_norm_bounded_by_server_norm(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    # Prepare
    u, g0 = data

    # Execute
    res = fltrust_aggregation(u, server_update=g0)

    # Assert: a convex combination of vectors of norm ||g0||; TS in [0, 1]
    assert float(res.aggregate.norm()) <= float(g0.norm()) * (1 + 1e-9)
    assert res.weights is not None
    assert bool(((res.weights >= 0) & (res.weights <= 1)).all())
    assert res.accepted is not None
    assert torch.equal(res.accepted, res.weights > 0)


@settings(max_examples=60, deadline=None)
@given(data=_rows_and_server(), n=st.integers(1, 6), scale=st.floats(1e-3, 1e3))
def test_rows_equal_to_server_update_give_it_back(
    data: tuple[torch.Tensor, torch.Tensor], n: int, scale: float
) -> None:
    # Prepare: every client sends g0 scaled by the same positive factor
    _, g0 = data
    u = (scale * g0).repeat(n, 1)

    # Execute
    res = fltrust_aggregation(u, server_update=g0)

    # Assert: TS = 1 for all, ĝ_i = g0
    torch.testing.assert_close(res.aggregate, g0, rtol=1e-9, atol=1e-9)
    assert res.accepted is not None and bool(res.accepted.all())


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.zeros(0, 2), r"empty \(shape \(0, 2\)\)"),
        (torch.zeros(2), r"2-D matrix .*got shape \(2,\)"),
        (torch.tensor([[1.0, float("nan")], [1.0, 0.0]]), r"non-finite .* rows \[0\]"),
        (torch.tensor([[1.0, 0.0], [float("inf"), 0.0]]), r"non-finite .* rows \[1\]"),
    ],
    ids=["empty", "1-D", "nan row", "inf row"],
)
def test_bad_updates(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        fltrust(updates, server_update=G0)


@pytest.mark.parametrize(
    ("server_update", "match"),
    [
        (torch.ones(3), r"server_update must have shape \(2,\) .* got \(3,\)"),
        (torch.ones(1), r"server_update must have shape \(2,\) .* got \(1,\)"),
        (torch.ones(1, 2), r"server_update must have shape \(2,\) .* got \(1, 2\)"),
        (torch.tensor([1.0, float("nan")]), r"server_update has non-finite"),
        (torch.tensor([float("inf"), 0.0]), r"server_update has non-finite"),
        (torch.zeros(2), r"server_update has norm 0"),
        (torch.tensor([1, 0]), r"server_update must be floating point"),
        (np.ones(2), r"server_update must be a torch.Tensor, got ndarray"),
    ],
    ids=["long", "short", "2-D", "nan", "inf", "zero", "integer", "numpy"],
)
def test_bad_server_update(server_update: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        fltrust_aggregation(U, server_update=server_update)
