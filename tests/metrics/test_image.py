"""Tests for fedshield.metrics.image (MSE, PSNR, SSIM, region scores, LPIPS placeholder)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import structural_similarity

from fedshield import metrics
from fedshield.metrics import LPIPSUnavailableError, lpips, mse, psnr, ssim, to_unit_range


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=shape)


def test_public_contract_reexports() -> None:
    # Assert
    assert metrics.psnr is psnr
    assert metrics.ssim is ssim


def test_psnr_constant_offset_hand_computed() -> None:
    # Prepare: |a - b| = 0.1 everywhere -> MSE 0.01 -> 10 log10(1 / 0.01) = 20 dB
    a = torch.full((3, 8, 8), 0.5)
    b = a + 0.1

    # Execute
    err, db = mse(a, b), psnr(a, b)

    # Assert
    assert err == pytest.approx(0.01, rel=1e-6)
    assert db == pytest.approx(20.0, abs=1e-4)


def test_psnr_data_range_hand_computed() -> None:
    # Prepare: MSE 0.01, R = 0.5 -> 10 log10(0.25 / 0.01) = 10 log10(25)
    a = np.zeros((4, 4))
    b = np.full((4, 4), 0.1)

    # Execute
    db = psnr(a, b, data_range=0.5)

    # Assert
    assert db == pytest.approx(10 * math.log10(25.0), abs=1e-9)


def test_identical_images() -> None:
    # Prepare
    a = _rand(2, 3, 16, 16)

    # Execute / Assert
    assert psnr(a, a.copy()) == math.inf
    assert mse(a, a) == 0.0
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(32, 32), (3, 32, 32)])
def test_ssim_matches_skimage(shape: tuple[int, ...]) -> None:
    # Prepare
    a = _rand(*shape, seed=1)
    b = np.clip(a + np.random.default_rng(2).normal(0, 0.1, size=shape), 0, 1)
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    axis = {"channel_axis": 0} if len(shape) == 3 else {}

    # Execute
    ours = ssim(torch.from_numpy(a).float(), torch.from_numpy(b).float())
    ref = structural_similarity(a, b, data_range=1.0, **kw, **axis)

    # Assert: float32 round trip only
    assert ours == pytest.approx(float(ref), abs=1e-5)
    assert 0.0 < ours < 0.99


def test_ssim_batch_is_mean_of_images() -> None:
    # Prepare
    a = _rand(3, 3, 16, 16, seed=3)
    b = np.clip(a + np.random.default_rng(4).normal(0, 0.05, size=a.shape), 0, 1)

    # Execute
    batch = ssim(a, b)
    single = [ssim(a[i], b[i]) for i in range(3)]

    # Assert
    assert batch == pytest.approx(float(np.mean(single)), abs=1e-12)
    assert len(set(single)) == 3


def test_region_equals_metric_on_crop() -> None:
    # Prepare: box (top=3, left=5, height=12, width=14)
    a = _rand(2, 3, 20, 24, seed=5)
    b = np.clip(a + np.random.default_rng(6).normal(0, 0.1, size=a.shape), 0, 1)
    box = (3, 5, 12, 14)
    ca, cb = a[..., 3:15, 5:19], b[..., 3:15, 5:19]

    # Execute / Assert
    assert mse(a, b, region=box) == pytest.approx(mse(ca, cb), abs=0)
    assert psnr(a, b, region=box) == pytest.approx(psnr(ca, cb), abs=0)
    assert ssim(a, b, region=box) == pytest.approx(ssim(ca, cb), abs=0)
    assert mse(a, b, region=box) != pytest.approx(mse(a, b), abs=1e-6)


def test_region_only_scores_inside_box() -> None:
    # Prepare: b differs from a only outside the box
    a = np.full((16, 16), 0.5)
    b = a.copy()
    b[:, :4] = 0.0

    # Execute / Assert
    assert psnr(a, b, region=(0, 4, 16, 12)) == math.inf
    assert psnr(a, b) < 20.0


@given(
    offset=st.floats(0.001, 0.5),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
)
@settings(max_examples=30, deadline=None)
def test_psnr_constant_offset_property(offset: float, h: int, w: int) -> None:
    # Prepare
    a = np.zeros((h, w))
    b = np.full((h, w), offset)

    # Execute / Assert: PSNR = -20 log10(offset)
    assert psnr(a, b) == pytest.approx(-20 * math.log10(offset), rel=1e-9)


def test_values_outside_unit_range_rejected() -> None:
    # Prepare
    a = np.zeros((4, 4))

    # Execute / Assert
    with pytest.raises(ValueError, match=r"b has values outside \[0, 1\]"):
        psnr(a, a + 1.5)
    with pytest.raises(ValueError, match=r"a has values outside \[0, 1\]"):
        mse(a - 0.1, a)
    with pytest.raises(ValueError, match="non-finite"):
        ssim(np.full((16, 16), np.nan), np.zeros((16, 16)))


def test_shape_problems_rejected() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="shape mismatch"):
        mse(np.zeros((3, 8, 8)), np.zeros((3, 8, 9)))
    with pytest.raises(ValueError, match=r"\[H, W\], \[C, H, W\] or \[N, C, H, W\]"):
        mse(np.zeros(8), np.zeros(8))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="does not fit"):
        mse(np.zeros((8, 8)), np.zeros((8, 8)), region=(4, 0, 5, 2))
    with pytest.raises(ValueError, match="height, width > 0"):
        mse(np.zeros((8, 8)), np.zeros((8, 8)), region=(0, 0, 0, 2))
    with pytest.raises(ValueError, match="data_range"):
        psnr(np.zeros((8, 8)), np.zeros((8, 8)), data_range=0.0)


def test_to_unit_range_inverts_normalisation_and_clamps() -> None:
    # Prepare
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
    img = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    normed = (img - m) / s
    normed[0, 0, 0, 0] = 100.0  # -> above 1 before clamping
    normed[0, 1, 0, 0] = -100.0  # -> below 0

    # Execute
    back_t = to_unit_range(normed, mean=mean, std=std)
    back_n = to_unit_range(normed.numpy(), mean=mean, std=std)

    # Assert
    torch.testing.assert_close(back_t[1], img[1], rtol=0, atol=1e-6)
    assert back_t[0, 0, 0, 0] == 1.0 and back_t[0, 1, 0, 0] == 0.0
    assert isinstance(back_n, np.ndarray)
    np.testing.assert_allclose(back_n, back_t.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="one value per channel"):
        to_unit_range(normed, mean=[0.5], std=[0.2])
    with pytest.raises(ValueError, match="std must be positive"):
        to_unit_range(normed, mean=mean, std=[0.2, 0.0, 0.1])


def test_lpips_unavailable_with_clear_message() -> None:
    # Prepare
    a = _rand(3, 16, 16)

    # Execute / Assert
    with pytest.raises(LPIPSUnavailableError, match="cannot be downloaded"):
        lpips(a, a)
    with pytest.raises(RuntimeError, match=r"weights_path='/w\.pth'"):
        lpips(a, a, weights_path="/w.pth")
    with pytest.raises(ValueError, match="shape mismatch"):
        lpips(a, a[:1])


def test_lpips_skips_cleanly() -> None:
    # Prepare
    a = _rand(3, 16, 16)

    # Execute
    try:
        lpips(a, a)
    except LPIPSUnavailableError as err:
        pytest.skip(str(err))
    pytest.fail("lpips unexpectedly returned")  # pragma: no cover
