"""Typed hooks: how attacks, privacy mechanisms and measurements plug into the round loop.

The round loop calls, in order, for every round::

    on_round_start(ctx)                          # sampling is known, nothing trained yet
    updates = after_local_training(ctx, updates) # client side, before upload: attacks,
                                                 #   local DP, clipping, compression
    -- the engine rejects rows that are not finite (recorded in the round's metrics) --
    updates = before_aggregation(ctx, updates)   # server side, before the rule: filtering,
                                                 #   secure aggregation, measurements
    aggregate = after_aggregation(ctx, aggregate)# server side: central DP noise, logging
    on_round_end(ctx, record)                    # metrics of the round (may add keys)

Hooks see the update matrix through :class:`ClientUpdates`, never the simulator. Several
hooks run in the order given; each receives the previous one's output. A hook with state
(an accountant, per-client history) implements ``state_dict``/``load_state_dict`` so that
``--resume`` restores it exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from fedshield.config.schema import ExperimentConfig
from fedshield.engine.layout import ParamLayout


@dataclass(frozen=True)
class ClientUpdates:
    """The update matrix of a round with the identity and weight of each row.

    Attributes:
        client_ids: ``int64 [n]`` id of the client of each row.
        updates: ``float32 [n, P]`` row k = local parameters of client k minus the global
            parameters at round start.
        weights: ``[n]`` aggregation weights (sample counts or ones, per config).
        num_samples: ``int64 [n]`` local training samples of each client.
        loss: ``[n]`` mean local training loss of each client.
    """

    client_ids: Tensor
    updates: Tensor
    weights: Tensor
    num_samples: Tensor
    loss: Tensor

    def __len__(self) -> int:
        """Number of rows."""
        return int(self.updates.shape[0])

    def replace(self, **changes: Any) -> ClientUpdates:
        """A copy with some fields replaced (e.g. ``updates=new_matrix``)."""
        return dataclasses.replace(self, **changes)

    def select(self, keep: Tensor) -> ClientUpdates:
        """Rows where the boolean mask ``keep`` is true (or the given row indices)."""
        return ClientUpdates(
            client_ids=self.client_ids[keep],
            updates=self.updates[keep],
            weights=self.weights[keep],
            num_samples=self.num_samples[keep],
            loss=self.loss[keep],
        )


@dataclass
class RoundContext:
    """What every hook is told about the current round.

    Attributes:
        round: 0-based round index.
        num_rounds: Total rounds of the experiment.
        config: The experiment configuration.
        layout: The model's parameter layout.
        global_params: ``[P]`` global parameters at the start of the round (do not modify).
        sampled: ``int64`` ids of the clients sampled this round.
        reporting: ``int64`` ids of the sampled clients that did not drop out.
        lr: Client learning rate of this round.
        generator: A ``torch.Generator`` seeded from the experiment seed and the round,
            for hooks' random draws (shared by all hooks, in hook order).
        metrics: Extra per-round metrics; hooks add keys here and they are recorded.
        new_params: ``[P]`` the global parameters after the round's update; set before
            ``on_round_end`` (None earlier in the round).
        groups: Under secure aggregation (``[secure]``), the clients behind each row the
            server receives: ``groups[j]`` is the ``int64`` tensor of client ids whose
            uploads are summed in row ``j`` (row ``j``'s ``client_id`` is the smallest of
            them). Set by :class:`fedshield.privacy.secure.SecureAggregation`: at round
            start to the planned groups of the reporting clients (clients need their
            group's size, e.g. for distributed DP noise shares), and in
            ``before_aggregation`` to the survivors of each released sum (failed groups
            removed). None without secure aggregation.
    """

    round: int
    num_rounds: int
    config: ExperimentConfig
    layout: ParamLayout
    global_params: Tensor
    sampled: Tensor
    reporting: Tensor
    lr: float
    generator: torch.Generator
    metrics: dict[str, Any] = field(default_factory=dict)
    new_params: Tensor | None = None
    groups: list[Tensor] | None = None


class StopRun(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a hook's ``on_round_start`` to end the run cleanly before that round.

    The loop stops, keeps everything up to the previous round (metrics, checkpoint), writes
    the summary with ``stopped_early`` = the message, and returns normally. Used e.g. for
    privacy-budget enforcement.
    """


@dataclass(frozen=True)
class LocalStart:
    """Per-client starting points of a round's local training (FedQSN's proxies).

    Attributes:
        params: ``[n, P]`` float32: what each reporting client (``ctx.reporting`` order)
            starts from; the uploaded update is its trained parameters minus this row.
        trainable: Optional ``[n, P]`` bool: the coordinates each client may change
            (None = all).
    """

    params: Tensor
    trainable: Tensor | None = None


class Hook:
    """Base class for round-loop hooks; override any subset of the methods.

    The defaults do nothing (and return their input unchanged).
    """

    name: str = "hook"
    #: when True, a round in which no update reaches aggregation still runs
    #: ``after_aggregation`` on a zero aggregate (central DP must release noise then)
    noise_on_empty: bool = False

    def on_round_start(self, ctx: RoundContext) -> None:
        """Called after sampling and dropout, before local training."""

    def local_start(self, ctx: RoundContext) -> LocalStart | None:
        """Client side, before local training: per-client starts instead of the global
        model (at most one hook may return one); None = train from the global model."""
        return None

    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Client side, before upload; returns the (possibly rewritten) updates."""
        return updates

    def before_aggregation(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Server side, after validation, before the aggregation rule."""
        return updates

    def after_aggregation(self, ctx: RoundContext, aggregate: Tensor) -> Tensor:
        """Server side, after the rule, before the server optimizer; returns ``[P]``."""
        return aggregate

    def on_round_end(self, ctx: RoundContext, record: dict[str, Any]) -> None:
        """After the global model is updated (and evaluated); ``record`` may be extended."""

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (tensors and plain Python values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
