"""Cost of homomorphically encrypted aggregation: CKKS (TenSEAL) and Paillier (phe).

Setting: one aggregation round of an ``[n, d]`` update matrix, entries ``N(0, 0.01^2)``
(seeded), run in one process: the key holder creates the keys, every client encrypts its row
(loading the public context included), the server (public context only) adds the
ciphertexts, the key holder decrypts. CKKS at ``d = --dim`` (100,000) for ``n`` in
``--clients`` (10, 50, 100) with N = 8192, coeff_mod_bit_sizes (60, 40, 40, 60), scale 2^40,
plus one server-weighted round; Paillier (2048-bit key, 40-bit fixed point) at
``d = --paillier-dim`` (100), ``n = 10`` for contrast (one ciphertext per coordinate: its
cost grows linearly in ``d``). The plaintext sum is timed for reference. Errors are
measured against the float64 sum of the float32 inputs.

Writes ``benchmarks/results/he.json`` and ``docs/homomorphic-encryption.md``::

    python benchmarks/he.py [--dim 100000] [--clients 10 50 100] [--paillier-dim 100]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import phe  # noqa: E402
import tenseal  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from fedshield.privacy.he import (  # noqa: E402
    CKKSPublicContext,
    CKKSServer,
    ckks_context,
    ckks_decrypt,
    ckks_encrypt,
    ckks_error_bound,
    ckks_fresh_noise,
    paillier_decrypt,
    paillier_encrypt,
    paillier_error_bound,
    paillier_keys,
    paillier_sum,
)


def make_updates(n: int, d: int, seed: int) -> Tensor:
    """``[n, d]`` float32 updates, ``N(0, 0.01^2)``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen) * 0.01


def plain_sum(updates: Tensor, weights: Tensor | None = None) -> tuple[Tensor, float]:
    """The float64 reference sum and the time of the float32 plaintext sum (best of 5)."""
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        updates.sum(0)
        times.append(time.perf_counter() - t0)
    t = min(times)
    u = updates.double()
    exact = u.sum(0) if weights is None else (weights.double()[:, None] * u).sum(0)
    return exact, t


def ckks_round(updates: Tensor, weights: Tensor | None = None) -> dict[str, Any]:
    """One CKKS round (server-side weights when given); costs and errors."""
    n, d = updates.shape
    exact, t_plain = plain_sum(updates, weights)
    t0 = time.perf_counter()
    keys = ckks_context()
    t_keygen = time.perf_counter() - t0
    public = keys.public
    cts, enc = [], []
    for k in range(n):
        client_public = CKKSPublicContext(public.data, public.params)  # each client loads it
        t0 = time.perf_counter()
        cts.append(ckks_encrypt(client_public, updates[k]))
        enc.append(time.perf_counter() - t0)
    server = CKKSServer(public)
    t0 = time.perf_counter()
    agg = server.aggregate(cts, weights)
    t_agg = time.perf_counter() - t0
    t0 = time.perf_counter()
    out32 = ckks_decrypt(keys, agg)
    t_dec = time.perf_counter() - t0
    out64 = ckks_decrypt(keys, agg, dtype=torch.float64)
    per_client = cts[0].nbytes
    del cts
    return {
        "scheme": "ckks",
        "n": n,
        "d": d,
        "weighted": weights is not None,
        "ciphertexts_per_client": len(agg.chunks),
        "keygen_s": t_keygen,
        "encrypt_s_per_client": float(np.mean(enc)),
        "bytes_per_client": per_client,
        "expansion": per_client / (4 * d),
        "bytes_server": n * per_client + agg.nbytes,
        "bytes_public_context": public.nbytes,
        "aggregate_s": t_agg,
        "decrypt_s": t_dec,
        "plain_sum_s": t_plain,
        "max_abs_error_float64": float((out64 - exact).abs().max()),
        "max_abs_error_float32": float((out32.double() - exact).abs().max()),
        "error_bound_float64": ckks_error_bound(agg, torch.float64),
        "error_bound_float32": ckks_error_bound(agg),
    }


