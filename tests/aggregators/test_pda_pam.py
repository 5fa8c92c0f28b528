"""Tests for fedshield.aggregators.pda_pam (FedRE's PDA-PAM, Xiao et al. ICMR 2025)."""

from __future__ import annotations

import math

import pytest
import torch

from fedshield.aggregators.pda_pam import layer_sizes, pda_pam, pda_pam_weights

# 3 clients x 2 layers.
#   layer 0: S = (0, ln 2, ln 3) -> exp = (1, 2, 3) -> alpha = (1/6, 2/6, 3/6)
#            1/alpha = (6, 3, 2), sum 11
#            literal    c = 1/(3 alpha) = (2, 1, 2/3)
#            normalized c = (6, 3, 2) / 11
#   layer 1: S = (1, 1, 1) -> alpha = 1/3 -> literal c = 1 (a sum), normalized c = 1/3 (FedAvg)
S = torch.tensor([[0.0, 1.0], [math.log(2.0), 1.0], [math.log(3.0), 1.0]], dtype=torch.float64)
LITERAL = torch.tensor([[2.0, 1.0], [1.0, 1.0], [2.0 / 3.0, 1.0]], dtype=torch.float64)
NORMALIZED = torch.tensor([[6 / 11, 1 / 3], [3 / 11, 1 / 3], [2 / 11, 1 / 3]], dtype=torch.float64)


def _loop_pda_pam(updates: torch.Tensor, coeffs: torch.Tensor, slices: list[slice]) -> torch.Tensor:
    """Reference: sum_k c[k, l] * U[k, layer l], one client and one layer at a time."""
    out = torch.zeros(updates.shape[1], dtype=updates.dtype)
    for k in range(updates.shape[0]):
        for l_idx, sl in enumerate(slices):
            out[sl] += float(coeffs[k, l_idx]) * updates[k, sl]
    return out


def test_weights_hand_computed() -> None:
    torch.testing.assert_close(pda_pam_weights(S, mode="literal"), LITERAL)
    torch.testing.assert_close(pda_pam_weights(S, mode="normalized"), NORMALIZED)
    # default mode is normalized
    torch.testing.assert_close(pda_pam_weights(S), NORMALIZED)


def test_normalized_sums_to_one_and_literal_is_at_least_n() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(7, 4, generator=gen) * 3
    norm = pda_pam_weights(scores)
    lit = pda_pam_weights(scores, mode="literal")
    torch.testing.assert_close(norm.sum(dim=0), torch.ones(4, dtype=torch.float64))
    # sum_k 1 / (n alpha_k) >= n (Cauchy-Schwarz): at least n times FedAvg's step
    assert bool((lit.sum(dim=0) >= 7 - 1e-9).all())
    # normalized = literal renormalised per layer; the least sensitive client weighs most
    torch.testing.assert_close(norm, lit / lit.sum(dim=0, keepdim=True))
    assert torch.equal(norm.argmax(dim=0), scores.argmin(dim=0))


def test_uniform_scores() -> None:
    # uniform scores: normalized = 1/n (FedAvg); literal = 1 (eq. 11 sums the updates)
    scores = torch.full((4, 3), 2.5)
    torch.testing.assert_close(
        pda_pam_weights(scores), torch.full((4, 3), 0.25, dtype=torch.float64)
    )
    torch.testing.assert_close(
        pda_pam_weights(scores, mode="literal"), torch.ones(4, 3, dtype=torch.float64)
    )


def test_temperature_and_standardize() -> None:
    gen = torch.Generator().manual_seed(1)
    scores = torch.rand(5, 3, generator=gen, dtype=torch.float64)
    # temperature divides the scores
    torch.testing.assert_close(
        pda_pam_weights(scores, temperature=0.25), pda_pam_weights(scores * 4)
    )
    # standardize: invariant to a S + b per column (a > 0)
    shifted = scores * torch.tensor([3.0, 0.01, 100.0], dtype=torch.float64) + torch.tensor(
        [-7.0, 2.0, 1e3], dtype=torch.float64
    )
    for mode in ("literal", "normalized"):
        torch.testing.assert_close(
            pda_pam_weights(shifted, mode=mode, standardize=True),
            pda_pam_weights(scores, mode=mode, standardize=True),
        )
    # without standardize the scale matters
    assert not torch.allclose(pda_pam_weights(shifted), pda_pam_weights(scores))
    # a constant column standardizes to zeros -> uniform
    const = torch.cat([scores[:, :1], torch.full((5, 1), 9.0, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(
        pda_pam_weights(const, standardize=True)[:, 1], torch.full((5,), 0.2, dtype=torch.float64)
    )


def test_pda_pam_hand_and_loop() -> None:
    # Prepare: layer 0 = 2 coordinates, layer 1 = 1 coordinate
    slices = [slice(0, 2), slice(2, 3)]
    u = torch.tensor([[1.0, 0.0, 3.0], [0.0, 1.0, 6.0], [1.0, 1.0, 9.0]])

    # Execute
    lit = pda_pam(u, S, slices, mode="literal")
    norm = pda_pam(u, S, slices)

    # Assert: literal layer 0 = 2 (1,0) + 1 (0,1) + 2/3 (1,1) = (8/3, 5/3); layer 1 = 18
    #         normalized layer 0 = (6 + 2, 3 + 2) / 11; layer 1 = mean = 6
    torch.testing.assert_close(lit, torch.tensor([8 / 3, 5 / 3, 18.0]))
    torch.testing.assert_close(norm, torch.tensor([8 / 11, 5 / 11, 6.0]))
    assert norm.dtype == torch.float32


@pytest.mark.parametrize("mode", ["literal", "normalized"])
def test_pda_pam_equals_loop(mode: str) -> None:
    gen = torch.Generator().manual_seed(2)
    slices = [slice(0, 5), slice(5, 6), slice(6, 20), slice(20, 23)]
    u = torch.randn(6, 23, generator=gen, dtype=torch.float64)
    scores = torch.rand(6, 4, generator=gen) * 2
    coeffs = pda_pam_weights(scores, mode=mode, temperature=0.5)
    torch.testing.assert_close(
        pda_pam(u, scores, slices, mode=mode, temperature=0.5), _loop_pda_pam(u, coeffs, slices)
    )


def test_validation() -> None:
    u = torch.ones(3, 3)
    slices = [slice(0, 2), slice(2, 3)]
    with pytest.raises(ValueError, match="literal, normalized"):
        pda_pam_weights(S, mode="softmax")
    with pytest.raises(ValueError, match="temperature"):
        pda_pam_weights(S, temperature=0.0)
    with pytest.raises(ValueError, match="shape"):
        pda_pam(u, S[:2], slices)
    with pytest.raises(ValueError, match="non-finite"):
        pda_pam(u, torch.tensor([[0.0, 1.0], [math.nan, 1.0], [0.0, 0.0]]), slices)
    with pytest.raises(ValueError, match="cover"):
        pda_pam(u, S, [slice(0, 2)])
    with pytest.raises(ValueError, match="non-finite"):
        pda_pam(torch.tensor([[1.0, math.inf, 0.0]] * 3), S, slices)
    # literal mode overflows float64 for a huge score spread: explicit error
    with pytest.raises(ValueError, match="overflows"):
        pda_pam_weights(torch.tensor([[0.0], [1000.0]]), mode="literal")
    assert layer_sizes(slices, 3) == [2, 1]
