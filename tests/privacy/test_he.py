"""Tests for fedshield.privacy.he: CKKS (TenSEAL) and Paillier (phe) encrypted aggregation."""

from __future__ import annotations

import math
from typing import Literal

import pytest
import torch
from torch import Tensor

pytest.importorskip("tenseal")
pytest.importorskip("phe")

from fedshield.privacy.he import (
    CKKSKeys,
    CKKSParams,
    CKKSPublicContext,
    CKKSServer,
    PaillierKeys,
    ckks_context,
    ckks_decrypt,
    ckks_encrypt,
    ckks_error_bound,
    ckks_fresh_noise,
    ckks_sum,
    he_sum,
    paillier_decrypt,
    paillier_encrypt,
    paillier_error_bound,
    paillier_keys,
    paillier_sum,
)

D = 4100  # two CKKS chunks at N = 8192 (4096 + 4 slots): exercises the chunk boundary


def _rows(n: int, d: int, scale: float, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, d, generator=gen, dtype=torch.float64) * 2 - 1) * scale).float()


@pytest.fixture(scope="module")
def keys() -> CKKSKeys:
    return ckks_context()


@pytest.fixture(scope="module")
def small_keys() -> CKKSKeys:
    # one 60-bit data prime: no level for server-side weights, |value| < 2^(60-40-2)
    return ckks_context(poly_modulus_degree=4096, coeff_mod_bit_sizes=(60, 40), scale_bits=40)


@pytest.fixture(scope="module")
def pkeys() -> PaillierKeys:
    return paillier_keys(256)  # insecure size, for speed


# --------------------------------------------------------------------------- CKKS accuracy


def test_ckks_decrypt_matches_encrypt_for_one_row(keys: CKKSKeys) -> None:
    # Prepare
    x = _rows(1, D, 1.0, seed=0)[0]

    # Execute
    ct = ckks_encrypt(keys.public, x)
    out64 = ckks_decrypt(keys, ct, dtype=torch.float64)
    out32 = ckks_decrypt(keys, ct)

    # Verify: shape, chunking, and the stated bound (one fresh encryption)
    assert len(ct.chunks) == 2 and ct.dim == D and ct.n_terms == 1
    assert out32.dtype == torch.float32 and out32.shape == (D,)
    assert float((out64 - x.double()).abs().max()) <= ckks_error_bound(ct, torch.float64)
    assert float((out32.double() - x.double()).abs().max()) <= ckks_error_bound(ct)
    assert ckks_error_bound(ct, torch.float64) < 2**-20


@pytest.mark.parametrize("n", [2, 10, 50])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_ckks_sum_within_stated_bound(keys: CKKSKeys, n: int, scale: float) -> None:
    # Prepare: n clients, values uniform in [-scale, scale]
    rows = _rows(n, D, scale, seed=n)
    exact = rows.double().sum(0)

    # Execute: clients encrypt, the server adds, the key holder decrypts
    cts = [ckks_encrypt(keys.public, r) for r in rows]
    agg = ckks_sum(keys.public, cts)
    out64 = ckks_decrypt(keys, agg, dtype=torch.float64)
    out32 = ckks_decrypt(keys, agg)

    # Verify: measured error within the tracked bound, and the bound is the stated
    # n * 2^-20 (plus the relative float terms) for the default parameters
    bound64 = ckks_error_bound(agg, torch.float64)
    assert agg.n_terms == n
    assert float((out64 - exact).abs().max()) <= bound64
    assert float((out32.double() - exact).abs().max()) <= ckks_error_bound(agg)
    assert bound64 <= n * 2**-20 + agg.max_abs * 2**-44


def test_ckks_fresh_noise_formula_default_params() -> None:
    # 8 sqrt(2) 3.2 N + 6 * 3.2 sqrt(N) + 16 * 3.2 N + N / 2 over 2^40, N = 8192
    expected = (
        8 * math.sqrt(2) * 3.2 * 8192 + 6 * 3.2 * math.sqrt(8192) + 51.2 * 8192 + 4096
    ) / 2**40
    assert ckks_fresh_noise(CKKSParams()) == pytest.approx(expected)
    assert 6e-7 < expected < 2**-20


@pytest.mark.parametrize("side", ["client", "server"])
def test_ckks_weighted_sum(keys: CKKSKeys, side: str) -> None:
    # Prepare
    rows = _rows(6, D, 10.0, seed=7)
    w = torch.tensor([0.5, 2.0, 0.0, 1.0, 0.125, 3.0], dtype=torch.float64)
    exact = (w[:, None] * rows.double()).sum(0)

    # Execute
    if side == "client":
        cts = [
            ckks_encrypt(keys.public, r, weight=float(wk)) for r, wk in zip(rows, w, strict=True)
        ]
        agg = ckks_sum(keys.public, cts)
    else:
        cts = [ckks_encrypt(keys.public, r) for r in rows]
        agg = CKKSServer(keys.public).aggregate(cts, w)
    out = ckks_decrypt(keys, agg, dtype=torch.float64)

    # Verify: the weight-0 client is left out on the server; the rescale is corrected for
    assert agg.level == (1 if side == "server" else 0)
    assert float((out - exact).abs().max()) <= ckks_error_bound(agg, torch.float64)
    assert ckks_error_bound(agg, torch.float64) < 1e-4


