"""Tests for fedshield.engine.ParamLayout: slices, layers, flatten/unflatten, errors."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fedshield.engine import ParamLayout


def _net() -> nn.Sequential:
    """Linear(3, 2) -> ReLU -> Linear(2, 1): 6 + 2 + 2 + 1 = 11 parameters."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))


def test_from_module_hand_checked() -> None:
    # Execute
    layout = ParamLayout.from_module(_net())

    # Assert
    assert layout.names == ("0.weight", "0.bias", "2.weight", "2.bias")
    assert layout.shapes == (
        torch.Size([2, 3]),
        torch.Size([2]),
        torch.Size([1, 2]),
        torch.Size([1]),
    )
    assert dict(layout.slices) == {
        "0.weight": slice(0, 6),
        "0.bias": slice(6, 8),
        "2.weight": slice(8, 10),
        "2.bias": slice(10, 11),
    }
    assert dict(layout.layers) == {"0": slice(0, 8), "2": slice(8, 11)}
    assert layout.numel == 11
    assert layout.dtype == torch.float32


def test_flatten_hand_checked_order() -> None:
    # Prepare
    layout = ParamLayout.from_module(_net())
    state = {
        "0.weight": torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        "0.bias": torch.tensor([7.0, 8.0]),
        "2.weight": torch.tensor([[9.0, 10.0]]),
        "2.bias": torch.tensor([11.0]),
    }

    # Execute
    v = layout.flatten(state)

    # Assert: row-major, in names order
    torch.testing.assert_close(v, torch.arange(1.0, 12.0), rtol=0, atol=0)


def test_flatten_unflatten_round_trip_exact() -> None:
    # Prepare
    net = _net()
    layout = ParamLayout.from_module(net)

    # Execute
    v = layout.flatten(net)
    parts = layout.unflatten(v)

    # Assert
    assert v.shape == (11,)
    assert list(parts) == list(layout.names)
    for name, p in net.named_parameters():
        assert torch.equal(parts[name], p.detach())
    assert torch.equal(layout.flatten(parts), v)


def test_unflatten_returns_views_of_the_vector() -> None:
    # Prepare
    layout = ParamLayout.from_module(_net())
    v = torch.zeros(layout.numel)

    # Execute
    parts = layout.unflatten(v)
    v[10] = 5.0

    # Assert
    assert parts["2.bias"].item() == 5.0


def test_flatten_module_and_state_dict_agree() -> None:
    # Prepare
    net = _net()
    layout = ParamLayout.from_module(net)

    # Execute
    from_module = layout.flatten(net)
    from_state = layout.flatten(net.state_dict())

    # Assert
    assert torch.equal(from_module, from_state)
    assert not from_module.requires_grad


def test_batched_flatten_unflatten() -> None:
    # Prepare: 4 stacked copies of the parameters, each scaled by its client id
    net = _net()
    layout = ParamLayout.from_module(net)
    C = 4
    scale = torch.arange(1.0, C + 1)
    stacked = {
        n: p.detach().unsqueeze(0) * scale.view(-1, *([1] * p.dim()))
        for n, p in net.named_parameters()
    }

    # Execute
    m = layout.flatten(stacked)
    parts = layout.unflatten(m)

    # Assert
    assert m.shape == (C, layout.numel)
    base = layout.flatten(net)
    for k in range(C):
        torch.testing.assert_close(m[k], base * (k + 1), rtol=0, atol=0)
    for name, shape in zip(layout.names, layout.shapes, strict=True):
        assert parts[name].shape == (C, *shape)
        assert torch.equal(parts[name], stacked[name])


def test_load_into_then_flatten_gives_the_vector() -> None:
    # Prepare
    net = _net()
    layout = ParamLayout.from_module(net)
    v = torch.arange(layout.numel, dtype=torch.float32) / 10

    # Execute
    layout.load_into(net, v)

    # Assert
    assert torch.equal(layout.flatten(net), v)
    assert torch.equal(net[0].bias.detach(), torch.tensor([0.6, 0.7]))
    out = net(torch.zeros(1, 3))  # relu([0.6, 0.7]) @ [0.8, 0.9] + 1.0 = 2.11
    torch.testing.assert_close(out, torch.tensor([[2.11]]))


def test_frozen_parameters_are_excluded() -> None:
    # Prepare
    net = _net()
    net[0].weight.requires_grad_(False)

    # Execute
    layout = ParamLayout.from_module(net)
    v = layout.flatten(net)

    # Assert
    assert layout.names == ("0.bias", "2.weight", "2.bias")
    assert layout.numel == 5
    assert dict(layout.layers) == {"0": slice(0, 2), "2": slice(2, 5)}
    torch.testing.assert_close(v[:2], net[0].bias.detach(), rtol=0, atol=0)


