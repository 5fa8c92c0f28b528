"""Blockwise absmax quantization onto a normal-quantile ("NF-style") or uniform codebook.

Xu et al. "FedQSN: ..." arXiv 2508.18911, EMNLP 2025 Findings. The server sends clients a
quantized proxy of its model; the reference code's quantizer maps each block of weights
onto a fixed codebook ``Q`` of levels in ``[-1, 1]`` scaled by the block's absmax.

NF codebook for ``b`` bits (:func:`nf_codebook`)::

    u = linspace(0.9677083, 0.5, 2^(b-1) + 1)[:-1]           (2^(b-1) values, 0.5 dropped)
    Q = sort({Phi^-1(u)} ∪ {0} ∪ {-Phi^-1(u)}) / max(Q)      (2^b + 1 levels, Q[0] = -1,
                                                              Q[-1] = 1, symmetric)

with ``Phi^-1`` the standard normal quantile (``scipy.stats.norm.ppf``). For ``b = 4`` the
positive levels are about ``.0796, .1609, .2461, .3379, .4407, .5626, .723, 1``. The
uniform baseline (:func:`uniform_codebook`) is ``linspace(-1, 1, 2^b)`` (``2^b`` levels).

Blockwise rule (:func:`quantize_blockwise`): the tensor is flattened and cut into blocks of
``B`` consecutive elements. For a block ``w`` with ``c = max_i |w_i|``::

    code_i = argmin_k |w_i / c - Q[k]|        (midpoint thresholds, ties -> lower level)
    w^_i   = c * Q[code_i]

A block with ``c = 0`` dequantizes to zeros. Since ``+-1`` are levels, each block's
largest-magnitude element is reproduced exactly, and the per-element error is at most
``c * max_k (Q[k+1] - Q[k]) / 2`` (:func:`max_block_error`). A value exactly on a midpoint
goes to the lower (more negative) of its two neighbouring levels (``torch.bucketize`` with
``right=False``); with the uniform codebook at even level counts this happens for ``w = 0``,
e.g. 2 bits: ``0 -> -c/3``.

Deviations and accounting notes:

- The reference code requires ``numel`` to be divisible by ``B``. Here the last block is
  zero-padded instead; padding zeros do not change its absmax and are dropped from the
  output, so the last block is simply shorter.
- The NF codebook has ``2^b + 1`` levels, so a code needs ``ceil(log2(2^b + 1)) = b + 1``
  bits on the wire, not ``b``. :meth:`QuantizedTensor.nbytes` counts that honestly (plus
  4 bytes of float32 absmax per block; the codebook is known to both sides and not counted).
  In memory, codes are ``uint8`` when they fit and ``int16`` otherwise (NF at 8 bits has
  257 levels).

Everything is computed in float32 on the input's device, without Python loops over blocks
or elements; quantization is not differentiable (the input is detached).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from scipy.stats import norm
from torch import Tensor

__all__ = [
    "NF_LOW",
    "QuantizedTensor",
    "codebook",
    "max_block_error",
    "nf_codebook",
    "quantize_blockwise",
    "quantize_dequantize",
    "uniform_codebook",
]

NF_LOW: float = 0.9677083
"""Upper quantile of the NF codebook: ``Phi^-1(NF_LOW)`` becomes the level 1."""

_KINDS: tuple[str, ...] = ("nf", "uniform")
_MAX_BITS = 8


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise ValueError(f"bits must be an int in [1, {_MAX_BITS}], got {bits!r}")
    if not 1 <= bits <= _MAX_BITS:
        raise ValueError(f"bits must be in [1, {_MAX_BITS}], got {bits}")


def _check_block_size(block_size: int) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int):
        raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")


@functools.cache
def _nf_levels(bits: int) -> tuple[float, ...]:
    u = torch.linspace(NF_LOW, 0.5, 2 ** (bits - 1) + 1, dtype=torch.float64)[:-1]
    v = torch.from_numpy(norm.ppf(u.numpy())).to(torch.float64)
    levels = torch.cat([-v, torch.zeros(1, dtype=torch.float64), v])
    levels = torch.sort(levels).values / v.max()
    return tuple(float(q) for q in levels)


def nf_codebook(bits: int) -> Tensor:
    """Normal-quantile ("NF-style") codebook of FedQSN's reference quantizer.

    Args:
        bits: Nominal bit width ``b`` in ``[1, 8]``.

    Returns:
        float32 tensor of ``2**bits + 1`` levels, sorted ascending, symmetric around 0,
        containing 0, with ``Q[0] = -1`` and ``Q[-1] = 1`` exactly.

    Raises:
        ValueError: If ``bits`` is not an int in ``[1, 8]``.
    """
    _check_bits(bits)
    return torch.tensor(_nf_levels(bits), dtype=torch.float32)


def uniform_codebook(bits: int) -> Tensor:
    """Uniform baseline codebook ``linspace(-1, 1, 2**bits)``.

    Args:
        bits: Bit width ``b`` in ``[1, 8]``.

    Returns:
        float32 tensor of ``2**bits`` evenly spaced levels from -1 to 1.

    Raises:
        ValueError: If ``bits`` is not an int in ``[1, 8]``.
    """
    _check_bits(bits)
    return torch.linspace(-1.0, 1.0, 2**bits, dtype=torch.float32)


def codebook(kind: str, bits: int) -> Tensor:
    """Codebook of the given kind.

    Args:
        kind: ``"nf"`` (:func:`nf_codebook`) or ``"uniform"`` (:func:`uniform_codebook`).
        bits: Bit width in ``[1, 8]``.

    Returns:
        float32 tensor of sorted levels in ``[-1, 1]``.

    Raises:
        ValueError: If ``kind`` is unknown or ``bits`` is invalid.
    """
    if kind == "nf":
        return nf_codebook(bits)
    if kind == "uniform":
        return uniform_codebook(bits)
    raise ValueError(f"unknown codebook kind {kind!r}; known kinds: {', '.join(_KINDS)}")


def _code_dtype(levels: int) -> torch.dtype:
    """Smallest integer dtype that holds the code ``levels - 1``."""
    if levels - 1 <= torch.iinfo(torch.uint8).max:
        return torch.uint8
    return torch.int16


def _bits_per_code(levels: int) -> int:
    """``ceil(log2(levels))`` (at least 1), computed exactly on integers."""
    return max(1, (levels - 1).bit_length())


@dataclass(frozen=True, eq=False)
class QuantizedTensor:
    """A blockwise-quantized tensor as sent on the wire.

    Attributes:
        codes: Integer codes, one per element of the flattened tensor (``uint8`` when the
            codebook has at most 256 levels, else ``int16``), indexing ``codebook``.
        absmax: float32 ``[num_blocks]`` per-block scale ``max |w|``.
        codebook: float32 ``[levels]`` sorted levels in ``[-1, 1]``.
        shape: Shape of the original tensor.
        block_size: Number of consecutive flattened elements per block (the last block may
            be shorter).
    """

    codes: Tensor
    absmax: Tensor
    codebook: Tensor
    shape: tuple[int, ...]
    block_size: int

    def dequantize(self) -> Tensor:
        """Reconstruct the tensor: ``absmax[block] * codebook[code]`` per element.

        Returns:
            float32 tensor of shape :attr:`shape` on the codes' device.
        """
        numel = self.codes.numel()
        if numel == 0:
            return torch.zeros(self.shape, dtype=torch.float32, device=self.codes.device)
        levels = self.codebook[self.codes.long()]
        scales = self.absmax.repeat_interleave(self.block_size)[:numel]
        return (scales * levels).reshape(self.shape)

    def nbytes(self) -> int:
        """Bytes on the wire.

        ``ceil(numel * ceil(log2(levels)) / 8)`` bytes of packed codes plus 4 bytes (float32
        absmax) per block. The codebook is not counted: both sides know it. The NF codebook
        has ``2**b + 1`` levels, so it costs ``b + 1`` bits per code.

        Returns:
            Number of bytes.
        """
        code_bits = self.codes.numel() * _bits_per_code(self.codebook.numel())
        return -(-code_bits // 8) + 4 * self.absmax.numel()


def _check_input(x: Tensor) -> Tensor:
    """Validate ``x`` and return a detached float32 copy-or-view of it."""
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    x32 = x.detach().to(torch.float32)
    if x.numel() > 0:
        if not bool(torch.isfinite(x).all()):
            n_bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"x must have all finite values, got {n_bad} NaN/inf value(s)")
        if not bool(torch.isfinite(x32).all()):
            raise ValueError("x must have all values representable in float32 (overflow)")
    return x32


def quantize_blockwise(
    x: Tensor, *, bits: int, block_size: int, kind: str = "nf"
) -> QuantizedTensor:
    """Blockwise absmax quantization of ``x`` onto a codebook.

    The flattened tensor is cut into blocks of ``block_size`` consecutive elements (the
    last one zero-padded internally if needed; the padding is not part of the output).
    Each element ``w`` of a block with scale ``c = max |w|`` gets the code of the level
    nearest to ``w / c`` (ties go to the lower level); an all-zero block gets scale 0 and
    dequantizes to zeros. ``x`` is not modified.

    Args:
        x: Floating-point tensor with finite values, any shape (empty allowed).
        bits: Bit width in ``[1, 8]`` (the NF codebook has ``2**bits + 1`` levels).
        block_size: Elements per block, ``>= 1``.
        kind: ``"nf"`` or ``"uniform"``.

    Returns:
        The :class:`QuantizedTensor` (float32 scales and codebook on ``x``'s device).

    Raises:
        ValueError: If ``bits``, ``block_size``, ``kind`` or ``x`` is invalid.
    """
    _check_bits(bits)
    _check_block_size(block_size)
    levels = codebook(kind, bits)
    x32 = _check_input(x)
    levels = levels.to(x32.device)
    shape = tuple(x32.shape)
    flat = x32.reshape(-1)
    numel = flat.numel()
    num_blocks = -(-numel // block_size)
    code_dtype = _code_dtype(levels.numel())
    if numel == 0:
        return QuantizedTensor(
            codes=torch.zeros(0, dtype=code_dtype, device=x32.device),
            absmax=torch.zeros(0, dtype=torch.float32, device=x32.device),
            codebook=levels,
            shape=shape,
            block_size=block_size,
        )
    pad = num_blocks * block_size - numel
    blocks = torch.nn.functional.pad(flat, (0, pad)).reshape(num_blocks, block_size)
    absmax = blocks.abs().amax(dim=1)
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    scaled = blocks / safe.unsqueeze(1)
    midpoints = (levels[1:] + levels[:-1]) / 2
    codes = torch.bucketize(scaled, midpoints, right=False).reshape(-1)[:numel]
    return QuantizedTensor(
        codes=codes.to(code_dtype),
        absmax=absmax,
        codebook=levels,
        shape=shape,
        block_size=block_size,
    )


def quantize_dequantize(x: Tensor, *, bits: int, block_size: int, kind: str = "nf") -> Tensor:
    """Quantize and immediately dequantize ``x`` (the proxy's weights as a client sees them).

    Args:
        x: Floating-point tensor with finite values.
        bits: Bit width in ``[1, 8]``.
        block_size: Elements per block, ``>= 1``.
        kind: ``"nf"`` or ``"uniform"``.

    Returns:
        float32 tensor of ``x``'s shape.

    Raises:
        ValueError: As :func:`quantize_blockwise`.
    """
    return quantize_blockwise(x, bits=bits, block_size=block_size, kind=kind).dequantize()


def max_block_error(codebook: Tensor, absmax: Tensor) -> Tensor:
    """Per-block bound on ``|w - w^|``: ``absmax * max_k (Q[k+1] - Q[k]) / 2``.

    Valid because ``w / absmax`` lies in ``[-1, 1]``, whose endpoints are levels, so it is
    never farther than half the largest gap from its nearest level.

    Args:
        codebook: Sorted levels ``Q`` (at least two).
        absmax: Per-block scales.

    Returns:
        Tensor of ``absmax``'s shape.

    Raises:
        ValueError: If ``codebook`` has fewer than two levels.
    """
    if codebook.numel() < 2:
        raise ValueError(f"codebook must have at least 2 levels, got {codebook.numel()}")
    half_gap = (codebook[1:] - codebook[:-1]).max() / 2
    return absmax * half_gap.to(absmax.dtype)
