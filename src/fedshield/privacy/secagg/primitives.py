"""Cryptographic primitives of SecAgg+, all from ``cryptography`` (OpenSSL).

- Key agreement: X25519; the raw shared secret goes through HKDF-SHA256 with a
  purpose label (``info``) and the round id as salt, so the encryption key and the mask
  seed of a pair of clients are independent.
- Authenticated encryption of Shamir shares: AES-256-GCM with a random 96-bit nonce and
  the (round, sender, recipient) as associated data, so the server can neither read,
  modify, nor re-route a share.
- Mask PRG: the AES-256-CTR keystream under the 32-byte seed (zero IV), one call per
  mask, viewed as little-endian ``uint32``/``uint64`` words with ``np.frombuffer``. A seed
  is a fresh per-round secret (``b_u`` from ``os.urandom``, ``s_uv`` from fresh keys), so
  every key is used for a single keystream.
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "ENC_INFO",
    "KEY_BYTES",
    "MASK_INFO",
    "NONCE_BYTES",
    "TAG_BYTES",
    "aead_decrypt",
    "aead_encrypt",
    "agree",
    "generate_private_key",
    "prg_words",
    "private_bytes",
    "private_key_from_bytes",
    "public_bytes",
]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
ENC_INFO = b"fedshield/secagg+/v1/share-encryption"
MASK_INFO = b"fedshield/secagg+/v1/pairwise-mask"

_ZERO_IV = bytes(16)


def generate_private_key() -> X25519PrivateKey:
    """A fresh X25519 private key (OS randomness)."""
    return X25519PrivateKey.generate()


def private_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32-byte private key."""
    return key.private_bytes_raw()


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32-byte public key of ``key``."""
    return key.public_key().public_bytes_raw()


def private_key_from_bytes(raw: bytes) -> X25519PrivateKey:
    """Load a raw 32-byte X25519 private key."""
    return X25519PrivateKey.from_private_bytes(raw)


def agree(private: X25519PrivateKey, peer_public: bytes, info: bytes, salt: bytes) -> bytes:
    """X25519 with ``peer_public``, then HKDF-SHA256 to a 32-byte key.

    Args:
        private: Own private key.
        peer_public: The peer's raw 32-byte public key.
        info: Purpose label (:data:`ENC_INFO` or :data:`MASK_INFO`).
        salt: The round id.

    Returns:
        32 bytes, the same on both sides of the pair.
    """
    shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info)
    return hkdf.derive(shared)


def aead_encrypt(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """AES-256-GCM: ``nonce || ciphertext || tag``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def aead_decrypt(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    """Inverse of :func:`aead_encrypt`.

    Raises:
        ValueError: If the ciphertext, nonce, tag or associated data were altered.
    """
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise ValueError("sealed share is too short")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)
    except InvalidTag as exc:
        raise ValueError("share failed authentication (tampered or misrouted)") from exc


def prg_words(seed: bytes, d: int, dtype: type[np.unsignedinteger]) -> np.ndarray:
    """Expand ``seed`` into ``d`` pseudorandom words (AES-256-CTR keystream).

    Args:
        seed: 32-byte key.
        d: Number of words.
        dtype: ``np.uint32`` or ``np.uint64``.

    Returns:
        A read-only array of ``d`` words, uniform over the dtype's range.
    """
    nbytes = d * np.dtype(dtype).itemsize
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(_ZERO_IV)).encryptor()
    stream = encryptor.update(bytes(nbytes))
    return np.frombuffer(stream, dtype=np.dtype(dtype).newbyteorder("<"), count=d)
