"""Inverting a multi-step FedAvg upload: the FedAvg variant of Inverting Gradients.

Reference:
    J. Geiping, H. Bauermeister, H. Droege, M. Moeller, "Inverting Gradients - How easy
    is it to break privacy in federated learning?", NeurIPS 2020, Section 6 ("Federated
    averaging"); the ``FedAvgReconstructor`` of their released code
    (``JonasGeiping/invertinggradients``) unrolls the client's local steps and
    differentiates through them.

In FedAvg a client does not upload one gradient but the parameter difference after
``K`` local SGD steps on its ``n`` images, ``u = theta_K - theta_0``. The attack
simulates those steps on dummy images ``x'`` (with the client's labels ``y``)::

    theta'_0 = theta_0,   theta'_{s+1} = SGD_step(theta'_s, grad CE(f(x'_{B_s}; theta'_s), y_{B_s}))
    u'(x') = theta'_K - theta_0

and minimises, with Geiping et al.'s optimiser (Adam on ``sign(grad_x')``, step decay
x0.1 at 3/8, 5/8 and 7/8 of the iterations, ``x'`` clamped into the image box after
every step)::

    L(x') = 1 - <u'(x'), u> / (||u'(x')|| ||u||) + lambda_TV TV(x')

``u'`` is a differentiable function of ``x'`` (``torch.func.grad`` nested inside the
outer gradient), so the gradient of the cosine flows through all ``K`` local steps.

What the attacker (an honest-but-curious server) must know: the global model it sent
(``theta_0``), the upload ``u``, and the client's training recipe: the number of local
steps ``K``, the learning rate, the mini-batch size and order (step ``s`` uses the
images ``s*B .. s*B+B-1`` modulo ``n``, i.e. an unshuffled pass), the momentum and
weight decay of ``torch.optim.SGD``, and the number of images ``n``. Labels are given
or estimated from the last-layer weight of ``-u`` (iDLG for ``n = 1``, the batch
label heuristic otherwise), which is a sum of ``K`` gradients, each with the sign
pattern the heuristics rely on, as long as the local steps stay small.

With ``K = 1`` and no momentum, ``u = -lr g`` and the objective equals the one of
:func:`~fedshield.attacks.privacy.gradient_inversion.invert_gradients` (``method="ig"``)
on ``g``: the cosine is scale invariant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad

from fedshield.attacks.privacy.gradient_inversion import (
    _cosine_match,
    _last_weight_grad,
    _target_vector,
    batch_labels,
    idlg_label,
)
from fedshield.engine.layout import ParamLayout

__all__ = ["invert_fedavg_update"]


class _LocalTraining:
    """The client's local SGD run as a pure function of its images.

    ``update(x, labels)`` returns the flat parameter difference ``theta_K - theta_0``
    (in :class:`ParamLayout` order) after ``local_steps`` steps of ``torch.optim.SGD``
    (``lr``, ``momentum``, ``weight_decay``; no dampening, no Nesterov) from the model's
    current parameters, differentiable in ``x``. Buffers are read, never updated.
    """

    def __init__(
        self,
        model: nn.Module,
        layout: ParamLayout,
        *,
        num_images: int,
        local_steps: int,
        local_lr: float,
        batch_size: int,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        self.model = model
        self.layout = layout
        self.params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        fixed = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        fixed.update({n: b.detach() for n, b in model.named_buffers()})
        self.fixed = fixed
        self.local_lr = local_lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        # mini-batch of step s: images s*B .. s*B+B-1 modulo n (None = all, in order)
        self.batches: list[Tensor | None] = []
        for s in range(local_steps):
            idx = [(s * batch_size + j) % num_images for j in range(batch_size)]
            full = idx == list(range(num_images))
            self.batches.append(None if full else torch.tensor(idx, dtype=torch.int64))

    def _loss(self, params: dict[str, Tensor], x: Tensor, target: Tensor) -> Tensor:
        out = functional_call(self.model, (params, self.fixed), (x,))
        return F.cross_entropy(out, target)

    def update(self, x: Tensor, labels: Tensor) -> Tensor:
        """Flat ``[P]`` update of the local run on images ``x [n, ...]`` with ``labels``."""
        params = dict(self.params)
        buf: dict[str, Tensor] = {}
        for s, idx in enumerate(self.batches):
            xb = x if idx is None else x.index_select(0, idx)
            yb = labels if idx is None else labels.index_select(0, idx)
            g = grad(self._loss)(params, xb, yb)
            new: dict[str, Tensor] = {}
            for name, p in params.items():
                d = g[name]
                if self.weight_decay != 0:
                    d = d + self.weight_decay * p
                if self.momentum != 0:
                    d = d if s == 0 else self.momentum * buf[name] + d
                    buf[name] = d
                new[name] = p - self.local_lr * d
            params = new
        return torch.cat([(params[n] - self.params[n]).reshape(-1) for n in self.layout.names])


def _fedavg_run(
    sim: _LocalTraining,
    target: Tensor,
    labels: Tensor,
    x0: Tensor,
    *,
    iterations: int,
    lr: float,
    tv_weight: float,
    bounds: tuple[float, float],
) -> tuple[Tensor, Tensor]:
    """Update matching on stacked restarts ``x0 [R, n, ...]``; returns (x, final losses)."""
    return _cosine_match(
        sim.update,
        target,
        labels,
        x0,
        iterations=iterations,
        lr=lr,
        tv_weight=tv_weight,
        bounds=bounds,
    )


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_real(name: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if (positive and not value > 0) or value < 0:
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def invert_fedavg_update(
    model: nn.Module,
    update: Tensor,
    *,
    num_images: int,
    image_shape: tuple[int, ...],
    local_steps: int,
    local_lr: float,
    batch_size: int | None = None,
    labels: Tensor | None = None,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    iterations: int = 2000,
    seed: int = 0,
    restarts: int = 1,
    lr: float = 0.1,
    tv_weight: float = 1e-4,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> Tensor:
    """Reconstructs a client's images from its multi-step FedAvg upload.

    Geiping et al.'s FedAvg attack: minimise ``1 - cos(u'(x'), u) + tv_weight * TV(x')``
    where ``u'(x')`` replays the client's ``local_steps`` SGD steps from ``model``'s
    parameters on dummy images ``x'`` (differentiably, through all steps). Adam (``lr``)
    on ``sign(grad_x')``, decay x0.1 at 3/8, 5/8, 7/8 of ``iterations``, ``x'`` clamped to
    ``bounds`` after every step, ``x' ~ N(0, 1)`` clamped. The ``restarts`` run as one
    optimisation over a leading restart axis (``torch.func.vmap``); the restart with the
    lowest final loss is returned. Same seed and draws as
    :func:`~fedshield.attacks.privacy.gradient_inversion.invert_gradients`.

    The local run mirrors ``torch.optim.SGD(lr=local_lr, momentum=momentum,
    weight_decay=weight_decay)`` on the mean cross-entropy: ``d = g + wd * theta``,
    ``b = d`` at the first step and ``b = mu * b + d`` after, ``theta -= local_lr * b``.
    Step ``s`` uses the images ``s*B .. s*B+B-1`` modulo ``n`` (``B = batch_size``).
    The model's parameters are read, never modified; it is called as is (train or eval
    mode as set by the caller; buffers are not updated).

    Args:
        model: The global model the client started from (classification output).
        update: Flat ``Tensor[P]`` upload ``local params - global params`` in
            :class:`ParamLayout` order (trainable parameters, ``named_parameters`` order).
        num_images: Size ``n`` of the client's local data set; all ``n`` are reconstructed.
        image_shape: Shape of one input, e.g. ``(1, 28, 28)``.
        local_steps: Number of local SGD steps ``K`` the client took.
        local_lr: The client's learning rate.
        batch_size: The client's mini-batch size ``B`` (``1 <= B <= n``); None = ``n``
            (full batch).
        labels: Known int64 labels ``[n]``, or None to estimate them from the last-layer
            weight of ``-update`` (:func:`idlg_label` for ``n = 1``, else
            :func:`batch_labels`).
        momentum: The client's SGD momentum ``mu >= 0``.
        weight_decay: The client's SGD weight decay ``>= 0``.
        iterations: Attack optimiser steps.
        seed: Seed of ``torch.Generator`` for the initialisation.
        restarts: Independent random initialisations, optimised together.
        lr: Adam step size of the attack.
        tv_weight: Total-variation weight.
        bounds: Image box ``(low, high)``.

    Returns:
        ``Tensor[num_images, *image_shape]`` reconstruction (detached), in the order of
        ``labels``.

    Raises:
        ValueError: On non-positive sizes or rates, a batch size above ``num_images``, a
            misshapen, non-finite or all-zero update, bad labels or bounds.
    """
    _check_int("num_images", num_images, 1)
    _check_int("local_steps", local_steps, 1)
    _check_int("restarts", restarts, 1)
    _check_int("iterations", iterations, 0)
    if batch_size is not None:
        _check_int("batch_size", batch_size, 1)
        if batch_size > num_images:
            raise ValueError(f"batch_size {batch_size} exceeds num_images {num_images}")
    local_lr = _check_real("local_lr", local_lr, positive=True)
    momentum = _check_real("momentum", momentum, positive=False)
    weight_decay = _check_real("weight_decay", weight_decay, positive=False)
    lr = _check_real("lr", lr, positive=True)
    tv_weight = _check_real("tv_weight", tv_weight, positive=False)
    shape = tuple(image_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(f"image_shape must be a tuple of positive ints, got {image_shape!r}")
    if len(bounds) != 2 or not bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
    if not isinstance(update, Tensor):
        raise ValueError(f"update must be a flat Tensor, got {type(update).__name__}")
    layout = ParamLayout.from_module(model)
    target = _target_vector(update, layout)  # checks shape [P] and finiteness
    if not bool((target != 0).any()):
        raise ValueError("update is all zeros: nothing to invert")

    sim = _LocalTraining(
        model,
        layout,
        num_images=num_images,
        local_steps=local_steps,
        local_lr=local_lr,
        batch_size=num_images if batch_size is None else batch_size,
        momentum=momentum,
        weight_decay=weight_decay,
    )
    with torch.no_grad():
        probe = functional_call(model, (sim.params, sim.fixed), (torch.zeros(1, *shape),))
    num_classes = int(probe.reshape(1, -1).shape[1])
    if labels is None:
        if num_images == 1:
            labels = torch.tensor([idlg_label(-target, layout)])
        else:
            labels = batch_labels(_last_weight_grad(-target, layout), num_images)
    else:
        labels = torch.as_tensor(labels).reshape(-1).to(torch.int64)
        if labels.numel() != num_images:
            raise ValueError(f"labels has {labels.numel()} entries, expected {num_images}")
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes})")

    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn((restarts, num_images, *shape), generator=gen, dtype=layout.dtype)
    x0 = x0.clamp(bounds[0], bounds[1])
    xs, losses = _fedavg_run(
        sim,
        target,
        labels,
        x0,
        iterations=iterations,
        lr=lr,
        tv_weight=tv_weight,
        bounds=(float(bounds[0]), float(bounds[1])),
    )
    finite = torch.where(torch.isfinite(losses), losses, torch.full_like(losses, math.inf))
    return xs[int(torch.argmin(finite))]
