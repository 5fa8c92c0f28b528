"""Tests for fedshield.privacy.fedqsn.quantize (FedQSN blockwise NF / uniform quantizer)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from fedshield.privacy.fedqsn.quantize import (
    NF_LOW,
    QuantizedTensor,
    codebook,
    max_block_error,
    nf_codebook,
    quantize_blockwise,
    quantize_dequantize,
    uniform_codebook,
)

# Positive NF4 levels, known independently (bitsandbytes / QLoRA NF4 table, whose positive
# half uses the same offset 0.9677083).
NF4_POSITIVE = [0.0796, 0.1609, 0.2461, 0.3379, 0.4407, 0.5626, 0.7230, 1.0]

SHAPES = [(7,), (64,), (3, 50), (5, 4, 13), (1,), (2, 2)]


def _blocks(flat: torch.Tensor, block_size: int) -> list[torch.Tensor]:
    """Independent block split: Python slices of the flattened tensor."""
    return [flat[i : i + block_size] for i in range(0, flat.numel(), block_size)]


# --------------------------------------------------------------------------- codebooks


def test_nf_low_constant() -> None:
    assert NF_LOW == 0.9677083


def test_nf4_codebook_matches_reference_levels() -> None:
    q = nf_codebook(4)
    assert q.dtype == torch.float32
    assert q.numel() == 17
    assert torch.all(q[1:] > q[:-1])
    assert torch.equal(q, -torch.flip(q, dims=[0]))
    assert (q == 0).sum().item() == 1
    assert q[0].item() == -1.0 and q[-1].item() == 1.0
    positive = q[q > 0].tolist()
    assert positive == pytest.approx(NF4_POSITIVE, abs=1e-3)


def test_nf1_codebook_is_minus_one_zero_one() -> None:
    assert nf_codebook(1).tolist() == [-1.0, 0.0, 1.0]


@pytest.mark.parametrize("bits", range(1, 9))
def test_nf_codebook_levels_and_symmetry(bits: int) -> None:
    q = nf_codebook(bits)
    assert q.numel() == 2**bits + 1
    assert torch.all(q[1:] > q[:-1])
    assert torch.equal(q, -torch.flip(q, dims=[0]))
    assert q[0].item() == -1.0 and q[-1].item() == 1.0
    assert bool((q == 0).any())


def test_nf_codebook_largest_interior_level_is_quantile_ratio() -> None:
    # Second-largest level is Phi^-1(u_1) / Phi^-1(NF_LOW), u_1 = NF_LOW - (NF_LOW-0.5)/2^(b-1).
    # Independent check via math.erf-based bisection (no scipy).
    def ppf(p: float) -> float:
        lo, hi = -10.0, 10.0
        for _ in range(200):
            mid = (lo + hi) / 2
            if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    bits = 3
    u1 = NF_LOW - (NF_LOW - 0.5) / 2 ** (bits - 1)
    expected = ppf(u1) / ppf(NF_LOW)
    assert nf_codebook(bits)[-2].item() == pytest.approx(expected, abs=1e-6)


def test_uniform_codebook() -> None:
    q = uniform_codebook(3)
    assert q.dtype == torch.float32
    expected = [-1.0, -5 / 7, -3 / 7, -1 / 7, 1 / 7, 3 / 7, 5 / 7, 1.0]
    assert q.tolist() == pytest.approx(expected, abs=1e-7)
    assert uniform_codebook(1).tolist() == [-1.0, 1.0]
    assert uniform_codebook(8).numel() == 256


def test_codebook_dispatch_and_unknown_kind() -> None:
    assert torch.equal(codebook("nf", 4), nf_codebook(4))
    assert torch.equal(codebook("uniform", 2), uniform_codebook(2))
    with pytest.raises(ValueError, match="kind") as info:
        codebook("int4", 4)
    assert "nf" in str(info.value) and "uniform" in str(info.value)


# ------------------------------------------------------------------ hand-computed example


def test_hand_computed_uniform_2bit_example() -> None:
    # Levels [-1, -1/3, 1/3, 1]; midpoints [-2/3, 0, 2/3].
    x = torch.tensor([0.5, -1.0, 0.25, 0.0])
    qt = quantize_blockwise(x, bits=2, block_size=2, kind="uniform")
    # Block 1: absmax 1 -> 0.5/1 = 0.5 is nearest to 1/3 (code 2); -1 -> -1 (code 0).
    # Block 2: absmax 0.25 -> 0.25/0.25 = 1 (code 3); 0 is a tie between -1/3 and 1/3;
    # the documented rule sends ties to the lower level: -1/3 (code 1) -> -0.25/3.
    assert qt.absmax.tolist() == [1.0, 0.25]
    assert qt.codes.tolist() == [2, 0, 3, 1]
    expected = [1 / 3, -1.0, 0.25, -0.25 / 3]
    assert qt.dequantize().tolist() == pytest.approx(expected, abs=1e-7)
    assert quantize_dequantize(x, bits=2, block_size=2, kind="uniform").tolist() == (
        pytest.approx(expected, abs=1e-7)
    )


def test_hand_computed_nf1_example_with_padding() -> None:
    # NF 1 bit: levels [-1, 0, 1], midpoints [-0.5, 0.5]. Block size 2 on 3 elements.
    x = torch.tensor([[0.4, -2.0, 0.6]])
    out = quantize_dequantize(x, bits=1, block_size=2)
    # Block 1 (absmax 2): 0.2 -> 0, -1 -> -1. Block 2 (absmax 0.6, short): 1 -> 1.
    assert out.shape == (1, 3)
    assert out.tolist() == [[0.0, -2.0, pytest.approx(0.6, abs=1e-7)]]


# ---------------------------------------------------------------------- error behaviour


@pytest.mark.parametrize("kind", ["nf", "uniform"])
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("shape", SHAPES)
def test_error_within_block_bound(kind: str, bits: int, shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(1000 * bits + math.prod(shape) + (kind == "nf"))
    x = torch.randn(shape, generator=gen) * 3.0
    block_size = 16
    qt = quantize_blockwise(x, bits=bits, block_size=block_size, kind=kind)
    xhat = qt.dequantize()
    bound = max_block_error(qt.codebook, qt.absmax)
    # Largest gap recomputed independently from the codebook as a Python list.
    levels = qt.codebook.tolist()
    half_gap = max(b - a for a, b in itertools.pairwise(levels)) / 2
    x_blocks = _blocks(x.reshape(-1), block_size)
    err_blocks = _blocks((x - xhat).abs().reshape(-1), block_size)
    assert len(x_blocks) == qt.absmax.numel() == bound.numel()
    for i, (xb, eb) in enumerate(zip(x_blocks, err_blocks, strict=True)):
        c = xb.abs().max().item()
        assert qt.absmax[i].item() == c
        assert bound[i].item() == pytest.approx(c * half_gap, rel=1e-6)
        assert eb.max().item() <= c * half_gap + 1e-6


@pytest.mark.parametrize("kind", ["nf", "uniform"])
@pytest.mark.parametrize("bits", [2, 4])
def test_codes_are_nearest_level_brute_force(kind: str, bits: int) -> None:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, 37, generator=gen)
    block_size = 10
    qt = quantize_blockwise(x, bits=bits, block_size=block_size, kind=kind)
    levels = qt.codebook.tolist()
    codes = qt.codes.tolist()
    for j, w in enumerate(x.reshape(-1).tolist()):
        block = x.reshape(-1)[(j // block_size) * block_size : (j // block_size + 1) * block_size]
        y = w / block.abs().max().item()
        dists = [abs(y - q) for q in levels]
        assert dists[codes[j]] == pytest.approx(min(dists), abs=1e-6)


@pytest.mark.parametrize("kind", ["nf", "uniform"])
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_absmax_elements_reproduced_exactly(kind: str, bits: int) -> None:
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(5, 19, generator=gen)
    block_size = 8
    xhat = quantize_dequantize(x, bits=bits, block_size=block_size, kind=kind)
    flat, flat_hat = x.reshape(-1), xhat.reshape(-1)
    for start in range(0, flat.numel(), block_size):
        block = flat[start : start + block_size]
        k = start + int(block.abs().argmax())
        assert flat_hat[k].item() == flat[k].item()


@pytest.mark.parametrize("kind", ["nf", "uniform"])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_idempotent(kind: str, bits: int) -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 33, generator=gen)
    once = quantize_dequantize(x, bits=bits, block_size=32, kind=kind)
    twice = quantize_dequantize(once, bits=bits, block_size=32, kind=kind)
    torch.testing.assert_close(twice, once, atol=1e-6, rtol=0)


def test_more_bits_smaller_error() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(4096, generator=gen)
    errs = [
        (x - quantize_dequantize(x, bits=b, block_size=64)).pow(2).mean().item() for b in (2, 4, 8)
    ]
    assert errs[0] > errs[1] > errs[2]


def test_nf_beats_uniform_on_gaussian_weights_at_4_bits() -> None:
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(8192, generator=gen)
    mse_nf = (x - quantize_dequantize(x, bits=4, block_size=64, kind="nf")).pow(2).mean()
    mse_u = (x - quantize_dequantize(x, bits=4, block_size=64, kind="uniform")).pow(2).mean()
    assert mse_nf < mse_u


# -------------------------------------------------------------------- container / wire


@pytest.mark.parametrize("bits", range(1, 8))
def test_codes_uint8_for_nf_up_to_7_bits(bits: int) -> None:
    qt = quantize_blockwise(torch.randn(10), bits=bits, block_size=4)
    assert qt.codes.dtype == torch.uint8
    assert int(qt.codes.max()) <= 2**bits


def test_codes_dtype_at_8_bits() -> None:
    x = torch.linspace(-1, 1, 300)
    nf = quantize_blockwise(x, bits=8, block_size=300, kind="nf")
    assert nf.codes.dtype == torch.int16
    assert int(nf.codes.max()) == 256 and int(nf.codes.min()) == 0
    uni = quantize_blockwise(x, bits=8, block_size=300, kind="uniform")
    assert uni.codes.dtype == torch.uint8
    assert int(uni.codes.max()) == 255


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_shape_and_dtype_round_trip(dtype: torch.dtype) -> None:
    x = torch.randn(3, 5, 7).to(dtype)
    qt = quantize_blockwise(x, bits=4, block_size=16)
    assert isinstance(qt, QuantizedTensor)
    assert qt.shape == (3, 5, 7)
    assert qt.block_size == 16
    assert qt.codes.shape == (105,)
    assert qt.absmax.shape == (7,)  # ceil(105 / 16)
    assert qt.absmax.dtype == torch.float32 and qt.codebook.dtype == torch.float32
    out = qt.dequantize()
    assert out.shape == x.shape and out.dtype == torch.float32


def test_scalar_tensor() -> None:
    out = quantize_dequantize(torch.tensor(-2.5), bits=3, block_size=4)
    assert out.shape == () and out.item() == -2.5


def test_nbytes_hand_computed() -> None:
    # NF 4 bits: 17 levels -> 5 bits/code; 100 codes -> ceil(500 / 8) = 63 bytes;
    # ceil(100 / 64) = 2 blocks -> 8 bytes of absmax.
    qt = quantize_blockwise(torch.randn(100), bits=4, block_size=64)
    assert qt.nbytes() == 71
    # Uniform 4 bits: 16 levels -> 4 bits/code -> 50 bytes + 8.
    assert (
        quantize_blockwise(torch.randn(100), bits=4, block_size=64, kind="uniform").nbytes() == 58
    )
    # NF 8 bits: 257 levels -> 9 bits; 10 codes -> ceil(90 / 8) = 12 bytes + 1 block * 4.
    assert quantize_blockwise(torch.randn(10), bits=8, block_size=64).nbytes() == 16
    # NF 1 bit: 3 levels -> 2 bits; 3 codes -> 1 byte + 3 blocks * 4.
    assert quantize_blockwise(torch.randn(3), bits=1, block_size=1).nbytes() == 13


def test_frozen() -> None:
    qt = quantize_blockwise(torch.randn(4), bits=2, block_size=2)
    with pytest.raises(AttributeError):
        qt.block_size = 3  # type: ignore[misc]


# ------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("kind", ["nf", "uniform"])
def test_zero_block_dequantizes_to_zeros(kind: str) -> None:
    x = torch.tensor([0.0, 0.0, 0.0, 1.5, -0.5, 0.0])
    qt = quantize_blockwise(x, bits=2, block_size=3, kind=kind)
    assert qt.absmax.tolist() == [0.0, 1.5]
    out = qt.dequantize()
    assert out[:3].tolist() == [0.0, 0.0, 0.0]
    assert torch.isfinite(out).all()
    assert out[3].item() == 1.5


def test_all_zero_tensor() -> None:
    out = quantize_dequantize(torch.zeros(2, 9), bits=4, block_size=4)
    assert torch.equal(out, torch.zeros(2, 9))


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 5)])
def test_empty_tensor(shape: tuple[int, ...]) -> None:
    x = torch.empty(shape)
    qt = quantize_blockwise(x, bits=4, block_size=8)
    assert qt.absmax.numel() == 0 and qt.codes.numel() == 0
    assert qt.nbytes() == 0
    out = qt.dequantize()
    assert out.shape == shape and out.dtype == torch.float32


def test_input_not_modified() -> None:
    x = torch.randn(4, 10, requires_grad=True)
    before = x.detach().clone()
    out = quantize_dequantize(x, bits=2, block_size=7)
    assert torch.equal(x.detach(), before)
    assert not out.requires_grad
    y = torch.randn(33)
    y_before = y.clone()
    quantize_blockwise(y, bits=4, block_size=8, kind="uniform")
    assert torch.equal(y, y_before)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"bits": 0, "block_size": 4}, "bits"),
        ({"bits": 9, "block_size": 4}, "bits"),
        ({"bits": 4.0, "block_size": 4}, "bits"),
        ({"bits": True, "block_size": 4}, "bits"),
        ({"bits": 4, "block_size": 0}, "block_size"),
        ({"bits": 4, "block_size": -3}, "block_size"),
        ({"bits": 4, "block_size": 2.5}, "block_size"),
        ({"bits": 4, "block_size": 4, "kind": "fp4"}, "kind"),
    ],
)
def test_bad_parameters(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        quantize_blockwise(torch.randn(8), **kwargs)


@pytest.mark.parametrize("bad", [0, 9, -1])
def test_bad_bits_in_codebooks(bad: int) -> None:
    with pytest.raises(ValueError, match="bits"):
        nf_codebook(bad)
    with pytest.raises(ValueError, match="bits"):
        uniform_codebook(bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input(bad: float) -> None:
    x = torch.tensor([1.0, bad, 2.0])
    with pytest.raises(ValueError, match="finite"):
        quantize_blockwise(x, bits=4, block_size=2)


def test_float64_overflowing_float32_rejected() -> None:
    with pytest.raises(ValueError, match="float32"):
        quantize_dequantize(torch.tensor([1e300], dtype=torch.float64), bits=4, block_size=2)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_integer_input_rejected(dtype: torch.dtype) -> None:
    x = torch.ones(4, dtype=dtype)
    with pytest.raises(ValueError, match="floating") as info:
        quantize_blockwise(x, bits=4, block_size=2)
    assert "x" in str(info.value)


def test_max_block_error_values() -> None:
    # Uniform 2 bits: gaps 2/3 -> half gap 1/3.
    bound = max_block_error(uniform_codebook(2), torch.tensor([3.0, 0.0, 0.3]))
    assert bound.tolist() == pytest.approx([1.0, 0.0, 0.1], abs=1e-7)
    # NF 1 bit: gaps 1 -> half gap 0.5.
    assert max_block_error(nf_codebook(1), torch.tensor([2.0])).tolist() == [1.0]
    with pytest.raises(ValueError, match="codebook"):
        max_block_error(torch.tensor([0.0]), torch.tensor([1.0]))
