"""Homomorphic-encryption aggregation of the update matrix: CKKS (TenSEAL) and Paillier (phe).

The update matrix ``updates: Tensor[n, d]`` holds client ``k``'s update in row ``k``. Each
client encrypts its row; the server adds ciphertexts without being able to read them; a
separate key holder decrypts only the (optionally weighted) sum ``sum_k w_k x_k``.

Parties and objects (the server never holds a secret key):

- **Key holder**: :func:`ckks_context` returns :class:`CKKSKeys` (the secret TenSEAL context
  and its public part); :func:`paillier_keys` returns :class:`PaillierKeys`. Only these
  objects decrypt (:func:`ckks_decrypt`, :func:`paillier_decrypt`).
- **Clients**: receive :class:`CKKSPublicContext` (serialized context *without* the secret
  key) or the Paillier public key and call :func:`ckks_encrypt` / :func:`paillier_encrypt`.
- **Server**: :class:`CKKSServer` (built from the public context only; its context's
  ``is_private()`` is ``False``) adds ciphertexts, optionally after multiplying each by a
  plaintext weight (:func:`ckks_sum`, :func:`paillier_sum`).

TenSEAL has no threshold decryption, so "threshold" here is the simple split: the key holder
is a different party from the server (a non-colluding third party or a designated client
committee that holds the secret key); see ``docs/homomorphic-encryption.md``.

CKKS (Cheon, Kim, Kim, Song 2017). A row is cut into chunks of ``N/2`` values (``N`` the
polynomial modulus degree), each chunk batched into the slots of one ciphertext and scaled by
``Delta = 2^scale_bits``. Decryption is approximate: every ciphertext carries noise. With the
heuristic high-probability canonical-embedding bounds of Cheon et al. (Lemma 1-2, ternary
secret of Hamming weight ``h <= N``, error std ``sigma = 3.2``), one fresh encryption has
per-slot noise at most ``B_clean / Delta`` with

    B_clean = 8 sqrt(2) sigma N + 6 sigma sqrt(N) + 16 sigma sqrt(h N) + N / 2

(the last term bounds the rounding of the encoding), a rescale adds at most
``B_scale / Delta`` with ``B_scale = sqrt(N / 3) (3 + 8 sqrt(h))``, and sums add bounds. For
``N = 8192`` and ``Delta = 2^40`` this is ``6.6e-7`` per encryption, so the sum of ``n``
fresh encryptions is within ``n * 2^-20`` of the exact sum per coordinate (measured errors are
about 100 times smaller). :func:`ckks_error_bound` tracks the bound through weighting and
adds the floating-point terms of decoding and of the output dtype.

Paillier (Paillier 1999). Additively homomorphic and exact over ``Z_n``: each coordinate is
fixed-point encoded as ``round(x * 2^precision_bits)`` and encrypted separately (one
ciphertext of ``2 * key_bits`` bits per coordinate), so it suits small vectors only. The
error is the rounding, ``2^-(precision_bits + 1)`` per client and coordinate.

References:
    Cheon, Kim, Kim, Song. "Homomorphic Encryption for Arithmetic of Approximate Numbers."
    ASIACRYPT 2017.
    Benaissa, Retiat, Cebere, Belfedhal. "TenSEAL: A Library for Encrypted Tensor
    Operations Using Homomorphic Encryption." ICLR 2021 workshop (arXiv:2104.03152).
    Paillier. "Public-Key Cryptosystems Based on Composite Degree Residuosity Classes."
    EUROCRYPT 1999.

Requires the optional extra: ``pip install "fedshield[he]"`` (``tenseal``, ``phe``).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from numbers import Real
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from fedshield.aggregators.checks import check_updates, check_weights

__all__ = [
    "CKKSCiphertext",
    "CKKSKeys",
    "CKKSParams",
    "CKKSPublicContext",
    "CKKSServer",
    "HEResult",
    "PaillierCiphertext",
    "PaillierKeys",
    "ckks_context",
    "ckks_decrypt",
    "ckks_encrypt",
    "ckks_error_bound",
    "ckks_fresh_noise",
    "ckks_sum",
    "he_sum",
    "paillier_decrypt",
    "paillier_encrypt",
    "paillier_error_bound",
    "paillier_keys",
    "paillier_sum",
]

_INSTALL_HINT = 'install the homomorphic-encryption extra: pip install "fedshield[he]"'

#: Largest total coefficient-modulus bit count with 128-bit security (HomomorphicEncryption.org
#: standard, ternary secret), as enforced by Microsoft SEAL for each polynomial degree.
MAX_COEFF_BITS_128: dict[int, int] = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438}

_SIGMA = 3.2  # std of SEAL's error distribution (3.19, rounded up)
_FP64_REL = 2.0**-45  # relative error of the float64 FFT in encoding/decoding (conservative)


def _tenseal() -> Any:
    try:
        import tenseal as ts  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"CKKS aggregation needs TenSEAL: {_INSTALL_HINT}") from exc
    return ts


def _tenseal_sealapi() -> Any:
    _tenseal()
    import tenseal.sealapi as sealapi  # type: ignore[import-untyped,unused-ignore]

    return sealapi  # registers SEAL's types (``seal::Modulus``) with the bindings


def _phe() -> Any:
    try:
        from phe import paillier  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"Paillier aggregation needs phe: {_INSTALL_HINT}") from exc
    return paillier


def _out_eps(dtype: torch.dtype) -> float:
    if dtype == torch.float32:
        return 2.0**-24
    if dtype == torch.float64:
        return 2.0**-53
    raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")


def _check_row(row: Tensor) -> np.ndarray:
    """Validate one client row and return it as float64 numpy."""
    if not isinstance(row, Tensor):
        raise ValueError(f"row must be a torch.Tensor, got {type(row).__name__}")
    if row.dim() != 1:
        raise ValueError(f"row must be 1-D [d], got shape {tuple(row.shape)}")
    if row.numel() == 0:
        raise ValueError("row is empty: nothing to encrypt")
    if not row.is_floating_point():
        raise ValueError(f"row must be floating point, got dtype {row.dtype}")
    if not bool(torch.isfinite(row).all()):
        bad = (~torch.isfinite(row)).nonzero().flatten()[:5].tolist()
        raise ValueError(f"row has non-finite (NaN/Inf) entries, e.g. at indices {bad}")
    return row.detach().to("cpu", torch.float64).numpy()


def _check_weight(weight: float) -> float:
    if isinstance(weight, bool) or not isinstance(weight, Real) or not math.isfinite(weight):
        raise ValueError(f"weight must be a finite number, got {weight!r}")
    return float(weight)


def _weights_list(weights: Tensor | Sequence[float] | None, n: int) -> list[float] | None:
    if weights is None:
        return None
    return [float(w) for w in check_weights(torch.as_tensor(weights), n).tolist()]


# =========================================================================== CKKS


@dataclass(frozen=True)
class CKKSParams:
    """CKKS parameters (fixed by the key holder, public).

    Attributes:
        poly_modulus_degree: ``N``, a power of two; a ciphertext holds ``N / 2`` values.
        coeff_mod_bit_sizes: Bit sizes of the coefficient-modulus primes. The last one is the
            special (key-switching) prime; every rescale drops the last remaining data prime,
            so the middle primes should have ``scale_bits`` bits.
        scale_bits: ``log2`` of the global scale ``Delta``.
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 40, 60)
    scale_bits: int = 40

    def __post_init__(self) -> None:
        N = self.poly_modulus_degree
        if isinstance(N, bool) or not isinstance(N, int) or N not in MAX_COEFF_BITS_128:
            raise ValueError(
                f"poly_modulus_degree must be one of {sorted(MAX_COEFF_BITS_128)}, got {N!r}"
            )
        sizes = tuple(self.coeff_mod_bit_sizes)
        object.__setattr__(self, "coeff_mod_bit_sizes", sizes)
        if len(sizes) < 2 or any(
            isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 60 for b in sizes
        ):
            raise ValueError(
                "coeff_mod_bit_sizes needs at least 2 integers in [1, 60] (data primes + the "
                f"special prime), got {sizes!r}"
            )
        if sum(sizes) > MAX_COEFF_BITS_128[N]:
            raise ValueError(
                f"coeff_mod_bit_sizes sum to {sum(sizes)} bits, above the "
                f"{MAX_COEFF_BITS_128[N]} bits allowed for 128-bit security at N={N}"
            )
        s = self.scale_bits
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s < sum(sizes[:-1]):
            raise ValueError(f"scale_bits must be an integer in [1, {sum(sizes[:-1])}), got {s!r}")

    @property
    def slots(self) -> int:
        """Values per ciphertext (``N / 2``)."""
        return self.poly_modulus_degree // 2

    @property
    def max_level(self) -> int:
        """How many rescales (plaintext multiplications) a fresh ciphertext allows."""
        return len(self.coeff_mod_bit_sizes) - 2

    def modulus_bits(self, level: int) -> int:
        """Bits of the ciphertext modulus after ``level`` rescales."""
        data = self.coeff_mod_bit_sizes[:-1]
        return sum(data[: len(data) - level])

    def max_abs_value(self, level: int = 0) -> float:
        """Largest ``|value|`` a ciphertext at ``level`` can hold and still decrypt correctly.

        Decryption is correct while ``|value| * Delta < q / 2``, ``q`` the modulus at that
        level (TenSEAL keeps the scale at ``Delta`` after every rescale); this keeps a factor
        2 of margin for the noise.
        """
        return 2.0 ** (self.modulus_bits(level) - self.scale_bits - 2)


