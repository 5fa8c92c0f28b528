"""Tests for fedshield.attacks.poisoning.label_flip."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fedshield.attacks.poisoning.label_flip import flip_labels

Y = torch.tensor([0, 1, 2, 3, 9, 1])


def test_reverse_is_c_minus_one_minus_y() -> None:
    # Prepare / Execute: 10 classes, y -> 9 - y
    out = flip_labels(Y, num_classes=10, mode="reverse")

    # Assert
    assert out.tolist() == [9, 8, 7, 6, 0, 8]
    assert Y.tolist() == [0, 1, 2, 3, 9, 1]  # input untouched


def test_all_to_one_and_source_target() -> None:
    # Prepare / Execute
    all_one = flip_labels(Y, num_classes=10, mode="all_to_one", target=4)
    pair = flip_labels(Y, num_classes=10, mode="source_target", source=1, target=7)

    # Assert: only the 1s move in the pair mode
    assert all_one.tolist() == [4] * 6
    assert pair.tolist() == [0, 7, 2, 3, 9, 7]


@given(st.integers(2, 12), st.integers(0, 2**31 - 1))
def test_random_flip_never_keeps_the_label_and_is_seeded(c: int, seed: int) -> None:
    # Prepare
    y = torch.arange(200) % c

    # Execute
    a = flip_labels(y, num_classes=c, mode="random", generator=torch.Generator().manual_seed(seed))
    b = flip_labels(y, num_classes=c, mode="random", generator=torch.Generator().manual_seed(seed))

    # Assert
    assert bool((a != y).all())
    assert bool(((a >= 0) & (a < c)).all())
    assert torch.equal(a, b)


def test_random_flip_is_uniform_over_other_labels() -> None:
    # Prepare: 30k zeros, 4 classes -> labels 1, 2, 3 each with p = 1/3
    y = torch.zeros(30_000, dtype=torch.int64)

    # Execute
    out = flip_labels(y, num_classes=4, mode="random", generator=torch.Generator().manual_seed(0))

    # Assert: binomial std of a share is sqrt(p(1-p)/n) = 0.0027; allow 5 sigma
    share = torch.bincount(out, minlength=4).float() / len(y)
    assert share[0] == 0
    assert torch.allclose(share[1:], torch.full((3,), 1 / 3), atol=0.014)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "upside_down"}, "unknown label-flip mode"),
        ({"num_classes": 1}, "at least 2 classes"),
        ({"mode": "all_to_one", "target": 10}, "target label 10 is out of range"),
        ({"mode": "source_target", "source": -1}, "source label -1 is out of range"),
    ],
)
def test_bad_input_is_named(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        flip_labels(Y, **args)  # type: ignore[arg-type]


def test_labels_out_of_range_are_rejected() -> None:
    with pytest.raises(ValueError, match="labels must lie in"):
        flip_labels(torch.tensor([0, 12]), num_classes=10)
