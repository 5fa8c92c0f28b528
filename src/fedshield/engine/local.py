"""Local training: the recipe, the common interface, and the sequential reference path.

Every path implements the same update for client ``k`` at step ``s`` with minibatch
``b`` (``|b| > 0``), starting each round from the global parameters ``w_g``::

    L(w)  = mean_{i in b} CE(f(w; x_i), y_i) + (mu / 2) * ||w - w_g||^2     (FedProx)
    g     = grad L(w) + lambda * w                                          (weight decay)
    v     = m * v + g          (v = 0 at the start of every round; torch.optim.SGD rule)
    w     = w - eta_r * v      (or w - eta_r * g when m = 0)

``eta_r`` is the client learning rate of round ``r`` after the schedule. The sequential
path uses ``torch.optim.SGD`` and autograd one client at a time; it is the reference the
vectorised paths are tested against (Li et al. 2020, FedProx, for ``mu``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedshield.engine.batches import BatchPlan
from fedshield.engine.layout import ParamLayout


def sample_losses(logits: Tensor, y: Tensor, class_weights: Tensor | None = None) -> Tensor:
    """``[B]`` cross-entropy of each sample; dense targets (segmentation ``[B, H, W]``)
    average their pixels. ``class_weights[c]`` multiplies the loss of every target of class
    ``c`` (the mean is over targets, not normalised by the weights, so every training path
    and every batch size gives the same objective)."""
    per = F.cross_entropy(logits, y, weight=class_weights, reduction="none")
    if per.dim() > 1:
        per = per.flatten(1).mean(1)
    return per


@dataclass(frozen=True)
class LocalRecipe:
    """Client optimizer settings for one round.

    Attributes:
        lr: Learning rate of this round (after the schedule).
        momentum: SGD momentum ``m`` (buffer reset every round).
        weight_decay: L2 coefficient ``lambda``.
        prox_mu: FedProx coefficient ``mu``.
        round: The round (0-based) this recipe trains. Only paths that draw random numbers
            during local training read it (DP-SGD keys its noise by ``(seed, round,
            client)``); the others ignore it.
        client_ids: The client id of each row of the plan the recipe is used with, so that
            a path can key per-client random streams by the real id rather than the row;
            ``()`` means rows ``0..C-1`` are clients ``0..C-1``. Ignored by paths that draw
            nothing.
        trainable: Optional ``[C, P]`` bool mask, one row per client of the plan: the
            coordinates that client may change (FedQSN: the parameters of the units its
            proxy does not contain stay at their start value). None = all. Supported by
            the sequential and vmap paths.
    """

    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    prox_mu: float = 0.0
    round: int = 0
    client_ids: tuple[int, ...] = ()
    trainable: Tensor | None = None

    def rows(self, lo: int, hi: int) -> LocalRecipe:
        """The recipe for rows ``[lo, hi)`` of the plan (slices ``trainable``)."""
        if self.trainable is None:
            return self
        return dataclasses.replace(self, trainable=self.trainable[lo:hi])

    @property
    def plain(self) -> bool:
        """True when the step is plain SGD (no momentum, decay or proximal term)."""
        return self.momentum == 0.0 and self.weight_decay == 0.0 and self.prox_mu == 0.0


@dataclass(frozen=True)
class LocalResult:
    """What local training returns for the ``C`` clients of a plan.

    Attributes:
        params: ``[C, P]`` final local parameters (flat, by the model's layout).
        loss: ``[C]`` mean training loss over each client's active steps.
    """

    params: Tensor
    loss: Tensor


#: Trains the clients of a plan and writes their final parameters into ``out``
#: (``[n, P]``, rows of the round's matrix); returns their mean losses ``[n]``.
ChunkFn = Callable[[Tensor, BatchPlan, LocalRecipe, Tensor], Tensor]


def chunk_bounds(num_clients: int, chunk: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` client ranges of at most ``chunk`` clients (0 = one range)."""
    step = chunk or num_clients
    return [(lo, min(num_clients, lo + step)) for lo in range(0, num_clients, step)]


def train_in_chunks(
    train_chunk: ChunkFn,
    start: Tensor,
    plan: BatchPlan,
    recipe: LocalRecipe,
    chunk: int,
    numel: int,
) -> LocalResult:
    """Run ``train_chunk`` on consecutive groups of at most ``chunk`` clients (0 = all).

    Smaller groups keep the stacked parameters of a group in cache; the result is the same
    as training all clients at once (each client only ever sees its own rows). Every group
    writes straight into its rows of one ``[C, numel]`` matrix.
    """
    check_start(start, recipe, plan.num_clients, numel)
    out = torch.empty(plan.num_clients, numel, dtype=start.dtype)
    loss = torch.empty(plan.num_clients)
    for lo, hi in chunk_bounds(plan.num_clients, chunk):
        rows = start[lo:hi] if start.dim() == 2 else start
        loss[lo:hi] = train_chunk(rows, plan.rows(lo, hi), recipe.rows(lo, hi), out[lo:hi])
    return LocalResult(params=out, loss=loss)


def check_start(start: Tensor, recipe: LocalRecipe, num_clients: int, numel: int) -> None:
    """Check a start (``[P]`` shared, or ``[C, P]`` one row per client) and the recipe's
    ``trainable`` mask against the plan.

    Raises:
        ValueError: Naming the wrong shape or dtype.
    """
    if start.shape not in ((numel,), (num_clients, numel)):
        raise ValueError(
            f"start has shape {tuple(start.shape)}, expected ({numel},) or one row per client "
            f"({num_clients}, {numel})"
        )
    t = recipe.trainable
    if t is not None and (t.dtype != torch.bool or t.shape != (num_clients, numel)):
        raise ValueError(
            f"recipe.trainable must be a bool [{num_clients}, {numel}] mask, got "
            f"{t.dtype} {tuple(t.shape)}"
        )


class LocalTrainer(Protocol):
    """A local-training path: trains all clients of a plan from the same start."""

    name: str

    def train(self, start: Tensor, plan: BatchPlan, recipe: LocalRecipe) -> LocalResult:
        """Train every client of ``plan`` from the flat parameters ``start``."""
        ...


class SequentialTrainer:
    """Reference path: one client after another, autograd + ``torch.optim.SGD``.

    Args:
        model: A module whose parameters are overwritten (used as scratch space).
        layout: The model's layout.
        x: Training inputs ``[N, ...]``.
        y: Training labels ``[N]`` (or dense ``[N, H, W]`` targets).
        class_weights: Optional ``[K]`` per-class loss weights (see :func:`sample_losses`).
    """

    name = "sequential"

    def __init__(
        self,
        model: nn.Module,
        layout: ParamLayout,
        x: Tensor,
        y: Tensor,
        *,
        class_weights: Tensor | None = None,
    ) -> None:
        self.model = model
        self.layout = layout
        self.x = x
        self.y = y
        self.class_weights = class_weights

    def train(self, start: Tensor, plan: BatchPlan, recipe: LocalRecipe) -> LocalResult:
        """Train each client of ``plan`` in turn (see module docstring for the update)."""
        C = plan.num_clients
        check_start(start, recipe, C, self.layout.numel)
        out = torch.empty(C, self.layout.numel, dtype=start.dtype)
        losses = torch.zeros(C)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.model.train()
        for k in range(C):
            row = start[k] if start.dim() == 2 else start
            anchor = [t.clone() for t in self.layout.unflatten(row).values()]
            self.layout.load_into(self.model, row)
            keep = (
                [m.to(row.dtype) for m in self.layout.unflatten(recipe.trainable[k]).values()]
                if recipe.trainable is not None
                else None
            )
            opt = torch.optim.SGD(
                params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
            )
            total, steps = 0.0, 0
            for s in range(plan.num_steps):
                n = int(plan.counts[k, s])
                if n == 0:
                    continue
                idx = plan.index[k, s, :n]
                opt.zero_grad(set_to_none=True)
                loss = sample_losses(
                    self.model(self.x[idx]), self.y[idx], self.class_weights
                ).mean()
                total += float(loss.detach())
                steps += 1
                if recipe.prox_mu > 0.0:
                    prox = sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))
                    loss = loss + 0.5 * recipe.prox_mu * prox
                loss.backward()
                opt.step()
                if keep is not None:  # frozen coordinates back to their start value
                    with torch.no_grad():
                        for p, m, a in zip(params, keep, anchor, strict=True):
                            p.mul_(m).add_(a * (1 - m))
            out[k] = self.layout.flatten(self.model)
            losses[k] = total / max(steps, 1)
        return LocalResult(params=out, loss=losses)
