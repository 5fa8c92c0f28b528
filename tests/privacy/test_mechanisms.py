"""Tests for fedshield.privacy.mechanisms: clipping, seeded noise, Gaussian/Laplace calibration."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from dp_accounting import dp_event
from dp_accounting.gaussian_mechanism import get_sigma_gaussian
from dp_accounting.pld import PLDAccountant
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from fedshield.privacy.mechanisms import (
    analytic_gaussian_sigma,
    clip_updates,
    gaussian_noise,
    laplace_noise,
    laplace_scale,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- clipping


def test_clip_hand_computed_3_4_5() -> None:
    # Prepare: norms 5, 10, 0.5, 0, 5 with C = 1 (the last one float64 below)
    u = torch.tensor([[3.0, 4.0], [-6.0, 8.0], [0.3, 0.4], [0.0, 0.0], [0.0, -5.0]])

    # Execute
    out = clip_updates(u, clip_norm=1.0)

    # Assert
    expected = torch.tensor([[0.6, 0.8], [-0.6, 0.8], [0.3, 0.4], [0.0, 0.0], [0.0, -1.0]])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-7)
    assert out.dtype == torch.float32


def test_clip_float64_and_larger_bound() -> None:
    # Prepare: [6, 8] has norm 10 -> clipped to 5 gives [3, 4]; [1, 2, 2] has norm 3 < 5
    u = torch.tensor([[6.0, 8.0, 0.0], [1.0, 2.0, 2.0]], dtype=torch.float64)

    # Execute
    out = clip_updates(u, clip_norm=5.0)

    # Assert
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[0], torch.tensor([3.0, 4.0, 0.0], dtype=torch.float64))
    assert torch.equal(out[1], u[1])


def test_clip_zero_row_stays_zero_and_rows_inside_unchanged() -> None:
    # Prepare
    u = torch.tensor([[0.0, 0.0, 0.0], [0.1, -0.2, 0.3], [1.0, 0.0, 0.0]])

    # Execute
    out = clip_updates(u, clip_norm=1.0)

    # Assert: exact equality, no NaN from 0 / 0
    assert not bool(torch.isnan(out).any())
    assert torch.equal(out, u)


def test_clip_does_not_modify_input() -> None:
    # Prepare
    u = torch.tensor([[30.0, 40.0], [3.0, 4.0]])
    before = u.clone()

    # Execute
    out = clip_updates(u, clip_norm=2.0)

    # Assert
    assert torch.equal(u, before)
    assert out.data_ptr() != u.data_ptr()


def test_clip_rows_whose_norm_overflows_or_underflows_float32() -> None:
    # Prepare: ||[3e20, 4e20]|| = 5e20 overflows a float32 sum of squares; [3e-30, 4e-30]
    # underflows to norm 0 although it exceeds the (tiny) bound
    u = torch.tensor([[3e20, 4e20], [3e-30, 4e-30]])

    # Execute
    big = clip_updates(u[:1], clip_norm=1.0)
    tiny = clip_updates(u[1:], clip_norm=1e-30)

    # Assert: clipped onto the sphere in the right direction, not zeroed or left alone
    torch.testing.assert_close(big, torch.tensor([[0.6, 0.8]]))
    torch.testing.assert_close(tiny, torch.tensor([[0.6e-30, 0.8e-30]]), rtol=1e-5, atol=0)


@st.composite
def _matrices(draw: st.DrawFn) -> torch.Tensor:
    n = draw(st.integers(1, 6))
    d = draw(st.integers(1, 8))
    val = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
    rows = draw(st.lists(st.lists(val, min_size=d, max_size=d), min_size=n, max_size=n))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return torch.tensor(rows, dtype=dtype)


@settings(max_examples=80, deadline=None)
@given(u=_matrices(), c=st.floats(1e-3, 1e3))
def test_clip_properties(u: torch.Tensor, c: float) -> None:
    # Execute
    out = clip_updates(u, clip_norm=c)

    # Assert: norms <= C (up to rounding), direction kept, rows inside untouched
    u64, o64 = u.double(), out.double()
    norms_in = torch.linalg.vector_norm(u64, dim=1)
    norms_out = torch.linalg.vector_norm(o64, dim=1)
    assert out.dtype == u.dtype and out.shape == u.shape
    assert bool((norms_out <= c * (1 + 1e-5)).all())
    inside = norms_in <= c
    assert torch.equal(out[inside], u[inside])
    outside = ~inside
    torch.testing.assert_close(
        norms_out[outside], torch.full_like(norms_out[outside], c), rtol=1e-5, atol=0
    )
    moved = norms_in > 0
    cos = (u64[moved] * o64[moved]).sum(dim=1) / (norms_in[moved] * norms_out[moved])
    assert bool((cos >= 1 - 1e-6).all())


@pytest.mark.parametrize(
    ("clip_norm", "match"),
    [
        (0.0, r"clip_norm must be a finite number > 0, got 0.0"),
        (-1.0, r"clip_norm must be a finite number > 0, got -1.0"),
        (math.inf, r"clip_norm must be a finite number > 0, got inf"),
        (math.nan, r"clip_norm must be a finite number > 0, got nan"),
        (True, r"clip_norm must be a finite number > 0, got True"),
    ],
)
def test_clip_bad_bound(clip_norm: float, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        clip_updates(torch.ones(2, 2), clip_norm=clip_norm)


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        (torch.ones(3), r"2-D matrix .*got shape \(3,\)"),
        (torch.ones(2, 2, dtype=torch.int64), r"floating point, got dtype torch.int64"),
        (torch.tensor([[1.0, 2.0], [float("nan"), 0.0]]), r"non-finite .* rows \[1\]"),
        (torch.tensor([[float("inf"), 0.0]]), r"non-finite .* rows \[0\]"),
    ],
    ids=["1-D", "integer", "nan", "inf"],
)
def test_clip_bad_matrix(updates: torch.Tensor, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        clip_updates(updates, clip_norm=1.0)


# --------------------------------------------------------------------------- noise

N_DRAWS = 1_000_000


@pytest.mark.parametrize("std", [0.5, 3.0])
def test_gaussian_noise_moments(std: float) -> None:
    # Execute
    x = gaussian_noise((N_DRAWS,), std=std, generator=_gen(0), dtype=torch.float64).numpy()

    # Assert: std within 1%, mean within 3 standard errors of 0
    assert abs(x.std() / std - 1) < 0.01
    assert abs(x.mean()) < 3 * std / math.sqrt(N_DRAWS)


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_laplace_noise_moments(scale: float) -> None:
    # Execute
    x = laplace_noise((N_DRAWS,), scale=scale, generator=_gen(1), dtype=torch.float64).numpy()

    # Assert: std = sqrt(2) b within 1%, mean within 3 SE, E|X| = b within 1%
    std = math.sqrt(2) * scale
    assert abs(x.std() / std - 1) < 0.01
    assert abs(x.mean()) < 3 * std / math.sqrt(N_DRAWS)
    assert abs(np.abs(x).mean() / scale - 1) < 0.01


def test_noise_distributions_pass_ks_tests() -> None:
    # Prepare: a fixed seed makes the p-value a deterministic number; a wrong distribution
    # (e.g. a Gaussian with the Laplace's std) gives p ~ 0 at this sample size
    g = gaussian_noise((100_000,), std=2.0, generator=_gen(2), dtype=torch.float64).numpy()
    lap = laplace_noise((100_000,), scale=2.0, generator=_gen(3), dtype=torch.float64).numpy()

    # Execute
    p_gauss = stats.kstest(g, stats.norm(scale=2.0).cdf).pvalue
    p_lap = stats.kstest(lap, stats.laplace(scale=2.0).cdf).pvalue
    p_wrong = stats.kstest(lap, stats.norm(scale=2.0 * math.sqrt(2)).cdf).pvalue

    # Assert
    assert p_gauss > 1e-3
    assert p_lap > 1e-3
    assert p_wrong < 1e-6


@pytest.mark.parametrize("sampler", ["gaussian", "laplace"])
def test_noise_is_determined_by_the_generator(sampler: str) -> None:
    # Prepare
    def draw(seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if sampler == "gaussian":
            return gaussian_noise((4, 5), std=1.0, generator=_gen(seed), dtype=dtype)
        return laplace_noise((4, 5), scale=1.0, generator=_gen(seed), dtype=dtype)

    # Execute
    a, b, c, d = draw(7), draw(7), draw(8), draw(7, torch.float64)

    # Assert
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == (4, 5) and a.dtype == torch.float32 and d.dtype == torch.float64


def test_zero_noise_and_int_shape() -> None:
    # Execute
    g = gaussian_noise(6, std=0.0, generator=_gen(0))
    lap = laplace_noise(torch.Size([2, 3]), scale=0.0, generator=_gen(0))

    # Assert
    assert torch.equal(g, torch.zeros(6))
    assert torch.equal(lap, torch.zeros(2, 3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"std": -1.0}, r"std must be a finite number >= 0, got -1.0"),
        ({"std": math.nan}, r"std must be a finite number >= 0, got nan"),
        ({"generator": 0}, r"generator must be a torch.Generator, got int"),
        ({"dtype": torch.int32}, r"dtype must be a floating point dtype, got torch.int32"),
        ({"shape": (2, -1)}, r"shape must be non-negative integers, got \(2, -1\)"),
    ],
)
def test_gaussian_noise_bad_input(kwargs: dict[str, Any], match: str) -> None:
    # Prepare
    kw: dict[str, Any] = {"shape": (3,), "std": 1.0, "generator": _gen(0), **kwargs}

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        gaussian_noise(**kw)


def test_laplace_noise_bad_input() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=r"scale must be a finite number >= 0, got -2.0"):
        laplace_noise((3,), scale=-2.0, generator=_gen(0))
    with pytest.raises(ValueError, match=r"scale must be a finite number >= 0, got inf"):
        laplace_noise((3,), scale=math.inf, generator=_gen(0))


# --------------------------------------------------------------------------- calibration


def _delta_of(sigma: float, eps: float, sens: float) -> float:
    """Balle & Wang's exact delta(eps) of the Gaussian mechanism, written with scipy.stats."""
    a, b = sens / (2 * sigma), eps * sigma / sens
    return float(stats.norm.cdf(a - b) - math.exp(eps) * stats.norm.cdf(-a - b))


