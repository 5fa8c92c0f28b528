"""FedQSN in the round loop (``[fedqsn] enabled = true``).

Reference: Xu et al., "FedQSN" (EMNLP 2025 Findings, arXiv 2508.18911). Per round:

1. every reporting client ``k`` gets the proxy :func:`~.proxy.build_proxy` of the global
   (master) model with its unit mask ``M_s AND M_c^{k,r}`` (server mask drawn once from
   ``Stream.FEDQSN_SERVER``, client masks from ``Stream.FEDQSN_CLIENT`` keyed by round and
   client id) and trains it, only the coordinates it received (:meth:`local_start`);
2. its update (trained proxy minus proxy) is mapped back to the master's units when
   inverted-dropout scaling is on (:meth:`after_local_training`);
3. the server's mean is turned into FedQSN's merge (:meth:`after_aggregation`):
   ``coordinate``: each coordinate averaged over the clients that received it
   (:func:`~.merge.merge_per_coordinate`; coordinates nobody received keep the master's
   value), ``whole_state``: the reference code's mean of the uploaded proxy states
   (:func:`~.merge.merge_whole_state`).

The master stays full precision. Each round records the bytes sent (proxies vs the float32
model FedAvg would send), the fraction of coordinates sent and the relative L2 error of
the sent values; the summary has, per client, the fraction of the model it ever received.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fedshield.config import ExperimentConfig
from fedshield.engine.hooks import ClientUpdates, Hook, LocalStart, RoundContext
from fedshield.engine.layout import ParamLayout
from fedshield.engine.seeding import Stream, torch_generator
from fedshield.privacy.fedqsn.masks import client_mask, coordinate_mask, server_mask, unit_groups
from fedshield.privacy.fedqsn.proxy import Proxy, build_proxy, proxy_scale, quantized_names

__all__ = ["FedQSNHook", "client_proxy"]


def client_proxy(
    cfg: ExperimentConfig,
    master: Tensor,
    layout: ParamLayout,
    groups: list[Any],
    server: list[Tensor],
    round_: int,
    client: int,
    quantize: tuple[str, ...] | None = None,
) -> Proxy:
    """The proxy client ``client`` receives in round ``round_`` (0-based), as the hook
    builds it (the same generators: reproducible after the run)."""
    q = cfg.fedqsn
    gen = torch_generator(cfg.seed, Stream.FEDQSN_CLIENT, round_, client)
    units = client_mask(server, q.p2, gen)
    return build_proxy(
        master,
        layout,
        groups,
        units,
        quantizer=q.quantizer,
        bits=q.bits,
        block_size=q.block_size,
        scale=q.scale,
        quantize=quantize,
    )


def _trainable_subset(layout: ParamLayout, names: tuple[str, ...]) -> Tensor | None:
    """``bool [P]``: the coordinates of the parameters ``names`` select (None = all)."""
    if not names:
        return None
    out = torch.zeros(layout.numel, dtype=torch.bool)
    for pattern in names:
        hits = [n for n in layout.names if n == pattern or n.startswith(pattern)]
        if not hits:
            raise ValueError(
                f"fedqsn.trainable entry {pattern!r} matches no parameter; the model's "
                f"parameters are {', '.join(layout.names)}"
            )
        for n in hits:
            out[layout.slices[n]] = True
    return out


class FedQSNHook(Hook):
    """Sends proxies, trains them, merges per coordinate (see the module docstring).

    Args:
        cfg: The experiment (``fedqsn.enabled``).
        model: The global model's module (its structure defines the units).
        layout: Its layout.
        input_shape: Shape of one input (for the conv -> linear unit mapping).
    """

    name = "fedqsn"

    def __init__(
        self,
        cfg: ExperimentConfig,
        model: nn.Module,
        layout: ParamLayout,
        input_shape: tuple[int, ...],
    ) -> None:
        self.cfg = cfg
        self.layout = layout
        self.groups = unit_groups(model, input_shape)
        self.quantize = quantized_names(layout, model)
        self.subset = _trainable_subset(layout, cfg.fedqsn.trainable)
        if not self.groups and (cfg.fedqsn.p1 > 0 or cfg.fedqsn.p2 > 0):
            raise ValueError(
                "fedqsn.p1/p2 > 0 but the model has no hidden Linear/Conv2d layer to mask"
            )
        self.server = server_mask(
            self.groups, cfg.fedqsn.p1, torch_generator(cfg.seed, Stream.FEDQSN_SERVER)
        )
        units = sum(int(m.numel()) for m in self.server)
        self.seen = np.zeros((cfg.data.num_clients, units), dtype=bool)
        self._received: Tensor | None = None  # [n, P] bool, reporting order
        self._ids: Tensor | None = None
        self._scale: Tensor | None = None
        self._states: Tensor | None = None
        self._arrived: ClientUpdates | None = None

    def local_start(self, ctx: RoundContext) -> LocalStart:
        """Build the reporting clients' proxies (their dense forms are the starts)."""
        n = len(ctx.reporting)
        starts = torch.empty(n, self.layout.numel)
        received = torch.empty(n, self.layout.numel, dtype=torch.bool)
        scale = torch.ones(n, self.layout.numel) if self.cfg.fedqsn.scale else None
        sent = 0.0
        num, den = 0.0, 0.0
        for row, k in enumerate(ctx.reporting.tolist()):
            proxy = client_proxy(
                self.cfg,
                ctx.global_params,
                self.layout,
                self.groups,
                self.server,
                ctx.round,
                k,
                self.quantize,
            )
            starts[row] = proxy.materialize(self.layout, self.groups)
            received[row] = coordinate_mask(self.layout, self.groups, proxy.unit_masks)
            if scale is not None:
                scale[row] = proxy_scale(self.layout, self.groups, proxy.unit_masks)
            if proxy.unit_masks:
                self.seen[k] |= torch.cat(list(proxy.unit_masks)).numpy()
            sent += proxy.nbytes()
            ref = ctx.global_params[received[row]]
            got = starts[row][received[row]]
            if scale is not None:
                got = got / scale[row][received[row]]
            num += float((got - ref).norm() ** 2)
            den += float(ref.norm() ** 2)
        self._received, self._ids, self._scale, self._states = (
            received,
            ctx.reporting.clone(),
            scale,
            starts if self.cfg.fedqsn.merge == "whole_state" else None,
        )
        ctx.metrics["fedqsn"] = {
            "bytes_sent": sent,
            "bytes_fedavg": 4.0 * self.layout.numel * n,
            "sent_fraction": float(received.float().mean()) if n else 0.0,
            "relative_l2_error": (num / den) ** 0.5 if den > 0 else 0.0,
        }
        trainable = received if self.subset is None else received & self.subset
        return LocalStart(params=starts, trainable=trainable)

    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Express each update in the master's units (undo inverted-dropout scaling)."""
        if self._scale is None:
            return updates
        rows = self._rows(updates.client_ids)
        return updates.replace(updates=updates.updates / self._scale[rows])

    def before_aggregation(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Remember which updates reach the mean (and their weights) for the merge."""
        self._arrived = updates
        return updates

    def after_aggregation(self, ctx: RoundContext, aggregate: Tensor) -> Tensor:
        """Turn the weighted mean of the updates into FedQSN's merge."""
        arrived = self._arrived
        if arrived is None or len(arrived) == 0 or self._received is None:
            return aggregate
        rows = self._rows(arrived.client_ids)
        w = arrived.weights.to(torch.float32)
        if self.cfg.fedqsn.merge == "coordinate":
            got = self._received[rows].to(torch.float32)
            cover = w @ got  # [P] weight of the clients that received each coordinate
            factor = torch.where(cover > 0, w.sum() / cover.clamp(min=1e-30), 0.0)
            return aggregate * factor
        # whole_state: mean of the uploaded states (proxy + update) minus the master
        assert self._states is not None
        states_mean = (w @ self._states[rows]) / w.sum()
        return aggregate + states_mean - ctx.global_params

    def _rows(self, client_ids: Tensor) -> Tensor:
        assert self._ids is not None
        index = {int(k): i for i, k in enumerate(self._ids.tolist())}
        return torch.tensor([index[int(k)] for k in client_ids.tolist()], dtype=torch.long)

    def summary(self) -> dict[str, Any]:
        """Per client, the fraction of the model's coordinates it ever received."""
        fractions = []
        for k in range(self.seen.shape[0]):
            if not self.seen[k].any():
                continue
            units, start = [], 0
            for m in self.server:
                units.append(torch.from_numpy(self.seen[k, start : start + m.numel()].copy()))
                start += m.numel()
            fractions.append(float(coordinate_mask(self.layout, self.groups, units).float().mean()))
        q = self.cfg.fedqsn
        return {
            "p1": q.p1,
            "p2": q.p2,
            "quantizer": q.quantizer,
            "bits": q.bits,
            "block_size": q.block_size,
            "merge": q.merge,
            "revealed_fraction_mean": float(np.mean(fractions)) if fractions else 0.0,
            "revealed_fraction_max": float(np.max(fractions)) if fractions else 0.0,
        }

    def state_dict(self) -> dict[str, Any]:
        """Which units each client has seen (the masks are re-drawn from the seed)."""
        return {"seen": self.seen.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.seen = np.asarray(state["seen"], dtype=bool).copy()
