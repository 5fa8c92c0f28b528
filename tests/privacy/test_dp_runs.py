"""Client-level DP inside runs: central DP-FedAvg (noise, accounting per round, budget
enforcement, Poisson sampling, empty rounds), local DP, DP-SGD accounting, the audit, and
the DP x robustness rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedshield.config import from_dict
from fedshield.config.schema import ConfigError
from fedshield.engine import ClientUpdates, RoundContext, run_experiment
from fedshield.engine.layout import ParamLayout
from fedshield.engine.loop import sample_clients
from fedshield.engine.seeding import Stream, torch_generator
from fedshield.privacy.accounting import dp_fedavg_epsilon, dp_sgd_epsilon, local_dp_epsilon
from fedshield.privacy.central import CentralDP
from fedshield.privacy.mechanisms import gaussian_noise


def _raw(tmp_path: Path, privacy: dict[str, Any], **server: Any) -> dict[str, Any]:
    return {
        "name": "dp",
        "data": {"dataset": "digits", "num_clients": 20, "partition": "iid"},
        "model": {"name": "logreg"},
        "train": {"lr": 0.1, "batch_size": 16},
        "server": {"rounds": 6, "clients_per_round": 10, "weighting": "uniform", **server},
        "eval": {"per_client": False},
        "privacy": privacy,
        "output": {"dir": str(tmp_path), "progress": False, "plot": False},
    }


CENTRAL = {"mode": "central", "noise_multiplier": 1.0, "clip_norm": 0.5}


def _ctx(cfg: Any, d: int, r: int = 0) -> RoundContext:
    return RoundContext(
        round=r,
        num_rounds=cfg.server.rounds,
        config=cfg,
        layout=ParamLayout.from_module(torch.nn.Linear(d, 1, bias=False)),
        global_params=torch.zeros(d),
        sampled=torch.arange(3),
        reporting=torch.arange(3),
        lr=0.1,
        generator=torch.Generator().manual_seed(0),
    )


def test_central_hook_clips_sums_noises_and_divides_by_expected(tmp_path: Path) -> None:
    # Prepare: 3 rows, C = 0.5, z = 1, 10 of 20 clients expected per round
    cfg = from_dict(_raw(tmp_path, CENTRAL))
    hook = CentralDP(cfg)
    u = torch.tensor([[3.0, 4.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 0.0]])
    ups = ClientUpdates(
        torch.arange(3), u, torch.ones(3), torch.ones(3, dtype=torch.int64), torch.zeros(3)
    )
    ctx = _ctx(cfg, 3)

    # Execute
    hook.on_round_start(ctx)
    clipped = hook.after_local_training(ctx, ups)
    hook.before_aggregation(ctx, clipped)
    out = hook.after_aggregation(ctx, clipped.updates.mean(dim=0))

    # Assert: [3,4,0] -> [0.3,0.4,0]; sum = [0.4, 0.4, 0]; + N(0, 0.5^2) with the round's
    # generator; / 10 expected clients
    torch.testing.assert_close(clipped.updates[0], torch.tensor([0.3, 0.4, 0.0]))
    noise = gaussian_noise((3,), std=0.5, generator=torch_generator(0, Stream.CENTRAL_DP, 0))
    torch.testing.assert_close(out, (torch.tensor([0.4, 0.4, 0.0]) + noise) / 10.0)


def test_central_run_records_epsilon_per_round_from_the_accountant(tmp_path: Path) -> None:
    # Execute
    res = run_experiment(from_dict(_raw(tmp_path, CENTRAL)))

    # Assert: fixed-size sampling of 10 of 20 clients, z = 1, delta 1e-5
    for rec in res.history:
        expect = dp_fedavg_epsilon(
            noise_multiplier=1.0, sample_rate=0.5, rounds=rec["round"], delta=1e-5,
            sampling="fixed", num_clients=20,
        )  # fmt: skip
        assert rec["epsilon"] == pytest.approx(expect, rel=1e-9)
    priv = res.final_metrics["privacy"]
    assert priv["accountant"] and priv["epsilon"] == res.history[-1]["epsilon"]
    assert priv["noise_multiplier"] == 1.0 and priv["clip_norm"] == 0.5
    assert (res.run_dir / "summary.json").is_file()


def test_budget_enforcement_stops_before_the_round_that_would_exceed_it(tmp_path: Path) -> None:
    # Prepare: a budget between epsilon after 3 and after 4 rounds
    eps = [
        dp_fedavg_epsilon(noise_multiplier=1.0, sample_rate=0.5, rounds=k, delta=1e-5,
                          sampling="fixed", num_clients=20)
        for k in (3, 4)
    ]  # fmt: skip
    budget = (eps[0] + eps[1]) / 2
    raw = _raw(tmp_path, {**CENTRAL, "budget_epsilon": budget}, rounds=10)
    raw["output"]["plot"] = True

    # Execute
    res = run_experiment(from_dict(raw))

    # Assert: 3 rounds ran, the 4th was refused, everything was written
    assert [h["round"] for h in res.history] == [1, 2, 3]
    assert "round 4 would bring epsilon" in res.final_metrics["stopped_early"]
    assert res.final_metrics["privacy"]["epsilon"] <= budget
    for name in ("summary.json", "checkpoint.pt", "model.pt", "metrics.png", "privacy.png"):
        assert (res.run_dir / name).is_file(), name


def test_target_epsilon_is_met_by_the_calibrated_noise(tmp_path: Path) -> None:
    res = run_experiment(from_dict(_raw(tmp_path, {"mode": "central", "target_epsilon": 4.0})))
    assert res.final_metrics["privacy"]["epsilon"] <= 4.0
    assert res.final_metrics["privacy"]["epsilon"] > 3.9


def test_poisson_sampling_rate_and_empty_rounds(tmp_path: Path) -> None:
    # Poisson with q = 0.25 over 20 clients: E = 5 per round; 400 rounds -> mean within
    # 4 standard errors (sd of the count sqrt(20 * .25 * .75) = 1.94, se = 0.097)
    cfg = from_dict(_raw(tmp_path, {}, sampling="poisson", clients_per_round=5))
    counts = [len(sample_clients(cfg, r)[0]) for r in range(400)]
    assert abs(np.mean(counts) - 5.0) < 4 * 0.097
    assert len({tuple(sample_clients(cfg, 3)[0].tolist()) for _ in range(3)}) == 1  # seeded
    # a round with nobody sampled still releases the central noise
    raw = _raw(tmp_path, {**CENTRAL}, sampling="poisson", clients_per_round=1, rounds=30)
    res = run_experiment(from_dict(raw))
    empty = [h for h in res.history if h["num_sampled"] == 0]
    assert empty, "expected an empty round with q = 0.05 over 30 rounds"
    assert all("epsilon" in h for h in res.history)


@pytest.mark.parametrize(
    ("privacy", "server", "match"),
    [
        (CENTRAL, {"aggregator": "median"}, "only a clipped"),
        (CENTRAL, {"weighting": "samples"}, "needs server.weighting = 'uniform'"),
        ({"mode": "central"}, {}, "needs privacy.noise_multiplier > 0"),
        ({"budget_epsilon": 1.0}, {}, "no DP is on"),
        ({"mode": "local", "audit_canaries": 5}, {}, "audit_canaries needs"),
    ],
)
def test_bad_privacy_configs_fail_before_training(
    tmp_path: Path, privacy: dict[str, Any], server: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        run_experiment(from_dict(_raw(tmp_path / "x", privacy, **server)))
    assert not (tmp_path / "x").exists()


def test_local_dp_per_client_epsilon_composes_participations(tmp_path: Path) -> None:
    raw = _raw(tmp_path, {"mode": "local", "local_epsilon": 2.0, "clip_norm": 0.5})
    res = run_experiment(from_dict(raw))
    priv = res.final_metrics["privacy"]
    parts = priv["client_participations"]
    assert sum(parts) == 6 * 10
    for k, count in enumerate(parts):
        expect = local_dp_epsilon(
            mechanism="gaussian", noise_multiplier=priv["noise_std"] / 1.0, count=count,
            delta=1e-5,
        )  # fmt: skip
        assert priv["client_epsilons"][k] == pytest.approx(expect, rel=1e-9)
    # one round costs the configured epsilon: exact with PLD (RDP's conversion is looser)
    one = local_dp_epsilon(
        mechanism="gaussian", noise_multiplier=priv["noise_std"], count=1, delta=1e-5,
        accountant="pld",
    )  # fmt: skip
    assert one == pytest.approx(2.0, rel=0.02)


def test_dp_sgd_records_per_client_epsilon(tmp_path: Path) -> None:
    raw = _raw(tmp_path, {"dp_sgd": True, "sample_noise_multiplier": 1.1, "sample_clip_norm": 1.0})
    raw["train"]["local_steps"] = 3
    res = run_experiment(from_dict(raw))
    priv = res.final_metrics["privacy"]
    assert priv["mode"] == "dp_sgd"
    n_k = 1437 // 20  # iid digits: 71 or 72 samples per client
    assert max(priv["client_epsilons"]) >= dp_sgd_epsilon(
        noise_multiplier=1.1, sample_rate=16 / (n_k + 1), steps=3, delta=1e-5
    )
    assert res.final_metrics["final_test_accuracy"] > 0.2  # noisy, but above chance (0.1)


def test_audit_reports_a_bound_below_the_accountant(tmp_path: Path) -> None:
    raw = _raw(tmp_path, {**CENTRAL, "noise_multiplier": 0.3, "audit_canaries": 20}, rounds=8)
    res = run_experiment(from_dict(raw))
    audit = res.final_metrics["audit"]
    assert audit["epsilon_lb"] is not None
    assert 0.0 <= audit["epsilon_lb"] <= audit["accountant_epsilon"]
    assert all(h["num_aggregated"] <= 10 for h in res.history)  # canaries are not clients


def test_adaptive_clipping_moves_the_clip_norm_toward_the_quantile(tmp_path: Path) -> None:
    # Prepare: C starts far above every update norm, so ~all updates are unclipped and the
    # geometric update C <- C exp(-eta (b - gamma)) must shrink it (b ~ 1 > gamma = 0.5)
    privacy = {
        "mode": "central", "noise_multiplier": 1.0, "clip_norm": 100.0,
        "adaptive_clipping": True, "target_quantile": 0.5, "clip_lr": 0.5,
        "count_noise_multiplier": 2.0,
    }  # fmt: skip
    res = run_experiment(from_dict(_raw(tmp_path, privacy)))

    # Assert: shrinking by about exp(-0.5 * 0.5) per round, over 6 rounds
    priv = res.final_metrics["privacy"]
    assert priv["final_clip_norm"] < 100.0 * 0.5
    # the update noise is raised so that both releases cost exactly z = 1
    assert priv["update_noise_multiplier"] == pytest.approx((1.0 - (2 * 2.0) ** -2) ** -0.5)
    expect = dp_fedavg_epsilon(
        noise_multiplier=1.0, sample_rate=0.5, rounds=6, delta=1e-5, sampling="fixed",
        num_clients=20,
    )  # fmt: skip
    assert priv["epsilon"] == pytest.approx(expect, rel=1e-9)


@pytest.mark.parametrize(
    "privacy",
    [
        {**CENTRAL, "audit_canaries": 5},
        {"mode": "local", "local_epsilon": 4.0},
        {"dp_sgd": True, "sample_noise_multiplier": 1.0},
    ],
)
def test_dp_runs_resume_exactly(tmp_path: Path, privacy: dict[str, Any]) -> None:
    # Prepare: an uninterrupted run, and one stopped after 3 rounds then resumed
    import json

    raw = _raw(tmp_path / "full", privacy, sampling="poisson")
    full = run_experiment(from_dict(raw))
    short = dict(raw, server={**raw["server"], "rounds": 3})
    short["output"] = {**raw["output"], "dir": str(tmp_path / "part")}
    part = run_experiment(from_dict(short))
    cfg = from_dict(raw)
    (part.run_dir / "config.json").write_text(json.dumps(cfg.to_dict()))

    # Execute
    resumed = run_experiment(cfg, resume=part.run_dir)

    # Assert: same model, same privacy spent (noise streams and accountants restored)
    torch.testing.assert_close(resumed.params, full.params, rtol=0, atol=1e-6)
    a, b = resumed.final_metrics["privacy"], full.final_metrics["privacy"]
    assert a["epsilon"] == pytest.approx(b["epsilon"], rel=1e-12)
    if "audit" in full.final_metrics:
        assert resumed.final_metrics["audit"] == full.final_metrics["audit"]
