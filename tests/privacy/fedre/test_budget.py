"""Tests for fedshield.privacy.fedre.budget (FedRE eqs. 6-9, Xiao et al. ICMR 2025)."""

from __future__ import annotations

import math

import pytest
import torch

from fedshield.privacy.accounting import local_dp_epsilon
from fedshield.privacy.fedre.budget import (
    allocate_budget,
    clip_layers,
    fedre_accounting,
    fedre_sigma,
    layer_norms,
    perturb_layers,
    split_delta,
    uniform_budget,
)

# 3 layers of sizes 2, 3, 1 in a row of 6 parameters
SLICES = [slice(0, 2), slice(2, 5), slice(5, 6)]

# --------------------------------------------------------------------------- eq. 6


def test_allocation_hand_computed() -> None:
    # Prepare: S = (1, 2, 4), epsilon = 7: 1/S = (1, 0.5, 0.25), sum 1.75
    #   eps = 7 * (1, 0.5, 0.25) / 1.75 = (4, 2, 1)
    scores = torch.tensor([1.0, 2.0, 4.0])

    # Execute
    eps = allocate_budget(scores, 7.0)

    # Assert
    assert eps.dtype == torch.float64
    torch.testing.assert_close(eps, torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64))


def test_allocation_sums_to_epsilon_and_is_inverse_proportional() -> None:
    # Prepare: 3 clients x 5 layers of random positive scores
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(3, 5, generator=gen) * 10 + 0.01

    # Execute
    eps = allocate_budget(scores, 50.0)

    # Assert: each row sums to epsilon; eps_l * S_l is constant along a row
    torch.testing.assert_close(eps.sum(dim=1), torch.full((3,), 50.0, dtype=torch.float64))
    prod = eps * scores.double()
    torch.testing.assert_close(prod, prod[:, :1].expand_as(prod))
    # the most sensitive layer gets the smallest budget (eq. 6, not the paper's prose)
    assert torch.equal(eps.argmin(dim=1), scores.argmax(dim=1))


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_allocation_rejects_bad_scores_naming_the_layer(bad: float) -> None:
    scores = torch.tensor([1.0, 2.0, bad])
    with pytest.raises(ValueError, match="layer 2"):
        allocate_budget(scores, 1.0)


@pytest.mark.parametrize("eps", [0.0, -1.0, math.inf, math.nan])
def test_allocation_rejects_bad_epsilon(eps: float) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        allocate_budget(torch.ones(3), eps)


def test_uniform_budget_and_split_delta() -> None:
    torch.testing.assert_close(uniform_budget(4, 10.0), torch.full((4,), 2.5, dtype=torch.float64))
    d = split_delta(1e-5, 4)
    torch.testing.assert_close(d, torch.full((4,), 2.5e-6, dtype=torch.float64))
    assert math.isclose(float(d.sum()), 1e-5)
    # uniform scores reproduce the uniform budget
    torch.testing.assert_close(
        allocate_budget(torch.full((4,), 3.0), 10.0), uniform_budget(4, 10.0)
    )
    with pytest.raises(ValueError, match="delta"):
        split_delta(1.0, 3)
    with pytest.raises(ValueError, match="num_layers"):
        split_delta(1e-5, 0)


# --------------------------------------------------------------------------- eq. 9


def test_sigma_hand_value() -> None:
    # T = 100, eps_l = 1, delta_l = 1e-5: sqrt(200 ln 1e5) = 47.985259...
    # (float64 inputs: a float32 1e-5 is off by ~1e-9 relative)
    eps_l = torch.tensor([1.0, 2.0], dtype=torch.float64)
    sigma = fedre_sigma(eps_l, torch.tensor([1e-5, 1e-5], dtype=torch.float64), 100)
    expected = math.sqrt(200 * math.log(1e5))
    assert abs(expected - 47.985259) < 1e-6
    torch.testing.assert_close(
        sigma, torch.tensor([expected, expected / 2], dtype=torch.float64), rtol=1e-12, atol=0
    )