def test_he_sum_ckks_reports_costs_and_mean() -> None:
    # Prepare
    rows = _rows(3, 100, 1.0, seed=3)
    w = torch.tensor([1.0, 2.0, 1.0])

    # Execute
    res = he_sum(rows, scheme="ckks", weights=w, weight_side="server")

    # Verify
    exact = (w[:, None].double() * rows.double()).sum(0)
    assert res.sum.dtype == torch.float32 and res.sum.shape == (100,)
    assert float((res.sum.double() - exact).abs().max()) <= res.error_bound
    assert res.mean.shape == (100,) and res.total_weight == 4.0
    assert torch.allclose(res.mean, (exact / 4).float(), atol=1e-5)
    # one chunk, 3 clients; the server receives 3 uploads and sends one aggregate
    assert res.bytes_per_client > 4 * 100 and res.expansion > 1
    assert res.bytes_server > 3 * res.bytes_per_client
    assert res.bytes_public_key > 0
    assert min(res.time_encrypt_s, res.time_aggregate_s, res.time_decrypt_s) > 0


# --------------------------------------------------------------------------- key holder split


def test_server_holds_no_secret_key(keys: CKKSKeys) -> None:
    # Prepare
    server = CKKSServer(keys.public)
    agg = server.aggregate([ckks_encrypt(keys.public, torch.ones(10))] * 2)

    # Verify: the key holder's context is private, the server's is not
    assert keys.secret_context.is_private()
    assert not server.context.is_private()
    assert not hasattr(server, "secret_context")
    import tenseal as ts

    vec = ts.ckks_vector_from(server.context, agg.chunks[0])
    with pytest.raises(ValueError, match="secret"):
        vec.decrypt()
    # a public context cannot be used as keys
    with pytest.raises(ValueError, match="secret key"):
        ckks_decrypt(keys.public, agg)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="secret key"):
        ckks_decrypt(server, agg)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="secret key"):
        CKKSKeys(public=keys.public, secret_context=server.context)
    # and the key holder decrypts it
    assert torch.allclose(ckks_decrypt(keys, agg), torch.full((10,), 2.0), atol=1e-5)


def test_public_context_with_secret_key_is_refused(keys: CKKSKeys) -> None:
    leaked = CKKSPublicContext(keys.secret_context.serialize(save_secret_key=True), keys.params)
    with pytest.raises(ValueError, match="holds a secret key"):
        CKKSServer(leaked)


def test_data_primes_are_public_and_near_powers_of_two(keys: CKKSKeys) -> None:
    primes = keys.public.data_primes
    assert len(primes) == 3
    for q, b in zip(primes, (60, 40, 40), strict=True):
        assert 2 ** (b - 1) < q < 2**b and q % (2 * 8192) == 1


# --------------------------------------------------------------------------- CKKS errors


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_ckks_rejects_nonfinite(keys: CKKSKeys, bad: float) -> None:
    x = torch.zeros(10)
    x[3] = bad
    with pytest.raises(ValueError, match="non-finite"):
        ckks_encrypt(keys.public, x)
    with pytest.raises(ValueError, match="non-finite"):
        he_sum(torch.stack([torch.zeros(10), x]))


@pytest.mark.parametrize(
    "row",
    [torch.zeros(2, 3), torch.zeros(0), torch.zeros(5, dtype=torch.int64), [1.0, 2.0]],
)
def test_ckks_rejects_bad_rows(keys: CKKSKeys, row: object) -> None:
    with pytest.raises(ValueError, match="row"):
        ckks_encrypt(keys.public, row)  # type: ignore[arg-type]


def test_he_sum_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        he_sum(torch.zeros(5))
    with pytest.raises(ValueError, match="unknown scheme"):
        he_sum(torch.zeros(2, 3), scheme="bfv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown ckks parameters"):
        he_sum(torch.zeros(2, 3), key_bits=1024)
    with pytest.raises(ValueError, match="weights"):
        he_sum(torch.zeros(2, 3), weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="weights"):
        he_sum(torch.zeros(2, 3), weights=[1.0])
    with pytest.raises(ValueError, match="weight_side"):
        he_sum(torch.zeros(2, 3), weights=[1.0, 1.0], weight_side="both")  # type: ignore[arg-type]


def test_ckks_rejects_values_too_large(keys: CKKSKeys, small_keys: CKKSKeys) -> None:
    # default: 140-bit fresh modulus at scale 2^40 -> |value| < 2^98
    assert keys.params.max_abs_value() == 2.0**98
    with pytest.raises(ValueError, match="too large"):
        ckks_encrypt(keys.public, torch.tensor([1.0, 1e30]))
    with pytest.raises(ValueError, match="too large"):
        ckks_encrypt(keys.public, torch.tensor([1.0, 1e20]), weight=1e10)
    # 60-bit modulus: each row fits (< 2^18), their sum does not
    row = torch.full((8,), 2.0e5)
    cts = [ckks_encrypt(small_keys.public, row) for _ in range(2)]
    with pytest.raises(ValueError, match="beyond what CKKS can hold"):
        ckks_sum(small_keys.public, cts)
    with pytest.raises(ValueError, match="too large"):
        ckks_encrypt(small_keys.public, torch.full((8,), 3.0e5))


