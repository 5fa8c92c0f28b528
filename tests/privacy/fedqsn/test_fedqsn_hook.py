"""FedQSN in the round loop: degenerate = FedAvg, per-coordinate merge by hand, removed
units never trained, master full precision, config checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from fedshield.config import ConfigError, from_dict
from fedshield.engine import ClientUpdates, Hook, RoundContext, run_experiment
from fedshield.engine.layout import ParamLayout
from fedshield.engine.seeding import Stream, torch_generator
from fedshield.privacy.fedqsn.hook import client_proxy
from fedshield.privacy.fedqsn.masks import coordinate_mask, server_mask, unit_groups
from fedshield.privacy.fedqsn.merge import merge_per_coordinate
from fedshield.privacy.fedqsn.quantize import quantize_dequantize


def _small(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(),
        nn.Linear(12, num_classes),
    )  # fmt: skip


def _raw(tmp_path: Path, rounds: int = 3, backend: str = "vmap", **q: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "qsn",
        "data": {"dataset": "digits", "num_clients": 6, "partition": "iid"},
        "train": {"lr": 0.1, "batch_size": 32, "momentum": 0.5},
        "server": {"rounds": rounds, "clients_per_round": 4},
        "engine": {"backend": backend},
        "eval": {"per_client": False},
        "output": {"dir": str(tmp_path), "progress": False, "plot": False},
    }
    if q:
        raw["fedqsn"] = q
    return raw


def test_fedqsn_without_masks_or_quantization_is_fedavg(tmp_path: Path) -> None:
    base = run_experiment(from_dict(_raw(tmp_path)), model=_small)
    for backend in ("vmap", "sequential"):
        cfg = from_dict(_raw(tmp_path, backend=backend, enabled=True, quantizer="none"))
        qsn = run_experiment(cfg, model=_small)
        assert torch.allclose(qsn.params, base.params, atol=1e-5), backend
        assert qsn.final_metrics["fedqsn"]["revealed_fraction_mean"] == 1.0


class _Capture(Hook):
    """Records the round's global model and the updates that reach aggregation."""

    name = "capture"

    def __init__(self) -> None:
        self.seen: list[tuple[torch.Tensor, ClientUpdates]] = []

    def before_aggregation(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        self.seen.append((ctx.global_params.clone(), updates))
        return updates


@pytest.mark.parametrize("backend", ["vmap", "sequential"])
def test_merge_is_the_per_coordinate_mean_over_receivers(tmp_path: Path, backend: str) -> None:
    q = {"enabled": True, "p1": 0.25, "p2": 0.5, "quantizer": "nf", "bits": 3}
    cfg = from_dict(_raw(tmp_path, rounds=1, backend=backend, **q))
    cap = _Capture()
    res = run_experiment(cfg, model=_small, hooks=[cap])
    ((master, ups),) = cap.seen
    net = _small((1, 8, 8), 10)
    layout = ParamLayout.from_module(net)
    groups = unit_groups(net, (1, 8, 8))
    server = server_mask(groups, 0.25, torch_generator(cfg.seed, Stream.FEDQSN_SERVER))
    received = torch.stack(
        [
            coordinate_mask(
                layout, groups,
                list(client_proxy(cfg, master, layout, groups, server, 0, int(k)).unit_masks),
            )
            for k in ups.client_ids
        ]
    )  # fmt: skip
    # the clients changed only what they received
    assert bool((ups.updates[~received] == 0).all())
    want = merge_per_coordinate(master, ups.updates, received, ups.weights)
    assert torch.allclose(res.params, want, atol=1e-6)
    # units the server mask removes are never trained: their parameters keep the initial
    # values exactly
    never = ~received.any(0)
    assert int(never.sum()) > 0
    assert torch.equal(res.params[never], master[never])


def test_master_stays_full_precision_and_metrics_are_recorded(tmp_path: Path) -> None:
    q = {"enabled": True, "p1": 0.25, "p2": 0.25, "quantizer": "nf", "bits": 2}
    res = run_experiment(from_dict(_raw(tmp_path, **q)), model=_small)
    w = res.params[:1024]  # the first layer's weight
    assert not torch.allclose(quantize_dequantize(w, bits=2, block_size=64), w, atol=1e-4)
    rec = res.history[-1]["fedqsn"]
    assert 0 < rec["sent_fraction"] < 1
    assert 0 < rec["bytes_sent"] < rec["bytes_fedavg"] / 4  # masks and 3-bit codes
    assert 0 < rec["relative_l2_error"] < 0.5
    f = res.final_metrics["fedqsn"]
    assert 0 < f["revealed_fraction_mean"] <= f["revealed_fraction_max"] < 1


def test_config_rejects_what_fedqsn_cannot_combine_with(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="aggregator"):
        raw = _raw(tmp_path, enabled=True)
        raw["server"]["aggregator"] = "median"
        from_dict(raw)
    with pytest.raises(ConfigError, match="backend"):
        from_dict(_raw(tmp_path, backend="fused", enabled=True))
    with pytest.raises(ConfigError, match="p1"):
        from_dict(_raw(tmp_path, enabled=True, p1=1.0))


def test_transformer_units_attention_output_and_feed_forward(tmp_path: Path) -> None:
    from fedshield.data import from_arrays
    from fedshield.models import tiny_transformer

    g = torch.Generator().manual_seed(0)
    x = torch.randint(2, 30, (240, 16), generator=g).float()
    y = (x[:, 0] > 15).long()
    ds = from_arrays(x[:200], y[:200], x[200:], y[200:], name="tokens")

    def factory(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return tiny_transformer(input_shape, num_classes, d_model=16, heads=2, ffn=32)

    net = factory((16,), 2)
    layout = ParamLayout.from_module(net)
    groups = unit_groups(net, (16,))
    assert [gr.layer for gr in groups] == [
        "blocks.0.attn_out", "blocks.0.ff1", "blocks.1.attn_out", "blocks.1.ff1",
    ]  # fmt: skip
    units = [torch.arange(gr.num_units) % 2 == 0 for gr in groups]
    keep = coordinate_mask(layout, groups, units)
    w = keep[layout.slices["blocks.0.attn_out.weight"]].view(16, 16)
    assert w[0].all() and not w[1].any()  # rows only: the residual stream reads them
    assert keep[layout.slices["blocks.0.ff2.weight"]].view(16, 32)[:, 1].logical_not().all()
    raw = _raw(tmp_path, rounds=2, enabled=True, p1=0.25, p2=0.25, bits=4)
    raw["data"] = {"dataset": "digits", "num_clients": 4, "partition": "iid"}
    cap = _Capture()
    res = run_experiment(from_dict(raw), dataset=ds, model=factory, hooks=[cap])
    master0 = cap.seen[0][0]
    server = server_mask(groups, 0.25, torch_generator(0, Stream.FEDQSN_SERVER))
    never = ~coordinate_mask(layout, groups, server)
    assert int(never.sum()) > 0
    assert torch.equal(res.params[never], master0[never])
    assert torch.isfinite(res.params).all()


@pytest.mark.parametrize("backend", ["vmap", "sequential"])
def test_configured_subset_is_all_clients_train(tmp_path: Path, backend: str) -> None:
    q = {"enabled": True, "p1": 0.25, "p2": 0.25, "trainable": ["5."]}  # the head only
    cap = _Capture()
    run_experiment(
        from_dict(_raw(tmp_path, rounds=1, backend=backend, **q)), model=_small, hooks=[cap]
    )
    ((_, ups),) = cap.seen
    layout = ParamLayout.from_module(_small((1, 8, 8), 10))
    head = torch.zeros(layout.numel, dtype=torch.bool)
    head[layout.slices["5.weight"]] = True
    head[layout.slices["5.bias"]] = True
    assert bool((ups.updates[:, ~head] == 0).all())
    assert bool((ups.updates[:, head] != 0).any())
    with pytest.raises(ValueError, match="matches no parameter"):
        run_experiment(
            from_dict(_raw(tmp_path, rounds=1, enabled=True, trainable=["nope"])), model=_small
        )
