"""The four SecAgg+ rounds as functions over explicit client and server states.

Round 0 **AdvertiseKeys**: each client makes two X25519 key pairs, ``c`` (to encrypt
shares) and ``s`` (to agree pairwise mask seeds), and sends the public halves; the server
returns to each client its live neighbours' keys.

Round 1 **ShareKeys**: each client draws a 32-byte self-mask seed ``b_u``, Shamir-shares
``b_u`` and ``s_u^SK`` among its live neighbours (threshold ``t``), and seals each
neighbour's pair of shares with AES-GCM under ``HKDF(X25519(c_u^SK, c_v^PK))``; the
server routes the sealed shares (it cannot read them).

Round 2 **MaskedInputCollection**: each client opens its shares, then sends
``y_u = x_u + PRG(b_u) + sum_{v in N(u), v > u} PRG(s_uv) - sum_{v in N(u), v < u}
PRG(s_uv) mod R`` where ``x_u`` is its fixed-point update, ``s_uv =
HKDF(X25519(s_u^SK, s_v^PK))`` and the sums run over the neighbours that shared keys.

Round 3 **Unmasking**: the server names, to each surviving client, its neighbours that
sent a masked input (reveal the share of ``b``) and those that dropped after sharing keys
(reveal the share of ``s^SK``) -- never both for one client, which each client checks.
If every needed secret has at least ``t`` shares the server reconstructs, removes the
masks and decodes the sum; otherwise it aborts before reconstructing anything.

A client that sees fewer than ``t`` live neighbours aborts (:class:`ClientAbortError`), which
to the server is the same as a dropout.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedshield.privacy.secagg import primitives as pr
from fedshield.privacy.secagg import wire
from fedshield.privacy.secagg.encoding import QuantSpec, decode_sum, encode
from fedshield.privacy.secagg.graph import effective_degree, neighbour_graph
from fedshield.privacy.secagg.shamir import (
    SHARE_BYTES,
    bytes_to_secret,
    reconstruct_secret,
    secret_to_bytes,
    split_secret,
)

__all__ = [
    "ClientAbortError",
    "ClientState",
    "SecAggAbortError",
    "ServerState",
    "client_advertise_keys",
    "client_init",
    "client_masked_input",
    "client_share_keys",
    "client_unmask",
    "server_collect_keys",
    "server_collect_masked",
    "server_init",
    "server_route_shares",
    "server_unmask",
]

_PLAIN = struct.Struct("<II")


class SecAggAbortError(ValueError):
    """The server refused to finish the round (too few clients / shares); nothing leaked."""


class ClientAbortError(RuntimeError):
    """A client stopped participating (too few live neighbours); the server sees a dropout."""


# --------------------------------------------------------------------------- client side


@dataclass
class ClientState:
    """Everything one client keeps between rounds (never sent in the clear)."""

    setup: wire.Setup
    c_sk: X25519PrivateKey | None = None
    s_sk: X25519PrivateKey | None = None
    b_seed: bytes | None = None
    neighbour_keys: dict[int, wire.Keys] = field(default_factory=dict)
    enc_keys: dict[int, bytes] = field(default_factory=dict)
    held: dict[int, tuple[int, int]] = field(default_factory=dict)  # owner -> (b, sk) shares
    mask_peers: tuple[int, ...] = ()
    stage: int = 0


def _aad(round_id: bytes, src: int, dst: int) -> bytes:
    return round_id + _PLAIN.pack(src, dst)


def _advance(state: ClientState, expected: int) -> None:
    if state.stage != expected:
        raise ValueError(f"client {state.setup.client_id}: round {expected} out of order")
    state.stage = expected + 1


def client_init(setup_msg: bytes) -> ClientState:
    """Parse the server's setup message into a fresh client state."""
    return ClientState(setup=wire.decode_setup(setup_msg))


def client_advertise_keys(state: ClientState) -> bytes:
    """Round 0: make the ``c`` and ``s`` key pairs; return the AdvertiseKeys message."""
    _advance(state, 0)
    state.c_sk, state.s_sk = pr.generate_private_key(), pr.generate_private_key()
    keys = wire.Keys(pr.public_bytes(state.c_sk), pr.public_bytes(state.s_sk))
    return wire.encode_advertise(state.setup.client_id, keys)


