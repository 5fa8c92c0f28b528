"""Tests for fedshield.attacks.poisoning.free_rider."""

from __future__ import annotations

import pytest
import torch

from fedshield.attacks import FREE_RIDER_MODES, free_rider

PREV = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)


def test_stale_returns_previous_global_update_as_a_copy() -> None:
    # Execute
    out = free_rider(3, previous_update=PREV, mode="stale")
    out[0] = 99.0

    # Assert
    assert out.dtype == torch.float64
    assert PREV[0].item() == 0.5  # the output was a copy
    torch.testing.assert_close(out[1:], PREV[1:], rtol=0, atol=0)


def test_stale_first_round_is_zeros() -> None:
    # Execute
    out = free_rider(4)

    # Assert
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.zeros(4))


def test_noise_is_seeded_and_has_the_requested_std() -> None:
    # Prepare: 100 000 draws, relative standard error of the std ~ 0.0022
    sigma = 1e-3

    # Execute
    a = free_rider(100_000, mode="noise", sigma=sigma, generator=torch.Generator().manual_seed(5))
    b = free_rider(100_000, mode="noise", sigma=sigma, generator=torch.Generator().manual_seed(5))

    # Assert
    assert torch.equal(a, b)
    assert float(a.std()) == pytest.approx(sigma, rel=0.02)
    assert abs(float(a.mean())) < 0.03 * sigma


def test_noise_ignores_the_previous_update_but_keeps_its_dtype() -> None:
    # Prepare
    expected = 0.1 * torch.randn(3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    # Execute
    out = free_rider(
        3, previous_update=PREV, mode="noise", sigma=0.1, generator=torch.Generator().manual_seed(2)
    )

    # Assert
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_noisy_stale_is_previous_plus_the_same_noise() -> None:
    # Prepare
    noise = free_rider(
        3, previous_update=PREV, mode="noise", sigma=0.2, generator=torch.Generator().manual_seed(9)
    )

    # Execute
    out = free_rider(
        3,
        previous_update=PREV,
        mode="noisy_stale",
        sigma=0.2,
        generator=torch.Generator().manual_seed(9),
    )
    first = free_rider(3, mode="noisy_stale", sigma=0.2, generator=torch.Generator().manual_seed(9))

    # Assert
    torch.testing.assert_close(out, PREV + noise, rtol=0, atol=1e-15)
    torch.testing.assert_close(first, noise.float(), rtol=0, atol=1e-7)
    assert PREV.tolist() == [0.5, -1.0, 2.0]


def test_modes_constant() -> None:
    # Execute / Assert
    assert FREE_RIDER_MODES == ("stale", "noise", "noisy_stale")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"mode": "lazy"},
            r"unknown free-rider mode 'lazy': allowed modes are 'stale', 'noise', 'noisy_stale'",
        ),
        ({"previous_update": torch.ones(4)}, r"previous_update must have shape \(3,\), got \(4,\)"),
        ({"previous_update": torch.ones(1, 3)}, r"previous_update must be a 1-D update"),
        ({"previous_update": torch.tensor([1.0, float("nan"), 0.0])}, r"non-finite"),
        ({"mode": "noise", "sigma": -1.0}, r"sigma must be >= 0, got -1.0"),
        ({"mode": "noise", "sigma": float("inf")}, r"sigma must be finite"),
    ],
    ids=["unknown mode", "wrong length", "2-D previous", "nan previous", "negative sigma", "inf"],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        free_rider(3, **kwargs)  # type: ignore[arg-type]


def test_bad_dim() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=r"dim must be >= 1, got 0"):
        free_rider(0)
