"""Tests for fedshield.privacy.secagg (SecAgg+): Shamir sharing, the neighbour graph, the
fixed-point encoding and its overflow guard, the crypto primitives, the four rounds with
dropouts at every stage, refusal below threshold, the server's view, and byte counts."""

from __future__ import annotations

import itertools
import math
import secrets

import numpy as np
import pytest
import torch
from scipy import stats

from fedshield.privacy.secagg import (
    STAGES,
    SecAggResult,
    default_num_neighbours,
    default_threshold,
    neighbour_graph,
    quant_spec,
    secure_sum,
    wire,
)
from fedshield.privacy.secagg import primitives as pr
from fedshield.privacy.secagg import protocol as proto
from fedshield.privacy.secagg.encoding import decode_sum, encode
from fedshield.privacy.secagg.shamir import (
    PRIME,
    reconstruct_secret,
    secret_to_bytes,
    split_secret,
)

# ------------------------------------------------------------------------------ helpers


def _updates(n: int, d: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen) * 0.7  # some coordinates beyond clip=1


def _spread_dropouts(n: int, rate: float, seed: int) -> dict[str, list[int]]:
    """``rate * n`` clients, dropping round-robin over the four stages."""
    ids = np.random.default_rng(seed).permutation(n)[: round(rate * n)].tolist()
    return {stage: ids[i :: len(STAGES)] for i, stage in enumerate(STAGES)}


def _check_sum(result: SecAggResult, updates: torch.Tensor, clip: float = 1.0) -> None:
    assert not result.failed and result.sum is not None and result.reason is None
    exact = updates.clamp(-clip, clip)[result.survivors].double().sum(0)
    err = (result.sum.double() - exact).abs()
    tol = result.quant_bound + exact.abs() * 2.0**-23 + 1e-12  # + float32 output rounding
    assert bool((err <= tol).all()), float((err - tol).max())


def _connected(graph: tuple[tuple[int, ...], ...]) -> bool:
    seen, todo = {0}, [0]
    while todo:
        for v in graph[todo.pop()]:
            if v not in seen:
                seen.add(v)
                todo.append(v)
    return len(seen) == len(graph)


# ------------------------------------------------------------------------------ Shamir


def test_shamir_any_t_shares_reconstruct_and_t_minus_1_do_not() -> None:
    secret = secrets.randbits(256)
    xs = list(range(1, 8))
    shares = split_secret(secret, 4, xs)
    points = list(zip(xs, shares, strict=True))
    for subset in itertools.combinations(points, 4):
        assert reconstruct_secret(subset) == secret
    assert reconstruct_secret(points) == secret  # more than t also works
    for few in itertools.combinations(points, 3):
        wrong = reconstruct_secret(few)
        assert wrong != secret
        with pytest.raises(ValueError, match="not a valid secret"):
            secret_to_bytes(wrong)  # garbage is uniform in GF(2^521 - 1): >= 2^256 w.h.p.


