"""Secure aggregation inside runs (``[secure]``): SecAgg+ and CKKS give the plaintext
model up to their error bounds, group-wise robust aggregation, stage dropouts and failed
groups, cost metrics, distributed DP (noise on the sum, accounting), and config errors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from fedshield.config import from_dict
from fedshield.config.schema import ConfigError
from fedshield.engine import ClientUpdates, RoundContext, run_experiment
from fedshield.engine.layout import ParamLayout
from fedshield.engine.loop import contaminated_groups
from fedshield.privacy.accounting import dp_fedavg_epsilon
from fedshield.privacy.secure import DistributedDP, SecureAggregation, assign_groups, group_sizes


def _raw(tmp_path: Path, secure: dict[str, Any], **sections: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "secure",
        "data": {"dataset": "digits", "num_clients": 20, "partition": "iid"},
        "model": {"name": "logreg"},
        "train": {"lr": 0.1, "batch_size": 16},
        "server": {"rounds": 4, "clients_per_round": 10},
        "eval": {"per_client": False},
        "secure": secure,
        "output": {"dir": str(tmp_path), "progress": False, "plot": False, "checkpoint": False},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


def _run(tmp_path: Path, secure: dict[str, Any], **sections: Any) -> Any:
    return run_experiment(from_dict(_raw(tmp_path, secure, **sections)))


def test_group_sizes_spread_the_remainder_and_never_go_below_g() -> None:
    # Assert: 50 / 5 -> 10 x 5; 48 / 5 -> 9 groups of 5-6; fewer than 2g -> one group
    assert group_sizes(50, 5) == [5] * 10
    assert group_sizes(48, 5) == [6, 6, 6, 5, 5, 5, 5, 5, 5]
    assert group_sizes(9, 5) == [9]
    assert group_sizes(7, 0) == [7]
    assert group_sizes(0, 3) == []
    for n in range(2, 60):
        sizes = group_sizes(n, 3)
        assert sum(sizes) == n and (min(sizes) >= 3 or len(sizes) == 1)
    groups = assign_groups(torch.arange(10, 20), 3, seed=1, round_=2)
    assert sorted(torch.cat(groups).tolist()) == list(range(10, 20))
    assert [len(g) for g in groups] == [4, 3, 3]


def test_secagg_run_equals_plaintext_up_to_the_quantization_bound(tmp_path: Path) -> None:
    # Execute: the same run in the clear and under SecAgg+ (one group, sample weights)
    plain = _run(tmp_path, {})
    sec = _run(tmp_path, {"mode": "secagg"})

    # Assert: per round the aggregate is off by at most the bound on the mean; the
    # difference of the final models stays within rounds x server lr x bound (plus float32
    # rounding of the rescaled sums)
    bound = max(h["secure"]["error_bound"] for h in sec.history)
    assert 0 < bound < 1e-6
    assert all(h["secure"]["clipped_fraction"] == 0.0 for h in sec.history)
    diff = float((plain.params - sec.params).abs().max())
    assert diff <= 4 * 1.0 * bound + 1e-6
    assert sec.final_metrics["secure"]["groups"] == 4
    assert sec.history[-1]["num_aggregated"] == 10


def test_ckks_run_equals_plaintext_within_the_he_error_bound(tmp_path: Path) -> None:
    pytest.importorskip("tenseal")
    # Execute
    plain = _run(tmp_path, {}, server={"rounds": 2})
    he = _run(tmp_path, {"mode": "ckks"}, server={"rounds": 2})

    # Assert
    bound = max(h["secure"]["error_bound"] for h in he.history)
    assert 0 < bound < 1e-4
    assert float((plain.params - he.params).abs().max()) <= 2 * bound + 1e-6
    assert he.history[0]["secure"]["bytes_per_client_mean"] > 100 * 4 * plain.layout.numel


def test_groupwise_median_differs_from_one_group_mean_but_trains(tmp_path: Path) -> None:
    # Execute
    mean = _run(tmp_path, {"mode": "secagg"})
    grouped = _run(
        tmp_path,
        {"mode": "secagg", "group_size": 3},
        server={"aggregator": "median"},
    )

    # Assert: 10 clients -> 3 groups per round, the rule sees 3 rows; the model learns
    h = grouped.history[-1]
    assert h["secure"]["groups"] == 3 and h["secure"]["released"] == 3
    assert h["num_aggregated"] == 10
    assert float((mean.params - grouped.params).abs().max()) > 1e-4
    assert grouped.final_metrics["test_accuracy"] > 0.7


def test_groupwise_rows_are_group_means_with_group_weights(tmp_path: Path) -> None:
    # Prepare: 6 clients in 2 groups of 3, sample weights 1..6
    cfg = from_dict(_raw(tmp_path, {"mode": "secagg", "group_size": 3}))
    hook = SecureAggregation(cfg)
    ctx = _ctx(cfg, 4, torch.arange(6))
    u = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)) * 0.1
    w = torch.arange(1.0, 7.0)
    ups = ClientUpdates(torch.arange(6), u, w, torch.arange(1, 7), torch.zeros(6))

    # Execute
    hook.on_round_start(ctx)
    out = hook.before_aggregation(ctx, ups)

    # Assert: each row is sum_k w_k u_k / W_g over its group, weight W_g, id = min member
    assert ctx.groups is not None and len(out) == 2
    for j, g in enumerate(ctx.groups):
        expect = (u[g] * w[g, None]).sum(0) / w[g].sum()
        torch.testing.assert_close(out.updates[j], expect, atol=1e-6, rtol=0)
        assert float(out.weights[j]) == float(w[g].sum())
        assert int(out.client_ids[j]) == int(g.min())


def test_stage_dropouts_are_recovered_and_recorded(tmp_path: Path) -> None:
    # Execute: every client drops at each stage with probability 0.1
    res = _run(tmp_path, {"mode": "secagg", "stage_dropout": 0.1}, server={"rounds": 6})

    # Assert: some clients dropped, every round still aggregated the survivors
    dropped = sum(len(h["secure"]["dropped_clients"]) for h in res.history)
    assert dropped > 0
    assert res.final_metrics["secure"]["dropouts"] == dropped
    assert all(h["secure"]["aggregated"] for h in res.history)
    assert any(h["num_aggregated"] < 10 for h in res.history)
    assert res.final_metrics["test_accuracy"] > 0.7


def test_a_failing_group_is_recorded_and_the_run_continues(tmp_path: Path) -> None:
    # Execute: half the clients drop at every stage: some groups of 3-4 cannot be unmasked
    res = _run(
        tmp_path,
        {"mode": "secagg", "group_size": 3, "stage_dropout": 0.45},
        server={"rounds": 5, "aggregator": "median"},
    )

    # Assert: failures are recorded with their members and reason; the run finished
    failed = [f for h in res.history for f in h["secure"]["failed_groups"]]
    assert failed and all(f["reason"] and f["members"] for f in failed)
    assert res.final_metrics["secure"]["failed_groups"] == len(failed)
    assert res.final_metrics["rounds"] == 5
    released = sum(h["secure"]["released"] for h in res.history)
    assert released + len(failed) == sum(h["secure"]["groups"] for h in res.history)


def test_cost_metrics_are_recorded_and_grow_with_the_model(tmp_path: Path) -> None:
    # Execute: the logreg (650 params) and the 2NN (~8k params on digits)
    small = _run(tmp_path, {"mode": "secagg"}, server={"rounds": 1})
    big = _run(tmp_path, {"mode": "secagg"}, server={"rounds": 1}, model={"name": "mlp_2nn"})
    plain = _run(tmp_path, {}, server={"rounds": 1})

    # Assert
    s, b = small.history[0]["secure"], big.history[0]["secure"]
    for key in ("bytes_per_client_mean", "bytes_per_client_max", "bytes_server", "error_bound"):
        assert s[key] > 0
    assert set(s["client_cpu_s"]) == {"advertise_keys", "share_keys", "masked_input", "unmask"}
    assert set(s["server_cpu_s"]) == set(s["client_cpu_s"])
    # the masked upload grows by 4 bytes per parameter; keys and shares do not grow with P
    grow = b["bytes_per_client_mean"] - s["bytes_per_client_mean"]
    assert grow == pytest.approx(4 * (big.layout.numel - small.layout.numel), rel=0.01)
    # masked uploads are 4 bytes per coordinate, like the plaintext float32 upload
    assert s["bytes_per_client_mean"] >= 4 * small.layout.numel
    p = plain.history[0]["secure"]
    assert p["bytes_per_client_mean"] == 4 * plain.layout.numel
    assert p["bytes_download_per_client"] == 4 * plain.layout.numel
    assert plain.final_metrics["communication"]["bytes_server_total"] == 10 * 4 * plain.layout.numel


def test_norm_bound_scales_uploads_on_the_client_side(tmp_path: Path) -> None:
    cfg = from_dict(_raw(tmp_path, {"mode": "secagg", "norm_bound": 0.5}))
    hook = SecureAggregation(cfg)
    ctx = _ctx(cfg, 2, torch.arange(2))
    ups = ClientUpdates(
        torch.arange(2),
        torch.tensor([[3.0, 4.0], [0.1, 0.0]]),
        torch.ones(2),
        torch.ones(2, dtype=torch.int64),
        torch.zeros(2),
    )
    hook.on_round_start(ctx)
    out = hook.after_local_training(ctx, ups)
    torch.testing.assert_close(out.updates, torch.tensor([[0.3, 0.4], [0.1, 0.0]]))


def _ctx(cfg: Any, d: int, reporting: torch.Tensor, r: int = 0) -> RoundContext:
    return RoundContext(
        round=r,
        num_rounds=cfg.server.rounds,
        config=cfg,
        layout=ParamLayout.from_module(torch.nn.Linear(d, 1, bias=False)),
        global_params=torch.zeros(d),
        sampled=reporting,
        reporting=reporting,
        lr=0.1,
        generator=torch.Generator().manual_seed(0),
    )


DIST = {"mode": "distributed", "noise_multiplier": 1.0, "clip_norm": 0.5}


@pytest.mark.parametrize("group_size", [0, 5])
def test_distributed_noise_on_each_sum_has_std_z_c(tmp_path: Path, group_size: int) -> None:
    # Prepare: 10 zero updates of 20,000 coordinates; z = 1, C = 0.5
    cfg = from_dict(
        _raw(
            tmp_path,
            {"mode": "secagg", "group_size": group_size, "clip": 8.0},
            privacy=DIST,
            server={"weighting": "uniform"},
        )
    )
    dp, sec = DistributedDP(cfg), SecureAggregation(cfg)
    d = 20_000
    ctx = _ctx(cfg, d, torch.arange(10))
    ups = ClientUpdates(
        torch.arange(10),
        torch.zeros(10, d),
        torch.ones(10),
        torch.ones(10, dtype=torch.int64),
        torch.zeros(10),
    )

    # Execute: clients add shares, SecAgg+ sums each group
    for h in (dp, sec):
        h.on_round_start(ctx)
    noisy = sec.after_local_training(ctx, dp.after_local_training(ctx, ups))
    rows = sec.before_aggregation(ctx, noisy)

    # Assert: each share has std zC/sqrt(m); each group SUM (= mean x size) has std zC.
    # The sample std of 20,000 Gaussian coordinates is within 3% of the truth with
    # probability > 1 - 1e-10 (relative s.e. 1/sqrt(2 d) = 0.5%); nothing was clipped.
    assert ctx.groups is not None and len(rows) == (1 if group_size == 0 else 2)
    for j, g in enumerate(ctx.groups):
        share = float(noisy.updates[int(g[0])].std())
        assert share == pytest.approx(0.5 / math.sqrt(len(g)), rel=0.03)
        total = rows.updates[j] * len(g)
        assert float(total.std()) == pytest.approx(0.5, rel=0.03)
    assert ctx.metrics["secure"]["clipped_fraction"] == 0.0
    assert dp.effective_noise_multiplier(ctx.groups) == 1.0
    # a sum with 3 of 5 planned survivors carries z sqrt(3/5)
    if group_size:
        assert dp.effective_noise_multiplier([ctx.groups[0][:3]]) == pytest.approx(math.sqrt(3 / 5))


def test_distributed_dp_spends_what_central_dp_spends(tmp_path: Path) -> None:
    # Execute: same z, C, sampling; distributed under group-wise SecAgg+ with the median
    dist = _run(
        tmp_path,
        {"mode": "secagg", "group_size": 5, "clip": 4.0},
        privacy=DIST,
        server={"weighting": "uniform", "aggregator": "median"},
    )
    central = _run(
        tmp_path, {}, privacy={**DIST, "mode": "central"}, server={"weighting": "uniform"}
    )

    # Assert: per round the same epsilon as central DP-FedAvg and the library
    for hd, hc in zip(dist.history, central.history, strict=True):
        assert hd["epsilon"] == pytest.approx(hc["epsilon"], rel=1e-9)
    expect = dp_fedavg_epsilon(
        noise_multiplier=1.0,
        sample_rate=0.5,
        rounds=4,
        delta=1e-5,
        sampling="fixed",
        num_clients=20,
    )
    assert dist.final_metrics["privacy"]["epsilon"] == pytest.approx(expect, rel=1e-9)
    assert dist.final_metrics["privacy"]["mode"] == "distributed"


def test_contaminated_groups_is_the_hypergeometric_expectation(tmp_path: Path) -> None:
    cfg = from_dict(
        _raw(
            tmp_path,
            {"mode": "secagg", "group_size": 5},
            attack={"malicious_fraction": 0.2, "model": "gaussian"},
            server={"clients_per_round": 20, "aggregator": "median"},
        )
    )
    # 4 of 20 malicious; a group of 5 is clean with C(16,5)/C(20,5) = 0.2817
    assert contaminated_groups(cfg, [5, 5, 5, 5]) == math.ceil(4 * (1 - 4368 / 15504))


@pytest.mark.parametrize(
    ("secure", "extra", "match"),
    [
        ({"mode": "secagg"}, {"server": {"aggregator": "median"}}, "group_size = 0"),
        ({"mode": "secagg", "group_size": 1}, {}, "group_size = 1"),
        (
            {"mode": "secagg", "group_size": 6},
            {"server": {"aggregator": "median"}},
            "fewer than 2 groups",
        ),
        ({"mode": "ckks", "stage_dropout": 0.1}, {}, "stage_dropout"),
        ({"mode": "none", "group_size": 3}, {}, "secure.mode = 'none'"),
        ({"mode": "secagg", "num_neighbours": 2, "threshold": 3}, {}, "threshold"),
        ({}, {"privacy": DIST, "server": {"weighting": "uniform"}}, "needs secure"),
        ({"mode": "secagg"}, {"privacy": DIST}, "uniform"),
        (
            {"mode": "secagg", "norm_bound": 1.0},
            {"privacy": DIST, "server": {"weighting": "uniform"}},
            "norm_bound",
        ),
        (
            {"mode": "secagg", "group_size": 3},
            {"server": {"aggregator": "foolsgold"}},
            "foolsgold",
        ),
    ],
)
def test_config_errors(
    tmp_path: Path, secure: dict[str, Any], extra: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        from_dict(_raw(tmp_path, secure, **extra))


def test_server_view_privacy_attack_is_refused_under_secure_aggregation(tmp_path: Path) -> None:
    raw = _raw(tmp_path, {"mode": "secagg"})
    raw["privacy_attack"] = [{"kind": "idlg", "view": "server"}]
    with pytest.raises(ConfigError, match="server_sum"):
        from_dict(raw)
    raw["privacy_attack"] = [{"kind": "idlg", "view": "server_sum"}]
    from_dict(raw)


def test_server_sum_attack_under_groups_covers_every_member(tmp_path: Path) -> None:
    # Prepare: FedSGD on one image per client, 4 clients in 2 SecAgg+ groups of 2
    raw = _raw(
        tmp_path,
        {"mode": "secagg", "group_size": 2},
        server={
            "rounds": 1,
            "clients_per_round": 4,
            "aggregator": "median",
            "weighting": "uniform",
        },
        train={"batch_size": 1, "local_steps": 1},
    )
    raw["privacy_attack"] = [{"kind": "ig", "view": "server_sum", "iterations": 3}]

    # Execute
    res = run_experiment(from_dict(raw))

    # Assert: the attack's ground truth is the union of the groups (4 images), not the
    # 2 rows the rule received
    (rec,) = res.history[0]["privacy_attacks"]
    assert rec["num_images"] == 4, rec
    assert res.history[0]["secure"]["released"] == 2
