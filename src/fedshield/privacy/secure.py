"""Secure aggregation in the round loop: SecAgg+ or HE sums, group-wise robust
aggregation, client-side norm bounding, and distributed DP.

Built from ``[secure]`` (:class:`fedshield.config.schema.SecureConfig`). Each round::

    on_round_start         the server draws the round's groups from the reporting clients
                           (Stream.SECURE); ctx.groups = the planned groups
    after_local_training   client side: u_k <- u_k * min(1, B / ||u_k||)   (norm_bound B)
                           [distributed DP, a privacy hook earlier in the chain: clip to C,
                            add N(0, (z C)^2 / m_g) with m_g = the size of k's group]
    before_aggregation     per group g: clients pre-multiply by rho_k = w_k / w_max and
                           run SecAgg+ (or encrypt, CKKS / Paillier); the server learns only
                           S_g = sum_{k in survivors(g)} rho_k u_k and passes the rule one
                           row per group: the group mean  w_max S_g / W_g  with weight
                           W_g = sum_{k in survivors(g)} w_k; ctx.groups = the survivors

``w_max`` (the largest weight of the round) is public: FedAvg weights are sample counts the
clients report anyway, and ``rho_k <= 1`` keeps the fixed-point range of SecAgg+ (``clip``)
in update units. The aggregation rule then runs over the group means: with
``group_size = 0`` there is one row (the weighted mean of everyone, so only sum-based rules
make sense); with ``group_size = g`` the reporting clients are split at random into
``max(1, n // g)`` groups of as equal size as possible (sizes ``g .. 2g - 1``; a round with
fewer than ``2g`` clients is one group), and a robust rule compares the group means. A
group with one malicious member is contaminated, so with a fraction ``f`` of malicious
clients about ``1 - (1 - f)^g`` of the groups are, which is what the rule's assumed number
of Byzantine rows becomes (``defense.num_byzantine = -1``; see
:func:`fedshield.engine.loop.assumed_byzantine`).

Norm bounding is applied to every upload, malicious ones included: it models a bound the
protocol enforces (e.g. zero-knowledge range proofs as in RoFL or ACORN, not implemented
here). Without such proofs a malicious client can skip it.

Dropouts: a client that drops during SecAgg+ (``stage_dropout``, per stage, seeded) is
removed from its group's sum by the protocol's recovery; a group that cannot be unmasked
(fewer than ``t`` surviving neighbours) is dropped from the round with its reason, and the
round goes on with the other groups (if every group fails, nothing is aggregated).

Distributed DP (:class:`DistributedDP`, ``privacy.mode = "distributed"``): each client
clips to ``C`` and adds ``N(0, (z C)^2 / m)`` where ``m`` is its group's planned size, so a
group sum without dropouts carries exactly ``N(0, (z C)^2)`` -- the noise of central
DP-FedAvg -- and the server never sees a less-noisy sum. Groups are disjoint, so each
client's round is one Gaussian mechanism with multiplier ``z`` (the rule over the group
means is post-processing) and the accountant is the central one. Dropouts reduce the
noise: a released sum of ``s < m`` survivors carries multiplier ``z sqrt(s / m)``, and the
round is accounted with the smallest such multiplier of the round (so epsilon equals
central DP's only when nobody drops). The reference mechanisms are discrete (distributed
discrete Gaussian, Skellam) with an analysis of the modular clipping; here the noise is
continuous Gaussian added before fixed-point encoding, and coordinates beyond ``clip`` are
clipped (recorded as ``clipped_fraction``; keep ``clip`` several noise stds wide).

References:
    Bonawitz, Ivanov, Kreuter, Marcedone, McMahan, Patel, Ramage, Segal, Seth.
    "Practical Secure Aggregation for Privacy-Preserving Machine Learning." CCS 2017.
    Bell, Bonawitz, Gascón, Lepoint, Raykova. "Secure Single-Server Aggregation with
    (Poly)Logarithmic Overhead." CCS 2020.
    Kairouz, Liu, Steinke. "The Distributed Discrete Gaussian Mechanism for Federated
    Learning with Secure Aggregation." ICML 2021.
    Agarwal, Kairouz, Liu. "The Skellam Mechanism for Differentially Private Federated
    Learning." NeurIPS 2021.
    So, Güler, Avestimehr. "Byzantine-Resilient Secure Federated Learning." IEEE JSAC 2021
    (BREA); the grouping idea of robust aggregation over secure partial sums, e.g.
    Velicheti, Xia, Koyejo, "Secure Byzantine-Robust Distributed Learning via Clustering"
    (2021).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedshield.config.schema import ConfigError, ExperimentConfig
from fedshield.engine.hooks import ClientUpdates, Hook, RoundContext, StopRun
from fedshield.engine.seeding import Stream, derive_seed, numpy_rng, torch_generator
from fedshield.privacy.accounting import PrivacyAccountant, calibrate_noise
from fedshield.privacy.mechanisms import clip_updates

__all__ = [
    "DistributedDP",
    "GroupSum",
    "SecureAggregation",
    "assign_groups",
    "group_sizes",
    "plaintext_bytes",
]

#: sub-keys of Stream.SECURE (round, sub-key, ...)
_GROUPS, _DP_NOISE, _DROPOUT, _PROTOCOL = 0, 1, 2, 3
#: warn when more than this fraction of coordinates falls outside the fixed-point range
_CLIP_WARN = 1e-3


def group_sizes(n: int, group_size: int) -> list[int]:
    """Sizes of the groups ``n`` reporting clients are split into.

    ``group_size = 0``, or fewer than ``2 * group_size`` clients: one group of ``n``.
    Otherwise ``G = n // group_size`` groups whose sizes differ by at most one, so every
    group has between ``group_size`` and ``2 * group_size - 1`` clients.

    Args:
        n: Number of reporting clients.
        group_size: ``0`` or the target size ``g >= 2``.

    Returns:
        The sizes, largest first (empty if ``n == 0``).
    """
    if n <= 0:
        return []
    if group_size == 0 or n < 2 * group_size:
        return [n]
    count = n // group_size
    base, extra = divmod(n, count)
    return [base + 1] * extra + [base] * (count - extra)


def assign_groups(ids: Tensor, group_size: int, seed: int, round_: int) -> list[Tensor]:
    """Random groups of the clients ``ids`` for round ``round_`` (seeded, Stream.SECURE).

    Returns:
        One sorted ``int64`` tensor of client ids per group (see :func:`group_sizes`).
    """
    n = len(ids)
    sizes = group_sizes(n, group_size)
    if len(sizes) <= 1:
        return [ids.sort().values] if n else []
    perm = torch.from_numpy(numpy_rng(seed, Stream.SECURE, round_, _GROUPS).permutation(n))
    out, start = [], 0
    for size in sizes:
        out.append(ids[perm[start : start + size]].sort().values)
        start += size
    return out


def plaintext_bytes(num_params: int) -> int:
    """Bytes of one float32 update or model of ``num_params`` parameters."""
    return 4 * num_params


@dataclass
class GroupSum:
    """One group's secure sum as the server obtained it.

    Attributes:
        total: ``[P]`` float32 sum of the survivors' (weight-scaled) uploads, None if failed.
        survivors: Row indices (within the group) whose uploads are in ``total``.
        reason: Why the group failed (None if it did not).
        dropped: Stage -> row indices that dropped there.
        bytes_per_client: ``[n_g]`` protocol bytes each member sent and received.
        bytes_server: Protocol bytes the server sent and received.
        client_cpu_s: Stage -> ``[n_g]`` CPU seconds of each member.
        server_cpu_s: Stage -> server CPU seconds (key holder's included for HE).
        error_bound: Per-coordinate bound on ``|total - exact sum|``.
    """

    total: Tensor | None
    survivors: list[int]
    reason: str | None
    dropped: dict[str, list[int]]
    bytes_per_client: np.ndarray
    bytes_server: int
    client_cpu_s: dict[str, np.ndarray]
    server_cpu_s: dict[str, float]
    error_bound: float


@dataclass
class _Totals:
    """Run totals for the summary (checkpointed)."""

    rounds: int = 0
    bytes_per_client: float = 0.0
    bytes_server: float = 0.0
    client_cpu_s: dict[str, float] = field(default_factory=dict)
    server_cpu_s: dict[str, float] = field(default_factory=dict)
    groups: int = 0
    failed_groups: int = 0
    dropouts: int = 0
    rounds_without_aggregate: int = 0
    max_error_bound: float = 0.0
    max_clipped_fraction: float = 0.0
    norm_bounded: int = 0


class SecureAggregation(Hook):
    """The server receives only (group) sums; see the module docstring.

    With ``secure.mode = "none"`` it only applies ``norm_bound`` (if set) and records the
    plaintext communication (``4 P`` bytes up per client), so that runs compare.

    Args:
        cfg: The experiment configuration.
    """

    name = "secure_aggregation"

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.sec = cfg.secure
        self.totals = _Totals()
        self._metrics: dict[str, Any] = {}
        self._warned = False

    # ------------------------------------------------------------------ hook API
    def on_round_start(self, ctx: RoundContext) -> None:
        """Draw the round's groups among the reporting clients (``ctx.groups``)."""
        self._metrics = {"mode": self.sec.mode, "norm_bounded": 0}
        if self.sec.enabled:
            ctx.groups = assign_groups(ctx.reporting, self.sec.group_size, self.cfg.seed, ctx.round)

    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Client side: scale each upload to L2 norm at most ``norm_bound``."""
        bound = self.sec.norm_bound
        if bound <= 0 or len(updates) == 0:
            return updates
        norms = torch.linalg.vector_norm(updates.updates, dim=1)
        self._metrics["norm_bounded"] = int((norms > bound).sum())
        return updates.replace(updates=clip_updates(updates.updates, clip_norm=bound))

    def before_aggregation(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Replace the uploads by one row per (surviving) group: the group's mean."""
        t0 = time.perf_counter()
        p = updates.updates.shape[1]
        m = self._metrics
        m["bytes_download_per_client"] = plaintext_bytes(p)
        if not self.sec.enabled:
            n = len(updates)
            m.update(
                bytes_per_client_mean=float(plaintext_bytes(p)) if n else 0.0,
                bytes_per_client_max=plaintext_bytes(p) if n else 0,
                bytes_server=n * plaintext_bytes(p),
            )
            self._finish(ctx, m, aggregated=n > 0)
            return updates
        out = self._secure_rows(ctx, updates)
        m["time_s"] = time.perf_counter() - t0
        self._finish(ctx, m, aggregated=len(out) > 0)
        return out

    def on_round_end(self, ctx: RoundContext, record: dict[str, Any]) -> None:
        """Nothing to add (the metrics went into ``ctx.metrics['secure']``)."""

    # ------------------------------------------------------------------ internals
    def _groups_of_rows(self, ctx: RoundContext, updates: ClientUpdates) -> list[list[int]]:
        """Row indices of each planned group among the rows that reached the server.

        Rows rejected earlier (non-finite) are missing from their group; rows that no
        planned group holds (e.g. DP-audit canaries) join the groups in turn.
        """
        ids = updates.client_ids.tolist()
        if self.sec.group_size == 0 or ctx.groups is None:
            return [list(range(len(ids)))] if ids else []
        where = {k: i for i, k in enumerate(ids)}
        out = [[where[int(k)] for k in g.tolist() if int(k) in where] for g in ctx.groups]
        planned = {int(k) for g in ctx.groups for k in g.tolist()}
        extra = [i for i, k in enumerate(ids) if k not in planned]
        for j, i in enumerate(extra):
            if out:
                out[j % len(out)].append(i)
            else:
                out.append([i])
        return [sorted(g) for g in out]

    def _secure_rows(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        m = self._metrics
        groups = self._groups_of_rows(ctx, updates)
        w = updates.weights.to(torch.float64)
        w_max = float(w.max()) if len(w) else 1.0
        rho = (w / w_max).to(torch.float32)
        x = updates.updates * rho[:, None]
        if self.sec.mode == "secagg" and x.numel():
            clipped = float((x.abs() > self.sec.clip).float().mean())
            m["clipped_fraction"] = clipped
            if clipped > _CLIP_WARN and not self._warned:
                self._warned = True
                warnings.warn(
                    f"round {ctx.round + 1}: {clipped:.2%} of the upload coordinates are "
                    f"outside secure.clip = {self.sec.clip} and were clipped by the fixed-point "
                    "encoding (recorded as secure.clipped_fraction); raise secure.clip or set "
                    "secure.norm_bound <= secure.clip",
                    RuntimeWarning,
                    stacklevel=2,
                )
        rows: list[dict[str, Any]] = []
        kept: list[Tensor] = []
        failed: list[dict[str, Any]] = []
        dropped_ids: dict[str, list[int]] = {}
        per_client: list[np.ndarray] = []
        client_cpu: dict[str, list[np.ndarray]] = {}
        server_cpu: dict[str, float] = {}
        bytes_server = 0
        bound = 0.0
        for j, idx in enumerate(groups):
            members = updates.client_ids[idx]
            if len(idx) < 2:
                failed.append(
                    {
                        "members": members.tolist(),
                        "reason": "fewer than 2 clients: a sum of one upload would reveal it",
                    }
                )
                continue
            res = self._sum_group(ctx, j, x[idx])
            per_client.append(res.bytes_per_client)
            bytes_server += res.bytes_server
            for stage, per in res.client_cpu_s.items():
                client_cpu.setdefault(stage, []).append(per)
            for stage, sec in res.server_cpu_s.items():
                server_cpu[stage] = server_cpu.get(stage, 0.0) + sec
            for stage, lost in res.dropped.items():
                if lost:
                    dropped_ids.setdefault(stage, []).extend(int(members[i]) for i in lost)
            if res.total is None:
                failed.append({"members": members.tolist(), "reason": res.reason})
                continue
            surv = torch.tensor([idx[i] for i in res.survivors], dtype=torch.int64)
            total_w = float(w[surv].sum())
            scale = w_max / total_w
            bound = max(bound, res.error_bound * scale)
            rows.append(
                {
                    "id": int(updates.client_ids[surv].min()),
                    "row": (res.total.to(torch.float64) * scale).to(torch.float32),
                    "weight": total_w,
                    "samples": int(updates.num_samples[surv].sum()),
                    "loss": float(updates.loss[surv].mean()),
                }
            )
            kept.append(updates.client_ids[surv].sort().values)
        bytes_all = np.concatenate(per_client) if per_client else np.zeros(0)
        m.update(
            groups=len(groups),
            released=len(rows),
            failed_groups=failed,
            dropouts={s: len(v) for s, v in dropped_ids.items()},
            dropped_clients=sorted(k for v in dropped_ids.values() for k in v),
            bytes_per_client_mean=float(bytes_all.mean()) if len(bytes_all) else 0.0,
            bytes_per_client_max=int(bytes_all.max()) if len(bytes_all) else 0,
            bytes_server=int(bytes_server),
            client_cpu_s={s: float(np.concatenate(v).mean()) for s, v in client_cpu.items()},
            server_cpu_s=server_cpu,
            error_bound=bound,
            clients_aggregated=int(sum(len(g) for g in kept)),
        )
        ctx.groups = kept
        if not rows:
            return updates.select(torch.zeros(len(updates), dtype=torch.bool))
        return ClientUpdates(
            client_ids=torch.tensor([r["id"] for r in rows], dtype=torch.int64),
            updates=torch.stack([r["row"] for r in rows]),
            weights=torch.tensor([r["weight"] for r in rows], dtype=updates.weights.dtype),
            num_samples=torch.tensor([r["samples"] for r in rows], dtype=torch.int64),
            loss=torch.tensor([r["loss"] for r in rows], dtype=updates.loss.dtype),
        )

    def _sum_group(self, ctx: RoundContext, j: int, x: Tensor) -> GroupSum:
        """Sum the rows ``x`` of group ``j`` with the configured protocol."""
        if self.sec.mode == "secagg":
            return self._secagg(ctx, j, x)
        return self._he(x)

    def _secagg(self, ctx: RoundContext, j: int, x: Tensor) -> GroupSum:
        from fedshield.privacy.secagg import (
            STAGES,
            default_num_neighbours,
            default_threshold,
            effective_degree,
            secure_sum,
        )

        n = len(x)
        k = min(self.sec.num_neighbours or default_num_neighbours(n), n - 1)
        degree = effective_degree(n, k)
        t = min(self.sec.threshold or default_threshold(degree), degree)
        dropout: dict[str, list[int]] = {}
        if self.sec.stage_dropout > 0:
            rng = numpy_rng(self.cfg.seed, Stream.SECURE, ctx.round, _DROPOUT, j)
            drops = rng.random((n, len(STAGES))) < self.sec.stage_dropout
            for u in range(n):
                hit = np.flatnonzero(drops[u])
                if len(hit):
                    dropout.setdefault(STAGES[int(hit[0])], []).append(u)
        res = secure_sum(
            x,
            threshold=t,
            num_neighbours=k,
            dropout=dropout or None,
            clip=self.sec.clip,
            seed=derive_seed(self.cfg.seed, Stream.SECURE, ctx.round, _PROTOCOL, j),
            bits=self.sec.bits,
        )
        return GroupSum(
            total=res.sum,
            survivors=list(res.survivors),
            reason=res.reason,
            dropped=res.dropped,
            bytes_per_client=res.bytes_per_client.numpy(),
            bytes_server=int(res.bytes_server),
            client_cpu_s={s: v.numpy() for s, v in res.client_cpu_s.items()},
            server_cpu_s=dict(res.server_cpu_s),
            error_bound=float(res.quant_bound),
        )

    def _he(self, x: Tensor) -> GroupSum:
        from fedshield.privacy.he import he_sum

        n = len(x)
        res = he_sum(x, scheme=self.sec.mode)  # type: ignore[arg-type]
        per_client = np.full(n, res.bytes_per_client + res.bytes_public_key, dtype=np.int64)
        return GroupSum(
            total=res.sum,
            survivors=list(range(n)),
            reason=None,
            dropped={},
            bytes_per_client=per_client,
            bytes_server=int(res.bytes_server),
            client_cpu_s={"encrypt": np.full(n, res.time_encrypt_s)},
            server_cpu_s={
                "keygen": res.time_keygen_s,
                "aggregate": res.time_aggregate_s,
                "decrypt": res.time_decrypt_s,
            },
            error_bound=float(res.error_bound),
        )

    def _finish(self, ctx: RoundContext, m: dict[str, Any], *, aggregated: bool) -> None:
        tot = self.totals
        tot.rounds += 1
        tot.bytes_per_client += float(m.get("bytes_per_client_mean", 0.0))
        tot.bytes_server += float(m.get("bytes_server", 0))
        for stage, v in m.get("client_cpu_s", {}).items():
            tot.client_cpu_s[stage] = tot.client_cpu_s.get(stage, 0.0) + v
        for stage, v in m.get("server_cpu_s", {}).items():
            tot.server_cpu_s[stage] = tot.server_cpu_s.get(stage, 0.0) + v
        tot.groups += int(m.get("groups", 0))
        tot.failed_groups += len(m.get("failed_groups", []))
        tot.dropouts += len(m.get("dropped_clients", []))
        tot.rounds_without_aggregate += 0 if aggregated else 1
        tot.max_error_bound = max(tot.max_error_bound, float(m.get("error_bound", 0.0)))
        tot.max_clipped_fraction = max(
            tot.max_clipped_fraction, float(m.get("clipped_fraction", 0.0))
        )
        tot.norm_bounded += int(m.get("norm_bounded", 0))
        m["aggregated"] = aggregated
        ctx.metrics["secure"] = m

    # ------------------------------------------------------------------ summary, state
    def summary(self) -> dict[str, Any]:
        """Run totals: bytes, CPU per stage, groups, failures and dropouts."""
        t = self.totals
        out: dict[str, Any] = {
            "mode": self.sec.mode,
            "group_size": self.sec.group_size,
            "norm_bound": self.sec.norm_bound,
            "rounds": t.rounds,
            "bytes_per_client_total": t.bytes_per_client,
            "bytes_per_client_per_round": t.bytes_per_client / t.rounds if t.rounds else None,
            "bytes_server_total": t.bytes_server,
            "norm_bounded_uploads": t.norm_bounded,
        }
        if self.sec.enabled:
            out.update(
                client_cpu_s_total=dict(t.client_cpu_s),
                server_cpu_s_total=dict(t.server_cpu_s),
                groups=t.groups,
                failed_groups=t.failed_groups,
                dropouts=t.dropouts,
                rounds_without_aggregate=t.rounds_without_aggregate,
                max_error_bound=t.max_error_bound,
            )
            if self.sec.mode == "secagg":
                out["max_clipped_fraction"] = t.max_clipped_fraction
        return out

    def state_dict(self) -> dict[str, Any]:
        """The run totals."""
        return {"totals": dict(self.totals.__dict__)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if "totals" in state:
            self.totals = _Totals(**state["totals"])


class DistributedDP(Hook):
    """Distributed DP: every client adds its share of the Gaussian noise before secure
    aggregation (``privacy.mode = "distributed"``; see the module docstring).

    Args:
        cfg: The experiment configuration (``secure.mode != "none"``).

    Raises:
        ConfigError: Neither a noise multiplier nor a target epsilon.
    """

    name = "distributed_dp"

    def __init__(self, cfg: ExperimentConfig) -> None:
        p = cfg.privacy
        self.cfg = cfg
        if p.target_epsilon > 0:
            self.noise_multiplier = calibrate_noise(
                target_epsilon=p.target_epsilon,
                delta=p.delta,
                sample_rate=cfg.sample_rate,
                rounds=cfg.server.rounds,
                accountant=p.accountant,
                sampling=cfg.server.sampling,
                num_clients=cfg.data.num_clients,
            )
        elif p.noise_multiplier > 0:
            self.noise_multiplier = p.noise_multiplier
        else:
            raise ConfigError(
                "privacy.mode = 'distributed' needs privacy.noise_multiplier > 0 or "
                "privacy.target_epsilon > 0 (without noise there is no DP guarantee)"
            )
        self.clip_norm = p.clip_norm
        self.accountant = PrivacyAccountant(accountant=p.accountant, delta=p.delta)
        self._share: dict[int, int] = {}

    def _step_kwargs(self, noise_multiplier: float) -> dict[str, Any]:
        return {
            "noise_multiplier": noise_multiplier,
            "sample_rate": self.cfg.sample_rate,
            "sampling": self.cfg.server.sampling,
            "num_clients": self.cfg.data.num_clients,
        }

    def on_round_start(self, ctx: RoundContext) -> None:
        """Budget enforcement, as in central DP."""
        self._share = {}
        budget = self.cfg.privacy.budget_epsilon
        if budget > 0:
            nxt = self.accountant.epsilon_if(**self._step_kwargs(self.noise_multiplier))
            if nxt > budget:
                raise StopRun(
                    f"privacy budget: round {ctx.round + 1} would bring epsilon to {nxt:.4g} > "
                    f"privacy.budget_epsilon = {budget:g} (spent so far "
                    f"{self.accountant.epsilon():.4g} at delta = {self.cfg.privacy.delta:g})"
                )

    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Client side: clip to ``C``, add ``N(0, (z C)^2 / m)`` (``m`` = group size)."""
        n = len(updates)
        if n == 0:
            return updates
        size = {int(k): len(g) for g in ctx.groups or [] for k in g.tolist()}
        ids = updates.client_ids.tolist()
        m = [size.get(k, n) for k in ids]
        self._share = dict(zip(ids, m, strict=True))
        std = torch.tensor(
            [self.noise_multiplier * self.clip_norm / math.sqrt(v) for v in m],
            dtype=torch.float32,
        )
        gen = torch_generator(self.cfg.seed, Stream.SECURE, ctx.round, _DP_NOISE)
        noise = torch.randn(updates.updates.shape, generator=gen) * std[:, None]
        clipped = clip_updates(updates.updates, clip_norm=self.clip_norm)
        ctx.metrics["dp_clip_norm"] = self.clip_norm
        ctx.metrics["dp_noise_std_share_max"] = float(std.max())
        return updates.replace(updates=clipped + noise)

    def effective_noise_multiplier(self, groups: list[Tensor] | None) -> float:
        """``z sqrt(min_g s_g / m_g)`` over the released sums (``z`` if nobody dropped)."""
        z = self.noise_multiplier
        for g in groups or []:
            if len(g) == 0:
                continue
            planned = self._share.get(int(g[0]), len(g))
            z = min(z, self.noise_multiplier * math.sqrt(min(1.0, len(g) / planned)))
        return z

    def on_round_end(self, ctx: RoundContext, record: dict[str, Any]) -> None:
        """Account the round with the smallest noise multiplier among its released sums."""
        z = self.effective_noise_multiplier(ctx.groups)
        self.accountant.step(**self._step_kwargs(z))
        record["epsilon"] = self.accountant.epsilon()
        record["dp_noise_multiplier"] = z

    def summary(self) -> dict[str, Any]:
        """The privacy settings and what was spent, for the run summary."""
        p = self.cfg.privacy
        return {
            "mode": "distributed",
            "accountant": self.accountant.name,
            "epsilon": self.accountant.epsilon(),
            "delta": p.delta,
            "noise_multiplier": self.noise_multiplier,
            "clip_norm": self.clip_norm,
            "sample_rate": self.cfg.sample_rate,
            "sampling": self.cfg.server.sampling,
            "group_size": self.cfg.secure.group_size,
        }

    def state_dict(self) -> dict[str, Any]:
        """Accountant steps."""
        return {"accountant": self.accountant.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.accountant.load_state_dict(state["accountant"])
