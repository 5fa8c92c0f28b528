"""Tests for fedshield.attacks.poisoning.sign_flip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.attacks import sign_flip

U = torch.tensor([[1.0, -2.0], [0.0, 3.0]])


@st.composite
def _matrices(draw: st.DrawFn) -> torch.Tensor:
    n = draw(st.integers(1, 5))
    d = draw(st.integers(1, 6))
    val = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    rows = draw(st.lists(st.lists(val, min_size=d, max_size=d), min_size=n, max_size=n))
    return torch.tensor(rows, dtype=torch.float64)


def test_plain_sign_flip_hand_computed() -> None:
    # Execute
    out = sign_flip(U)

    # Assert
    torch.testing.assert_close(out, torch.tensor([[-1.0, 2.0], [0.0, -3.0]]), rtol=0, atol=0)


def test_scaled_sign_flip_hand_computed() -> None:
    # Execute
    out = sign_flip(U, scale=2.5)

    # Assert
    torch.testing.assert_close(out, torch.tensor([[-2.5, 5.0], [0.0, -7.5]]), rtol=0, atol=0)


def test_single_update_and_dtype() -> None:
    # Prepare
    u = torch.tensor([0.5, -4.0], dtype=torch.float64)

    # Execute
    out = sign_flip(u, scale=3.0)

    # Assert
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.tensor([-1.5, 12.0], dtype=torch.float64))


def test_input_not_modified() -> None:
    # Prepare
    u = U.clone()

    # Execute
    sign_flip(u, scale=2.0)

    # Assert
    assert torch.equal(u, U)


@settings(max_examples=40, deadline=None)
@given(u=_matrices(), scale=st.floats(1e-3, 1e3))
def test_matches_definition_and_is_finite(u: torch.Tensor, scale: float) -> None:
    # Execute
    out = sign_flip(u, scale=scale)

    # Assert
    assert out.shape == u.shape
    assert bool(torch.isfinite(out).all())
    np.testing.assert_allclose(out.numpy(), -scale * u.numpy(), rtol=1e-12, atol=0)
    torch.testing.assert_close(sign_flip(sign_flip(u)), u, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": 0.0}, r"scale must be > 0, got 0.0"),
        ({"scale": -1.0}, r"scale must be > 0, got -1.0"),
        ({"scale": float("nan")}, r"scale must be finite, got nan"),
        ({"scale": float("inf")}, r"scale must be finite, got inf"),
        ({"scale": True}, r"scale must be a real number, got True"),
    ],
    ids=["zero", "negative", "nan", "inf", "bool"],
)
def test_bad_scale(kwargs: dict[str, float], match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        sign_flip(U, **kwargs)


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.zeros(0, 3), r"empty \(shape \(0, 3\)\)"),
        (torch.zeros(0), r"updates is empty"),
        (torch.zeros(2, 2, 2), r"1-D update .* or a 2-D matrix .*got shape \(2, 2, 2\)"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), r"non-finite .* rows \[0\]"),
        (torch.tensor([1.0, float("inf")]), r"updates has non-finite"),
        (torch.ones(2, 2, dtype=torch.int64), r"floating point, got dtype torch.int64"),
        (np.ones((2, 2)), r"torch.Tensor, got ndarray"),
    ],
    ids=["empty matrix", "empty vector", "3-D", "nan row", "inf vector", "integer", "numpy"],
)
def test_bad_updates(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        sign_flip(updates)
