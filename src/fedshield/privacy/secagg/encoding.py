"""Fixed-point encoding of clipped updates into the ring ``Z_R``, ``R = 2**bits``.

A coordinate ``x`` is clipped to ``[-c, c]``, scaled by ``scale`` and stochastically
rounded to an integer ``z`` with ``|z| <= half`` (``half = ceil(c * scale)``); the client
sends ``z + half`` in ``[0, 2 * half]``. The server decodes a sum of ``m`` encodings as
``(S - m * half) / scale`` with the difference read as a signed integer.

No wrap-around, ever: the configuration is accepted only if
``n * 2 * half <= R - 1``, i.e. the sum of all ``n`` clients' largest encodings fits in
the ring. Flower's SecAgg+ instead fixes ``target_range = 2**22`` levels per client in a
``2**32`` ring, so past ~1024 clients at full clip the sum silently wraps. With
``scale=None`` the largest safe power-of-two resolution is chosen for the given ``n``.

Error bound: stochastic rounding moves each coordinate by less than one step
``1 / scale`` (and is unbiased), so the decoded sum of ``m`` survivors differs from the
exact sum of their clipped inputs by less than ``m / scale`` per coordinate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_HALF", "QuantSpec", "decode_sum", "encode", "quant_spec"]

MAX_HALF = 2**51
"""Largest ``half``: keeps ``x * scale`` exact enough in float64 for stochastic rounding."""


@dataclass(frozen=True)
class QuantSpec:
    """Parameters of the fixed-point encoding.

    Attributes:
        bits: Ring size ``R = 2**bits`` (32 or 64).
        clip: Clipping range ``c``.
        scale: Levels per unit; the quantization step is ``1 / scale``.
        half: Integer offset ``ceil(c * scale)``; encodings lie in ``[0, 2 * half]``.
    """

    bits: int
    clip: float
    scale: float
    half: int

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        """The numpy word type of the ring (uint arithmetic wraps mod ``2**bits``)."""
        return np.uint32 if self.bits == 32 else np.uint64

    @property
    def step(self) -> float:
        """The quantization step ``1 / scale``."""
        return 1.0 / self.scale

    def bound(self, m: int) -> float:
        """Per-coordinate bound on the decoding error of a sum of ``m`` encodings."""
        return m * self.step


def quant_spec(n: int, clip: float, bits: int, scale: float | None = None) -> QuantSpec:
    """Choose (``scale=None``) or check the encoding for ``n`` clients.

    Args:
        n: Number of clients (the largest possible number of summands).
        clip: Clipping range ``c > 0``.
        bits: 32 or 64.
        scale: Levels per unit, or ``None`` for the largest power-of-two number of levels
            that cannot overflow.

    Returns:
        The :class:`QuantSpec`.

    Raises:
        ValueError: On bad arguments, or if ``n`` clipped inputs could wrap around the
            ring (the message names ``n``, ``clip`` and ``bits``).
    """
    if bits not in (32, 64):
        raise ValueError(f"bits must be 32 or 64, got {bits}")
    if not (math.isfinite(clip) and clip > 0):
        raise ValueError(f"clip must be a positive finite float, got {clip}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ring_max = (1 << bits) - 1
    if scale is None:
        levels = 1 << (((ring_max // n).bit_length()) - 1)  # largest 2^j with n*2^j <= R-1
        half = min(levels // 2, MAX_HALF)
        if half < 1:
            raise ValueError(
                f"overflow: n={n} clients with clip={clip} cannot be summed without "
                f"wrap-around in a 2^{bits} ring (not even 2 levels per client); use bits=64"
            )
        return QuantSpec(bits=bits, clip=float(clip), scale=half / clip, half=half)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite float, got {scale}")
    half = math.ceil(clip * scale)
    if half > MAX_HALF:
        raise ValueError(f"clip * scale = {clip * scale:g} exceeds 2^51 (float64 precision)")
    if n * 2 * half > ring_max:
        raise ValueError(
            f"overflow: n={n} clients x {2 * half} levels (clip={clip}, scale={scale:g}) "
            f"can sum to {n * 2 * half} > 2^{bits} - 1: the ring would wrap around; "
            f"lower scale or clip, or use bits=64"
        )
    return QuantSpec(bits=bits, clip=float(clip), scale=float(scale), half=half)


def encode(x: np.ndarray, spec: QuantSpec, rng: np.random.Generator) -> np.ndarray:
    """Clip, scale, stochastically round and offset one client's update.

    Args:
        x: 1-D float array.
        spec: The encoding.
        rng: Source of the rounding randomness.

    Returns:
        ``d`` words in ``[0, 2 * half]`` of dtype ``spec.dtype``.
    """
    v = np.clip(x.astype(np.float64), -spec.clip, spec.clip) * spec.scale
    low = np.floor(v)
    z = low + (rng.random(v.shape) < (v - low))
    np.clip(z, -spec.half, spec.half, out=z)  # float error at |x| = c only
    return (z.astype(np.int64) + spec.half).astype(spec.dtype)


def decode_sum(total: np.ndarray, m: int, spec: QuantSpec) -> np.ndarray:
    """Decode the ring sum of ``m`` encodings into a float64 sum of clipped inputs."""
    offset = spec.dtype(m * spec.half)  # < 2**bits by the overflow check
    signed = (total - offset).view(np.int32 if spec.bits == 32 else np.int64)
    return signed.astype(np.float64) / spec.scale
