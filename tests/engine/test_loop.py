"""Round-loop behaviour: rejection of bad updates, dropout, hooks, schedules, sampling."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from fedshield.config import from_dict
from fedshield.engine import ClientUpdates, Hook, RoundContext, run_experiment
from fedshield.engine.loop import lr_at, sample_clients


def _raw(tmp_path: Path, **server: Any) -> dict[str, Any]:
    return {
        "name": "loop",
        "data": {"dataset": "digits", "num_clients": 6, "partition": "iid"},
        "model": {"name": "logreg"},
        "train": {"lr": 0.1, "batch_size": 32},
        "server": {"rounds": 3, "clients_per_round": 4, **server},
        "eval": {"per_client": False},
        "output": {"dir": str(tmp_path), "progress": False, "plot": False},
    }


class PoisonRow(Hook):
    """Client 0's upload becomes NaN whenever it is sampled."""

    name = "poison"

    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        u = updates.updates.clone()
        u[updates.client_ids == 0] = float("nan")
        return updates.replace(updates=u)


def test_nonfinite_updates_are_rejected_and_recorded(tmp_path: Path) -> None:
    res = run_experiment(from_dict(_raw(tmp_path, clients_per_round=6)), hooks=[PoisonRow()])
    assert torch.isfinite(res.params).all()
    for rec in res.history:
        assert rec["rejected"] == [
            {"client": 0, "reason": "update has non-finite values (NaN/Inf)"}
        ]
        assert rec["num_aggregated"] == 5
    assert res.final_metrics["rejected_updates"] == 3
    assert res.final_metrics["final_test_accuracy"] > 0.5  # the rest still trained


class Recorder(Hook):
    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.aggregates: list[torch.Tensor] = []

    def on_round_start(self, ctx: RoundContext) -> None:
        self.calls.append("start")

    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        self.calls.append("local")
        return updates

    def before_aggregation(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        self.calls.append("before")
        ctx.metrics["mean_norm"] = float(updates.updates.norm(dim=1).mean())
        return updates

    def after_aggregation(self, ctx: RoundContext, aggregate: torch.Tensor) -> torch.Tensor:
        self.calls.append("after")
        self.aggregates.append(aggregate.clone())
        return aggregate

    def on_round_end(self, ctx: RoundContext, record: dict[str, Any]) -> None:
        self.calls.append("end")


def test_hooks_run_in_order_and_record_metrics(tmp_path: Path) -> None:
    hook = Recorder()
    res = run_experiment(from_dict(_raw(tmp_path)), hooks=[hook])
    assert hook.calls == ["start", "local", "before", "after", "end"] * 3
    assert all(rec["mean_norm"] > 0 for rec in res.history)


def test_aggregate_is_the_sample_weighted_mean(tmp_path: Path) -> None:
    """FedAvg: global_{r+1} = global_r + sum_k n_k (w_k - global_r) / sum_k n_k."""
    seen: list[ClientUpdates] = []

    class Capture(Hook):
        def before_aggregation(self, ctx: RoundContext, u: ClientUpdates) -> ClientUpdates:
            seen.append(u)
            return u

    hook = Recorder()
    run_experiment(from_dict(_raw(tmp_path)), hooks=[Capture(), hook])
    for u, agg in zip(seen, hook.aggregates, strict=True):
        n = u.num_samples.to(torch.float64)
        expected = (n[:, None] * u.updates.double()).sum(0) / n.sum()
        assert torch.allclose(agg.double(), expected, atol=1e-7)


class WrongShape(Hook):
    name = "wrong-shape"

    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        return updates.replace(updates=updates.updates[:, :-1])


def test_hook_returning_wrong_shape_names_the_hook(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="wrong-shape"):
        run_experiment(from_dict(_raw(tmp_path)), hooks=[WrongShape()])


def test_dropout_everyone_keeps_the_model(tmp_path: Path) -> None:
    raw = _raw(tmp_path, dropout=0.99, clients_per_round=1)
    res = run_experiment(from_dict(raw))
    dropped = [r for r in res.history if r["num_reporting"] == 0]
    assert dropped, "with p=0.99 and one client per round some round has nobody reporting"
    assert all(r["num_aggregated"] == 0 for r in dropped)


def test_dropout_rate_is_close_to_p() -> None:
    """Seeded statistical check: 2000 draws at p=0.3, tolerance 4 standard deviations."""
    cfg = from_dict(
        {"data": {"num_clients": 100}, "server": {"clients_per_round": 20, "dropout": 0.3}}
    )
    dropped = sum(20 - len(sample_clients(cfg, r)[1]) for r in range(100))
    sd = math.sqrt(2000 * 0.3 * 0.7)
    assert abs(dropped - 600) < 4 * sd


def test_sampling_is_seeded_and_without_replacement() -> None:
    cfg = from_dict({"data": {"num_clients": 50}, "server": {"clients_per_round": 7}})
    a, _ = sample_clients(cfg, 4)
    b, _ = sample_clients(cfg, 4)
    c, _ = sample_clients(cfg, 5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(set(a.tolist())) == 7 and a.min() >= 0 and a.max() < 50
    frac = from_dict(
        {"data": {"num_clients": 50}, "server": {"clients_per_round": 0, "client_fraction": 0.2}}
    )
    assert len(sample_clients(frac, 0)[0]) == 10


def test_lr_schedules() -> None:
    def t(**kw: Any) -> Any:
        return from_dict({"train": {"lr": 0.1, **kw}}).train

    assert lr_at(t(), 7, 10) == 0.1
    assert lr_at(t(lr_schedule="step", lr_decay=0.5, lr_step_rounds=3), 7, 10) == 0.1 * 0.25
    assert lr_at(t(lr_schedule="exponential", lr_decay=0.9), 2, 10) == pytest.approx(0.081)
    cos = t(lr_schedule="cosine", lr_min=0.01)
    assert lr_at(cos, 0, 11) == pytest.approx(0.1)
    assert lr_at(cos, 5, 11) == pytest.approx(0.055)
    assert lr_at(cos, 10, 11) == pytest.approx(0.01)


def test_user_arrays_and_model_factory(tmp_path: Path) -> None:
    """Any user data and nn.Module factory run through the same engine."""
    from torch import nn

    from fedshield.data import from_arrays

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    ds = from_arrays(x[:300], y[:300], x[300:], y[300:], name="toy")

    def factory(shape: tuple[int, ...], k: int) -> nn.Module:
        return nn.Sequential(nn.Linear(shape[0], 8), nn.Tanh(), nn.Linear(8, k))

    raw = _raw(tmp_path, rounds=15)
    raw["train"] = {"lr": 0.3, "batch_size": 10, "local_epochs": 3}
    res = run_experiment(from_dict(raw), dataset=ds, model=factory)
    assert res.final_metrics["final_test_accuracy"] > 0.9  # linearly separable