def ckks_fresh_noise(params: CKKSParams) -> float:
    """Per-slot noise bound of one fresh CKKS encryption, in value units.

    ``(8 sqrt(2) sigma N + 6 sigma sqrt(N) + 16 sigma sqrt(h N) + N / 2) / Delta`` with
    ``h = N`` (Cheon et al. 2017, Lemma 1, plus the encoding rounding).
    """
    N = params.poly_modulus_degree
    b_clean = 8 * math.sqrt(2) * _SIGMA * N + 6 * _SIGMA * math.sqrt(N) + 16 * _SIGMA * N + N / 2
    return b_clean / 2.0**params.scale_bits


def _ckks_rescale_noise(params: CKKSParams) -> float:
    N = params.poly_modulus_degree
    b_scale = math.sqrt(N / 3) * (3 + 8 * math.sqrt(N))
    return b_scale / 2.0**params.scale_bits


def _fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass(frozen=True)
class CKKSPublicContext:
    """What the key holder gives clients and the server: the context without secret key.

    Attributes:
        data: Serialized TenSEAL context (public key only: no secret, relin or Galois keys).
        params: The CKKS parameters.
    """

    data: bytes
    params: CKKSParams

    @cached_property
    def context_id(self) -> str:
        """Short SHA-256 fingerprint of ``data``: ciphertexts name the context they use."""
        return _fingerprint(self.data)

    @cached_property
    def context(self) -> Any:
        """The deserialized TenSEAL context (loaded once, cached).

        Raises:
            ValueError: If ``data`` holds a secret key (it must not leave the key holder).
        """
        ctx = _tenseal().context_from(self.data)
        if ctx.is_private():
            raise ValueError(
                "the public context holds a secret key: serialize it with "
                "save_secret_key=False before giving it to clients or the server"
            )
        return ctx

    @cached_property
    def data_primes(self) -> tuple[int, ...]:
        """The data primes ``q_0 ... q_L`` of the coefficient modulus (public values).

        SEAL picks the largest ``b``-bit primes ``= 1 mod 2N``, just below ``2^b``; a
        rescale divides by the last remaining one.
        """
        _tenseal_sealapi()
        parms = self.context.data.seal_context().key_context_data().parms()
        return tuple(int(m.value()) for m in parms.coeff_modulus())[:-1]

    @property
    def nbytes(self) -> int:
        """Size of the serialized public context."""
        return len(self.data)


