"""FedRE in the round loop: budgets from PSI scores, layer-wise clip + noise of uploads,
per-sample (DP-SGD style) per-layer clipping, PDA-PAM as a rule, LDP-Fed, and whole runs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedshield.aggregators import pda_pam
from fedshield.aggregators.rules import RULES, AggregationContext
from fedshield.config import ConfigError, from_dict
from fedshield.data import DocumentDataset, load_documents
from fedshield.engine import LocalRecipe, ParamLayout
from fedshield.engine.dp_sgd import DPSGDTrainer
from fedshield.engine.hooks import ClientUpdates, RoundContext
from fedshield.engine.loop import run_experiment
from fedshield.models import unet
from fedshield.privacy.fedre.budget import layer_norms
from fedshield.privacy.fedre.hook import FedREHook, LDPFed


def _tiny(shape: tuple[int, ...], k: int) -> nn.Module:
    return unet(shape, k, width=2, depth=1)


@pytest.fixture(scope="module")
def docs() -> DocumentDataset:
    return load_documents(num_train=16, num_test=4, num_public=2, size=(32, 64))


def _cfg(tmp_path: Any, **sections: dict[str, Any]) -> Any:
    raw: dict[str, Any] = {
        "name": "fedre",
        "data": {"dataset": "documents", "num_clients": 4, "partition": "dirichlet", "alpha": 0.3},
        "model": {"name": "unet"},
        "train": {"lr": 0.05, "batch_size": 4},
        "server": {"rounds": 2, "clients_per_round": 3},
        "engine": {"backend": "vmap", "threads": 1},
        "output": {"dir": str(tmp_path), "progress": False},
    }
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return from_dict(raw)


def _ctx(cfg: Any, layout: ParamLayout, params: Tensor, r: int = 0) -> RoundContext:
    return RoundContext(
        round=r,
        num_rounds=cfg.server.rounds,
        config=cfg,
        layout=layout,
        global_params=params,
        sampled=torch.arange(cfg.data.num_clients),
        reporting=torch.arange(cfg.data.num_clients),
        lr=0.1,
        generator=torch.Generator().manual_seed(r),
    )


def _hook(
    tmp_path: Any, docs: DocumentDataset, **fedre: Any
) -> tuple[FedREHook, Any, ParamLayout, Tensor]:
    cfg = _cfg(tmp_path, privacy={"mode": "fedre"}, fedre=fedre)
    model = _tiny((1, 32, 64), 2)
    layout = ParamLayout.from_module(model)
    clients = [np.arange(k, 16, 4) for k in range(4)]
    hook = FedREHook(cfg, docs, clients, model, layout)
    return hook, cfg, layout, layout.flatten(model).clone()


def test_budgets_follow_eq6_and_sigma_eq9(tmp_path: Any, docs: DocumentDataset) -> None:
    hook, cfg, layout, params = _hook(tmp_path, docs, epsilon=10.0, sigma_scale=0.5)
    ctx = _ctx(cfg, layout, params)
    hook.on_round_start(ctx)
    assert hook._round_eps is not None and hook._round_sigma is not None
    S = hook.client_scores(torch.arange(4))
    L = len(layout.layers)
    assert S.shape == (4, L) and bool((S > 0).all())
    eps = hook._round_eps
    # sums to epsilon and inversely proportional to S_l, per client
    assert torch.allclose(eps.sum(1), torch.full((4,), 10.0, dtype=eps.dtype))
    prod = eps * S
    assert torch.allclose(prod, prod[:, :1].expand_as(prod), rtol=1e-9)
    delta_l = cfg.fedre.delta / L
    expect = 0.5 * math.sqrt(2 * cfg.server.rounds * math.log(1 / delta_l)) / eps
    assert torch.allclose(hook._round_sigma, expect, rtol=1e-9)


def test_uniform_budget_and_sigma_override(tmp_path: Any, docs: DocumentDataset) -> None:
    hook, cfg, layout, params = _hook(tmp_path, docs, budget="uniform", sigma=0.3)
    hook.on_round_start(_ctx(cfg, layout, params))
    L = len(layout.layers)
    assert hook._round_eps is not None and hook._round_sigma is not None
    assert torch.allclose(hook._round_eps, torch.full((4, L), 50.0 / L, dtype=torch.float64))
    assert torch.allclose(hook._round_sigma, torch.full((4, L), 0.3, dtype=torch.float64))


def test_uploads_are_clipped_per_layer_and_noised(tmp_path: Any, docs: DocumentDataset) -> None:
    # near-zero noise: every layer's norm is clipped to C_l
    hook, cfg, layout, params = _hook(tmp_path, docs, sigma=1e-12, clip=0.05)
    ctx = _ctx(cfg, layout, params)
    hook.on_round_start(ctx)
    gen = torch.Generator().manual_seed(0)
    raw = torch.randn(4, layout.numel, generator=gen)
    ups = ClientUpdates(
        client_ids=torch.arange(4),
        updates=raw,
        weights=torch.ones(4),
        num_samples=torch.full((4,), 4),
        loss=torch.zeros(4),
    )
    out = hook.after_local_training(ctx, ups).updates
    norms = layer_norms(out, list(layout.layers.values()))
    assert torch.allclose(norms, torch.full_like(norms, 0.05), rtol=1e-4)
    rec = ctx.metrics["fedre"]
    assert rec["clip_mode"] == "update" and len(rec["epsilon_l"]) == len(layout.layers)
    # real noise: the per-layer std is C_l * sigma_l (seeded statistical check, 10%)
    hook, cfg, layout, params = _hook(tmp_path, docs, sigma=2.0, clip=0.05)
    ctx = _ctx(cfg, layout, params)
    hook.on_round_start(ctx)
    zero = ups.replace(updates=torch.zeros(4, layout.numel))
    noisy = hook.after_local_training(ctx, zero).updates
    big = max(layout.layers.values(), key=lambda s: s.stop - s.start)
    assert abs(float(noisy[:, big].std()) - 0.1) < 0.01
    summary = hook.summary()
    assert summary["client_participations"] == [1, 1, 1, 1]
    assert summary["rdp_epsilon"]["max"] > 0


def test_per_sample_layer_clipping_matches_an_autograd_loop() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    layout = ParamLayout.from_module(model)
    x = torch.randn(5, 6) * 3
    y = torch.randint(0, 3, (5,))
    slices = list(layout.layers.values())
    clip = 0.3
    std = torch.zeros(layout.numel)
    trainer = DPSGDTrainer(
        model, layout, x, y, clip_norm=clip, noise_multiplier=0.0, seed=0,
        layer_slices=slices, noise_std=lambda k: std,
    )  # fmt: skip
    from fedshield.engine.batches import BatchPlan

    plan = BatchPlan(
        index=torch.arange(5).view(1, 1, 5),
        mask=torch.ones(1, 1, 5),
        counts=torch.tensor([[5]]),
    )
    start = layout.flatten(model).clone()
    res = trainer.train(start, plan, LocalRecipe(lr=1.0))
    total = torch.zeros(layout.numel)
    for i in range(5):
        w = start.clone().requires_grad_(True)
        named = layout.unflatten(w)
        out = torch.func.functional_call(model, named, (x[i : i + 1],))
        (g,) = torch.autograd.grad(F.cross_entropy(out, y[i : i + 1]), w)
        for sl in slices:
            n = float(g[sl].norm())
            g[sl] *= min(1.0, clip / (n + 1e-6))
        total += g
    assert torch.allclose(res.params[0], start - total / 5, atol=1e-6)
    # with a noise std vector, the step is displaced by std * N(0, 1) / B
    std2 = torch.full((layout.numel,), 0.5)
    noisy = DPSGDTrainer(
        model, layout, x, y, clip_norm=clip, noise_multiplier=0.0, seed=0,
        layer_slices=slices, noise_std=lambda k: std2,
    ).train(start, plan, LocalRecipe(lr=1.0))  # fmt: skip
    shift = (noisy.params[0] - res.params[0]) * 5 / 0.5
    assert 0.6 < float(shift.std()) < 1.4


def test_pda_pam_rule_uses_the_scores(tmp_path: Any) -> None:
    cfg = _cfg(tmp_path, server={"aggregator": "pda_pam"}, fedre={"pda_temperature": 0.5})
    u = torch.randn(3, 10)
    scores = torch.tensor([[1.0, 2.0], [2.0, 0.5], [0.1, 0.1]])
    slices = [slice(0, 4), slice(4, 10)]
    ctx = AggregationContext(
        num_byzantine=0,
        defense=cfg.defense,
        generator=torch.Generator(),
        global_params=torch.zeros(10),
        client_ids=torch.arange(3),
        layer_slices=slices,
        psi_scores=lambda m: scores,
        fedre=cfg.fedre,
    )
    out = RULES["pda_pam"](u, torch.ones(3), ctx)
    expect = pda_pam(u, scores, slices, mode="normalized", temperature=0.5)
    assert torch.allclose(out.aggregate, expect)
    # layer 0: softmin(S / 0.5) weights the third client most
    w0 = torch.softmax(-scores[:, 0] / 0.5, 0)
    assert torch.allclose(out.aggregate[:4], (w0[:, None] * u[:, :4]).sum(0), atol=1e-6)
    with pytest.raises(ValueError, match="psi_scores"):
        RULES["pda_pam"](u, torch.ones(3), AggregationContext(0, cfg.defense, torch.Generator(),
                         torch.zeros(10), torch.arange(3)))  # fmt: skip


def test_ldp_fed_uploads_k_perturbed_coordinates(tmp_path: Any) -> None:
    cfg = _cfg(tmp_path, privacy={"mode": "ldp_fed"}, fedre={"cldp_fraction": 0.1, "clip": 0.5})
    hook = LDPFed(cfg)
    layout = ParamLayout.from_module(nn.Linear(20, 5))
    ctx = _ctx(cfg, layout, torch.zeros(105))
    ups = ClientUpdates(
        client_ids=torch.arange(3),
        updates=torch.randn(3, 105),
        weights=torch.ones(3),
        num_samples=torch.ones(3, dtype=torch.int64),
        loss=torch.zeros(3),
    )
    out = hook.after_local_training(ctx, ups).updates
    k = math.ceil(0.1 * 105)
    assert ctx.metrics["ldp_fed"]["coordinates"] == k
    assert bool(((out != 0).sum(1) <= k).all())
    levels = torch.linspace(-0.5, 0.5, 16)
    vals = out[out != 0]
    assert bool((vals[:, None] - levels[None]).abs().min(1).values.lt(1e-5).all())
    assert hook.summary()["epsilon"] == pytest.approx(50.0)


def test_fedre_runs_need_psi_data(tmp_path: Any) -> None:
    cfg = from_dict(
        {
            "data": {"dataset": "digits", "num_clients": 4},
            "server": {"rounds": 1, "clients_per_round": 2},
            "privacy": {"mode": "fedre"},
            "output": {"dir": str(tmp_path), "progress": False},
        }
    )
    with pytest.raises(ConfigError, match="privacy-sensitive regions"):
        run_experiment(cfg)
    with pytest.raises(ConfigError, match="pda_pam"):
        run_experiment(
            from_dict({**cfg.to_dict(), "privacy": {"mode": "none"},
                       "server": {"rounds": 1, "clients_per_round": 2, "aggregator": "pda_pam"}})
        )  # fmt: skip


@pytest.mark.parametrize(
    "sections",
    [
        {"privacy": {"mode": "fedre"}, "fedre": {"sigma_scale": 0.01, "psi_samples": 2}},
        {
            "privacy": {"mode": "fedre"},
            "fedre": {"clip_mode": "sample", "budget": "uniform", "sigma": 0.01},
        },
        {"server": {"aggregator": "pda_pam"}, "fedre": {"pda_public": 1, "psi_probes": 2}},
    ],
    ids=["fedre-update", "uniform-sample", "pda_pam"],
)
def test_whole_runs_record_what_ran(
    tmp_path: Any, docs: DocumentDataset, sections: dict[str, Any]
) -> None:
    cfg = _cfg(tmp_path, **sections)
    res = run_experiment(cfg, dataset=docs, model=_tiny)
    assert res.final_metrics["final_test_iou"] is not None
    assert 0.0 <= res.final_metrics["final_test_f1"] <= 1.0
    if cfg.privacy.mode == "fedre":
        rec = res.history[-1]["fedre"]
        assert rec["clip_mode"] == cfg.fedre.clip_mode
        assert res.final_metrics["privacy"]["mode"] == "fedre"
        assert res.final_metrics["privacy"]["budget"] == cfg.fedre.budget
