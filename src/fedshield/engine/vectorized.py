"""Vectorised local training over clients with ``torch.func``.

All clients of a round train at once: their parameters are stacked along a leading client
dimension and one call of ``vmap(grad(loss))`` (``functional_call`` on the user's module)
gives every client's gradient for its own minibatch. Works for any ``nn.Module`` without
buffers that change in training. Clients that have run out of batches are masked (their
parameters and momentum do not move), never fed fake data; see
:mod:`fedshield.engine.batches`. The update rule is the one in :mod:`fedshield.engine.local`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from fedshield.engine.batches import BatchPlan
from fedshield.engine.layout import ParamLayout
from fedshield.engine.local import LocalRecipe, LocalResult, sample_losses, train_in_chunks


def sgd_update_(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor] | None,
    anchors: list[Tensor] | None,
    active: Tensor,
    recipe: LocalRecipe,
    keep: list[Tensor] | None = None,
) -> None:
    """Apply one (masked) SGD step in place to stacked client parameters.

    Args:
        params: Stacked parameters ``[C, ...]``, updated in place.
        grads: Loss gradients, same shapes (consumed: modified in place).
        bufs: Momentum buffers (same shapes) or None when momentum is 0.
        anchors: Global parameters ``[...]`` for the proximal term, or None.
        active: ``[C]`` float, 1.0 for clients that take this step, 0.0 for masked ones.
        recipe: Learning rate, momentum, weight decay and mu.
        keep: Optional float masks (same shapes as ``params``, 1 = trainable): the step
            of a 0 coordinate is dropped, so it keeps its value.
    """
    all_active = bool(active.min() > 0)
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if recipe.weight_decay:
            g.add_(p, alpha=recipe.weight_decay)
        if anchors is not None:
            g.add_(p - anchors[i], alpha=recipe.prox_mu)
        a = active.view(-1, *([1] * (p.dim() - 1)))
        if bufs is not None:
            if all_active:
                bufs[i].mul_(recipe.momentum).add_(g)
            else:
                # masked clients keep their buffer: v <- v * (1 - a + a m) + a g
                bufs[i].mul_(1.0 - a + a * recipe.momentum).add_(g * a)
            step = bufs[i]
        else:
            step = g
        if keep is not None:
            step = step * keep[i]
        if all_active:
            p.sub_(step, alpha=recipe.lr)
        else:
            p.sub_(step * a, alpha=recipe.lr)


class VmapTrainer:
    """Local training of all clients at once with ``torch.func.vmap``.

    Args:
        model: The user's module (its own parameters are not modified).
        layout: The model's layout.
        x: Training inputs ``[N, ...]``.
        y: Training labels ``[N]``.
        chunk: Train at most this many clients at once (0 = all).
        class_weights: Optional ``[K]`` per-class loss weights (see
            :func:`fedshield.engine.local.sample_losses`).
    """

    name = "vmap"

    def __init__(
        self,
        model: nn.Module,
        layout: ParamLayout,
        x: Tensor,
        y: Tensor,
        *,
        chunk: int = 0,
        class_weights: Tensor | None = None,
    ) -> None:
        self.model = model
        self.layout = layout
        self.x = x
        self.y = y
        self.chunk = chunk
        buffers = dict(model.named_buffers())

        def loss_fn(
            params: dict[str, Tensor], xb: Tensor, yb: Tensor, mb: Tensor, count: Tensor
        ) -> Tensor:
            out = functional_call(model, (params, buffers), (xb,))
            per = sample_losses(out, yb, class_weights)
            return (per * mb).sum() / count.clamp(min=1)

        self._step = vmap(grad_and_value(loss_fn))

    def train(self, start: Tensor, plan: BatchPlan, recipe: LocalRecipe) -> LocalResult:
        """Train every client of ``plan`` from ``start`` (chunked if configured)."""
        return train_in_chunks(
            self._train_chunk, start, plan, recipe, self.chunk, self.layout.numel
        )

    def _train_chunk(
        self, start: Tensor, plan: BatchPlan, recipe: LocalRecipe, out: Tensor
    ) -> Tensor:
        C = plan.num_clients
        glob = self.layout.unflatten(start)
        names = list(self.layout.names)
        if start.dim() == 2:  # one start per client (e.g. FedQSN's proxies)
            params = [glob[n].clone() for n in names]
        else:
            params = [glob[n].unsqueeze(0).repeat(C, *([1] * glob[n].dim())) for n in names]
        bufs = [torch.zeros_like(p) for p in params] if recipe.momentum else None
        anchors = [glob[n] for n in names] if recipe.prox_mu else None
        keep = (
            [m.to(start.dtype) for m in self.layout.unflatten(recipe.trainable).values()]
            if recipe.trainable is not None
            else None
        )
        counts = plan.counts.to(torch.float32)
        loss_sum = torch.zeros(C)
        self.model.train()
        for s in range(plan.num_steps):
            idx = plan.index[:, s]
            xb, yb = self.x[idx], self.y[idx]
            grads, loss = self._step(
                dict(zip(names, params, strict=True)), xb, yb, plan.mask[:, s], counts[:, s]
            )
            loss_sum += loss.detach()
            active = (counts[:, s] > 0).to(torch.float32)
            sgd_update_(params, [grads[n] for n in names], bufs, anchors, active, recipe, keep)
        steps = (plan.counts > 0).sum(dim=1).clamp(min=1)
        self.layout.write_rows(dict(zip(names, params, strict=True)), out)
        return loss_sum / steps
