"""Secure aggregation: SecAgg+ with a semi-honest server and real cryptography.

Implements SecAgg+ (Bell, Bonawitz, Gascón, Lepoint, Raykova, "Secure Single-Server
Aggregation with (Poly)Logarithmic Overhead", CCS 2020) on top of SecAgg (Bonawitz,
Ivanov, Kreuter, Marcedone, McMahan, Patel, Ramage, Segal, Seth, "Practical Secure
Aggregation for Privacy-Preserving Machine Learning", CCS 2017). Each client ``u`` talks
only to its ``k = O(log n)`` neighbours ``N(u)`` in a random Harary graph and sends

    y_u = x_u + PRG(b_u) + sum_{v in N(u), v > u} PRG(s_uv) - sum_{v in N(u), v < u} PRG(s_uv)
          (mod R = 2**bits),

where ``x_u`` is its clipped, fixed-point update, ``b_u`` a fresh self-mask seed and
``s_uv`` the X25519/HKDF agreement of ``u``'s and ``v``'s mask keys. Pairwise masks of two
survivors cancel in the sum; for the rest, Shamir shares (threshold ``t``, AES-GCM sealed)
held by neighbours let the server remove ``PRG(b_u)`` of survivors and the pairwise masks
of clients that dropped after sharing keys -- never both secrets of one client.

Modules: :mod:`.shamir` (secret sharing over GF(2**521 - 1)), :mod:`.graph` (neighbour
graph, default ``k`` and ``t``), :mod:`.primitives` (X25519, HKDF, AES-GCM, AES-CTR PRG),
:mod:`.encoding` (fixed point, overflow guard, error bound), :mod:`.wire` (message
bytes), :mod:`.protocol` (the four rounds over client/server states). :func:`secure_sum`
runs a whole round in process, passing serialized messages, and reports bytes and CPU.

A round that cannot be unmasked (fewer than ``t`` clients, or fewer than ``t`` surviving
neighbours holding shares of some needed secret) is returned as a result with
``failed=True``, ``sum=None`` and a ``reason``; the server stops before reconstructing any
secret, so no partial sum or seed exists.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from fedshield.privacy.secagg.encoding import QuantSpec, quant_spec
from fedshield.privacy.secagg.graph import (
    default_num_neighbours,
    default_threshold,
    effective_degree,
    neighbour_graph,
)
from fedshield.privacy.secagg.protocol import (
    ClientAbortError,
    ClientState,
    SecAggAbortError,
    ServerState,
    client_advertise_keys,
    client_init,
    client_masked_input,
    client_share_keys,
    client_unmask,
    server_collect_keys,
    server_collect_masked,
    server_init,
    server_route_shares,
    server_unmask,
)

__all__ = [
    "DEFAULT_BITS",
    "DEFAULT_CLIP",
    "STAGES",
    "ClientAbortError",
    "ClientState",
    "QuantSpec",
    "SecAggAbortError",
    "SecAggResult",
    "ServerState",
    "WireMessage",
    "default_num_neighbours",
    "default_threshold",
    "effective_degree",
    "neighbour_graph",
    "quant_spec",
    "secure_sum",
]

STAGES: tuple[str, ...] = ("advertise_keys", "share_keys", "masked_input", "unmask")
"""Protocol rounds, in order; also the keys of ``dropout``."""
DEFAULT_CLIP = 1.0
"""Default clipping range: coordinates are clipped to ``[-1, 1]``."""
DEFAULT_BITS = 32
"""Default ring ``Z_{2**32}``: 4 bytes per coordinate, as many as a float32 update."""

SERVER = -1


@dataclass(frozen=True)
class WireMessage:
    """One serialized message as the server saw it (``sender``/``receiver`` -1: server)."""

    stage: str
    sender: int
    receiver: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True)
class SecAggResult:
    """Outcome of one :func:`secure_sum` round.

    Attributes:
        sum: Float32 ``[d]`` sum of the survivors' clipped inputs, ``None`` if ``failed``.
        survivors: Sorted ids of the clients whose input is in the sum (those that sent a
            masked input; empty if the round failed before that).
        failed: True if the server refused to unmask.
        reason: Why it failed (``None`` otherwise).
        dropped: Per stage, the sorted ids that stopped there (requested dropouts and
            clients that aborted for lack of live neighbours).
        bytes_sent: ``[n]`` int64, bytes each client sent.
        bytes_received: ``[n]`` int64, bytes each client received.
        bytes_per_client: ``bytes_sent + bytes_received``.
        bytes_server: Total bytes the server sent and received.
        client_cpu_s: Per stage, ``[n]`` float64 thread CPU seconds of each client.
        server_cpu_s: Per stage, the server's thread CPU seconds.
        quant_step: Quantization step ``1 / scale``.
        quant_bound: Per-coordinate bound ``len(survivors) * quant_step`` on
            ``|sum - exact sum of the survivors' clipped inputs|`` (before the final float32
            rounding of ``sum``).
        spec: The fixed-point encoding (ring bits, clip, scale, offset).
        threshold: Shamir threshold ``t``.
        num_neighbours: Degree of the neighbour graph actually used.
        neighbours: The graph: sorted neighbour ids of each client.
        transcript: Every message the server sent or received (if requested), else None.
    """

    sum: Tensor | None
    survivors: list[int]
    failed: bool
    reason: str | None
    dropped: dict[str, list[int]]
    bytes_sent: Tensor = field(repr=False)
    bytes_received: Tensor = field(repr=False)
    bytes_per_client: Tensor = field(repr=False)
    bytes_server: int
    client_cpu_s: dict[str, Tensor] = field(repr=False)
    server_cpu_s: dict[str, float]
    quant_step: float
    quant_bound: float
    spec: QuantSpec
    threshold: int
    num_neighbours: int
    neighbours: tuple[tuple[int, ...], ...] = field(repr=False)
    transcript: tuple[WireMessage, ...] | None = field(default=None, repr=False)


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def _validate(
    updates: Tensor,
    threshold: int,
    num_neighbours: int,
    dropout: Mapping[str, Iterable[int]] | None,
) -> tuple[int, int, dict[int, str]]:
    if not isinstance(updates, Tensor):
        raise ValueError(f"updates must be a torch.Tensor, got {type(updates).__name__}")
    if updates.ndim != 2 or updates.shape[0] < 2 or updates.shape[1] < 1:
        raise ValueError(f"updates must have shape [n >= 2, d >= 1], got {tuple(updates.shape)}")
    if not updates.is_floating_point():
        raise ValueError(f"updates must be floating point, got {updates.dtype}")
    n = int(updates.shape[0])
    bad = (~torch.isfinite(updates)).any(dim=1).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"updates has NaN/inf values in rows {bad[:10]}")
    k = _check_int("num_neighbours", num_neighbours)
    t = _check_int("threshold", threshold)
    if k >= n:
        raise ValueError(f"num_neighbours must be < n = {n}, got {k}")
    effective_degree(n, k)  # k >= 1
    if not 1 <= t <= k:
        raise ValueError(f"threshold must be in [1, num_neighbours = {k}], got {t}")
    stage_of: dict[int, str] = {}
    if dropout is not None:
        if not isinstance(dropout, Mapping):
            raise ValueError("dropout must be a mapping from stage name to client ids")
        unknown = sorted(str(s) for s in dropout if s not in STAGES)
        if unknown:
            raise ValueError(f"unknown dropout stage(s) {unknown}; expected one of {STAGES}")
        for stage in reversed(STAGES):  # the earliest stage wins
            ids = [_check_int(f"dropout[{stage!r}] id", u) for u in dropout.get(stage, ())]
            out = sorted({u for u in ids if not 0 <= u < n})
            if out:
                raise ValueError(f"dropout[{stage!r}] has client ids out of range [0, {n}): {out}")
            stage_of.update(dict.fromkeys(ids, stage))
    return t, k, stage_of


def secure_sum(
    updates: Tensor,
    *,
    threshold: int,
    num_neighbours: int,
    dropout: Mapping[str, Iterable[int]] | None = None,
    clip: float = DEFAULT_CLIP,
    seed: int = 0,
    bits: int = DEFAULT_BITS,
    scale: float | None = None,
    record_transcript: bool = False,
) -> SecAggResult:
    """Run one SecAgg+ round in process over serialized messages and return the sum.

    Args:
        updates: Float ``[n, d]`` tensor; row ``u`` is client ``u``'s update.
        threshold: Shamir threshold ``t``, ``1 <= t <= num_neighbours``.
        num_neighbours: Degree ``k`` of the neighbour graph, ``1 <= k < n`` (odd ``k`` is
            rounded up to even; ``k >= n - 1`` gives the complete graph, i.e. SecAgg).
            See :func:`default_num_neighbours`.
        dropout: Stage name (:data:`STAGES`) -> ids of the clients that drop at that
            stage and send nothing from it on. A client listed twice drops at the
            earliest stage.
        clip: Clipping range ``c``: coordinates are clipped to ``[-c, c]`` before encoding.
        seed: Seeds the neighbour graph and the stochastic rounding (keys, masks and
            Shamir coefficients always come from the OS CSPRNG).
        bits: Ring ``Z_{2**bits}``, 32 or 64 (bytes per coordinate: 4 or 8).
        scale: Fixed-point levels per unit; ``None`` picks the finest power-of-two
            resolution for which ``n`` clipped inputs cannot wrap around the ring.
        record_transcript: Keep every message the server saw in ``result.transcript``.

    Returns:
        A :class:`SecAggResult`; ``failed=True`` and ``sum=None`` if the server refused
        to unmask.

    Raises:
        ValueError: Bad shapes, non-finite rows, bad ``threshold``/``num_neighbours``,
            unknown stages or ids in ``dropout``, or an encoding that could overflow.
    """
    t, k, stage_of = _validate(updates, threshold, num_neighbours, dropout)
    n, d = int(updates.shape[0]), int(updates.shape[1])
    spec = quant_spec(n, float(clip), bits, scale)
    x = updates.detach().to(device="cpu", dtype=torch.float32).numpy()

    sent = np.zeros(n, dtype=np.int64)
    received = np.zeros(n, dtype=np.int64)
    server_bytes = 0
    client_cpu = {s: np.zeros(n) for s in STAGES}
    server_cpu = dict.fromkeys(STAGES, 0.0)
    dropped: dict[str, list[int]] = {s: [] for s in STAGES}
    transcript: list[WireMessage] | None = [] if record_transcript else None

    def deliver(stage: str, msgs: Mapping[int, bytes], to_server: bool) -> None:
        nonlocal server_bytes
        for u, msg in msgs.items():
            (sent if to_server else received)[u] += len(msg)
            server_bytes += len(msg)
            if transcript is not None:
                src, dst = (u, SERVER) if to_server else (SERVER, u)
                transcript.append(WireMessage(stage, src, dst, msg))

    live: set[int] = set(range(n))
    states: dict[int, ClientState] = {}
    failed_reason: str | None = None
    total: np.ndarray | None = None
    server: ServerState | None = None

    def client_round(stage: str, inbox: Mapping[int, bytes], step: object) -> dict[int, bytes]:
        for u in sorted(live):
            if stage_of.get(u) == stage or u not in inbox:
                live.discard(u)
                dropped[stage].append(u)
        out = {}
        for u in sorted(live):
            start = time.thread_time()
            try:
                out[u] = step(u, inbox[u])  # type: ignore[operator]
            except ClientAbortError:
                live.discard(u)
                dropped[stage].append(u)
            client_cpu[stage][u] += time.thread_time() - start
        dropped[stage].sort()
        deliver(stage, out, to_server=True)
        return out

    def advertise(u: int, msg: bytes) -> bytes:
        states[u] = client_init(msg)
        return client_advertise_keys(states[u])

    def masked(u: int, msg: bytes) -> bytes:
        rng = np.random.default_rng([seed, 1, u])
        return client_masked_input(states[u], msg, x[u], spec, rng)

    try:
        start = time.thread_time()
        server, setup = server_init(n, d, t, k, spec, seed)
        server_cpu["advertise_keys"] += time.thread_time() - start
        deliver("advertise_keys", setup, to_server=False)
        rounds = (
            ("advertise_keys", advertise, server_collect_keys),
            ("share_keys", lambda u, m: client_share_keys(states[u], m), server_route_shares),
            ("masked_input", masked, server_collect_masked),
        )
        inbox: Mapping[int, bytes] = setup
        for stage, client_step, server_step in rounds:
            replies = client_round(stage, inbox, client_step)
            start = time.thread_time()
            try:
                inbox = server_step(server, replies)
            finally:
                server_cpu[stage] += time.thread_time() - start
            deliver(stage, inbox, to_server=False)
        replies = client_round("unmask", inbox, lambda u, m: client_unmask(states[u], m))
        start = time.thread_time()
        try:
            total = server_unmask(server, replies)
        finally:
            server_cpu["unmask"] += time.thread_time() - start
    except SecAggAbortError as exc:
        failed_reason = str(exc)
        total = None

    survivors = list(server.survivors) if server is not None else []
    graph = server.graph if server is not None else ()
    return SecAggResult(
        sum=None if total is None else torch.from_numpy(total.astype(np.float32)),
        survivors=survivors,
        failed=total is None,
        reason=failed_reason,
        dropped=dropped,
        bytes_sent=torch.from_numpy(sent),
        bytes_received=torch.from_numpy(received),
        bytes_per_client=torch.from_numpy(sent + received),
        bytes_server=server_bytes,
        client_cpu_s={s: torch.from_numpy(v) for s, v in client_cpu.items()},
        server_cpu_s=server_cpu,
        quant_step=spec.step,
        quant_bound=spec.bound(len(survivors)),
        spec=spec,
        threshold=t,
        num_neighbours=effective_degree(n, k),
        neighbours=graph,
        transcript=None if transcript is None else tuple(transcript),
    )