def client_share_keys(state: ClientState, keys_msg: bytes) -> bytes:
    """Round 1: Shamir-share ``b_u`` and ``s_u^SK``; return the sealed shares.

    Raises:
        ClientAbortError: Fewer than ``t`` live neighbours.
        ValueError: Keys of a non-neighbour, or duplicated keys.
    """
    _advance(state, 1)
    assert state.c_sk is not None and state.s_sk is not None
    setup, me = state.setup, state.setup.client_id
    keys = wire.decode_keys(keys_msg)
    if not set(keys) <= set(setup.neighbours):
        raise ValueError(f"client {me}: server sent keys of non-neighbours")
    all_pks = [pk for k in keys.values() for pk in (k.c_pk, k.s_pk)]
    all_pks += [pr.public_bytes(state.c_sk), pr.public_bytes(state.s_sk)]
    if len(set(all_pks)) != len(all_pks):
        raise ValueError(f"client {me}: duplicated public keys")
    if len(keys) < setup.threshold:
        raise ClientAbortError(f"client {me}: {len(keys)} live neighbours < threshold")
    state.neighbour_keys = keys
    state.b_seed = os.urandom(32)
    peers = sorted(keys)
    xs = [v + 1 for v in peers]
    b_shares = split_secret(bytes_to_secret(state.b_seed), setup.threshold, xs)
    sk_secret = bytes_to_secret(pr.private_bytes(state.s_sk))
    sk_shares = split_secret(sk_secret, setup.threshold, xs)
    sealed = {}
    for v, b_y, sk_y in zip(peers, b_shares, sk_shares, strict=True):
        key = pr.agree(state.c_sk, keys[v].c_pk, pr.ENC_INFO, setup.round_id)
        state.enc_keys[v] = key
        plain = _PLAIN.pack(me, v) + b_y.to_bytes(SHARE_BYTES, "big")
        plain += sk_y.to_bytes(SHARE_BYTES, "big")
        sealed[v] = pr.aead_encrypt(key, plain, _aad(setup.round_id, me, v))
    return wire.encode_shares(me, sealed)


def client_masked_input(
    state: ClientState, routed_msg: bytes, x: np.ndarray, spec: QuantSpec, rng: np.random.Generator
) -> bytes:
    """Round 2: open the received shares, then mask and send the encoded update.

    Args:
        state: The client's state.
        routed_msg: The sealed shares the server routed to this client.
        x: The client's update (1-D float array of length ``d``).
        spec: The fixed-point encoding (must match the setup message).
        rng: Stochastic-rounding randomness.

    Returns:
        The masked-input message.

    Raises:
        ClientAbortError: Shares from fewer than ``t`` neighbours.
        ValueError: A share failed authentication or was addressed to someone else.
    """
    _advance(state, 2)
    assert state.s_sk is not None and state.b_seed is not None
    setup, me = state.setup, state.setup.client_id
    if (spec.bits, spec.half, spec.clip) != (setup.bits, setup.half, setup.clip):
        raise ValueError("encoding does not match the round's setup")
    dst, sealed = wire.decode_routed(routed_msg)
    if dst != me or not set(sealed) <= set(state.enc_keys):
        raise ValueError(f"client {me}: received shares not meant for it")
    for v, box in sealed.items():
        plain = pr.aead_decrypt(state.enc_keys[v], box, _aad(setup.round_id, v, me))
        if len(plain) != _PLAIN.size + 2 * SHARE_BYTES or _PLAIN.unpack_from(plain) != (v, me):
            raise ValueError(f"client {me}: malformed share from {v}")
        b_y = int.from_bytes(plain[_PLAIN.size : _PLAIN.size + SHARE_BYTES], "big")
        sk_y = int.from_bytes(plain[_PLAIN.size + SHARE_BYTES :], "big")
        state.held[v] = (b_y, sk_y)
    if len(sealed) < setup.threshold:
        raise ClientAbortError(f"client {me}: shares from {len(sealed)} neighbours < threshold")
    state.mask_peers = tuple(sorted(sealed))
    if x.shape != (setup.d,):
        raise ValueError(f"client {me}: update has shape {x.shape}, expected ({setup.d},)")
    y = encode(x, spec, rng)
    y += pr.prg_words(state.b_seed, setup.d, spec.dtype)
    for v in state.mask_peers:
        seed = pr.agree(state.s_sk, state.neighbour_keys[v].s_pk, pr.MASK_INFO, setup.round_id)
        if v > me:
            y += pr.prg_words(seed, setup.d, spec.dtype)
        else:
            y -= pr.prg_words(seed, setup.d, spec.dtype)
    return wire.encode_masked(me, y, spec.bits)


