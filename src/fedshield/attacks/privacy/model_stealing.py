"""A curious client rebuilding the owner's model from its FedQSN proxy.

FedQSN (Xu et al., EMNLP 2025 Findings, arXiv 2508.18911) protects the model owner's
parameters by sending each client only a masked, quantized proxy; its protection is the
quality gap between what a client can make of its proxy and the full model. This module
plays the client that tries: it takes the dense proxy it received (zeros where units were
removed), re-initialises the removed coordinates (zeros are a saddle point: a removed
hidden unit has zero incoming and outgoing weights, so its gradient is zero) from a fresh
initialisation of the same architecture, and fine-tunes *all* parameters on its own data
for a given budget (Adam, the usual choice of an attacker with little data).

:func:`steal_from_proxy` returns the rebuilt parameters; :func:`accuracy` scores any flat
parameter vector. The same budget applied to a fresh model (no proxy) is the reference
of what the client gets without the owner's model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fedshield.engine.layout import ParamLayout

__all__ = ["accuracy", "steal_from_proxy"]


def _check(layout: ParamLayout, vec: Tensor, name: str) -> None:
    if vec.shape != (layout.numel,) or not vec.is_floating_point():
        raise ValueError(
            f"{name} must be a float [{layout.numel}] vector, got {vec.dtype} {tuple(vec.shape)}"
        )
    if not bool(torch.isfinite(vec).all()):
        raise ValueError(f"{name} has non-finite values")


def steal_from_proxy(
    model: nn.Module,
    proxy: Tensor,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 32,
    generator: torch.Generator,
    removed: Tensor | None = None,
    init: Tensor | None = None,
) -> Tensor:
    """Fine-tune a proxy on the client's own data.

    Args:
        model: A module of the model's architecture (used as scratch space; its parameters
            are overwritten).
        proxy: ``[P]`` the dense proxy the client received (or any start).
        x: The client's inputs.
        y: Its int64 labels.
        epochs: Passes over ``(x, y)`` (the attacker's budget; 0 returns the start).
        lr: Adam learning rate.
        batch_size: Minibatch size.
        generator: Shuffling.
        removed: Optional ``bool [P]``: coordinates the proxy did not contain; they start
            from ``init`` instead of zero.
        init: ``[P]`` fresh initialisation used for ``removed`` (required with it).

    Returns:
        ``[P]`` the client's rebuilt parameters.

    Raises:
        ValueError: On shapes, a missing ``init``, a negative budget or empty data.
    """
    layout = ParamLayout.from_module(model)
    _check(layout, proxy, "proxy")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"x and y must be non-empty and of one length, got {len(x)} and {len(y)}")
    start = proxy.detach().clone().float()
    if removed is not None:
        if init is None:
            raise ValueError("removed coordinates need an init vector to start from")
        _check(layout, init, "init")
        if removed.shape != (layout.numel,) or removed.dtype != torch.bool:
            raise ValueError(f"removed must be bool [{layout.numel}]")
        start = torch.where(removed, init.float(), start)
    layout.load_into(model, start)
    if epochs == 0:
        return start
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    n = len(x)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for lo in range(0, n, batch_size):
            idx = order[lo : lo + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    return layout.flatten(model).detach().clone()


@torch.no_grad()
def accuracy(
    model: nn.Module, params: Tensor, x: Tensor, y: Tensor, batch_size: int = 2048
) -> float:
    """Test accuracy of ``params`` loaded into ``model``."""
    layout = ParamLayout.from_module(model)
    _check(layout, params, "params")
    layout.load_into(model, params)
    model.eval()
    correct = 0
    for lo in range(0, len(x), batch_size):
        correct += int((model(x[lo : lo + batch_size]).argmax(1) == y[lo : lo + batch_size]).sum())
    return correct / max(len(x), 1)
