"""Explicit byte serialization of the SecAgg+ messages (little-endian ``struct`` layouts).

Every message starts with a one-byte tag. Client ids are ``uint32``; public keys are raw
32-byte X25519 keys; sealed shares are ``nonce || AES-GCM ciphertext || tag``; Shamir
share values are 66-byte big-endian field elements; masked vectors are raw little-endian
``uint32``/``uint64`` words. The in-process driver passes exactly these bytes between
client and server objects (and counts them), so the same code could run over a network.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from fedshield.privacy.secagg.shamir import SHARE_BYTES

__all__ = [
    "ROUND_ID_BYTES",
    "Keys",
    "Setup",
    "UnmaskRequest",
    "decode_advertise",
    "decode_keys",
    "decode_masked",
    "decode_routed",
    "decode_setup",
    "decode_shares",
    "decode_unmask_request",
    "decode_unmask_response",
    "encode_advertise",
    "encode_keys",
    "encode_masked",
    "encode_routed",
    "encode_setup",
    "encode_shares",
    "encode_unmask_request",
    "encode_unmask_response",
]

ROUND_ID_BYTES = 16
PK = 32

TAG_SETUP = 1
TAG_ADVERTISE = 2
TAG_KEYS = 3
TAG_SHARES = 4
TAG_ROUTED = 5
TAG_MASKED = 6
TAG_UNMASK_REQUEST = 7
TAG_UNMASK_RESPONSE = 8

SHARE_B = 0  # kind byte of an unmask share: a share of the self-mask seed b_u
SHARE_SK = 1  # a share of the mask private key s_u^SK

_SETUP = struct.Struct(f"<B{ROUND_ID_BYTES}sIIIIIBdQI")


class WireError(ValueError):
    """A malformed message."""


@dataclass(frozen=True)
class Setup:
    """Round parameters sent by the server to each client (SecAgg+ setup)."""

    round_id: bytes
    client_id: int
    n: int
    d: int
    threshold: int
    degree: int
    bits: int
    clip: float
    half: int
    neighbours: tuple[int, ...]


@dataclass(frozen=True)
class Keys:
    """A client's two public keys: ``c`` (share encryption) and ``s`` (pairwise masks)."""

    c_pk: bytes
    s_pk: bytes


@dataclass(frozen=True)
class UnmaskRequest:
    """The neighbours whose ``b`` shares (survivors) / ``s^SK`` shares (dropped) to reveal."""

    n_survivors: int
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]


def _expect(buf: bytes, tag: int, minimum: int) -> None:
    if len(buf) < minimum or buf[0] != tag:
        raise WireError(f"expected message tag {tag} of at least {minimum} bytes")


def _ids(buf: bytes, offset: int) -> tuple[tuple[int, ...], int]:
    (count,) = struct.unpack_from("<I", buf, offset)
    offset += 4
    if len(buf) < offset + 4 * count:
        raise WireError("truncated id list")
    ids = struct.unpack_from(f"<{count}I", buf, offset)
    return tuple(ids), offset + 4 * count


def _pack_ids(ids: tuple[int, ...] | list[int]) -> bytes:
    return struct.pack(f"<I{len(ids)}I", len(ids), *ids)


def encode_setup(s: Setup) -> bytes:
    """Serialize a :class:`Setup`."""
    head = _SETUP.pack(
        TAG_SETUP,
        s.round_id,
        s.client_id,
        s.n,
        s.d,
        s.threshold,
        s.degree,
        s.bits,
        s.clip,
        s.half,
        len(s.neighbours),
    )
    return head + struct.pack(f"<{len(s.neighbours)}I", *s.neighbours)


def decode_setup(buf: bytes) -> Setup:
    """Parse a :class:`Setup`."""
    _expect(buf, TAG_SETUP, _SETUP.size)
    _, rid, cid, n, d, t, k, bits, clip, half, count = _SETUP.unpack_from(buf)
    if len(buf) != _SETUP.size + 4 * count:
        raise WireError("setup message has the wrong length")
    neighbours = struct.unpack_from(f"<{count}I", buf, _SETUP.size)
    return Setup(rid, cid, n, d, t, k, bits, clip, half, tuple(neighbours))


def encode_advertise(client_id: int, keys: Keys) -> bytes:
    """Round 0 (AdvertiseKeys), client -> server: id and the two public keys."""
    return struct.pack("<BI", TAG_ADVERTISE, client_id) + keys.c_pk + keys.s_pk


def decode_advertise(buf: bytes) -> tuple[int, Keys]:
    """Parse an AdvertiseKeys message."""
    _expect(buf, TAG_ADVERTISE, 5 + 2 * PK)
    if len(buf) != 5 + 2 * PK:
        raise WireError("advertise message has the wrong length")
    (cid,) = struct.unpack_from("<I", buf, 1)
    return cid, Keys(bytes(buf[5 : 5 + PK]), bytes(buf[5 + PK :]))


def encode_keys(keys: dict[int, Keys]) -> bytes:
    """Round 0, server -> client: the public keys of the client's live neighbours."""
    parts = [struct.pack("<BI", TAG_KEYS, len(keys))]
    for cid in sorted(keys):
        parts += [struct.pack("<I", cid), keys[cid].c_pk, keys[cid].s_pk]
    return b"".join(parts)