def client_unmask(state: ClientState, request_msg: bytes) -> bytes:
    """Round 3: reveal ``b`` shares of surviving and ``s^SK`` shares of dropped neighbours.

    Raises:
        ValueError: A client named both survivor and dropped, a client whose shares this
            client does not hold, or fewer than ``t`` survivors overall.
    """
    _advance(state, 3)
    setup, me = state.setup, state.setup.client_id
    req = wire.decode_unmask_request(request_msg)
    alive, dead = set(req.survivors), set(req.dropped)
    if alive & dead:
        raise ValueError(f"client {me}: asked for both shares of {sorted(alive & dead)}")
    if not (alive | dead) <= set(state.held):
        raise ValueError(f"client {me}: asked for shares it does not hold")
    if req.n_survivors < setup.threshold:
        raise ValueError(f"client {me}: only {req.n_survivors} survivors < threshold")
    out = [(u, wire.SHARE_B, state.held[u][0]) for u in sorted(alive)]
    out += [(v, wire.SHARE_SK, state.held[v][1]) for v in sorted(dead)]
    return wire.encode_unmask_response(me, out)


# --------------------------------------------------------------------------- server side


@dataclass
class ServerState:
    """The server's view of one round: public keys, routed ciphertexts, the masked sum."""

    n: int
    d: int
    threshold: int
    degree: int
    spec: QuantSpec
    round_id: bytes
    graph: tuple[tuple[int, ...], ...]
    keys: dict[int, wire.Keys] = field(default_factory=dict)  # U1
    shared: tuple[int, ...] = ()  # U2
    survivors: tuple[int, ...] = ()  # U3
    total: np.ndarray | None = None
    stage: int = 0


def _server_advance(state: ServerState, expected: int) -> None:
    if state.stage != expected:
        raise ValueError(f"server: round {expected} out of order")
    state.stage = expected + 1


def server_init(
    n: int, d: int, threshold: int, num_neighbours: int, spec: QuantSpec, seed: int
) -> tuple[ServerState, dict[int, bytes]]:
    """Build the neighbour graph and the per-client setup messages.

    Returns:
        The server state and ``{client id: setup message}``.
    """
    degree = effective_degree(n, num_neighbours)
    graph = neighbour_graph(n, num_neighbours, seed)
    state = ServerState(n, d, threshold, degree, spec, os.urandom(wire.ROUND_ID_BYTES), graph)
    msgs = {
        u: wire.encode_setup(
            wire.Setup(
                state.round_id,
                u,
                n,
                d,
                threshold,
                degree,
                spec.bits,
                spec.clip,
                spec.half,
                graph[u],
            )
        )
        for u in range(n)
    }
    return state, msgs


def _require(count: int, threshold: int, what: str) -> None:
    if count < threshold:
        raise SecAggAbortError(f"{what}: {count} < threshold {threshold}")


def server_collect_keys(state: ServerState, msgs: Mapping[int, bytes]) -> dict[int, bytes]:
    """Round 0: collect AdvertiseKeys; send each live client its live neighbours' keys.

    Raises:
        SecAggAbortError: Fewer than ``t`` clients advertised keys.
    """
    _server_advance(state, 0)
    for u, msg in msgs.items():
        cid, keys = wire.decode_advertise(msg)
        if cid != u:
            raise ValueError(f"server: message from {u} claims to be from {cid}")
        state.keys[u] = keys
    _require(len(state.keys), state.threshold, "clients that advertised keys")
    return {
        u: wire.encode_keys({v: state.keys[v] for v in state.graph[u] if v in state.keys})
        for u in sorted(state.keys)
    }


def server_route_shares(state: ServerState, msgs: Mapping[int, bytes]) -> dict[int, bytes]:
    """Round 1: route each sealed share to its recipient (if it also shared keys).

    Raises:
        SecAggAbortError: Fewer than ``t`` clients shared keys.
    """
    _server_advance(state, 1)
    mailbox: dict[int, dict[int, bytes]] = {u: {} for u in msgs}
    for u, msg in msgs.items():
        src, sealed = wire.decode_shares(msg)
        if src != u or u not in state.keys or not set(sealed) <= set(state.graph[u]):
            raise ValueError(f"server: bad ShareKeys message from {u}")
        for v, box in sealed.items():
            if v in mailbox:
                mailbox[v][u] = box
    state.shared = tuple(sorted(msgs))
    _require(len(state.shared), state.threshold, "clients that shared keys")
    return {v: wire.encode_routed(v, box) for v, box in sorted(mailbox.items())}