def test_ckks_rejects_mismatched_ciphertexts(keys: CKKSKeys, small_keys: CKKSKeys) -> None:
    a = ckks_encrypt(keys.public, torch.ones(10))
    b = ckks_encrypt(keys.public, torch.ones(11))
    c = ckks_encrypt(small_keys.public, torch.ones(10))
    with pytest.raises(ValueError, match="dim"):
        ckks_sum(keys.public, [a, b])
    with pytest.raises(ValueError, match="another public context"):
        ckks_sum(keys.public, [a, c])
    with pytest.raises(ValueError, match="another context"):
        ckks_decrypt(small_keys, a)
    with pytest.raises(ValueError, match="no ciphertexts"):
        ckks_sum(keys.public, [])
    with pytest.raises(ValueError, match="no rescale level"):
        ckks_sum(small_keys.public, [c, c], weights=[1.0, 2.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"poly_modulus_degree": 1000}, "poly_modulus_degree"),
        ({"coeff_mod_bit_sizes": (60, 60, 60, 60)}, "128-bit security"),
        ({"coeff_mod_bit_sizes": (60,)}, "at least 2"),
        ({"scale_bits": 0}, "scale_bits"),
        ({"coeff_mod_bit_sizes": (30, 30), "scale_bits": 40}, "scale_bits"),
    ],
)
def test_ckks_rejects_bad_params(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ckks_context(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Paillier


def test_paillier_roundtrip_and_sum(pkeys: PaillierKeys) -> None:
    # Prepare
    rows = _rows(5, 20, 100.0, seed=11)
    exact = rows.double().sum(0)

    # Execute
    one = paillier_encrypt(pkeys.public_key, rows[0])
    cts = [one] + [paillier_encrypt(pkeys.public_key, r) for r in rows[1:]]
    agg = paillier_sum(pkeys.public_key, cts)
    out = paillier_decrypt(pkeys, agg, dtype=torch.float64)

    # Verify: fixed point at 2^-40, one ciphertext of 2 * 256 bits per coordinate
    assert one.nbytes == 20 * 64 and agg.n_terms == 5
    back = paillier_decrypt(pkeys, one, dtype=torch.float64)
    assert float((back - rows[0].double()).abs().max()) <= paillier_error_bound(one, torch.float64)
    assert float((out - exact).abs().max()) <= paillier_error_bound(agg, torch.float64)
    assert paillier_error_bound(agg, torch.float64) < 1e-10
    out32 = paillier_decrypt(pkeys, agg)
    assert float((out32.double() - exact).abs().max()) <= paillier_error_bound(agg)


@pytest.mark.parametrize("side", ["client", "server"])
def test_he_sum_paillier_weighted(side: Literal["client", "server"]) -> None:
    rows = _rows(4, 10, 1.0, seed=5)
    w = torch.tensor([0.25, 1.0, 0.0, 3.0])
    res = he_sum(rows, scheme="paillier", weights=w, weight_side=side, key_bits=256)
    exact = (w[:, None].double() * rows.double()).sum(0)
    assert res.scheme == "paillier" and res.sum.dtype == torch.float32
    assert float((res.sum.double() - exact).abs().max()) <= res.error_bound
    assert res.bytes_per_client == 10 * 64 and res.expansion == 16.0
    assert res.total_weight == 4.25


def test_paillier_errors(pkeys: PaillierKeys) -> None:
    ct = paillier_encrypt(pkeys.public_key, torch.ones(3))
    with pytest.raises(ValueError, match="private key"):
        paillier_decrypt(pkeys.public_key, ct)
    with pytest.raises(ValueError, match="does not fit"):
        paillier_encrypt(pkeys.public_key, torch.full((3,), 1e6), precision_bits=240)
    with pytest.raises(ValueError, match="non-finite"):
        paillier_encrypt(pkeys.public_key, torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="key_bits"):
        paillier_keys(100)
    with pytest.raises(ValueError, match="PaillierPublicKey"):
        paillier_encrypt(b"not a key", torch.ones(3))
    other = paillier_keys(256)
    with pytest.raises(ValueError, match="another public key"):
        paillier_sum(other.public_key, [ct])
    with pytest.raises(ValueError, match="another public key"):
        paillier_decrypt(other, ct)
    with pytest.raises(ValueError, match="unknown paillier parameters"):
        he_sum(torch.zeros(2, 3), scheme="paillier", scale_bits=40)
    # 32 such values sum to 2^255 > n / 3: caught on the server before decryption
    big = paillier_encrypt(pkeys.public_key, torch.full((2,), 2.0**10), precision_bits=240)
    with pytest.raises(ValueError, match="beyond the Paillier plaintext space"):
        paillier_sum(pkeys.public_key, [big] * 32)