def decode_keys(buf: bytes) -> dict[int, Keys]:
    """Parse a neighbour-keys message."""
    _expect(buf, TAG_KEYS, 5)
    (count,) = struct.unpack_from("<I", buf, 1)
    item = 4 + 2 * PK
    if len(buf) != 5 + count * item:
        raise WireError("keys message has the wrong length")
    out: dict[int, Keys] = {}
    for i in range(count):
        off = 5 + i * item
        (cid,) = struct.unpack_from("<I", buf, off)
        out[cid] = Keys(bytes(buf[off + 4 : off + 4 + PK]), bytes(buf[off + 4 + PK : off + item]))
    return out


def _encode_sealed(tag: int, owner: int, sealed: dict[int, bytes]) -> bytes:
    parts = [struct.pack("<BII", tag, owner, len(sealed))]
    for cid in sorted(sealed):
        parts += [struct.pack("<II", cid, len(sealed[cid])), sealed[cid]]
    return b"".join(parts)


def _decode_sealed(buf: bytes, tag: int) -> tuple[int, dict[int, bytes]]:
    _expect(buf, tag, 9)
    owner, count = struct.unpack_from("<II", buf, 1)
    off, out = 9, {}
    for _ in range(count):
        if len(buf) < off + 8:
            raise WireError("truncated sealed-share list")
        cid, length = struct.unpack_from("<II", buf, off)
        off += 8
        if len(buf) < off + length:
            raise WireError("truncated sealed share")
        out[cid] = bytes(buf[off : off + length])
        off += length
    if off != len(buf):
        raise WireError("trailing bytes after sealed shares")
    return owner, out


def encode_shares(src: int, sealed: dict[int, bytes]) -> bytes:
    """Round 1 (ShareKeys), client -> server: sealed shares keyed by recipient."""
    return _encode_sealed(TAG_SHARES, src, sealed)


def decode_shares(buf: bytes) -> tuple[int, dict[int, bytes]]:
    """Parse a ShareKeys message: ``(sender, {recipient: sealed})``."""
    return _decode_sealed(buf, TAG_SHARES)


def encode_routed(dst: int, sealed: dict[int, bytes]) -> bytes:
    """Round 1, server -> client: the sealed shares addressed to ``dst``, keyed by sender."""
    return _encode_sealed(TAG_ROUTED, dst, sealed)


def decode_routed(buf: bytes) -> tuple[int, dict[int, bytes]]:
    """Parse a routed-shares message: ``(recipient, {sender: sealed})``."""
    return _decode_sealed(buf, TAG_ROUTED)


def encode_masked(client_id: int, y: np.ndarray, bits: int) -> bytes:
    """Round 2 (MaskedInputCollection), client -> server: the masked vector."""
    words = y.astype(np.dtype(f"<u{bits // 8}"), copy=False)
    return struct.pack("<BIBI", TAG_MASKED, client_id, bits, words.size) + words.tobytes()


def decode_masked(buf: bytes) -> tuple[int, np.ndarray]:
    """Parse a masked-input message: ``(sender, words)`` (read-only view of ``buf``)."""
    _expect(buf, TAG_MASKED, 10)
    cid, bits, d = struct.unpack_from("<IBI", buf, 1)
    if bits not in (32, 64) or len(buf) != 10 + d * bits // 8:
        raise WireError("masked-input message has the wrong length")
    return cid, np.frombuffer(buf, dtype=np.dtype(f"<u{bits // 8}"), count=d, offset=10)


def encode_unmask_request(req: UnmaskRequest) -> bytes:
    """Round 3 (Unmasking), server -> client: which neighbours' shares to reveal."""
    head = struct.pack("<BI", TAG_UNMASK_REQUEST, req.n_survivors)
    return head + _pack_ids(req.survivors) + _pack_ids(req.dropped)


def decode_unmask_request(buf: bytes) -> UnmaskRequest:
    """Parse an unmask request."""
    _expect(buf, TAG_UNMASK_REQUEST, 13)
    (n_survivors,) = struct.unpack_from("<I", buf, 1)
    survivors, off = _ids(buf, 5)
    dropped, off = _ids(buf, off)
    if off != len(buf):
        raise WireError("trailing bytes in unmask request")
    return UnmaskRequest(n_survivors, survivors, dropped)


def encode_unmask_response(client_id: int, shares: list[tuple[int, int, int]]) -> bytes:
    """Round 3, client -> server: ``(owner, kind, value)`` shares (kind ``SHARE_B``/``SK``)."""
    parts = [struct.pack("<BII", TAG_UNMASK_RESPONSE, client_id, len(shares))]
    for owner, kind, value in shares:
        parts += [struct.pack("<IB", owner, kind), value.to_bytes(SHARE_BYTES, "big")]
    return b"".join(parts)


def decode_unmask_response(buf: bytes) -> tuple[int, list[tuple[int, int, int]]]:
    """Parse an unmask response: ``(sender, [(owner, kind, value)])``."""
    _expect(buf, TAG_UNMASK_RESPONSE, 9)
    cid, count = struct.unpack_from("<II", buf, 1)
    item = 5 + SHARE_BYTES
    if len(buf) != 9 + count * item:
        raise WireError("unmask response has the wrong length")
    out = []
    for i in range(count):
        off = 9 + i * item
        owner, kind = struct.unpack_from("<IB", buf, off)
        if kind not in (SHARE_B, SHARE_SK):
            raise WireError(f"unknown share kind {kind}")
        out.append((owner, kind, int.from_bytes(buf[off + 5 : off + item], "big")))
    return cid, out