@pytest.mark.parametrize("sens", [1.0, 2.5])
@pytest.mark.parametrize("delta", [1e-3, 1e-5, 1e-6])
@pytest.mark.parametrize("eps", [0.05, 0.5, 0.9, 2.0, 8.0])
def test_analytic_gaussian_meets_the_condition_with_equality(
    eps: float, delta: float, sens: float
) -> None:
    # Execute
    sigma = analytic_gaussian_sigma(epsilon=eps, delta=delta, sensitivity=sens)

    # Assert: delta(sigma) <= delta, equal to 1e-9 relative; any smaller sigma violates it
    got = _delta_of(sigma, eps, sens)
    assert got <= delta * (1 + 1e-12)
    assert got == pytest.approx(delta, rel=1e-9)
    assert _delta_of(sigma * (1 - 1e-7), eps, sens) > delta


@pytest.mark.parametrize("delta", [1e-5, 1e-6])
@pytest.mark.parametrize("eps", [0.1, 0.5, 0.9])
def test_analytic_gaussian_beats_the_classical_bound(eps: float, delta: float) -> None:
    # Prepare: Dwork & Roth Thm. A.1, valid for eps < 1
    classical = math.sqrt(2 * math.log(1.25 / delta)) / eps

    # Execute
    sigma = analytic_gaussian_sigma(epsilon=eps, delta=delta, sensitivity=1.0)

    # Assert
    assert sigma < classical