@dataclass(frozen=True, eq=False)
class CKKSKeys:
    """The key holder's state: the secret TenSEAL context and the public part.

    Attributes:
        public: What clients and the server receive.
        secret_context: TenSEAL context holding the secret key (never sent anywhere).
    """

    public: CKKSPublicContext
    secret_context: Any = field(repr=False)

    def __post_init__(self) -> None:
        is_private = getattr(self.secret_context, "is_private", None)
        if not callable(is_private) or not is_private():
            raise ValueError(
                "CKKSKeys needs a TenSEAL context holding the secret key; a public-only "
                "context cannot decrypt"
            )

    @property
    def params(self) -> CKKSParams:
        """The CKKS parameters."""
        return self.public.params


@dataclass(frozen=True)
class CKKSCiphertext:
    """One encrypted vector (a client's row or an aggregate), serialized.

    Attributes:
        chunks: Serialized TenSEAL ``CKKSVector`` objects, ``ceil(dim / slots)`` of them.
        dim: Length ``d`` of the encrypted vector.
        context_id: Fingerprint of the public context it was encrypted under.
        level: Rescales applied (1 after a server-side plaintext weight).
        n_terms: Fresh encryptions summed into it.
        max_abs: Bound on ``|value|`` of every slot (``sum_k |w_k| max|x_k|``).
        noise_bound: Bound on the CKKS noise of every slot, in value units.
    """

    chunks: tuple[bytes, ...]
    dim: int
    context_id: str
    level: int
    n_terms: int
    max_abs: float
    noise_bound: float

    @property
    def nbytes(self) -> int:
        """Bytes on the wire (the serialized ciphertexts; metadata is negligible)."""
        return sum(len(c) for c in self.chunks)


def ckks_context(
    poly_modulus_degree: int = 8192,
    coeff_mod_bit_sizes: Sequence[int] = (60, 40, 40, 60),
    scale_bits: int = 40,
) -> CKKSKeys:
    """Create a CKKS key pair (run by the key holder).

    Args:
        poly_modulus_degree: ``N`` (1024 ... 16384); ``N / 2`` values per ciphertext.
        coeff_mod_bit_sizes: Prime bit sizes; their sum must respect 128-bit security
            (at most 218 bits for ``N = 8192``).
        scale_bits: ``log2`` of the global scale (the precision: noise is ``~2^-scale_bits``
            times a polynomial in ``N``).

    Returns:
        The key holder's :class:`CKKSKeys`; ``keys.public`` is what others receive.

    Raises:
        ValueError: Invalid or insecure parameters.
    """
    params = CKKSParams(int(poly_modulus_degree), tuple(coeff_mod_bit_sizes), scale_bits)
    ts = _tenseal()
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
    )
    ctx.global_scale = 2.0**params.scale_bits
    data = ctx.serialize(
        save_public_key=True,
        save_secret_key=False,
        save_galois_keys=False,
        save_relin_keys=False,
    )
    return CKKSKeys(public=CKKSPublicContext(data=data, params=params), secret_context=ctx)


