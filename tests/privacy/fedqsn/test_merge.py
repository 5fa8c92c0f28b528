"""Tests for fedshield.privacy.fedqsn.merge (FedQSN proxy merging, arXiv 2508.18911)."""

from __future__ import annotations

import pytest
import torch

from fedshield.privacy.fedqsn.merge import merge_per_coordinate, merge_whole_state

T, F = True, False
NAN, INF = float("nan"), float("inf")

MASTER = torch.tensor([1.0, 2.0, 3.0, 0.1])
# coordinate 0: client 0 only; 1: clients 0, 1; 2: clients 1, 2; 3: nobody (garbage deltas)
RECEIVED = torch.tensor([[T, T, F, F], [F, T, T, F], [F, F, T, F]])
DELTAS = torch.tensor(
    [
        [0.5, 1.0, 99.0, 7.0],
        [99.0, 3.0, 1.0, NAN],
        [NAN, -5.0, -4.0, INF],
    ]
)


def test_merge_per_coordinate_weighted_hand_computed() -> None:
    w = torch.tensor([1.0, 3.0, 2.0])
    new = merge_per_coordinate(MASTER, DELTAS, RECEIVED, w)
    # 0: 1 + 0.5                        = 1.5
    # 1: 2 + (1 * 1 + 3 * 3) / (1 + 3) = 4.5
    # 2: 3 + (3 * 1 + 2 * -4) / (3 + 2) = 2.0
    # 3: nobody -> master exactly
    torch.testing.assert_close(new[:3], torch.tensor([1.5, 4.5, 2.0]), rtol=0, atol=1e-6)
    assert new[3].item() == MASTER[3].item()
    assert new.dtype == MASTER.dtype and new.shape == (4,)
    assert MASTER[3].item() == torch.tensor(0.1).item()  # inputs not modified


def test_merge_per_coordinate_default_weights() -> None:
    new = merge_per_coordinate(MASTER, DELTAS, RECEIVED)
    # 1: 2 + (1 + 3) / 2 = 4; 2: 3 + (1 - 4) / 2 = 1.5
    torch.testing.assert_close(new[:3], torch.tensor([1.5, 4.0, 1.5]), rtol=0, atol=1e-6)
    assert torch.equal(new[3], MASTER[3])


def test_merge_per_coordinate_zero_weight_clients_count_as_absent() -> None:
    # coordinate 0 is received only by client 0, whose weight is 0
    new = merge_per_coordinate(MASTER, DELTAS, RECEIVED, torch.tensor([0.0, 1.0, 1.0]))
    assert torch.equal(new[0], MASTER[0])
    torch.testing.assert_close(new[1:3], torch.tensor([5.0, 1.5]), rtol=0, atol=1e-6)


def test_merge_per_coordinate_differs_from_whole_state() -> None:
    # the reference mean of whole states drags a half-received coordinate towards 0
    master = torch.tensor([4.0])
    received = torch.tensor([[T], [F]])
    deltas = torch.tensor([[2.0], [0.0]])
    assert merge_per_coordinate(master, deltas, received).item() == 6.0
    states = torch.tensor([[6.0], [0.0]])  # client 1 holds the zero of the removed unit
    assert merge_whole_state(states).item() == 3.0


def test_merge_per_coordinate_float64_and_integer_weights() -> None:
    new = merge_per_coordinate(MASTER.double(), DELTAS.double(), RECEIVED, torch.tensor([1, 3, 2]))
    assert new.dtype == torch.float64
    torch.testing.assert_close(new[:3], torch.tensor([1.5, 4.5, 2.0], dtype=torch.float64))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"master": torch.zeros(2, 4)}, "master"),
        ({"master": torch.zeros(4, dtype=torch.long)}, "master"),
        ({"master": torch.tensor([0.0, NAN, 0.0, 0.0])}, "master"),
        ({"deltas": torch.zeros(3, 5)}, "deltas"),
        ({"deltas": torch.zeros(4)}, "deltas"),
        ({"deltas": torch.zeros(0, 4)}, "deltas"),
        ({"deltas": torch.zeros(3, 4, dtype=torch.long)}, "deltas"),
        ({"deltas": torch.full((3, 4), NAN)}, "deltas"),  # non-finite where received
        ({"received": RECEIVED.float()}, "received"),
        ({"received": RECEIVED[:2]}, "received"),
        ({"weights": torch.ones(2)}, "weights"),
        ({"weights": torch.tensor([1.0, -1.0, 1.0])}, "weights"),
        ({"weights": torch.zeros(3)}, "weights"),
        ({"weights": torch.tensor([1.0, NAN, 1.0])}, "weights"),
        ({"weights": torch.ones(3, dtype=torch.bool)}, "weights"),
    ],
)
def test_merge_per_coordinate_bad_arguments(kwargs: dict[str, torch.Tensor], name: str) -> None:
    args = {"master": MASTER, "deltas": DELTAS, "received": RECEIVED, "weights": None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        merge_per_coordinate(**args)  # type: ignore[arg-type]


def test_merge_whole_state_hand_computed() -> None:
    states = torch.tensor([[1.0, 2.0], [3.0, 0.0], [5.0, 4.0]])
    # weights (1, 1, 2): ((1 + 3 + 10) / 4, (2 + 0 + 8) / 4)
    out = merge_whole_state(states, torch.tensor([1.0, 1.0, 2.0]))
    torch.testing.assert_close(out, torch.tensor([3.5, 2.5]), rtol=0, atol=1e-6)
    torch.testing.assert_close(merge_whole_state(states), torch.tensor([3.0, 2.0]))


@pytest.mark.parametrize(
    ("states", "weights", "name"),
    [
        (torch.zeros(3), None, "states"),
        (torch.zeros(0, 2), None, "states"),
        (torch.zeros(3, 2, dtype=torch.long), None, "states"),
        (torch.tensor([[INF, 0.0]]), None, "states"),
        (torch.zeros(3, 2), torch.ones(2), "weights"),
        (torch.zeros(3, 2), torch.zeros(3), "weights"),
        (torch.zeros(3, 2), torch.tensor([1.0, -2.0, 1.0]), "weights"),
    ],
)
def test_merge_whole_state_bad_arguments(
    states: torch.Tensor, weights: torch.Tensor | None, name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        merge_whole_state(states, weights)
