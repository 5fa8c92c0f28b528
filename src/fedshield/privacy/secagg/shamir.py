"""Shamir secret sharing over the prime field GF(2**521 - 1).

Hand-written on purpose: the PyPI options either share over GF(2**128) in 16-byte chunks
(pycryptodome, which Flower pads and splits a 32-byte key into), are unmaintained, or are
not installable offline. Shamir's scheme is short enough to write and test directly: a
random polynomial ``f`` of degree ``t - 1`` with ``f(0) = secret``; share ``i`` is
``(x_i, f(x_i))``; any ``t`` shares give ``f(0)`` by Lagrange interpolation at zero, and
any ``t - 1`` shares are independent of the secret (every secret is consistent with them).

The Mersenne prime ``2**521 - 1`` holds a 32-byte secret (an X25519 private key or a PRG
seed) as a single field element, so one share is one 66-byte field element. Coefficients
come from :mod:`secrets` (the OS CSPRNG), never from a seeded generator.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

__all__ = [
    "PRIME",
    "SECRET_BYTES",
    "SHARE_BYTES",
    "bytes_to_secret",
    "reconstruct_secret",
    "secret_to_bytes",
    "split_secret",
]

PRIME: int = 2**521 - 1
"""The field modulus (a Mersenne prime)."""
SHARE_BYTES: int = (PRIME.bit_length() + 7) // 8  # 66
"""Bytes of one serialized share value (a field element, big-endian)."""
SECRET_BYTES: int = 32
"""Bytes of the secrets shared by SecAgg+ (X25519 private keys and PRG seeds)."""


def split_secret(secret: int, threshold: int, xs: Sequence[int]) -> list[int]:
    """Split ``secret`` into one share per evaluation point in ``xs``.

    Args:
        secret: The secret, an integer in ``[0, PRIME)``.
        threshold: Number of shares needed to reconstruct (the polynomial has degree
            ``threshold - 1``); ``1 <= threshold <= len(xs)``.
        xs: Distinct, nonzero evaluation points in ``[1, PRIME)`` (SecAgg+ uses the
            recipient's client id plus one).

    Returns:
        ``f(x)`` for each ``x`` in ``xs``, in the same order.

    Raises:
        ValueError: On an out-of-range secret, a bad threshold, or bad points.
    """
    if not 0 <= secret < PRIME:
        raise ValueError("secret must lie in [0, PRIME)")
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold must be in [1, {len(xs)}] (number of shares), got {threshold}")
    _check_points(xs)
    coefficients = [secret] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = []
    for x in xs:
        acc = 0
        for a in reversed(coefficients):  # Horner
            acc = (acc * x + a) % PRIME
        shares.append(acc)
    return shares


def reconstruct_secret(points: Sequence[tuple[int, int]]) -> int:
    """Interpolate the polynomial through ``points`` and evaluate it at zero.

    With at least ``threshold`` shares of one sharing, this returns the secret; with fewer
    it returns an unrelated field element (garbage, not an error: Shamir cannot tell).

    Args:
        points: ``(x, y)`` shares with distinct nonzero ``x``.

    Returns:
        ``f(0)``, an integer in ``[0, PRIME)``.

    Raises:
        ValueError: If ``points`` is empty or the ``x`` are not distinct and nonzero.
    """
    if not points:
        raise ValueError("need at least one share to reconstruct")
    xs = [x for x, _ in points]
    _check_points(xs)
    secret = 0
    for j, (xj, yj) in enumerate(points):
        num, den = 1, 1
        for m, xm in enumerate(xs):
            if m != j:
                num = (num * xm) % PRIME
                den = (den * (xm - xj)) % PRIME
        secret = (secret + yj * num * pow(den, -1, PRIME)) % PRIME
    return secret


def secret_to_bytes(value: int) -> bytes:
    """Encode a reconstructed field element as a ``SECRET_BYTES``-byte secret.

    Raises:
        ValueError: If the value does not fit (the shares were too few or inconsistent:
            a wrong reconstruction is uniform in the field, so it fits with probability
            ``2**-265``).
    """
    if not 0 <= value < 1 << (8 * SECRET_BYTES):
        raise ValueError("reconstructed value is not a valid secret (too few or bad shares)")
    return value.to_bytes(SECRET_BYTES, "big")


def bytes_to_secret(secret: bytes) -> int:
    """Decode a ``SECRET_BYTES``-byte secret into a field element."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"secret must be {SECRET_BYTES} bytes, got {len(secret)}")
    return int.from_bytes(secret, "big")


def _check_points(xs: Sequence[int]) -> None:
    if any(not 0 < x < PRIME for x in xs):
        raise ValueError("share points must be nonzero field elements")
    if len(set(xs)) != len(xs):
        raise ValueError("share points must be distinct")
