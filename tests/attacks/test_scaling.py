"""Tests for fedshield.attacks.poisoning.scaling (boosting, model replacement, projection)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.attacks import model_replacement_factor, project_norm, scale_update


@st.composite
def _matrices(draw: st.DrawFn) -> torch.Tensor:
    n = draw(st.integers(1, 5))
    d = draw(st.integers(1, 6))
    val = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
    rows = draw(st.lists(st.lists(val, min_size=d, max_size=d), min_size=n, max_size=n))
    return torch.tensor(rows, dtype=torch.float64)


# --------------------------------------------------------------------------- scale_update


def test_scale_update_hand_computed() -> None:
    # Prepare
    u = torch.tensor([[1.0, -2.0], [0.0, 3.0]])

    # Execute
    out = scale_update(u, factor=2.5)

    # Assert
    torch.testing.assert_close(out, torch.tensor([[2.5, -5.0], [0.0, 7.5]]), rtol=0, atol=0)
    torch.testing.assert_close(scale_update(u[0], factor=4.0), torch.tensor([4.0, -8.0]))


def test_model_replacement_factor_published() -> None:
    # Execute / Assert: DBA's scale_weights_poison = n / eta = 10 / 0.1 = 100 (spec, section 5)
    assert model_replacement_factor(10, 0.1) == pytest.approx(100.0, rel=1e-15)
    assert model_replacement_factor(10) == 10.0
    assert model_replacement_factor(30, server_lr=2.0) == 15.0


def test_model_replacement_cancels_averaging() -> None:
    # Prepare: FedAvg with eta = 1 over n = 4 clients; the benign updates cancel exactly
    target = torch.tensor([1.0, -2.0, 0.5])
    benign = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 3.0, -3.0]])
    benign[2] = -benign[:2].sum(0)  # sum of the benign rows = 0

    # Execute
    boosted = scale_update(target, factor=model_replacement_factor(4, 1.0))
    step = torch.cat([benign, boosted.unsqueeze(0)]).mean(dim=0)

    # Assert: the global step equals the attacker's update
    torch.testing.assert_close(step, target)


@pytest.mark.parametrize(
    ("factor", "match"),
    [(0.0, r"factor must be > 0"), (-2.0, r"factor must be > 0"), (float("nan"), r"finite")],
    ids=["zero", "negative", "nan"],
)
def test_scale_update_bad_factor(factor: float, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        scale_update(torch.ones(2, 2), factor=factor)


def test_scale_update_bad_updates() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=r"non-finite .* rows \[1\]"):
        scale_update(torch.tensor([[1.0, 2.0], [float("inf"), 0.0]]), factor=2.0)
    with pytest.raises(ValueError, match=r"empty"):
        scale_update(torch.zeros(0, 4), factor=2.0)


@pytest.mark.parametrize(
    ("n", "lr", "match"),
    [
        (0, 1.0, r"num_clients must be >= 1, got 0"),
        (10, 0.0, r"server_lr must be > 0, got 0.0"),
        (10, float("inf"), r"server_lr must be finite"),
        (2.5, 1.0, r"num_clients must be an integer"),
    ],
    ids=["no clients", "zero lr", "inf lr", "float n"],
)
def test_model_replacement_factor_bad(n: int, lr: float, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        model_replacement_factor(n, lr)


# --------------------------------------------------------------------------- project_norm


def test_project_norm_hand_computed() -> None:
    # Prepare: norms 5, 0.5, 0
    u = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]], dtype=torch.float64)

    # Execute
    out = project_norm(u, max_norm=1.0)

    # Assert
    expected = torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)
    assert torch.equal(out[1:], u[1:])  # inside rows untouched, bit for bit
    assert float(torch.linalg.vector_norm(out[0])) == pytest.approx(1.0, abs=1e-15)


def test_project_norm_single_update_and_boundary() -> None:
    # Prepare
    u = torch.tensor([6.0, 8.0])

    # Execute / Assert: on the sphere stays, outside is capped
    torch.testing.assert_close(project_norm(u, max_norm=10.0), u, rtol=0, atol=0)
    torch.testing.assert_close(project_norm(u, max_norm=5.0), torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(project_norm(u, max_norm=0.0), torch.zeros(2), rtol=0, atol=0)


def test_project_norm_row_whose_square_overflows() -> None:
    # Prepare: ||(3e20, 4e20)||^2 = 2.5e41 overflows float32
    u = torch.tensor([[3e20, 4e20], [1.0, 0.0]])

    # Execute
    out = project_norm(u, max_norm=2.0)

    # Assert
    torch.testing.assert_close(out, torch.tensor([[1.2, 1.6], [1.0, 0.0]]))


@settings(max_examples=60, deadline=None)
@given(u=_matrices(), r=st.floats(1e-3, 1e3))
def test_project_norm_properties(u: torch.Tensor, r: float) -> None:
    # Execute
    out = project_norm(u, max_norm=r)

    # Assert
    norms_in = np.linalg.norm(u.numpy(), axis=1)
    norms_out = np.linalg.norm(out.numpy(), axis=1)
    inside = norms_in <= r
    assert bool(torch.isfinite(out).all())
    assert np.all(norms_out <= r * (1 + 1e-12))
    np.testing.assert_array_equal(out.numpy()[inside], u.numpy()[inside])
    np.testing.assert_allclose(norms_out[~inside], r, rtol=1e-12)
    # same direction: out = t * u with t in (0, 1]
    np.testing.assert_allclose(
        out.numpy()[~inside], u.numpy()[~inside] * (r / norms_in[~inside])[:, None], rtol=1e-12
    )


@pytest.mark.parametrize(
    ("updates", "max_norm", "match"),
    [
        (torch.ones(2, 2), -1.0, r"max_norm must be >= 0, got -1.0"),
        (torch.ones(2, 2), float("nan"), r"max_norm must be finite"),
        (torch.ones(2, 2, 2), 1.0, r"got shape \(2, 2, 2\)"),
        (torch.tensor([float("nan"), 1.0]), 1.0, r"non-finite"),
        (torch.zeros(0), 1.0, r"empty"),
    ],
    ids=["negative", "nan radius", "3-D", "nan entry", "empty"],
)
def test_project_norm_bad(updates: torch.Tensor, max_norm: float, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        project_norm(updates, max_norm=max_norm)