def test_load_into_leaves_frozen_parameters_alone() -> None:
    # Prepare
    net = _net()
    net[0].weight.requires_grad_(False)
    frozen_before = net[0].weight.detach().clone()
    layout = ParamLayout.from_module(net)

    # Execute
    layout.load_into(net, torch.ones(layout.numel))

    # Assert
    assert torch.equal(net[0].weight, frozen_before)
    assert torch.equal(net[0].bias.detach(), torch.ones(2))


def test_from_module_records_dtype() -> None:
    # Execute
    layout = ParamLayout.from_module(nn.Linear(2, 2).double())

    # Assert
    assert layout.dtype == torch.float64


# --------------------------------------------------------------------------- errors


def test_flatten_missing_key() -> None:
    # Prepare
    net = _net()
    layout = ParamLayout.from_module(net)
    state = dict(net.named_parameters())
    del state["2.weight"]

    # Execute / Assert
    with pytest.raises(KeyError, match=r"2\.weight"):
        layout.flatten(state)


def test_flatten_wrong_shape() -> None:
    # Prepare
    net = _net()
    layout = ParamLayout.from_module(net)
    state = {n: p.detach() for n, p in net.named_parameters()}
    state["0.weight"] = torch.zeros(3, 2)

    # Execute / Assert
    with pytest.raises(ValueError, match=r"0\.weight.*\(3, 2\).*\(2, 3\)"):
        layout.flatten(state)


def test_flatten_mixed_batch_dimensions() -> None:
    # Prepare
    net = _net()
    layout = ParamLayout.from_module(net)
    state = {n: p.detach() for n, p in net.named_parameters()}
    state["2.bias"] = torch.zeros(5, 1)

    # Execute / Assert
    with pytest.raises(ValueError, match="batch dimension"):
        layout.flatten(state)


@pytest.mark.parametrize("shape", [(10,), (12,), (2, 10), (2, 3, 11)])
def test_unflatten_wrong_length(shape: tuple[int, ...]) -> None:
    # Prepare
    layout = ParamLayout.from_module(_net())

    # Execute / Assert
    with pytest.raises(ValueError, match=r"expected \(11,\)"):
        layout.unflatten(torch.zeros(shape))


def test_load_into_wrong_length() -> None:
    # Prepare
    net = _net()
    layout = ParamLayout.from_module(net)
    before = layout.flatten(net)

    # Execute / Assert
    with pytest.raises(ValueError, match="11"):
        layout.load_into(net, torch.zeros(12))
    assert torch.equal(layout.flatten(net), before)


@pytest.mark.parametrize(
    "model",
    [nn.ReLU(), nn.Sequential(nn.Linear(2, 2).requires_grad_(False))],
    ids=["no parameters", "all frozen"],
)
def test_no_trainable_parameters(model: nn.Module) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="no trainable parameters"):
        ParamLayout.from_module(model)


# --------------------------------------------------------------------------- properties


@st.composite
def _mlp(draw: st.DrawFn) -> nn.Sequential:
    widths = draw(st.lists(st.integers(1, 6), min_size=2, max_size=5))
    biases = draw(st.lists(st.booleans(), min_size=len(widths) - 1, max_size=len(widths) - 1))
    layers: list[nn.Module] = []
    for (a, b), bias in zip(itertools.pairwise(widths), biases, strict=True):
        layers += [nn.Linear(a, b, bias=bias), nn.Tanh()]
    return nn.Sequential(*layers)


@settings(max_examples=50, deadline=None)
@given(model=_mlp(), batch=st.one_of(st.none(), st.integers(1, 3)), seed=st.integers(0, 2**31))
def test_flatten_of_unflatten_is_identity(
    model: nn.Sequential, batch: int | None, seed: int
) -> None:
    # Prepare
    layout = ParamLayout.from_module(model)
    expected = sum(p.numel() for p in model.parameters())
    shape = (layout.numel,) if batch is None else (batch, layout.numel)
    v = torch.randn(shape, generator=torch.Generator().manual_seed(seed))

    # Execute
    again = layout.flatten(layout.unflatten(v))

    # Assert
    assert layout.numel == expected
    assert torch.equal(again, v)
    covered = sorted((s.start, s.stop) for s in layout.slices.values())
    assert covered[0][0] == 0 and covered[-1][1] == layout.numel
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))
