"""Tests for fedshield.attacks.poisoning.sybil."""

from __future__ import annotations

import pytest
import torch

from fedshield.attacks import sybil


def test_copies_hand_computed() -> None:
    # Prepare
    u = torch.tensor([1.0, -2.0, 3.5])

    # Execute
    out = sybil(u, 4)

    # Assert
    assert out.shape == (4, 3)
    torch.testing.assert_close(out, torch.tensor([[1.0, -2.0, 3.5]] * 4), rtol=0, atol=0)


def test_rows_have_their_own_memory() -> None:
    # Prepare
    u = torch.tensor([1.0, 2.0], dtype=torch.float64)

    # Execute
    out = sybil(u, 3)
    out[0, 0] = 100.0

    # Assert: neither the other clones nor the source change
    assert out.dtype == torch.float64
    assert out[1, 0].item() == 1.0
    assert out[2, 0].item() == 1.0
    assert u[0].item() == 1.0


def test_zero_clones_is_empty() -> None:
    # Execute
    out = sybil(torch.ones(5), 0)

    # Assert
    assert out.shape == (0, 5)


@pytest.mark.parametrize(
    ("update", "num", "match"),
    [
        (torch.ones(2, 3), 2, r"update must be a 1-D update .*got shape \(2, 3\)"),
        (torch.tensor([1.0, float("nan")]), 2, r"update has non-finite"),
        (torch.zeros(0), 2, r"update is empty"),
        (torch.ones(3, dtype=torch.int32), 2, r"update must be floating point"),
        (torch.ones(3), -1, r"num must be >= 0, got -1"),
        (torch.ones(3), 2.0, r"num must be an integer, got 2.0"),
    ],
    ids=["2-D", "nan", "empty", "integer", "negative num", "float num"],
)
def test_bad_arguments(update: torch.Tensor, num: int, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        sybil(update, num)
