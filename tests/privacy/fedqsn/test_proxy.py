"""FedQSN proxies: nothing of a removed unit is sent, the master stays full precision."""

from __future__ import annotations

import io
import struct

import pytest
import torch
from torch import nn

from fedshield.engine.layout import ParamLayout
from fedshield.privacy.fedqsn.masks import apply_mask, coordinate_mask, unit_groups
from fedshield.privacy.fedqsn.proxy import build_proxy, proxy_scale, quantized_names
from fedshield.privacy.fedqsn.quantize import max_block_error, quantize_blockwise


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))


def _setup() -> tuple[nn.Sequential, ParamLayout, list, list[torch.Tensor], torch.Tensor]:
    model = _model()
    layout = ParamLayout.from_module(model)
    groups = unit_groups(model, (5,))
    units = [
        torch.tensor([True, False, True, True, False, True]),
        torch.tensor([False, True, True, True]),
    ]
    # distinct sentinel values, so a value's bytes identify its coordinate
    master = 1000.0 + torch.arange(layout.numel, dtype=torch.float32) * 0.5
    return model, layout, groups, units, master


def _floats_in(blob: bytes) -> set[bytes]:
    return {blob[i : i + 4] for i in range(len(blob) - 3)}


def test_serialized_proxy_has_no_value_of_a_removed_unit() -> None:
    _, layout, groups, units, master = _setup()
    proxy = build_proxy(master, layout, groups, units, quantizer="none")
    blob = proxy.to_bytes()
    windows = _floats_in(blob)
    keep = coordinate_mask(layout, groups, units)
    removed = master[~keep].tolist()
    kept = master[keep].tolist()
    # hand count: layer 1 removes 2 rows (5 w + 1 b each), layer 2 removes 1 row (6 + 1) and
    # reads only 4 kept inputs, layer 3 reads 3 kept inputs
    assert len(removed) == 2 * 6 + 4 * 2 + 1 * 7 - 1 * 2 + 3 * 1
    assert all(struct.pack("<f", v) not in windows for v in removed)
    assert all(struct.pack("<f", v) in windows for v in kept)
    payload = torch.load(io.BytesIO(blob), weights_only=True)
    sent = sum(v.numel() for v in payload["values"].values())
    assert sent == int(keep.sum())


def test_quantized_proxy_sends_codes_of_kept_values_only() -> None:
    _, layout, groups, units, master = _setup()
    torch.manual_seed(1)
    master = torch.randn(layout.numel)
    proxy = build_proxy(master, layout, groups, units, quantizer="nf", bits=4, block_size=4)
    keep = coordinate_mask(layout, groups, units)
    names = quantized_names(layout)
    assert names == ("0.weight", "2.weight")  # the hidden layers' weights; not the head
    dense = proxy.materialize(layout, groups)
    masked = apply_mask(master, layout, groups, units)
    assert torch.equal(dense[~keep], torch.zeros(int((~keep).sum())))
    for name in layout.names:
        sl = layout.slices[name]
        got, want = dense[sl][keep[sl]], masked[sl][keep[sl]]
        if name in names:
            q = quantize_blockwise(want, bits=4, block_size=4)
            bound = max_block_error(q.codebook, q.absmax).repeat_interleave(4)[: want.numel()]
            assert bool(((got - want).abs() <= bound + 1e-6).all())
            assert not torch.equal(got, want)  # really quantized
        else:
            assert torch.equal(got, want)  # biases and the head in float32
    # bytes: codes (17 levels -> 5 bits) + 4 per block of the quantized kept weights,
    # 4 per float of the others, one bit per hidden unit
    expect = 0
    for name in layout.names:
        k = int(keep[layout.slices[name]].sum())
        if name in names:
            expect += -(-k * 5 // 8) + 4 * -(-k // 4)
        else:
            expect += 4 * k
    assert proxy.nbytes() == expect + 2  # 10 mask bits -> 2 bytes


def test_master_is_not_modified_and_scale_maps_back() -> None:
    _, layout, groups, units, master = _setup()
    before = master.clone()
    proxy = build_proxy(master, layout, groups, units, quantizer="none", scale=True)
    assert torch.equal(master, before)
    dense = proxy.materialize(layout, groups)
    keep = coordinate_mask(layout, groups, units)
    factor = proxy_scale(layout, groups, units)
    assert torch.allclose(dense[keep] / factor[keep], master[keep])
    # layer 2's kept input columns are scaled by 6 / 4 (in its kept rows 1-3; removed
    # coordinates have factor 1), the head's by 4 / 3
    sl = layout.slices["2.weight"]
    assert torch.allclose(factor[sl].view(4, 6)[1:, 0], torch.full((3,), 1.5))
    assert factor[sl].view(4, 6)[0].eq(1).all() and factor[sl].view(4, 6)[:, 1].eq(1).all()
    sl = layout.slices["4.weight"]
    assert torch.allclose(factor[sl].view(3, 4)[:, 1], torch.full((3,), 4 / 3))


def test_bad_quantizer_and_master() -> None:
    _, layout, groups, units, master = _setup()
    with pytest.raises(ValueError, match="quantizer"):
        build_proxy(master, layout, groups, units, quantizer="int4")
    with pytest.raises(ValueError, match="master"):
        build_proxy(master[:-1], layout, groups, units)