def test_sigma_spec_example_is_huge() -> None:
    # spec pitfall: L = 50, T = 100, epsilon = 50, delta = 1e-5 -> sigma_l ~ 55
    sigma = fedre_sigma(uniform_budget(50, 50.0), split_delta(1e-5, 50), 100)
    assert 54.0 < float(sigma[0]) < 56.0


def test_sigma_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="delta_l"):
        fedre_sigma(torch.ones(2), torch.tensor([0.5, 1.0]), 10)
    with pytest.raises(ValueError, match="rounds"):
        fedre_sigma(torch.ones(2), torch.full((2,), 1e-5), 0)
    with pytest.raises(ValueError, match="broadcast"):
        fedre_sigma(torch.ones(2), torch.full((3,), 1e-5), 10)


# --------------------------------------------------------------------------- eq. 7


def test_clip_layers_hand_example() -> None:
    # Prepare: row 0 blocks (3, 4) norm 5, (0, 0, 0) zero, (2) norm 2
    #          row 1 blocks (0.3, 0.4) norm 0.5, (1, 2, 2) norm 3, (-0.5) norm 0.5
    u = torch.tensor([[3.0, 4.0, 0.0, 0.0, 0.0, 2.0], [0.3, 0.4, 1.0, 2.0, 2.0, -0.5]])
    before = u.clone()
    clip = torch.tensor([1.0, 1.5, 1.0])

    # Execute
    out = clip_layers(u, SLICES, clip)

    # Assert: (3, 4) -> (0.6, 0.8); zero stays zero; 2 -> 1; (1, 2, 2) * 0.5; inside unchanged
    expected = torch.tensor([[0.6, 0.8, 0.0, 0.0, 0.0, 1.0], [0.3, 0.4, 0.5, 1.0, 1.0, -0.5]])
    torch.testing.assert_close(out, expected)
    assert torch.equal(u, before)
    torch.testing.assert_close(
        layer_norms(u, SLICES), torch.tensor([[5.0, 0.0, 2.0], [0.5, 3.0, 0.5]])
    )


def test_clip_layers_bounds_every_block() -> None:
    gen = torch.Generator().manual_seed(1)
    u = torch.randn(8, 6, generator=gen) * 5
    clip = torch.tensor([0.1, 1.0, 0.3])
    norms = layer_norms(clip_layers(u, SLICES, clip), SLICES)
    assert bool((norms <= clip.float() * (1 + 1e-6)).all())
    # scalar clip = the same clip for every layer
    assert torch.equal(clip_layers(u, SLICES, 0.2), clip_layers(u, SLICES, torch.full((3,), 0.2)))


def test_layer_slices_are_validated() -> None:
    u = torch.ones(2, 6)
    with pytest.raises(ValueError, match="contiguously"):
        clip_layers(u, [slice(0, 2), slice(3, 6)], 1.0)
    with pytest.raises(ValueError, match="cover"):
        clip_layers(u, [slice(0, 2), slice(2, 5)], 1.0)
    with pytest.raises(ValueError, match="clip"):
        clip_layers(u, SLICES, torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="clip"):
        clip_layers(u, SLICES, torch.ones(2))


# --------------------------------------------------------------------------- eq. 8


def test_perturb_layers_noise_std_per_layer() -> None:
    # Prepare: zero updates (clipping is a no-op), 2 layers of 20k coordinates each,
    # clip (0.5, 2.0), sigma (1, 3) -> std (0.5, 6.0)
    slices = [slice(0, 20_000), slice(20_000, 40_000)]
    u = torch.zeros(2, 40_000)
    gen = torch.Generator().manual_seed(0)

    # Execute
    out = perturb_layers(
        u, slices, torch.tensor([0.5, 2.0]), torch.tensor([1.0, 3.0]), generator=gen
    )

    # Assert: sample std of 40k draws has relative sd ~ 1/sqrt(2 * 40k) = 0.35%: 2% tolerance
    for sl, std in zip(slices, (0.5, 6.0), strict=True):
        block = out[:, sl]
        assert abs(float(block.std()) / std - 1) < 0.02
        assert abs(float(block.mean())) < 4 * std / math.sqrt(block.numel())