def _unmask_plan(state: ServerState) -> tuple[set[int], dict[int, tuple[int, ...]]]:
    """Dropped-after-sharing clients whose ``s^SK`` is needed, and who may reveal what."""
    alive = set(state.survivors)
    shared = set(state.shared)
    dropped = {
        v for v in shared - alive if any(w in alive for w in state.graph[v])
    }  # their pairwise masks sit in some survivor's input
    holders = {u: tuple(w for w in state.graph[u] if w in alive) for u in alive | dropped}
    return dropped, holders


def server_collect_masked(state: ServerState, msgs: Mapping[int, bytes]) -> dict[int, bytes]:
    """Round 2: add up the masked inputs; ask survivors for the shares needed to unmask.

    Raises:
        SecAggAbortError: Fewer than ``t`` survivors, or some needed secret has fewer than
            ``t`` surviving share holders (checked before any share is requested).
    """
    _server_advance(state, 2)
    total = np.zeros(state.d, dtype=state.spec.dtype)
    for u, msg in msgs.items():
        cid, y = wire.decode_masked(msg)
        if cid != u or u not in state.shared or y.size != state.d:
            raise ValueError(f"server: bad masked input from {u}")
        total += y
    state.total = total
    state.survivors = tuple(sorted(msgs))
    _require(len(state.survivors), state.threshold, "clients that sent masked input")
    dropped, holders = _unmask_plan(state)
    for u in sorted(holders):
        _require(len(holders[u]), state.threshold, f"surviving neighbours of client {u}")
    alive = set(state.survivors)
    out = {}
    for w in state.survivors:
        neigh = state.graph[w]
        req = wire.UnmaskRequest(
            len(state.survivors),
            tuple(u for u in neigh if u in alive),
            tuple(v for v in neigh if v in dropped),
        )
        out[w] = wire.encode_unmask_request(req)
    return out


def server_unmask(state: ServerState, msgs: Mapping[int, bytes]) -> np.ndarray:
    """Round 3: reconstruct the seeds, remove every mask and decode the sum.

    Returns:
        The float64 sum of the survivors' clipped inputs (length ``d``).

    Raises:
        SecAggAbortError: Some needed secret has fewer than ``t`` shares; raised before any
            reconstruction, so no seed, key or partial sum is computed.
    """
    _server_advance(state, 3)
    assert state.total is not None
    dropped, _ = _unmask_plan(state)
    alive = set(state.survivors)
    points: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for w, msg in msgs.items():
        cid, shares = wire.decode_unmask_response(msg)
        if cid != w or w not in alive:
            raise ValueError(f"server: bad unmask response from {w}")
        for owner, kind, value in shares:
            if w not in state.graph[owner]:
                raise ValueError(f"server: {w} sent a share of non-neighbour {owner}")
            points.setdefault((owner, kind), []).append((w + 1, value))
    need = [(u, wire.SHARE_B) for u in state.survivors] + [(v, wire.SHARE_SK) for v in dropped]
    for owner, kind in need:
        got = len(points.get((owner, kind), []))
        what = "self-mask seed" if kind == wire.SHARE_B else "mask key"
        _require(got, state.threshold, f"shares of the {what} of client {owner}")
    t, d, dtype = state.threshold, state.d, state.spec.dtype
    total = state.total.copy()
    for u in state.survivors:
        b_seed = secret_to_bytes(reconstruct_secret(points[(u, wire.SHARE_B)][:t]))
        total -= pr.prg_words(b_seed, d, dtype)
    for v in sorted(dropped):
        raw = secret_to_bytes(reconstruct_secret(points[(v, wire.SHARE_SK)][:t]))
        s_sk = pr.private_key_from_bytes(raw)
        if pr.public_bytes(s_sk) != state.keys[v].s_pk:
            raise ValueError(f"server: reconstructed key of client {v} does not match")
        for w in state.graph[v]:
            if w in alive:
                seed = pr.agree(s_sk, state.keys[w].s_pk, pr.MASK_INFO, state.round_id)
                if v > w:  # y_w holds +PRG(s_wv)
                    total -= pr.prg_words(seed, d, dtype)
                else:
                    total += pr.prg_words(seed, d, dtype)
    return decode_sum(total, len(state.survivors), state.spec)
