"""Tests for fedshield.privacy.fedre.baselines (LDP-Fed alpha-CLDP, pixel-level Blur)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from fedshield.privacy.fedre import baselines
from fedshield.privacy.fedre.baselines import blur_regions, cldp_levels, cldp_perturb

# --------------------------------------------------------------------------- alpha-CLDP


def test_cldp_outputs_lie_on_the_grid() -> None:
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(5000, generator=gen) * 3
    out = cldp_perturb(values, alpha=0.8, clip=1.5, levels=6, generator=gen)
    grid = cldp_levels(1.5, 6).float()
    assert out.shape == values.shape and out.dtype == values.dtype
    assert bool(torch.isclose(out.unsqueeze(1), grid).any(dim=1).all())
    torch.testing.assert_close(
        grid.double(), torch.tensor([-1.5, -0.9, -0.3, 0.3, 0.9, 1.5]).double()
    )


def test_cldp_empirical_distribution() -> None:
    # Prepare: 200k copies of x = -0.3 on the 7-level grid of [-1, 1] (step 1/3):
    # nearest level index 2 (value -1/3); Pr[j] = exp(-alpha |j - 2| / 2) / Z
    alpha, n = 1.0, 200_000
    values = torch.full((n,), -0.3, dtype=torch.float64)
    gen = torch.Generator().manual_seed(42)

    # Execute
    out = cldp_perturb(values, alpha=alpha, clip=1.0, levels=7, generator=gen)

    # Assert: every frequency within 0.005 (> 4.5 standard errors, sd <= 0.0011)
    grid = cldp_levels(1.0, 7)
    idx = torch.argmin((out.unsqueeze(1) - grid).abs(), dim=1)
    freq = torch.bincount(idx, minlength=7).double() / n
    w = torch.exp(-alpha * (torch.arange(7) - 2).abs().double() / 2)
    expected = w / w.sum()
    assert float((freq - expected).abs().max()) < 0.005


def test_cldp_large_alpha_keeps_the_input_level_and_clips() -> None:
    gen = torch.Generator().manual_seed(1)
    values = torch.tensor([[-5.0, -0.26, 0.0], [0.24, 0.6, 7.0]])
    out = cldp_perturb(values, alpha=1e4, clip=1.0, levels=5, generator=gen)
    # grid -1, -0.5, 0, 0.5, 1: nearest levels, with clipping to [-1, 1]
    torch.testing.assert_close(out, torch.tensor([[-1.0, -0.5, 0.0], [0.0, 0.5, 1.0]]))


def test_cldp_deterministic_and_chunk_independent(monkeypatch: pytest.MonkeyPatch) -> None:
    values = torch.linspace(-2, 2, 1001)
    a = cldp_perturb(
        values, alpha=0.5, clip=1.0, levels=9, generator=torch.Generator().manual_seed(3)
    )
    b = cldp_perturb(
        values, alpha=0.5, clip=1.0, levels=9, generator=torch.Generator().manual_seed(3)
    )
    monkeypatch.setattr(baselines, "_CHUNK_CELLS", 9 * 7)  # chunks of 7 values
    c = cldp_perturb(
        values, alpha=0.5, clip=1.0, levels=9, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(a, b)
    assert torch.equal(a, c)


def test_cldp_validation() -> None:
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="levels"):
        cldp_perturb(torch.zeros(3), alpha=1.0, clip=1.0, levels=1, generator=gen)
    with pytest.raises(ValueError, match="alpha"):
        cldp_perturb(torch.zeros(3), alpha=0.0, clip=1.0, levels=3, generator=gen)
    with pytest.raises(ValueError, match="non-finite"):
        cldp_perturb(torch.tensor([math.nan]), alpha=1.0, clip=1.0, levels=3, generator=gen)


# --------------------------------------------------------------------------- blur


def _scipy_blur(images: torch.Tensor, sigma: float) -> np.ndarray:
    r = math.ceil(3 * sigma)
    return ndimage.gaussian_filter(
        images.double().numpy(), sigma=(0, 0, sigma, sigma), mode="reflect", truncate=r / sigma
    )


@pytest.mark.parametrize(("shape", "sigma"), [((2, 3, 20, 17), 2.0), ((1, 1, 4, 5), 1.1)])
def test_blur_matches_scipy_inside_and_is_identity_outside(
    shape: tuple[int, int, int, int], sigma: float
) -> None:
    # Prepare: random images and a random region (radius 6 > H = 4 in the second case)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(shape, generator=gen)
    n, _, h, w = shape
    region = torch.rand(n, h, w, generator=gen) < 0.5

    # Execute
    out = blur_regions(images, region, sigma=sigma)

    # Assert
    ref = torch.from_numpy(_scipy_blur(images, sigma)).float()
    inside = region.unsqueeze(1).expand_as(images)
    torch.testing.assert_close(out[inside], ref[inside], rtol=0, atol=1e-5)
    assert torch.equal(out[~inside], images[~inside])
    assert out.dtype == images.dtype


def test_blur_constant_image_and_full_region() -> None:
    images = torch.full((1, 2, 9, 9), 0.37)
    out = blur_regions(images, torch.ones(1, 9, 9, dtype=torch.bool), sigma=1.5)
    torch.testing.assert_close(out, images, rtol=0, atol=1e-6)
    # empty region: bit-identical
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 8, 8, generator=gen)
    assert torch.equal(blur_regions(x, torch.zeros(2, 8, 8, dtype=torch.bool)), x)


def test_blur_validation() -> None:
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="bool"):
        blur_regions(x, torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        blur_regions(x, torch.ones(1, 4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="sigma"):
        blur_regions(x, torch.ones(1, 4, 4, dtype=torch.bool), sigma=0.0)