def test_perturb_layers_per_client_sigma_and_determinism() -> None:
    # Prepare: 3 clients, sigma [n, L]; client 1 has no noise at all
    gen_u = torch.Generator().manual_seed(5)
    u = torch.randn(3, 6, generator=gen_u)
    sigma = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [2.0, 0.0, 4.0]])

    # Execute
    a = perturb_layers(u, SLICES, 0.5, sigma, generator=torch.Generator().manual_seed(9))
    b = perturb_layers(u, SLICES, 0.5, sigma, generator=torch.Generator().manual_seed(9))
    c = perturb_layers(u, SLICES, 0.5, sigma, generator=torch.Generator().manual_seed(10))

    # Assert: same seed -> same output; client 1 / client 2 layer 1 = clipped exactly
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    clipped = clip_layers(u, SLICES, 0.5)
    assert torch.equal(a[1], clipped[1])
    assert torch.equal(a[2, 2:5], clipped[2, 2:5])
    assert not torch.equal(a[0], clipped[0])


def test_perturb_layers_rejects_bad_sigma() -> None:
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="sigma"):
        perturb_layers(torch.ones(2, 6), SLICES, 1.0, torch.ones(4), generator=gen)
    with pytest.raises(ValueError, match="sigma"):
        perturb_layers(torch.ones(2, 6), SLICES, 1.0, torch.tensor([1.0, -1.0, 1.0]), generator=gen)


# --------------------------------------------------------------------------- accounting


def test_accounting_claimed_and_rdp() -> None:
    # Prepare: the spec's setting with 5 layers, budget from scores
    eps_l = allocate_budget(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), 10.0)
    delta_l = split_delta(1e-5, 5)
    sigma = fedre_sigma(eps_l, delta_l, 100)

    # Execute
    acc = fedre_accounting(eps_l, delta_l, sigma, 100)

    # Assert: claimed = simple composition; the RDP epsilon of the L Gaussians composed T
    # times equals that of one Gaussian with z = (sum sigma_l^-2)^-1/2 (independent path)
    assert set(acc) == {"claimed_epsilon", "claimed_delta", "rdp_epsilon", "rounds"}
    assert math.isclose(acc["claimed_epsilon"], 10.0)
    assert math.isclose(acc["claimed_delta"], 1e-5)
    assert acc["rounds"] == 100
    z = float((sigma**-2).sum() ** -0.5)
    ref = local_dp_epsilon(mechanism="gaussian", noise_multiplier=z, count=100, delta=1e-5)
    assert math.isclose(acc["rdp_epsilon"], ref, rel_tol=1e-6)
    # eq. 9 over-provisions: RDP composition is tighter than the claimed epsilon
    assert 0 < acc["rdp_epsilon"] < acc["claimed_epsilon"]
    # the replace-one sensitivity 2 C_l halves the multipliers: a larger epsilon
    acc2 = fedre_accounting(eps_l, delta_l, sigma, 100, sensitivity_scale=2.0)
    assert acc2["rdp_epsilon"] > acc["rdp_epsilon"]


def test_accounting_zero_sigma_is_infinite() -> None:
    acc = fedre_accounting(torch.ones(2), torch.full((2,), 1e-6), torch.tensor([1.0, 0.0]), 3)
    assert acc["rdp_epsilon"] == math.inf
    with pytest.raises(ValueError, match="shape"):
        fedre_accounting(torch.ones(2), torch.full((3,), 1e-6), torch.ones(2), 3)