@pytest.mark.parametrize("eps", [0.3, 1.0, 4.0, 20.0])
def test_analytic_gaussian_matches_dp_accounting(eps: float) -> None:
    # Execute
    sigma = analytic_gaussian_sigma(epsilon=eps, delta=1e-5, sensitivity=1.0)

    # Assert: dp_accounting's own calibration and its PLD accountant agree
    assert sigma == pytest.approx(get_sigma_gaussian(eps, 1e-5), rel=1e-9)
    pld = PLDAccountant().compose(dp_event.GaussianDpEvent(sigma))
    assert pld.get_epsilon(1e-5) == pytest.approx(eps, abs=1e-3)


def test_analytic_gaussian_scales_with_sensitivity_and_falls_with_epsilon() -> None:
    # Execute
    base = analytic_gaussian_sigma(epsilon=1.0, delta=1e-5, sensitivity=1.0)
    scaled = analytic_gaussian_sigma(epsilon=1.0, delta=1e-5, sensitivity=7.0)
    by_eps = [analytic_gaussian_sigma(epsilon=e, delta=1e-5, sensitivity=1.0) for e in (1, 2, 4)]

    # Assert
    assert scaled == pytest.approx(7.0 * base, rel=1e-12)
    assert by_eps[0] > by_eps[1] > by_eps[2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epsilon": 0.0}, r"epsilon must be a finite number > 0, got 0.0"),
        ({"epsilon": math.inf}, r"epsilon must be a finite number > 0, got inf"),
        ({"delta": 0.0}, r"delta must be in \(0, 1\), got 0.0"),
        ({"delta": 1.0}, r"delta must be in \(0, 1\), got 1.0"),
        ({"sensitivity": -1.0}, r"sensitivity must be a finite number > 0, got -1.0"),
    ],
)
def test_analytic_gaussian_bad_input(kwargs: dict[str, float], match: str) -> None:
    # Prepare
    kw: dict[str, Any] = {"epsilon": 1.0, "delta": 1e-5, "sensitivity": 1.0, **kwargs}

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        analytic_gaussian_sigma(**kw)


def test_laplace_scale() -> None:
    # Execute / Assert
    assert laplace_scale(epsilon=0.5, sensitivity=2.0) == 4.0
    assert laplace_scale(epsilon=4.0, sensitivity=1.0) == 0.25
    with pytest.raises(ValueError, match=r"epsilon must be a finite number > 0, got -1.0"):
        laplace_scale(epsilon=-1.0, sensitivity=1.0)
    with pytest.raises(ValueError, match=r"sensitivity must be a finite number > 0, got 0.0"):
        laplace_scale(epsilon=1.0, sensitivity=0.0)