def ckks_encrypt(public: CKKSPublicContext, row: Tensor, *, weight: float = 1.0) -> CKKSCiphertext:
    """Encrypt one client's row (run by the client, public context only).

    Args:
        public: The key holder's public context.
        row: ``[d]`` finite floating tensor.
        weight: Plaintext factor applied before encryption (client-side weighting).

    Returns:
        The serialized ciphertext, ``ceil(d / (N / 2))`` chunks.

    Raises:
        ValueError: Non-finite or mis-shaped row, or ``|weight * row|`` too large for the
            modulus at this scale (it would not decrypt correctly).
    """
    if not isinstance(public, CKKSPublicContext):
        raise ValueError(f"public must be a CKKSPublicContext, got {type(public).__name__}")
    x = _check_row(row) * _check_weight(weight)
    params = public.params
    max_abs = float(np.abs(x).max())
    limit = params.max_abs_value(0)
    if max_abs >= limit:
        raise ValueError(
            f"|value| up to {max_abs:.3g} is too large for CKKS at scale 2^{params.scale_bits} "
            f"with a {params.modulus_bits(0)}-bit modulus (limit {limit:.3g}); scale the "
            "update down or lower scale_bits"
        )
    ts = _tenseal()
    ctx = public.context
    S = params.slots
    chunks = tuple(
        ts.ckks_vector(ctx, x[i : i + S].tolist()).serialize() for i in range(0, x.size, S)
    )
    return CKKSCiphertext(
        chunks=chunks,
        dim=int(x.size),
        context_id=public.context_id,
        level=0,
        n_terms=1,
        max_abs=max_abs,
        noise_bound=ckks_fresh_noise(params) + max_abs * _FP64_REL,
    )


class CKKSServer:
    """The aggregation server: public context only, adds ciphertexts, cannot decrypt.

    Args:
        public: The key holder's public context.

    Raises:
        ValueError: If the context holds a secret key.
    """

    def __init__(self, public: CKKSPublicContext) -> None:
        if not isinstance(public, CKKSPublicContext):
            raise ValueError(f"public must be a CKKSPublicContext, got {type(public).__name__}")
        self.public = public
        self.context = public.context  # raises if private
        self._ts = _tenseal()

    def aggregate(
        self,
        ciphertexts: Sequence[CKKSCiphertext],
        weights: Tensor | Sequence[float] | None = None,
    ) -> CKKSCiphertext:
        """Homomorphic (weighted) sum of client ciphertexts.

        Args:
            ciphertexts: One per client, same dimension, level and public context.
            weights: Optional plaintext weights ``w_k >= 0`` applied here (server-side
                weighting: one plaintext multiplication and a rescale per ciphertext);
                clients with weight 0 are left out.

        Returns:
            The encrypted sum, serialized, for the key holder.

        Raises:
            ValueError: Empty input, mismatched ciphertexts, bad weights, no level left for a
                weight, or a sum too large for the modulus.
        """
        cts = list(ciphertexts)
        if not cts:
            raise ValueError("no ciphertexts to aggregate")
        params = self.public.params
        first = cts[0]
        for k, ct in enumerate(cts):
            if not isinstance(ct, CKKSCiphertext):
                raise ValueError(f"ciphertext {k} is a {type(ct).__name__}, not CKKSCiphertext")
            if ct.context_id != self.public.context_id:
                raise ValueError(
                    f"ciphertext {k} was encrypted under another public context "
                    f"({ct.context_id} != {self.public.context_id})"
                )
            if (ct.dim, ct.level, len(ct.chunks)) != (first.dim, first.level, len(first.chunks)):
                raise ValueError(
                    f"ciphertext {k} has dim {ct.dim} / level {ct.level}, expected "
                    f"dim {first.dim} / level {first.level}"
                )
        w = _weights_list(weights, len(cts))
        level = first.level + (w is not None)
        if level > params.max_level:
            raise ValueError(
                f"no rescale level left for server-side weights (coeff_mod_bit_sizes="
                f"{params.coeff_mod_bit_sizes} allows {params.max_level}); weight on the "
                "client side or add a middle prime"
            )
        # TenSEAL resets the scale to Delta after the rescale by the dropped prime q, so a
        # product ``v * c`` decrypts to ``c * v * Delta / q``: multiply by ``w * q / Delta``.
        correction = 1.0
        if w is not None:
            primes = self.public.data_primes
            correction = primes[len(primes) - level] / 2.0**params.scale_bits
        max_abs = 0.0
        noise = 0.0
        n_terms = 0
        total: list[Any] | None = None
        for k, ct in enumerate(cts):
            wk = None if w is None else w[k]
            if wk == 0.0:
                continue  # a zero weight would make a transparent ciphertext
            vecs = [self._ts.ckks_vector_from(self.context, c) for c in ct.chunks]
            if wk is None:
                max_abs += ct.max_abs
                noise += ct.noise_bound
            else:
                vecs = [v * (wk * correction) for v in vecs]
                max_abs += wk * ct.max_abs
                noise += (
                    wk * ct.noise_bound
                    + ct.max_abs * 2.0**-params.scale_bits  # encoding of the weight
                    + _ckks_rescale_noise(params)
                )
            n_terms += ct.n_terms
            total = vecs if total is None else [a + b for a, b in zip(total, vecs, strict=True)]
        assert total is not None  # at least one weight > 0 (check_weights)
        limit = params.max_abs_value(level)
        if max_abs >= limit:
            raise ValueError(
                f"the aggregate may reach |value| {max_abs:.3g}, beyond what CKKS can hold at "
                f"level {level} (limit {limit:.3g}); scale the updates down"
            )
        return CKKSCiphertext(
            chunks=tuple(v.serialize() for v in total),
            dim=first.dim,
            context_id=first.context_id,
            level=level,
            n_terms=n_terms,
            max_abs=max_abs,
            noise_bound=noise,
        )


