"""Tests for fedshield.privacy.fedqsn.masks (FedQSN structured masks, arXiv 2508.18911)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from fedshield.engine.layout import ParamLayout
from fedshield.models.reference import cnn, logreg, mlp_2nn
from fedshield.privacy.fedqsn.masks import (
    UnitGroup,
    apply_mask,
    client_mask,
    coordinate_mask,
    draw_unit_mask,
    revealed_fraction,
    server_mask,
    unit_groups,
)

MNIST = (1, 28, 28)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tiny(act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), act(), nn.Linear(4, 2))


def _masked_copy(model: nn.Module, flat: Tensor) -> nn.Module:
    out = copy.deepcopy(model)
    ParamLayout.from_module(out).load_into(out, flat)
    return out


# --------------------------------------------------------------------------- unit_groups


def test_unit_groups_mlp_2nn() -> None:
    groups = unit_groups(mlp_2nn(MNIST, 10), MNIST)
    # Sequential(Flatten, Linear(784,200), ReLU, Linear(200,200), ReLU, Linear(200,10))
    assert groups == [
        UnitGroup("1", 200, ("1.weight", "1.bias"), "3.weight", 1, 1),
        UnitGroup("3", 200, ("3.weight", "3.bias"), "5.weight", 1, 1),
    ]


def test_unit_groups_cnn() -> None:
    model = cnn(MNIST, 10)
    groups = unit_groups(model, MNIST)
    # Conv(1,32,5,p2) ReLU Pool Conv(32,64,5,p2) ReLU Pool Flatten Linear(F,512) ReLU Linear
    # 28 -> pool -> 14 -> pool -> 7: conv2's 64 channels reach Linear 7 as 7*7 = 49 columns
    assert model[7].in_features == 64 * 49
    assert groups == [
        UnitGroup("0", 32, ("0.weight", "0.bias"), "3.weight", 1, 1),
        UnitGroup("3", 64, ("3.weight", "3.bias"), "7.weight", 1, 49),
        UnitGroup("7", 512, ("7.weight", "7.bias"), "9.weight", 1, 1),
    ]


def test_unit_groups_nested_no_bias_and_single_layer() -> None:
    model = nn.Sequential(nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU()), nn.Linear(4, 2))
    assert unit_groups(model, (3,)) == [UnitGroup("0.0", 4, ("0.0.weight",), "1.weight", 1, 1)]
    assert unit_groups(logreg(MNIST, 10), MNIST) == []


def test_unit_groups_rejects_batchnorm_and_other_parametric() -> None:
    bn = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4, 2)
    )
    with pytest.raises(ValueError, match="BatchNorm2d"):
        unit_groups(bn, (1, 6, 6))
    emb = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="Embedding"):
        unit_groups(emb, (3,))


def test_unit_groups_rejects_non_sequential_structures() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 4)
            self.b = nn.Linear(4, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.b(self.a(x))

    with pytest.raises(ValueError, match="Sequential"):
        unit_groups(Net(), (3,))
    nested = nn.Sequential(Net(), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="Net"):
        unit_groups(nested, (3,))
    lin_to_conv = nn.Sequential(nn.Linear(4, 8), nn.Unflatten(1, (2, 2, 2)), nn.Conv2d(2, 3, 1))
    with pytest.raises(ValueError, match="feeds Conv2d"):
        unit_groups(lin_to_conv, (4,))


# --------------------------------------------------------------------------- drawing


def test_draw_unit_mask_removes_exact_count() -> None:
    m = draw_unit_mask(10, 0.3, _gen())
    assert m.dtype == torch.bool and m.shape == (10,)
    assert int((~m).sum()) == 3
    assert int((~draw_unit_mask(8, 0.5, _gen(1))).sum()) == 4


def test_draw_unit_mask_only_eligible_removed() -> None:
    among = torch.tensor([True] * 6 + [False] * 4)
    for seed in range(20):
        m = draw_unit_mask(10, 0.5, _gen(seed), among=among)
        assert not m[6:].any()  # ineligible stay removed
        assert int(m[:6].sum()) == 3  # round(0.5 * 6) = 3 of the 6 eligible removed
    assert torch.equal(among, torch.tensor([True] * 6 + [False] * 4))  # not modified


def test_draw_unit_mask_reproducible_and_random() -> None:
    a = draw_unit_mask(100, 0.5, _gen(7))
    b = draw_unit_mask(100, 0.5, _gen(7))
    c = draw_unit_mask(100, 0.5, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_draw_unit_mask_uniform() -> None:
    # each of 4 units is removed with probability 2/4 when p = 0.5
    g = _gen(3)
    removed = torch.stack([~draw_unit_mask(4, 0.5, g) for _ in range(4000)]).float().mean(0)
    assert torch.allclose(removed, torch.full((4,), 0.5), atol=0.04)


def test_draw_unit_mask_p0_keeps_all_and_draws_nothing() -> None:
    g = _gen(5)
    state = g.get_state()
    assert draw_unit_mask(7, 0.0, g).all()
    assert torch.equal(g.get_state(), state)


def test_draw_unit_mask_keeps_at_least_one() -> None:
    # round(0.9 * 3) = 3 == n: remove only 2
    assert int(draw_unit_mask(3, 0.9, _gen()).sum()) == 1
    among = torch.tensor([False, True, False, False])
    assert torch.equal(draw_unit_mask(4, 0.9, _gen(), among=among), among)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan"), True, "0.5"])
def test_draw_unit_mask_bad_p(p: object) -> None:
    with pytest.raises(ValueError, match="p must"):
        draw_unit_mask(4, p, _gen())  # type: ignore[arg-type]


def test_draw_unit_mask_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_units"):
        draw_unit_mask(0, 0.5, _gen())
    with pytest.raises(ValueError, match="among"):
        draw_unit_mask(4, 0.5, _gen(), among=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="among"):
        draw_unit_mask(4, 0.5, _gen(), among=torch.ones(4))
    with pytest.raises(ValueError, match="among"):
        draw_unit_mask(4, 0.5, _gen(), among=torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="generator"):
        draw_unit_mask(4, 0.5, 0)  # type: ignore[arg-type]


def test_server_and_client_masks() -> None:
    groups = unit_groups(mlp_2nn(MNIST, 10), MNIST)
    g = _gen(11)
    server = server_mask(groups, 0.25, g)
    assert [int(s.sum()) for s in server] == [150, 150]  # 200 - 50
    client = client_mask(server, 0.2, g)
    assert [int(c.sum()) for c in client] == [120, 120]  # 150 - 30
    for s, c in zip(server, client, strict=True):
        assert not (c & ~s).any()  # a subset of the server mask
    with pytest.raises(ValueError, match="p1"):
        server_mask(groups, 1.0, g)
    with pytest.raises(ValueError, match="p2"):
        client_mask(server, -0.5, g)


# --------------------------------------------------------------------------- coordinates

UNITS_TFTF = torch.tensor([True, False, True, False])


def test_coordinate_mask_tiny_hand_computed() -> None:
    model = _tiny()
    layout = ParamLayout.from_module(model)
    groups = unit_groups(model, (3,))
    cm = coordinate_mask(layout, groups, [UNITS_TFTF])
    assert cm.dtype == torch.bool and cm.shape == (26,)
    # 2 rows * 3 + 2 biases + 2 columns * 2 outputs
    assert int((~cm).sum()) == 12
    # 0.weight [0:12] rows 1, 3; 0.bias [12:16] entries 1, 3; 2.weight [16:24] (2x4)
    # columns 1, 3 -> 16 + r * 4 + c
    expected = [3, 4, 5, 9, 10, 11, 13, 15, 17, 19, 21, 23]
    assert (~cm).nonzero().squeeze(1).tolist() == expected
    assert layout.slices["0.weight"] == slice(0, 12)
    assert layout.slices["0.bias"] == slice(12, 16)
    assert layout.slices["2.weight"] == slice(16, 24)
    assert cm[layout.slices["2.bias"]].all()


def test_coordinate_mask_conv_to_linear_columns() -> None:
    model = cnn(MNIST, 10)
    layout = ParamLayout.from_module(model)
    groups = unit_groups(model, MNIST)
    masks = [torch.ones(g.num_units, dtype=torch.bool) for g in groups]
    masks[1][5] = False  # channel 5 of conv "3"
    cm = coordinate_mask(layout, groups, masks)
    w7 = cm[layout.slices["7.weight"]].view(512, 64 * 49)
    off_cols = (~w7).any(0).nonzero().squeeze(1)
    assert off_cols.tolist() == list(range(5 * 49, 6 * 49))
    assert not w7[:, 5 * 49 : 6 * 49].any()
    assert not cm[layout.slices["3.weight"]].view(64, 32, 5, 5)[5].any()
    assert not cm[layout.slices["3.bias"]][5]
    # 32 * 25 + 1 (conv row and bias) + 512 * 49 (Linear columns)
    assert int((~cm).sum()) == 32 * 25 + 1 + 512 * 49


def test_coordinate_mask_bad_masks() -> None:
    model = _tiny()
    layout = ParamLayout.from_module(model)
    groups = unit_groups(model, (3,))
    with pytest.raises(ValueError, match="unit masks"):
        coordinate_mask(layout, groups, [])
    with pytest.raises(ValueError, match="bool"):
        coordinate_mask(layout, groups, [torch.ones(3, dtype=torch.bool)])
    with pytest.raises(ValueError, match="bool"):
        coordinate_mask(layout, groups, [torch.ones(4)])


def _tiny_reference(model: nn.Sequential, x: Tensor, act: Tensor) -> Tensor:
    """Activation masking: hidden activations multiplied by ``act``."""
    w1, b1, w2, b2 = (p.detach() for p in model.parameters())
    h = model[1](x @ w1.T + b1) * act
    return h @ w2.T + b2


@pytest.mark.parametrize("act", [nn.ReLU, nn.Sigmoid])
def test_apply_mask_tiny_equals_activation_masking(act: type[nn.Module]) -> None:
    # with Sigmoid a removed unit's activation is sigmoid(0) = 0.5, so only the removed
    # columns of the next layer make it match activation masking
    model = _tiny(act)
    layout = ParamLayout.from_module(model)
    groups = unit_groups(model, (3,))
    flat = layout.flatten(model)
    x = torch.randn(5, 3, generator=_gen(1))

    masked = apply_mask(flat, layout, groups, [UNITS_TFTF])
    assert torch.equal(layout.flatten(model), flat)  # input not modified
    out = _masked_copy(model, masked)(x)
    ref = _tiny_reference(model, x, UNITS_TFTF.float())
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)

    scaled = apply_mask(flat, layout, groups, [UNITS_TFTF], scale=True)
    out_s = _masked_copy(model, scaled)(x)
    ref_s = _tiny_reference(model, x, UNITS_TFTF.float() * 4 / 2)
    torch.testing.assert_close(out_s, ref_s, rtol=0, atol=1e-6)
    # kept columns doubled, exactly; bias of the output layer not scaled
    w2, b2 = flat[16:24].view(2, 4), flat[24:26]
    assert torch.equal(w2, dict(model.named_parameters())["2.weight"].detach())
    assert torch.equal(scaled[16:24].view(2, 4)[:, [0, 2]], 2 * w2[:, [0, 2]])
    assert torch.equal(scaled[24:26], b2)


def test_apply_mask_ignores_removed_coordinates() -> None:
    # nothing of a removed unit is sent: garbage there does not change the proxy
    model = _tiny()
    layout = ParamLayout.from_module(model)
    groups = unit_groups(model, (3,))
    flat = layout.flatten(model)
    cm = coordinate_mask(layout, groups, [UNITS_TFTF])
    garbage = flat.clone()
    garbage[~cm] = 1e6
    for scale in (False, True):
        a = apply_mask(flat, layout, groups, [UNITS_TFTF], scale=scale)
        b = apply_mask(garbage, layout, groups, [UNITS_TFTF], scale=scale)
        assert torch.equal(a, b)
        assert not a[~cm].any()


@pytest.mark.parametrize("scale", [False, True])
def test_apply_mask_cnn_equals_channel_masking(scale: bool) -> None:
    torch.manual_seed(0)
    model = cnn(MNIST, 10).eval()
    layout = ParamLayout.from_module(model)
    groups = unit_groups(model, MNIST)
    g = _gen(4)
    masks = client_mask(server_mask(groups, 0.25, g), 0.5, g)
    # kept units: 32 -> 24 -> 12, 64 -> 48 -> 24, 512 -> 384 -> 192
    assert [int(m.sum()) for m in masks] == [12, 24, 192]
    x = torch.randn(3, *MNIST, generator=_gen(9))

    proxy = _masked_copy(
        model, apply_mask(layout.flatten(model), layout, groups, masks, scale=scale)
    )
    with torch.no_grad():
        out = proxy(x)

    # reference: the full model with the removed units' activations zeroed after each ReLU
    handles = []
    for relu, grp, m in zip(("1", "4", "8"), groups, masks, strict=True):
        factor = grp.num_units / int(m.sum()) if scale else 1.0
        mult = m.float() * factor

        def hook(_: nn.Module, __: tuple[Tensor, ...], y: Tensor, mult: Tensor = mult) -> Tensor:
            return y * mult.view(1, -1, *([1] * (y.dim() - 2)))

        handles.append(dict(model.named_modules())[relu].register_forward_hook(hook))
    with torch.no_grad():
        ref = model(x)
    for h in handles:
        h.remove()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the masking matters at all
        assert not torch.allclose(model(x), ref, rtol=1e-3, atol=1e-3)


def test_apply_mask_bad_params() -> None:
    model = _tiny()
    layout = ParamLayout.from_module(model)
    groups = unit_groups(model, (3,))
    with pytest.raises(ValueError, match="params"):
        apply_mask(torch.zeros(25), layout, groups, [UNITS_TFTF])
    with pytest.raises(ValueError, match="params"):
        apply_mask(torch.zeros(2, 26), layout, groups, [UNITS_TFTF])
    with pytest.raises(ValueError, match="params"):
        apply_mask(torch.zeros(26, dtype=torch.long), layout, groups, [UNITS_TFTF])
    none = torch.zeros(4, dtype=torch.bool)
    assert not apply_mask(torch.ones(26), layout, groups, [none])[:16].any()
    with pytest.raises(ValueError, match="every unit"):
        apply_mask(torch.ones(26), layout, groups, [none], scale=True)


# --------------------------------------------------------------------------- revealed


def test_revealed_fraction_hand_computed() -> None:
    t, f = True, False
    masks = [
        torch.tensor([t, f, f, f, f]),
        torch.tensor([f, f, t, f, f]),
        torch.tensor([t, f, f, f, f]),
    ]
    assert revealed_fraction(masks) == pytest.approx(2 / 5)
    assert revealed_fraction([torch.ones(3, dtype=torch.bool)]) == 1.0
    assert revealed_fraction([torch.zeros(3, dtype=torch.bool)]) == 0.0


def test_revealed_fraction_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        revealed_fraction([])
    with pytest.raises(ValueError, match="same length"):
        revealed_fraction([torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool)])
    with pytest.raises(ValueError, match="bool"):
        revealed_fraction([torch.ones(3)])
