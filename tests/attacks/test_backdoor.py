"""Tests for fedshield.attacks.poisoning.backdoor (BadNets, blended, DBA, ASR)."""

from __future__ import annotations

import pytest
import torch

from fedshield.attacks.poisoning.backdoor import (
    attack_success_rate,
    badnets,
    blend_pattern,
    blended,
    dba,
)

X = torch.zeros(2, 1, 28, 28)


def test_badnets_stamps_the_bottom_right_square_only() -> None:
    # Execute: 4x4 patch with a 1-pixel margin -> rows/cols 23..26
    out = badnets(X, size=4, value=2.5)

    # Assert
    assert torch.equal(out[:, :, 23:27, 23:27], torch.full((2, 1, 4, 4), 2.5))
    assert float(out.sum()) == 2 * 16 * 2.5
    assert float(X.abs().sum()) == 0.0  # input untouched


def test_blended_is_convex_combination() -> None:
    # Prepare
    x = torch.ones(3, 1, 4, 4)
    pattern = torch.full((1, 4, 4), 5.0)

    # Execute: 0.8 * 1 + 0.2 * 5 = 1.8
    out = blended(x, pattern=pattern, alpha=0.2)

    # Assert
    torch.testing.assert_close(out, torch.full_like(x, 1.8))


def test_blend_pattern_is_seeded_and_in_range() -> None:
    a = blend_pattern((1, 8, 8), low=-1.0, high=2.0, seed=3)
    b = blend_pattern((1, 8, 8), low=-1.0, high=2.0, seed=3)
    assert torch.equal(a, b)
    assert float(a.min()) >= -1.0 and float(a.max()) <= 2.0


def test_dba_pieces_partition_the_full_trigger() -> None:
    # Prepare: DBA (AI-secure/DBA): 4 pieces of 1 x 6 at rows 0 and 4, cols 0-5 and 9-14
    pieces = [dba(X, piece=k, value=1.0) for k in range(4)]

    # Execute
    full = dba(X, value=1.0)

    # Assert: each piece has 6 pixels, pieces are disjoint and their union is the trigger
    for p in pieces:
        assert float(p[0].sum()) == 6.0
    assert torch.equal(sum(pieces), full)  # type: ignore[arg-type]
    assert full[0, 0, 0, :6].tolist() == [1.0] * 6
    assert full[0, 0, 4, 9:15].tolist() == [1.0] * 6
    assert float(full[0, 0, 0, 6:9].sum()) == 0.0  # the gap of 3 pixels


def test_triggers_need_images() -> None:
    with pytest.raises(ValueError, match="image inputs"):
        badnets(torch.zeros(5, 64))
    with pytest.raises(ValueError, match=r"at least 5 x 15"):
        dba(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"piece must be in 0\.\.3"):
        dba(X, piece=4)


def test_attack_success_rate_ignores_target_class_inputs() -> None:
    # Prepare: target 0; inputs with true label 0 do not count.
    # non-target inputs: labels [1, 2, 3, 4], predictions [0, 0, 3, 4] -> 2 / 4
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    pred = torch.tensor([0, 0, 0, 3, 4, 5])

    # Execute / Assert
    assert attack_success_rate(pred, y, 0) == 0.5
    with pytest.raises(ValueError, match="undefined"):
        attack_success_rate(pred, torch.zeros(6, dtype=torch.int64), 0)
