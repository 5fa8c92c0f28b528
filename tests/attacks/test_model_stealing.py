"""The curious FedQSN client: proxy fine-tuning with removed units re-initialised."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedshield.attacks.privacy.model_stealing import accuracy, steal_from_proxy
from fedshield.engine.layout import ParamLayout


def _problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()  # linearly separable
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), x, y


def test_zero_budget_returns_the_proxy_with_removed_coordinates_from_init() -> None:
    model, x, y = _problem()
    layout = ParamLayout.from_module(model)
    proxy = torch.arange(layout.numel, dtype=torch.float32)
    init = -torch.ones(layout.numel)
    removed = torch.zeros(layout.numel, dtype=torch.bool)
    removed[:5] = True
    out = steal_from_proxy(
        model, proxy, x, y, epochs=0, generator=torch.Generator(), removed=removed, init=init
    )
    assert torch.equal(out[:5], -torch.ones(5)) and torch.equal(out[5:], proxy[5:])


def test_fine_tuning_learns_and_zero_units_alone_do_not() -> None:
    model, x, y = _problem()
    layout = ParamLayout.from_module(model)
    init = layout.flatten(model).detach().clone()
    zeros = torch.zeros(layout.numel)
    gen = torch.Generator().manual_seed(1)
    # an all-zero proxy is a saddle: the hidden layer never moves, the output bias alone
    # cannot separate the classes
    stuck = steal_from_proxy(model, zeros, x, y, epochs=5, lr=1e-2, generator=gen)
    hidden = layout.slices["0.weight"]
    assert torch.equal(stuck[hidden], zeros[hidden])
    assert accuracy(model, stuck, x, y) < 0.8
    # re-initialising the removed coordinates lets the client learn
    rebuilt = steal_from_proxy(
        model, zeros, x, y, epochs=5, lr=1e-2, generator=gen,
        removed=torch.ones(layout.numel, dtype=torch.bool), init=init,
    )  # fmt: skip
    assert accuracy(model, rebuilt, x, y) > 0.95


def test_bad_inputs() -> None:
    model, x, y = _problem()
    n = ParamLayout.from_module(model).numel
    g = torch.Generator()
    with pytest.raises(ValueError, match="proxy"):
        steal_from_proxy(model, torch.zeros(n + 1), x, y, epochs=1, generator=g)
    with pytest.raises(ValueError, match="epochs"):
        steal_from_proxy(model, torch.zeros(n), x, y, epochs=-1, generator=g)
    with pytest.raises(ValueError, match="init"):
        removed = torch.ones(n, dtype=torch.bool)
        steal_from_proxy(model, torch.zeros(n), x, y, epochs=1, generator=g, removed=removed)
    with pytest.raises(ValueError, match="non-empty"):
        steal_from_proxy(model, torch.zeros(n), x[:0], y[:0], epochs=1, generator=g)
