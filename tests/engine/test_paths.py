"""Sequential, vmap and fused local-training paths give the same global model.

The sequential path (autograd + torch.optim.SGD, one client at a time) is the reference;
the vectorised paths must match it within 1e-5 after several rounds, with uneven
Dirichlet clients (masked steps), momentum, weight decay, FedProx and dropout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fedshield.config import from_dict
from fedshield.data import load_dataset
from fedshield.engine import (
    FusedMLPTrainer,
    LocalRecipe,
    ParamLayout,
    SequentialTrainer,
    VmapTrainer,
    make_batch_plan,
    run_experiment,
)
from fedshield.engine.fused import fused_layers
from fedshield.engine.loop import make_model


def _cfg(tmp_path: Path, backend: str, **train: object) -> dict:
    return {
        "name": f"paths-{backend}",
        "seed": 3,
        "data": {"dataset": "digits", "num_clients": 8, "partition": "dirichlet", "alpha": 0.3},
        "model": {"name": "mlp_2nn"},
        "train": {"lr": 0.05, "batch_size": 16, "local_epochs": 2, **train},
        "server": {"rounds": 3, "clients_per_round": 5},
        "eval": {"every": 3, "per_client": False},
        "engine": {"backend": backend},
        "output": {"dir": str(tmp_path), "progress": False, "plot": False},
    }


@pytest.mark.parametrize(
    "train,server",
    [
        ({}, {}),
        ({"momentum": 0.9, "weight_decay": 1e-3, "prox_mu": 0.1}, {"dropout": 0.3}),
        (
            {"local_steps": 7, "lr_schedule": "exponential", "lr_decay": 0.8},
            {"optimizer": "fedadam", "lr": 0.01},
        ),
    ],
)
def test_paths_agree_on_global_model(tmp_path: Path, train: dict, server: dict) -> None:
    results = {}
    for backend in ("sequential", "vmap", "fused"):
        raw = _cfg(tmp_path, backend, **train)
        raw["server"].update(server)
        results[backend] = run_experiment(from_dict(raw))
    ref = results["sequential"].params
    cfg = results["sequential"].config
    init = results["sequential"].layout.flatten(make_model(cfg, load_dataset("digits")))
    assert (ref - init).abs().max() > 1e-3  # training actually changed the model
    for backend in ("vmap", "fused"):
        diff = (results[backend].params - ref).abs().max().item()
        assert diff < 1e-5, f"{backend} differs from sequential by {diff}"
    losses = [r.history[-1]["train_loss"] for r in results.values()]
    assert max(losses) - min(losses) < 1e-4


def test_paths_agree_for_a_cnn_with_vmap(tmp_path: Path) -> None:
    params = {}
    for backend in ("sequential", "vmap"):
        raw = _cfg(tmp_path, backend, momentum=0.5)
        raw["model"] = {"name": "lenet"}
        raw["server"]["rounds"] = 2
        params[backend] = run_experiment(from_dict(raw)).params
    assert (params["vmap"] - params["sequential"]).abs().max().item() < 1e-5


def test_masked_client_does_not_move() -> None:
    """A client with fewer batches is masked at the missing steps, not fed fake data."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    layout = ParamLayout.from_module(model)
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    start = layout.flatten(model).clone()
    # client 0: 4 samples (1 step), client 1: 36 samples (9 steps)
    parts = [np.arange(4), np.arange(4, 40)]
    recipe = LocalRecipe(lr=0.1, momentum=0.9, weight_decay=0.01)
    plan = make_batch_plan(parts, batch_size=4, rngs=[np.random.default_rng(i) for i in (0, 1)])
    assert plan.counts[0].tolist() == [4] + [0] * 8
    seq = SequentialTrainer(model, layout, x, y).train(start, plan, recipe)
    # client 0 alone, trained for its single step: the idle steps must not move it
    alone = SequentialTrainer(model, layout, x, y).train(start, plan.rows(0, 1), recipe)
    for trainer in (VmapTrainer(model, layout, x, y), FusedMLPTrainer(model, layout, x, y)):
        res = trainer.train(start, plan, recipe)
        assert torch.allclose(res.params, seq.params, atol=1e-6)
        assert torch.allclose(res.params[0], alone.params[0], atol=1e-6)


def test_fused_recognises_only_mlps() -> None:
    ok = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert fused_layers(ok) is not None
    assert fused_layers(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))) is None
    assert fused_layers(nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))) is None
    assert fused_layers(nn.Linear(4, 2)) is None
