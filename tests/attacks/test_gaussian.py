"""Tests for fedshield.attacks.poisoning.gaussian."""

from __future__ import annotations

import pytest
import torch

from fedshield.attacks import gaussian


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    # Execute
    a = gaussian(3, 40, sigma=2.0, generator=torch.Generator().manual_seed(7))
    b = gaussian(3, 40, sigma=2.0, generator=torch.Generator().manual_seed(7))
    c = gaussian(3, 40, sigma=2.0, generator=torch.Generator().manual_seed(8))

    # Assert
    assert a.shape == (3, 40)
    assert a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # the rows are separate draws


def test_is_sigma_times_standard_normal_draws() -> None:
    # Prepare
    expected = torch.randn(4, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    # Execute
    out = gaussian(
        4, 9, sigma=0.25, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )

    # Assert
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, 0.25 * expected, rtol=0, atol=0)


def test_empirical_mean_and_std() -> None:
    # Prepare: 100 000 draws; the relative standard error of the sample std is
    # 1 / sqrt(2 N) ~ 0.0022 and that of the mean sigma / sqrt(N) ~ 0.0032 sigma
    sigma = 0.5

    # Execute
    out = gaussian(200, 500, sigma=sigma, generator=torch.Generator().manual_seed(0))

    # Assert: tolerances of about 9 standard errors
    assert float(out.std()) == pytest.approx(sigma, rel=0.02)
    assert abs(float(out.mean())) < 0.03 * sigma
    row_stds = out.std(dim=1)
    assert float(row_stds.min()) > 0.8 * sigma  # every row is N(0, sigma^2), not just the pool
    assert float(row_stds.max()) < 1.2 * sigma


def test_zero_sigma_and_zero_rows() -> None:
    # Execute / Assert
    assert torch.equal(gaussian(2, 3, sigma=0.0), torch.zeros(2, 3))
    assert gaussian(0, 3, sigma=1.0).shape == (0, 3)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((2, 3), {"sigma": -1.0}, r"sigma must be >= 0, got -1.0"),
        ((2, 3), {"sigma": float("nan")}, r"sigma must be finite"),
        ((-1, 3), {"sigma": 1.0}, r"num must be >= 0, got -1"),
        ((2, 0), {"sigma": 1.0}, r"dim must be >= 1, got 0"),
        ((2.0, 3), {"sigma": 1.0}, r"num must be an integer"),
        ((2, 3), {"sigma": 1.0, "dtype": torch.int64}, r"floating-point dtype, got torch.int64"),
    ],
    ids=["negative sigma", "nan sigma", "negative num", "zero dim", "float num", "int dtype"],
)
def test_bad_arguments(args: tuple[int, int], kwargs: dict[str, object], match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        gaussian(*args, **kwargs)  # type: ignore[arg-type]