def paillier_round(updates: Tensor, key_bits: int) -> dict[str, Any]:
    """One Paillier round; costs and errors."""
    n, d = updates.shape
    exact, t_plain = plain_sum(updates)
    t0 = time.perf_counter()
    keys = paillier_keys(key_bits)
    t_keygen = time.perf_counter() - t0
    cts, enc = [], []
    for k in range(n):
        t0 = time.perf_counter()
        cts.append(paillier_encrypt(keys.public_key, updates[k]))
        enc.append(time.perf_counter() - t0)
        print(f"  paillier client {k + 1}/{n}: {enc[-1]:.1f}s", flush=True)
    t0 = time.perf_counter()
    agg = paillier_sum(keys.public_key, cts)
    t_agg = time.perf_counter() - t0
    t0 = time.perf_counter()
    out32 = paillier_decrypt(keys, agg)
    t_dec = time.perf_counter() - t0
    out64 = paillier_decrypt(keys, agg, dtype=torch.float64)
    per_client = cts[0].nbytes
    return {
        "scheme": f"paillier-{key_bits}",
        "n": n,
        "d": d,
        "weighted": False,
        "ciphertexts_per_client": d,
        "keygen_s": t_keygen,
        "encrypt_s_per_client": float(np.mean(enc)),
        "bytes_per_client": per_client,
        "expansion": per_client / (4 * d),
        "bytes_server": n * per_client + agg.nbytes,
        "bytes_public_context": (key_bits + 7) // 8,
        "aggregate_s": t_agg,
        "decrypt_s": t_dec,
        "plain_sum_s": t_plain,
        "max_abs_error_float64": float((out64 - exact).abs().max()),
        "max_abs_error_float32": float((out32.double() - exact).abs().max()),
        "error_bound_float64": paillier_error_bound(agg, torch.float64),
        "error_bound_float32": paillier_error_bound(agg),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=100_000)
    ap.add_argument("--clients", type=int, nargs="+", default=[10, 50, 100])
    ap.add_argument("--paillier-dim", type=int, default=100)
    ap.add_argument("--paillier-clients", type=int, default=10)
    ap.add_argument("--paillier-bits", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.time()

    rows: list[dict[str, Any]] = []
    for n in args.clients:
        rows.append(ckks_round(make_updates(n, args.dim, seed=n)))
        print(fmt(rows[-1]), f"({time.time() - t_start:.0f}s)", flush=True)
    n_w = min(args.clients)
    w = torch.rand(n_w, generator=torch.Generator().manual_seed(1)) + 0.5
    rows.append(ckks_round(make_updates(n_w, args.dim, seed=n_w), weights=w))
    print(fmt(rows[-1]), f"({time.time() - t_start:.0f}s)", flush=True)
    rows.append(
        paillier_round(
            make_updates(args.paillier_clients, args.paillier_dim, seed=0), args.paillier_bits
        )
    )
    print(fmt(rows[-1]), f"({time.time() - t_start:.0f}s)", flush=True)

    meta = {
        "date": dt.date.today().isoformat(),
        "command": "python benchmarks/he.py " + " ".join(sys.argv[1:]),
        "ckks": {"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [60, 40, 40, 60]},
        "ckks_scale_bits": 40,
        "ckks_fresh_noise_bound": ckks_fresh_noise(ckks_context().params),
        "paillier_precision_bits": 40,
        "threads": args.threads,
        "torch": torch.__version__,
        "tenseal": tenseal.__version__,
        "phe": phe.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "total_seconds": time.time() - t_start,
    }
    out = ROOT / "benchmarks" / "results" / "he.json"
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    write_doc(meta, rows)
    print(f"wrote {out} and docs/homomorphic-encryption.md ({time.time() - t_start:.0f}s)")


def fmt(r: dict[str, Any]) -> str:
    """One-line summary of a round."""
    return (
        f"{r['scheme']:13s} n={r['n']:3d} d={r['d']:6d} w={r['weighted']!s:5s} "
        f"enc {r['encrypt_s_per_client']:.3f}s/client {r['bytes_per_client'] / 1e6:.2f} MB "
        f"(x{r['expansion']:.0f}) agg {r['aggregate_s']:.2f}s dec {r['decrypt_s']:.3f}s "
        f"err {r['max_abs_error_float64']:.2e} <= {r['error_bound_float64']:.2e}"
    )


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the rounds."""
    lines = [
        "| scheme | n | d | encrypt / client (s) | upload / client (MB) | expansion vs "
        "float32 | server recv + send (MB) | aggregate (s) | decrypt (s) | plaintext sum (s) "
        "| max abs error (float64 out) | max abs error (float32 out) | stated bound |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = r["scheme"].upper() if r["scheme"] == "ckks" else r["scheme"].capitalize()
        if r["weighted"]:
            name += " (server-weighted)"
        lines.append(
            f"| {name} | {r['n']} | {r['d']:,} | {r['encrypt_s_per_client']:.3f} "
            f"| {r['bytes_per_client'] / 1e6:.2f} | {r['expansion']:.1f}x "
            f"| {r['bytes_server'] / 1e6:.1f} | {r['aggregate_s']:.2f} | {r['decrypt_s']:.3f} "
            f"| {r['plain_sum_s']:.1e} | {r['max_abs_error_float64']:.1e} "
            f"| {r['max_abs_error_float32']:.1e} | {r['error_bound_float32']:.1e} |"
        )
    return "\n".join(lines)


def write_doc(meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Writes ``docs/homomorphic-encryption.md`` (explanations + the measured table)."""
    pa = rows[-1]
    ck = rows[0]
    pa_per_coord = pa["encrypt_s_per_client"] / pa["d"]
    text = DOC.format(
        table=table(rows),
        date=meta["date"],
        command=meta["command"],
        machine=meta["machine"],
        threads=meta["threads"],
        tenseal=meta["tenseal"],
        phe=meta["phe"],
        total=meta["total_seconds"],
        fresh=meta["ckks_fresh_noise_bound"],
        pa_bits=pa["scheme"].split("-")[1],
        pa_ms=1e3 * pa_per_coord,
        pa_100k_h=pa_per_coord * ck["d"] / 3600,
        pa_100k_mb=pa["bytes_per_client"] / pa["d"] * ck["d"] / 1e6,
        ck_d=ck["d"],
        ck_chunks=ck["ciphertexts_per_client"],
        ck_mb=ck["bytes_per_client"] / 1e6,
        ck_enc=ck["encrypt_s_per_client"],
    )
    (ROOT / "docs" / "homomorphic-encryption.md").write_text(text)


DOC = """\
# Homomorphic-encryption aggregation

`fedshield.privacy.he` sums client updates under encryption: every client encrypts its row
of the update matrix, the server adds ciphertexts it cannot read, and a separate key holder
decrypts only the aggregate `sum_k w_k x_k`. Two schemes:

- **CKKS** (Cheon, Kim, Kim, Song, ASIACRYPT 2017) through TenSEAL (Benaissa et al. 2021):
  approximate arithmetic on batches of `N/2` real numbers per ciphertext. The practical
  choice for model-sized vectors.
- **Paillier** (EUROCRYPT 1999) through `phe`: exact additive homomorphism over `Z_n`, one
  ciphertext per coordinate. Only for small vectors (a few hundred values).

Install the extra: `pip install "fedshield[he]"` (`tenseal`, `phe`).

## API

```python
from fedshield.privacy.he import (
    ckks_context, ckks_encrypt, CKKSServer, ckks_sum, ckks_decrypt, ckks_error_bound, he_sum,
)

keys = ckks_context()                      # key holder: secret context + keys.public
ct_k = ckks_encrypt(keys.public, row_k)    # client k (public context only), weight=... optional
agg = CKKSServer(keys.public).aggregate([ct_1, ..., ct_n], weights=None)   # server
total = ckks_decrypt(keys, agg)            # key holder: Tensor[d] float32
bound = ckks_error_bound(agg)              # stated per-coordinate bound on |total - exact|

res = he_sum(updates, scheme="ckks", weights=w, weight_side="client")   # whole round
res.sum, res.mean, res.bytes_per_client, res.bytes_server, res.time_encrypt_s,
res.time_aggregate_s, res.time_decrypt_s, res.error_bound
```

Paillier has the same shape: `paillier_keys(key_bits=2048)`, `paillier_encrypt(public_key,
row, precision_bits=40)`, `paillier_sum(public_key, cts, weights)`, `paillier_decrypt(keys,
ct)`, `paillier_error_bound(ct)`; `he_sum(updates, scheme="paillier", key_bits=...)`.

Ciphertexts travel as bytes (`CKKSCiphertext.chunks`, `PaillierCiphertext.data`) with a few
fields of metadata (dimension, context fingerprint, level, and the tracked magnitude and
error bounds used by the checks below).

## CKKS scheme and parameters

A row of `d` values is cut into `ceil(d / (N/2))` chunks; each chunk is encoded into the
`N/2` slots of one plaintext polynomial, scaled by `Delta = 2^scale_bits`, and encrypted
with the public key. Addition of ciphertexts adds the slots. A plaintext weight multiplies
a ciphertext by the encoded constant and is followed by a rescale (division by the last data
prime `q`), which consumes one level of the modulus chain.

Defaults: `N = poly_modulus_degree = 8192` (4096 slots), `coeff_mod_bit_sizes = (60, 40,
40, 60)`, scale `2^40`. The last prime is SEAL's special key-switching prime; the 140 bits
of data primes leave two rescales, of which server-side weighting uses one.

**Security.** The total coefficient modulus is 200 bits, below the 218 bits that the
HomomorphicEncryption.org standard allows for 128-bit security at `N = 8192` (ternary
secret); `ckks_context` refuses larger moduli (109 bits at `N = 4096`, 438 at `N = 16384`).
The public context that clients and the server receive is serialized without the secret
key (and without relinearization or Galois keys, which summation does not need).

**TenSEAL detail.** After a rescale TenSEAL resets the ciphertext scale to `Delta` although
the true scale is `Delta^2 / q`; SEAL's 40-bit primes lie about `1e-7` below `2^40`, so a
naive weight would be off by that relative amount (`3e-4` absolute at values of `1e3`).
`CKKSServer` reads the (public) primes and multiplies by `w * q / Delta`, which removes the
bias.

## Error bound

CKKS decryption is approximate. Using the high-probability canonical-embedding bounds of
Cheon et al. (Lemmas 1 and 2; error std `sigma = 3.2`, secret Hamming weight `h <= N`), one
fresh encryption of a chunk has per-slot error at most

    B_fresh = (8 sqrt(2) sigma N + 6 sigma sqrt(N) + 16 sigma sqrt(h N) + N / 2) / Delta

(the last term is the rounding of the encoding). For `N = 8192`, `Delta = 2^40`:
`B_fresh = {fresh:.3g} < 2^-20`. Additions add the errors, so the **sum of `n` fresh
encryptions is within `n * 2^-20` of the exact sum in every coordinate**. A server-side
weight `w` turns a term's error `e` into `w e + max|x| 2^-40 + B_rescale`, with
`B_rescale = sqrt(N/3) (3 + 8 sqrt(h)) / Delta` (about `3.5e-8`). `ckks_error_bound(ct)`
tracks exactly this sum and adds the floating-point terms: `2^-45 max|value|` for the
float64 FFT of encoding and decoding, and `2^-24 max|value|` for the rounding of the
float32 output (`2^-53` with `dtype=torch.float64`). It is the `error_bound` of `he_sum`.
These are the standard heuristic (not worst-case) bounds; errors larger than them have
negligible probability.

Validation (`tests/privacy/test_he.py`): for `n` in 2, 10, 50 and values uniform in
`[-s, s]` with `s` in `1e-3, 1, 1e3` (`d = 4100`, two chunks), the decrypted sum is within
the tracked bound (float64 and float32 outputs) and the tracked bound is at most
`n * 2^-20` plus the relative terms; also one row decrypts to itself, and client- and
server-side weighted sums are within their bounds. Measured errors are far below the bound:
about `8e-9` for one encryption and growing like `sqrt(n)` (about `1e-7` at `n = 100`),
80 to 1000 times smaller than `n * B_fresh` (see the table; the stated bound there is the
`error_bound` of `he_sum`, for the float32 output). With float32 output the
rounding to float32 (`2^-24 |sum|`) usually dominates.

**Magnitude limits.** A ciphertext at a modulus of `Q` bits decrypts correctly while
`|value| * Delta < 2^Q / 2`. Clients refuse rows with `|w x| >= 2^(Q - log2 Delta - 2)`
(`2^98` for the defaults), the server refuses an aggregate whose tracked magnitude
`sum_k |w_k| max|x_k|` reaches the limit of its level (`2^58` after one rescale), so an
overflow is reported instead of decrypting to garbage. NaN/Inf, wrong shapes, empty rows,
negative or all-zero weights, ciphertexts from another context or of another dimension,
unknown schemes or parameters, and decryption with anything but the key holder's keys
raise `ValueError`.

## Paillier

`round(w x * 2^precision_bits)` is encrypted coordinate by coordinate (`phe`'s
`EncryptedNumber` at exponent 0), ciphertexts are multiplied modulo `n^2` to add the
plaintexts, and server-side weights are applied as `c^round(w 2^24)`. The result is exact
up to the fixed-point rounding: error at most `sum_k |w_k| 2^-(precision_bits+1)` (plus
`max|x| 2^-25` per server-weighted term and the float output rounding). Every ciphertext
is `2 * key_bits` bits: 512 bytes per coordinate at 2048 bits, an expansion of 128x over
float32. A 2048-bit modulus gives about 112-bit security (3072 bits for 128-bit). Overflow of
the plaintext space (`n / 3`) is checked on the client and the server.

## Threat model and the key holder

- The server is honest-but-curious and must learn only the aggregate. It receives the
  public context / public key and ciphertexts, never a secret key: `CKKSServer` is built
  from `CKKSPublicContext` alone and refuses a context that holds a secret key; its
  context's `is_private()` is `False`, and decrypting with it fails.
- The key holder decrypts only what the server sends it (the aggregate). Anyone holding
  the secret key *and* a client's ciphertext can read that client's update, so **the key
  holder must not collude with the server**, and ciphertexts must reach the server over
  channels the key holder cannot observe.
- TenSEAL (SEAL) has no threshold or multi-key decryption. The options are: (1) a separate
  key-holder party (a trusted third party, or an enclave), non-colluding with the server:
  what this module implements, with key holder and server as separate objects; (2) a
  designated committee of clients that holds the key (the same trust split, with the
  committee as key holder; one key holder per committee member would need a threshold
  scheme); (3) a real threshold / multiparty CKKS (e.g. Lattigo's multiparty CKKS, or
  OpenFHE's threshold FHE), outside TenSEAL, where decryption needs `t` of `k` shares.
- Encryption hides the updates from the server but not the aggregate from the key holder,
  and it provides no robustness: the server cannot inspect or clip encrypted updates, so
  robust aggregation rules cannot be combined with it. Malicious clients can submit any
  value (bounded only by the magnitude checks), and a malicious server could drop or
  substitute ciphertexts; neither is in scope. Combine with differential privacy (noise
  added by clients before encryption) to also protect the aggregate.

## Cost

`python benchmarks/he.py` ({date}; {machine}, {threads} threads, TenSEAL {tenseal}, phe
{phe}; {total:.0f} s in all). Updates are `N(0, 0.01^2)`; errors against the float64 sum of
the float32 inputs; the CKKS encryption time includes loading the public context; the
plaintext sum is `updates.sum(0)` in float32 (best of 5). Timings are from a shared 2-core
machine and vary by tens of percent between runs.

{table}

At `d = {ck_d:,}` a CKKS client uploads {ck_chunks} ciphertexts ({ck_mb:.1f} MB) and spends
{ck_enc:.2f} s encrypting; the server's work is dominated by deserialization and is linear in
`n`. Paillier-{pa_bits} costs {pa_ms:.0f} ms per coordinate to encrypt (pure-Python `phe`
without `gmpy2`): at `d = {ck_d:,}` that would be about {pa_100k_h:.1f} hours and
{pa_100k_mb:.0f} MB per client, hence its restriction to small vectors.

Raw numbers: `benchmarks/results/he.json`.

## References

- J. H. Cheon, A. Kim, M. Kim, Y. Song. "Homomorphic Encryption for Arithmetic of
  Approximate Numbers." ASIACRYPT 2017.
- A. Benaissa, B. Retiat, B. Cebere, A. E. Belfedhal. "TenSEAL: A Library for Encrypted
  Tensor Operations Using Homomorphic Encryption." ICLR 2021 workshop, arXiv:2104.03152.
- P. Paillier. "Public-Key Cryptosystems Based on Composite Degree Residuosity Classes."
  EUROCRYPT 1999.
- M. Albrecht et al. "Homomorphic Encryption Security Standard." HomomorphicEncryption.org,
  2018.
"""


if __name__ == "__main__":
    main()