def ckks_sum(
    public: CKKSPublicContext,
    ciphertexts: Sequence[CKKSCiphertext],
    weights: Tensor | Sequence[float] | None = None,
) -> CKKSCiphertext:
    """Functional form of :meth:`CKKSServer.aggregate` (public context only)."""
    return CKKSServer(public).aggregate(ciphertexts, weights)


def ckks_error_bound(ct: CKKSCiphertext, dtype: torch.dtype = torch.float32) -> float:
    """Per-coordinate bound on ``|ckks_decrypt(keys, ct, dtype) - exact weighted sum|``.

    The tracked CKKS noise, the float64 decoding error and the rounding to ``dtype``.
    """
    eps = _out_eps(dtype)
    return ct.noise_bound * (1 + eps) + ct.max_abs * (eps + _FP64_REL)


def ckks_decrypt(
    keys: CKKSKeys, ct: CKKSCiphertext, *, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Decrypt a (summed) ciphertext (run by the key holder).

    Args:
        keys: The key holder's keys (a public context cannot decrypt).
        ct: Ciphertext from :func:`ckks_encrypt` or :meth:`CKKSServer.aggregate`.
        dtype: ``torch.float32`` (default) or ``torch.float64``.

    Returns:
        ``[d]`` tensor, within :func:`ckks_error_bound` of the exact (weighted) sum.

    Raises:
        ValueError: ``keys`` holds no secret key, or the ciphertext belongs to another
            context.
    """
    if not isinstance(keys, CKKSKeys):
        raise ValueError(
            f"decryption needs the key holder's CKKSKeys (secret key), got "
            f"{type(keys).__name__}: a public context cannot decrypt"
        )
    _out_eps(dtype)
    if ct.context_id != keys.public.context_id:
        raise ValueError("ciphertext was encrypted under another context than these keys")
    ts = _tenseal()
    parts = [
        np.asarray(ts.ckks_vector_from(keys.secret_context, c).decrypt(), dtype=np.float64)
        for c in ct.chunks
    ]
    out = np.concatenate(parts)[: ct.dim]
    return torch.from_numpy(out).to(dtype)


# =========================================================================== Paillier


@dataclass(frozen=True, eq=False)
class PaillierKeys:
    """The Paillier key holder's key pair.

    Attributes:
        public_key: ``phe.PaillierPublicKey`` (given to clients and the server).
        private_key: ``phe.PaillierPrivateKey`` (never sent anywhere).
    """

    public_key: Any
    private_key: Any = field(repr=False)

    @property
    def key_bits(self) -> int:
        """Bit length of the modulus ``n``."""
        return int(self.public_key.n.bit_length())


@dataclass(frozen=True)
class PaillierCiphertext:
    """One encrypted vector: ``dim`` Paillier ciphertexts of fixed width, concatenated.

    Attributes:
        data: Big-endian ciphertexts, ``width`` bytes each.
        dim: Number of coordinates.
        width: Bytes per ciphertext (``ceil(2 * key_bits / 8)``).
        key_id: Fingerprint of the public key.
        scale_bits: Fixed-point exponent: the plaintext integer is ``value * 2^scale_bits``.
        n_terms: Encryptions summed into it.
        max_abs: Bound on ``|value|`` of every coordinate.
        error_bound: Bound on the fixed-point error of every coordinate.
    """

    data: bytes
    dim: int
    width: int
    key_id: str
    scale_bits: int
    n_terms: int
    max_abs: float
    error_bound: float

    @property
    def nbytes(self) -> int:
        """Bytes on the wire."""
        return len(self.data)

    def integers(self) -> list[int]:
        """The raw ciphertexts as integers."""
        w = self.width
        return [int.from_bytes(self.data[i : i + w], "big") for i in range(0, len(self.data), w)]


def _key_id(public_key: Any) -> str:
    return _fingerprint(str(public_key.n).encode())


def _width(public_key: Any) -> int:
    return (2 * int(public_key.n.bit_length()) + 7) // 8


def _pack(ints: Sequence[int], width: int) -> bytes:
    return b"".join(v.to_bytes(width, "big") for v in ints)


def paillier_keys(key_bits: int = 2048) -> PaillierKeys:
    """Generate a Paillier key pair (run by the key holder).

    Args:
        key_bits: Modulus size; 2048 (default, ~112-bit security) or 3072 (~128-bit). Values
            down to 256 are accepted for fast tests only (insecure).

    Raises:
        ValueError: ``key_bits`` not an integer multiple of 8 in [256, 8192].
    """
    if (
        isinstance(key_bits, bool)
        or not isinstance(key_bits, int)
        or not 256 <= key_bits <= 8192
        or key_bits % 8
    ):
        raise ValueError(f"key_bits must be a multiple of 8 in [256, 8192], got {key_bits!r}")
    public_key, private_key = _phe().generate_paillier_keypair(n_length=key_bits)
    return PaillierKeys(public_key=public_key, private_key=private_key)


def _paillier_public(public_key: Any) -> Any:
    paillier = _phe()
    if not isinstance(public_key, paillier.PaillierPublicKey):
        raise ValueError(
            f"public_key must be a phe PaillierPublicKey, got {type(public_key).__name__}"
        )
    return paillier


def paillier_encrypt(
    public_key: Any, row: Tensor, *, weight: float = 1.0, precision_bits: int = 40
) -> PaillierCiphertext:
    """Encrypt one client's row coordinate by coordinate (run by the client).

    Args:
        public_key: The key holder's ``phe.PaillierPublicKey``.
        row: ``[d]`` finite floating tensor (keep ``d`` small: one ciphertext per value).
        weight: Plaintext factor applied before encryption (client-side weighting).
        precision_bits: Fixed point: ``round(weight * x * 2^precision_bits)`` is encrypted.

    Raises:
        ValueError: Non-finite or mis-shaped row, bad precision, or values that do not fit
            the plaintext space of the key.
    """
    _paillier_public(public_key)
    if isinstance(precision_bits, bool) or not isinstance(precision_bits, int):
        raise ValueError(f"precision_bits must be an integer, got {precision_bits!r}")
    if not 0 <= precision_bits <= 1000:
        raise ValueError(f"precision_bits must be in [0, 1000], got {precision_bits}")
    x = _check_row(row) * _check_weight(weight)
    max_abs = float(np.abs(x).max())
    if max_abs * 2.0**precision_bits >= public_key.max_int:
        raise ValueError(
            f"|value| up to {max_abs:.3g} times 2^{precision_bits} does not fit the "
            f"{public_key.n.bit_length()}-bit Paillier plaintext space; lower precision_bits "
            "or use a larger key"
        )
    ints = [round(v * 2**precision_bits) for v in x.tolist()]
    cts = [public_key.encrypt(v).ciphertext(be_secure=False) for v in ints]
    width = _width(public_key)
    return PaillierCiphertext(
        data=_pack(cts, width),
        dim=int(x.size),
        width=width,
        key_id=_key_id(public_key),
        scale_bits=precision_bits,
        n_terms=1,
        max_abs=max_abs,
        error_bound=2.0 ** -(precision_bits + 1) + max_abs * 2.0**-52,
    )


def paillier_sum(
    public_key: Any,
    ciphertexts: Sequence[PaillierCiphertext],
    weights: Tensor | Sequence[float] | None = None,
    *,
    weight_bits: int = 24,
) -> PaillierCiphertext:
    """Homomorphic (weighted) sum of Paillier ciphertexts (run by the server).

    Args:
        public_key: The ``phe.PaillierPublicKey``.
        ciphertexts: One per client, same dimension, key and fixed-point scale.
        weights: Optional plaintext weights ``w_k >= 0``, encoded as
            ``round(w_k * 2^weight_bits)`` and applied by ciphertext exponentiation.
        weight_bits: Fixed-point precision of server-side weights.

    Raises:
        ValueError: Empty or mismatched input, bad weights, or a possible overflow.
    """
    paillier = _paillier_public(public_key)
    cts = list(ciphertexts)
    if not cts:
        raise ValueError("no ciphertexts to aggregate")
    first = cts[0]
    key_id = _key_id(public_key)
    for k, ct in enumerate(cts):
        if not isinstance(ct, PaillierCiphertext):
            raise ValueError(f"ciphertext {k} is a {type(ct).__name__}, not PaillierCiphertext")
        if ct.key_id != key_id:
            raise ValueError(f"ciphertext {k} was encrypted under another public key")
        if (ct.dim, ct.scale_bits) != (first.dim, first.scale_bits):
            raise ValueError(
                f"ciphertext {k} has dim {ct.dim} / scale 2^{ct.scale_bits}, expected "
                f"dim {first.dim} / scale 2^{first.scale_bits}"
            )
    w = _weights_list(weights, len(cts))
    if w is not None and (
        isinstance(weight_bits, bool) or not isinstance(weight_bits, int) or weight_bits < 0
    ):
        raise ValueError(f"weight_bits must be an integer >= 0, got {weight_bits!r}")
    scale_bits = first.scale_bits + (weight_bits if w is not None else 0)
    total: list[Any] | None = None
    max_abs = 0.0
    err = 0.0
    n_terms = 0
    for k, ct in enumerate(cts):
        enc = [paillier.EncryptedNumber(public_key, c, 0) for c in ct.integers()]
        if w is None:
            max_abs += ct.max_abs
            err += ct.error_bound
        else:
            wk_int = round(w[k] * 2**weight_bits)
            if wk_int == 0:
                continue
            enc = [e * wk_int for e in enc]
            wk = wk_int / 2**weight_bits
            max_abs += wk * ct.max_abs
            err += wk * ct.error_bound + ct.max_abs * 2.0 ** -(weight_bits + 1)
        n_terms += ct.n_terms
        total = enc if total is None else [a + b for a, b in zip(total, enc, strict=True)]
    if total is None:
        raise ValueError(f"every weight rounds to 0 at weight_bits={weight_bits}")
    if (max_abs + err) * 2.0**scale_bits >= public_key.max_int:
        raise ValueError(
            f"the aggregate may reach |value| {max_abs:.3g}, beyond the Paillier plaintext "
            f"space at scale 2^{scale_bits}; lower precision_bits or use a larger key"
        )
    return PaillierCiphertext(
        data=_pack([e.ciphertext(be_secure=False) for e in total], first.width),
        dim=first.dim,
        width=first.width,
        key_id=key_id,
        scale_bits=scale_bits,
        n_terms=n_terms,
        max_abs=max_abs,
        error_bound=err,
    )


def paillier_error_bound(ct: PaillierCiphertext, dtype: torch.dtype = torch.float32) -> float:
    """Per-coordinate bound on ``|paillier_decrypt(keys, ct, dtype) - exact weighted sum|``."""
    eps = _out_eps(dtype)
    return ct.error_bound * (1 + eps) + ct.max_abs * (eps + 2.0**-52)


def paillier_decrypt(
    keys: PaillierKeys, ct: PaillierCiphertext, *, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Decrypt a (summed) Paillier ciphertext (run by the key holder).

    Raises:
        ValueError: ``keys`` is not a :class:`PaillierKeys` (a public key cannot decrypt), the
            ciphertext belongs to another key, or the plaintext overflowed.
    """
    if not isinstance(keys, PaillierKeys):
        raise ValueError(
            f"decryption needs the key holder's PaillierKeys (private key), got "
            f"{type(keys).__name__}: a public key cannot decrypt"
        )
    _out_eps(dtype)
    paillier = _phe()
    if ct.key_id != _key_id(keys.public_key):
        raise ValueError("ciphertext was encrypted under another public key than these keys")
    try:
        ints = [
            keys.private_key.decrypt(paillier.EncryptedNumber(keys.public_key, c, 0))
            for c in ct.integers()
        ]
    except OverflowError as exc:
        raise ValueError("Paillier plaintext overflowed: the sum exceeds the key's range") from exc
    scale = 2**ct.scale_bits
    out = np.array([v / scale for v in ints], dtype=np.float64)
    return torch.from_numpy(out).to(dtype)


# =========================================================================== entry point


@dataclass(frozen=True)
class HEResult:
    """Outcome and costs of one homomorphically encrypted aggregation round.

    Attributes:
        scheme: ``"ckks"`` or ``"paillier"``.
        sum: ``[d]`` float32, the decrypted ``sum_k w_k x_k`` (``w_k = 1`` unweighted).
        total_weight: ``sum_k w_k`` (``n`` unweighted); ``mean = sum / total_weight``.
        n_clients: ``n``.
        dim: ``d``.
        bytes_per_client: Ciphertext bytes uploaded by one client.
        bytes_server: Bytes the server receives (all uploads) plus sends (the aggregate).
        bytes_public_key: Size of the public context / key every party downloads.
        time_keygen_s: Key generation (key holder).
        time_encrypt_s: Encryption per client, mean over clients (serialization included).
        time_aggregate_s: Server: deserialize, (weight,) add, serialize.
        time_decrypt_s: Key holder: decrypt the aggregate.
        error_bound: Stated absolute per-coordinate bound on ``|sum - exact sum|``.
    """

    scheme: str
    sum: Tensor
    total_weight: float
    n_clients: int
    dim: int
    bytes_per_client: int
    bytes_server: int
    bytes_public_key: int
    time_keygen_s: float
    time_encrypt_s: float
    time_aggregate_s: float
    time_decrypt_s: float
    error_bound: float

    @property
    def mean(self) -> Tensor:
        """The (weighted) mean ``sum / total_weight``."""
        return self.sum / self.total_weight

    @property
    def expansion(self) -> float:
        """Ciphertext bytes per client over the 4 bytes per float32 of the plain row."""
        return self.bytes_per_client / (4 * self.dim)


_CKKS_PARAMS = frozenset({"poly_modulus_degree", "coeff_mod_bit_sizes", "scale_bits"})
_PAILLIER_PARAMS = frozenset({"key_bits", "precision_bits", "weight_bits"})


def he_sum(
    updates: Tensor,
    *,
    scheme: Literal["ckks", "paillier"] = "ckks",
    weights: Tensor | Sequence[float] | None = None,
    weight_side: Literal["client", "server"] = "client",
    **params: Any,
) -> HEResult:
    """Run one encrypted aggregation round end to end and measure it.

    Key holder creates keys; each client encrypts its row (times its weight when
    ``weight_side="client"``); the server (public material only) adds the ciphertexts
    (multiplying by the weights when ``weight_side="server"``); the key holder decrypts.

    Args:
        updates: ``[n, d]`` update matrix, finite.
        scheme: ``"ckks"`` (TenSEAL, batched, approximate) or ``"paillier"`` (phe, one
            ciphertext per coordinate, exact up to fixed-point rounding; small ``d`` only).
        weights: Optional ``[n]`` non-negative weights (not all zero).
        weight_side: Where the plaintext weights are applied.
        **params: CKKS: ``poly_modulus_degree`` (8192), ``coeff_mod_bit_sizes``
            ((60, 40, 40, 60)), ``scale_bits`` (40). Paillier: ``key_bits`` (2048),
            ``precision_bits`` (40), ``weight_bits`` (24).

    Returns:
        :class:`HEResult` with the decrypted weighted sum, sizes, timings and error bound.

    Raises:
        ValueError: Bad updates, weights, scheme or parameters, or values too large.
    """
    check_updates(updates)
    n, d = updates.shape
    if scheme not in ("ckks", "paillier"):
        raise ValueError(f"unknown scheme {scheme!r}: expected 'ckks' or 'paillier'")
    if weight_side not in ("client", "server"):
        raise ValueError(f"weight_side must be 'client' or 'server', got {weight_side!r}")
    allowed = _CKKS_PARAMS if scheme == "ckks" else _PAILLIER_PARAMS
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"unknown {scheme} parameters {unknown}; allowed: {sorted(allowed)}")
    w = _weights_list(weights, n)
    total_weight = float(n) if w is None else math.fsum(w)
    client_w = w if (w is not None and weight_side == "client") else [1.0] * n
    server_w = w if weight_side == "server" else None
    rows = updates.detach().cpu()

    if scheme == "ckks":
        t0 = time.perf_counter()
        keys = ckks_context(**params)
        t_keygen = time.perf_counter() - t0
        public = keys.public
        enc_times: list[float] = []
        c_cts: list[CKKSCiphertext] = []
        for k in range(n):
            client_public = CKKSPublicContext(public.data, public.params)  # each loads it
            t0 = time.perf_counter()
            c_cts.append(ckks_encrypt(client_public, rows[k], weight=client_w[k]))
            enc_times.append(time.perf_counter() - t0)
        server = CKKSServer(public)
        t0 = time.perf_counter()
        c_agg = server.aggregate(c_cts, server_w)
        t_agg = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = ckks_decrypt(keys, c_agg)
        t_dec = time.perf_counter() - t0
        uploads = [ct.nbytes for ct in c_cts]
        agg_bytes = c_agg.nbytes
        pk_bytes = public.nbytes
        bound = ckks_error_bound(c_agg)
    else:
        key_bits = params.get("key_bits", 2048)
        precision_bits = params.get("precision_bits", 40)
        weight_bits = params.get("weight_bits", 24)
        t0 = time.perf_counter()
        pkeys = paillier_keys(key_bits)
        t_keygen = time.perf_counter() - t0
        enc_times = []
        p_cts: list[PaillierCiphertext] = []
        for k in range(n):
            t0 = time.perf_counter()
            p_cts.append(
                paillier_encrypt(
                    pkeys.public_key, rows[k], weight=client_w[k], precision_bits=precision_bits
                )
            )
            enc_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        p_agg = paillier_sum(pkeys.public_key, p_cts, server_w, weight_bits=weight_bits)
        t_agg = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = paillier_decrypt(pkeys, p_agg)
        t_dec = time.perf_counter() - t0
        uploads = [ct.nbytes for ct in p_cts]
        agg_bytes = p_agg.nbytes
        pk_bytes = (int(pkeys.public_key.n.bit_length()) + 7) // 8
        bound = paillier_error_bound(p_agg)

    return HEResult(
        scheme=scheme,
        sum=out,
        total_weight=total_weight,
        n_clients=n,
        dim=d,
        bytes_per_client=max(uploads),
        bytes_server=sum(uploads) + agg_bytes,
        bytes_public_key=pk_bytes,
        time_keygen_s=t_keygen,
        time_encrypt_s=float(np.mean(enc_times)),
        time_aggregate_s=t_agg,
        time_decrypt_s=t_dec,
        error_bound=bound,
    )