def test_shamir_lagrange_at_zero_of_a_known_polynomial() -> None:
    def f(x: int) -> int:
        return (5 + 3 * x + 2 * x * x) % PRIME

    assert reconstruct_secret([(x, f(x)) for x in (1, 2, 3)]) == 5
    assert reconstruct_secret([(x, f(x)) for x in (7, 100, PRIME - 1)]) == 5
    assert split_secret(42, 1, [3, 9]) == [42, 42]  # degree 0: every share is the secret


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: split_secret(PRIME, 2, [1, 2]), "secret"),
        (lambda: split_secret(1, 3, [1, 2]), "threshold"),
        (lambda: split_secret(1, 0, [1, 2]), "threshold"),
        (lambda: split_secret(1, 2, [1, 1]), "distinct"),
        (lambda: split_secret(1, 2, [0, 1]), "nonzero"),
        (lambda: reconstruct_secret([]), "at least one"),
    ],
)
def test_shamir_rejects_bad_arguments(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


# ------------------------------------------------------------------------------ graph


@pytest.mark.parametrize(("n", "k"), [(10, 4), (50, 12), (201, 16), (30, 7)])
def test_neighbour_graph_is_regular_symmetric_connected(n: int, k: int) -> None:
    graph = neighbour_graph(n, k, seed=3)
    degree = k + k % 2  # odd k rounds up
    assert all(len(nb) == degree and u not in nb for u, nb in enumerate(graph))
    assert all(u in graph[v] for u, nb in enumerate(graph) for v in nb)
    assert _connected(graph)
    assert graph == neighbour_graph(n, k, seed=3)
    assert graph != neighbour_graph(n, k, seed=4)


def test_neighbour_graph_complete_and_defaults() -> None:
    assert neighbour_graph(6, 5, seed=0) == tuple(
        tuple(v for v in range(6) if v != u) for u in range(6)
    )
    assert neighbour_graph(6, 4, seed=0)[0] != tuple(range(1, 6))  # 4 < n - 1: not complete
    assert default_num_neighbours(1000) == 20 and default_num_neighbours(100) == 14
    assert default_num_neighbours(5) == 4 and default_threshold(20) == 11


# ------------------------------------------------------------------------------ encoding


def test_overflow_guard_names_the_configuration() -> None:
    # Flower's fixed 2^22 levels per client in a 2^32 ring wrap past 1024 clients.
    with pytest.raises(ValueError, match=r"n=1025.*clip=1\.0.*2\^32"):
        quant_spec(1025, 1.0, 32, scale=2.0**21)
    quant_spec(1023, 1.0, 32, scale=2.0**21)
    with pytest.raises(ValueError, match="overflow"):
        secure_sum(torch.zeros(5, 3), threshold=2, num_neighbours=4, clip=8.0, scale=2.0**29)
    with pytest.raises(ValueError, match="bits"):
        quant_spec(10, 1.0, 16)


@pytest.mark.parametrize(("n", "bits"), [(1025, 32), (5000, 32), (100_000, 64)])
def test_auto_scale_never_wraps_at_full_clip(n: int, bits: int) -> None:
    spec = quant_spec(n, 2.0, bits)
    rng = np.random.default_rng(0)
    for sign in (1.0, -1.0):
        words = encode(np.full(4, sign * 5.0), spec, rng)  # clipped to +-2
        total = (words.astype(object) * n) % (1 << bits)  # exact ring sum of n such rows
        decoded = decode_sum(total.astype(spec.dtype), n, spec)
        assert np.allclose(decoded, sign * 2.0 * n, rtol=1e-12)
        assert n * 2 * spec.half <= (1 << bits) - 1


def test_encoding_error_is_below_one_step_and_unbiased() -> None:
    spec = quant_spec(10, 1.0, 32, scale=1000.0)
    x = np.linspace(-1.5, 1.5, 1001)
    rng = np.random.default_rng(1)
    reps = np.stack([encode(x, spec, rng).astype(np.float64) for _ in range(400)])
    values = (reps - spec.half) / spec.scale
    assert np.abs(values - np.clip(x, -1, 1)).max() < spec.step
    assert abs((values.mean(0) - np.clip(x, -1, 1)).mean()) < 0.05 * spec.step


# ------------------------------------------------------------------------------ primitives


def test_aead_detects_tampering_and_misrouting() -> None:
    key = bytes(range(32))
    box = pr.aead_encrypt(key, b"share bytes", b"aad-1")
    assert pr.aead_decrypt(key, box, b"aad-1") == b"share bytes"
    flipped = box[:-5] + bytes([box[-5] ^ 1]) + box[-4:]
    with pytest.raises(ValueError, match="authentication"):
        pr.aead_decrypt(key, flipped, b"aad-1")
    with pytest.raises(ValueError, match="authentication"):
        pr.aead_decrypt(key, box, b"aad-2")


def test_prg_is_deterministic_per_seed_and_uniform() -> None:
    a = pr.prg_words(b"\x01" * 32, 50_000, np.uint32)
    assert a.dtype.itemsize == 4 and a.shape == (50_000,)
    assert np.array_equal(a, pr.prg_words(b"\x01" * 32, 50_000, np.uint32))
    assert not np.array_equal(a, pr.prg_words(b"\x02" * 32, 50_000, np.uint32))
    counts = np.bincount(a >> 26, minlength=64)
    assert stats.chisquare(counts).pvalue > 1e-4
    assert pr.prg_words(b"\x01" * 32, 7, np.uint64).shape == (7,)


def test_key_agreement_is_symmetric_and_label_separated() -> None:
    a, b = pr.generate_private_key(), pr.generate_private_key()
    ab = pr.agree(a, pr.public_bytes(b), pr.MASK_INFO, b"r" * 16)
    assert ab == pr.agree(b, pr.public_bytes(a), pr.MASK_INFO, b"r" * 16)
    assert ab != pr.agree(a, pr.public_bytes(b), pr.ENC_INFO, b"r" * 16)


# ------------------------------------------------------------------------------ secure_sum


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("n", [5, 50, 200])
def test_secure_sum_matches_plaintext_sum_of_survivors(n: int, rate: float) -> None:
    d = 300 if n < 200 else 100
    updates = _updates(n, d, seed=n)
    k = default_num_neighbours(n)
    t = default_threshold(k) if rate == 0 else max(1, k // 3)
    drops = _spread_dropouts(n, rate, seed=n)
    result = secure_sum(updates, threshold=t, num_neighbours=k, dropout=drops, seed=n)
    gone = set(drops["advertise_keys"] + drops["share_keys"] + drops["masked_input"])
    assert result.survivors == sorted(set(range(n)) - gone)
    assert result.dropped == {s: sorted(v) for s, v in drops.items()}
    _check_sum(result, updates)
    assert result.num_neighbours == k and result.threshold == t
    assert result.quant_bound == pytest.approx(len(result.survivors) / result.spec.scale)


@pytest.mark.slow
def test_secure_sum_thousand_clients() -> None:
    n, d = 1000, 200
    updates = _updates(n, d, seed=7)
    k = default_num_neighbours(n)
    for rate in (0.0, 0.1, 0.3):
        drops = _spread_dropouts(n, rate, seed=7)
        t = default_threshold(k) if rate < 0.3 else k // 3
        _check_sum(secure_sum(updates, threshold=t, num_neighbours=k, dropout=drops), updates)


def test_secure_sum_bits64_explicit_scale_and_clip() -> None:
    updates = _updates(12, 64, seed=2) * 10
    result = secure_sum(updates, threshold=3, num_neighbours=6, clip=8.0, bits=64, scale=2.0**40)
    _check_sum(result, updates, clip=8.0)
    assert result.spec.bits == 64 and result.quant_step == 2.0**-40


def test_odd_k_and_complete_graph() -> None:
    updates = _updates(9, 20)
    odd = secure_sum(updates, threshold=2, num_neighbours=3)
    assert odd.num_neighbours == 4
    _check_sum(odd, updates)
    full = secure_sum(updates, threshold=5, num_neighbours=8)
    assert full.num_neighbours == 8
    _check_sum(full, updates)


def _assert_nothing_released(result: SecAggResult) -> None:
    assert result.failed and result.sum is None and "threshold" in (result.reason or "")


def test_below_threshold_refused_before_asking_for_shares() -> None:
    # n=5 complete graph (k=4), t=3: survivors {0, 3, 4}; client 0 has 2 surviving neighbours.
    drops = {"share_keys": [1], "masked_input": [2]}
    result = secure_sum(
        _updates(5, 10), threshold=3, num_neighbours=4, dropout=drops, record_transcript=True
    )
    _assert_nothing_released(result)
    assert result.transcript is not None
    assert not [m for m in result.transcript if m.stage == "unmask"]  # no share requested
    assert result.survivors == [0, 3, 4]


def test_below_threshold_at_unmask_reconstructs_nothing() -> None:
    # Everyone sends masked input, then too many drop while unmasking.
    result = secure_sum(
        _updates(6, 10), threshold=4, num_neighbours=5, dropout={"unmask": [0, 1, 2]}
    )
    _assert_nothing_released(result)
    assert "shares" in (result.reason or "") and result.survivors == list(range(6))


def test_too_few_clients_overall() -> None:
    result = secure_sum(
        _updates(5, 10), threshold=3, num_neighbours=4, dropout={"advertise_keys": [0, 1, 2]}
    )
    _assert_nothing_released(result)
    assert result.survivors == [] and result.dropped["advertise_keys"] == [0, 1, 2]


def test_client_with_too_few_live_neighbours_drops_itself() -> None:
    # k=2 ring, t=2: a neighbour of client 0 vanishes at advertise -> 0 aborts at share_keys.
    updates = _updates(8, 10)
    ring = neighbour_graph(8, 2, seed=0)
    victim = ring[0][0]
    result = secure_sum(
        updates, threshold=2, num_neighbours=2, dropout={"advertise_keys": [victim]}
    )
    assert 0 in result.dropped["share_keys"] and 0 not in result.survivors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"updates": torch.zeros(5)}, "shape"),
        ({"updates": torch.zeros(1, 4)}, "shape"),
        ({"updates": torch.zeros(5, 0)}, "shape"),
        ({"updates": torch.zeros(5, 4, dtype=torch.int64)}, "floating"),
        ({"updates": torch.tensor([[0.0, 1.0]] * 3 + [[float("nan"), 0.0]])}, r"rows \[3\]"),
        ({"updates": torch.tensor([[0.0, float("inf")]] * 4)}, r"rows \[0, 1, 2, 3\]"),
        ({"threshold": 4, "num_neighbours": 3}, "threshold"),
        ({"threshold": 0}, "threshold"),
        ({"num_neighbours": 4}, "num_neighbours must be < n"),
        ({"num_neighbours": 0}, "num_neighbours"),
        ({"threshold": 1.5}, "threshold must be an int"),
        ({"dropout": {"masked": [1]}}, r"unknown dropout stage.*masked"),
        ({"dropout": {"unmask": [4, -1]}}, r"out of range.*\[-1, 4\]"),
        ({"clip": 0.0}, "clip"),
        ({"bits": 16}, "bits"),
    ],
)
def test_bad_inputs_raise_value_error(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"updates": torch.zeros(4, 3), "threshold": 2, "num_neighbours": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        secure_sum(**args)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ server view


def test_server_view_of_masked_inputs_is_uniform_and_hides_the_encoding() -> None:
    n, d = 12, 8192
    updates = torch.zeros(n, d)
    updates[1] = 1.0  # +clip: encoding 2 * half everywhere
    updates[2] = -1.0  # -clip: encoding 0 everywhere
    result = secure_sum(updates, threshold=3, num_neighbours=4, record_transcript=True)
    _check_sum(result, updates)
    assert result.transcript is not None
    spec = result.spec
    received = [m for m in result.transcript if m.receiver == -1]
    everything = b"".join(m.payload for m in result.transcript)
    for u, plain_word in ((0, spec.half), (1, 2 * spec.half), (2, 0)):
        (msg,) = [m for m in received if m.stage == "masked_input" and m.sender == u]
        _, y = wire.decode_masked(msg.payload)
        # Uniform over Z_{2^32} whatever x_u is: top 6 bits, 64 equiprobable bins.
        assert stats.chisquare(np.bincount(y >> 26, minlength=64)).pvalue > 1e-4
        # Low byte too (the encoding is constant there, the mask is not).
        assert stats.chisquare(np.bincount(y & 0xFF, minlength=256)).pvalue > 1e-4
        assert int((y == plain_word).sum()) <= 1
        # The plaintext encoding never appears in anything the server saw.
        plain = np.full(4, plain_word, dtype=np.dtype("<u4")).tobytes()
        assert plain not in everything
    # Two clients with opposite inputs look alike: two-sample KS on their masked words.
    ys = [wire.decode_masked(m.payload)[1] for m in received if m.stage == "masked_input"]
    assert stats.ks_2samp(ys[1].astype(np.float64), ys[2].astype(np.float64)).pvalue > 1e-4


def _drive_to_share_keys(n: int, t: int) -> tuple[proto.ServerState, dict, dict[int, bytes]]:
    spec = quant_spec(n, 1.0, 32)
    server, setup = proto.server_init(n, 16, t, n - 1, spec, seed=0)
    clients = {u: proto.client_init(m) for u, m in setup.items()}
    adv = {u: proto.client_advertise_keys(c) for u, c in clients.items()}
    keys = proto.server_collect_keys(server, adv)
    shares = {u: proto.client_share_keys(clients[u], keys[u]) for u in clients}
    routed = proto.server_route_shares(server, shares)
    return server, clients, routed


def test_secrets_never_travel_in_clear_and_tampered_share_is_rejected() -> None:
    server, clients, routed = _drive_to_share_keys(4, 2)
    seen = b"".join(routed.values())
    for c in clients.values():
        assert c.b_seed is not None and c.s_sk is not None and c.c_sk is not None
        assert c.b_seed not in seen and pr.private_bytes(c.s_sk) not in seen
    msg = bytearray(routed[0])
    msg[-3] ^= 0x40  # inside the last sealed share's tag
    spec = server.spec
    x = np.zeros(16, dtype=np.float32)
    with pytest.raises(ValueError, match="authentication"):
        proto.client_masked_input(clients[0], bytes(msg), x, spec, np.random.default_rng(0))


def test_client_refuses_to_reveal_both_secrets_of_one_neighbour() -> None:
    server, clients, routed = _drive_to_share_keys(4, 2)
    rng = np.random.default_rng(0)
    x = np.zeros(16, dtype=np.float32)
    masked = {
        u: proto.client_masked_input(c, routed[u], x, server.spec, rng) for u, c in clients.items()
    }
    proto.server_collect_masked(server, masked)
    greedy = wire.encode_unmask_request(wire.UnmaskRequest(4, (1, 2), (2,)))
    with pytest.raises(ValueError, match="both shares"):
        proto.client_unmask(clients[0], greedy)


# ------------------------------------------------------------------------------ bytes


def test_bytes_per_client_do_not_grow_with_n() -> None:
    per_n = {}
    for n in (50, 200):
        result = secure_sum(_updates(n, 64), threshold=3, num_neighbours=8)
        per_n[n] = result.bytes_per_client
        assert result.bytes_server == int(result.bytes_per_client.sum())
    assert set(per_n[50].tolist()) == set(per_n[200].tolist())
    assert len(set(per_n[50].tolist())) == 1  # no dropout: every client sends the same


def test_bytes_grow_with_d_by_the_word_size() -> None:
    small = secure_sum(_updates(10, 100), threshold=2, num_neighbours=4).bytes_sent
    large = secure_sum(_updates(10, 1100), threshold=2, num_neighbours=4).bytes_sent
    assert torch.equal(large - small, torch.full((10,), 4000))
    large64 = secure_sum(_updates(10, 1100), threshold=2, num_neighbours=4, bits=64).bytes_sent
    assert torch.equal(large64 - small, torch.full((10,), 8800 - 400))
    assert math.isclose(float(small[0]), float(small[1]))
