"""Tests for fedshield.aggregators._similarity (float64 Gram / cosine matrices)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity

from fedshield.aggregators._similarity import cosine_similarity64, gram64


def test_gram_hand_computed_with_shift() -> None:
    # Prepare: rows [1, 2] and [3, 4] shifted by [1, -1] -> [2, 1] and [4, 3]
    #   Gram = [[4+1, 8+3], [8+3, 16+9]] = [[5, 11], [11, 25]]
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])

    # Execute
    g = gram64(x, torch.tensor([1.0, -1.0]))

    # Assert
    assert g.dtype == torch.float64
    torch.testing.assert_close(g, torch.tensor([[5.0, 11.0], [11.0, 25.0]], dtype=torch.float64))


@pytest.mark.parametrize("block_elements", [1, 7, 1 << 24])
@pytest.mark.parametrize("seed", [0, 1])
def test_cosine_matches_sklearn_for_any_block_size(seed: int, block_elements: int) -> None:
    # Prepare: random rows, one of them zero (sklearn gives it cosine 0 with everything)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(6, 23)).astype(np.float32)
    x[2] = 0.0
    shift = rng.normal(size=23)

    # Execute
    plain = cosine_similarity64(torch.from_numpy(x), block_elements=block_elements)
    shifted = cosine_similarity64(
        torch.from_numpy(x), torch.from_numpy(shift), block_elements=block_elements
    )

    # Assert
    np.testing.assert_allclose(plain.numpy(), cosine_similarity(x.astype(np.float64)), atol=1e-12)
    np.testing.assert_allclose(
        shifted.numpy(), cosine_similarity(x.astype(np.float64) + shift), atol=1e-12
    )
    assert plain[2].abs().max() == 0  # the zero row, its own diagonal entry included
    assert torch.equal(plain, plain.T)


def test_small_angles_are_resolved_for_float32_input() -> None:
    # Prepare: rows G + u_i with ||u|| / ||G|| = 1e-4: 1 - cos is about 1e-8, below what a
    # float32 Gram matrix resolves (its rounding is about 6e-8)
    g = torch.Generator().manual_seed(0)
    x = 1e-4 * torch.randn(4, 1000, generator=g)
    shift = torch.randn(1000, generator=g)
    exact = 1 - cosine_similarity(x.double().numpy() + shift.double().numpy())

    # Execute
    ours = 1 - cosine_similarity64(x, shift)

    # Assert: relative accuracy of the tiny distances
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(ours.numpy()[off], exact[off], rtol=1e-5)
