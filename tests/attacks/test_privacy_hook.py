"""Privacy attacks on live runs: ``[[privacy_attack]]`` entries, attacker views, replay, CLI.

The end-to-end checks attack the real uploads of a run (scikit-learn digits, 8x8, LeNet,
one image per client and round) and score them against the images the client trained on.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from fedshield import run_experiment
from fedshield.attacks.privacy import (
    AggregateView,
    ClientView,
    LocalRecipeView,
    ServerView,
    attack_saved_run,
)
from fedshield.attacks.privacy.attack import membership_metrics, score_inversion
from fedshield.cli.main import app
from fedshield.config import ConfigError, from_dict
from fedshield.engine.layout import ParamLayout
from fedshield.metrics import roc_auc
from fedshield.models import build_model


def _cfg(tmp: Path, attacks: list[dict[str, Any]], **sections: dict[str, Any]) -> Any:
    raw: dict[str, Any] = {
        "name": "pa",
        "data": {"dataset": "digits", "num_clients": 40},
        "model": {"name": "lenet"},
        "train": {"batch_size": 1, "local_steps": 1, "lr": 0.1},
        "server": {"rounds": 1, "clients_per_round": 2},
        "eval": {"per_client": False},
        "output": {"dir": str(tmp), "progress": False, "plot": False},
        "privacy_attack": attacks,
    }
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}
    return from_dict(raw)


# ---------------------------------------------------------------------------------- views


def _tiny() -> tuple[torch.nn.Module, ParamLayout]:
    net = build_model("lenet", (1, 12, 12), 10, seed=0)
    return net, ParamLayout.from_module(net)


def test_gradient_estimate_is_exact_for_one_sgd_step_with_momentum_and_weight_decay() -> None:
    """upload = -lr (g + wd w) for one torch.optim.SGD step; the view recovers g exactly."""
    net, layout = _tiny()
    w0 = layout.flatten(net).clone()
    x, y = torch.rand(3, 1, 12, 12), torch.tensor([1, 4, 7])
    loss = F.cross_entropy(net(x), y)
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, list(net.parameters()))])
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    opt.step()
    upload = layout.flatten(net).detach() - w0
    view = ServerView(
        round=1,
        client_id=0,
        layout=layout,
        global_params=w0,
        upload=upload,
        num_samples=3,
        recipe=LocalRecipeView(
            lr=0.05, local_steps=1, batch_size=3, momentum=0.9, weight_decay=1e-3
        ),
    )
    torch.testing.assert_close(view.gradient_estimate(), g, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(view.local_params, layout.flatten(net).detach())


def test_aggregate_view_gradient_is_the_mean_over_clients() -> None:
    _, layout = _tiny()
    w = torch.zeros(layout.numel)
    g1, g2 = torch.randn(layout.numel), torch.randn(layout.numel)
    view = AggregateView(
        round=1,
        client_ids=torch.tensor([3, 5]),
        layout=layout,
        global_params=w,
        upload_sum=-0.1 * g1 - 0.1 * g2,
        num_samples=torch.tensor([1, 1]),
        recipe=LocalRecipeView(lr=0.1, local_steps=1, batch_size=1),
    )
    torch.testing.assert_close(view.gradient_estimate(), (g1 + g2) / 2)


def test_views_reject_wrong_shapes_and_bad_recipes() -> None:
    _, layout = _tiny()
    p = torch.zeros(layout.numel)
    recipe = LocalRecipeView(lr=0.1, local_steps=1, batch_size=1)
    with pytest.raises(ValueError, match="upload has shape"):
        ServerView(1, 0, layout, p, torch.zeros(3), 1, recipe)
    with pytest.raises(ValueError, match="lr must be > 0"):
        LocalRecipeView(lr=0.0, local_steps=1, batch_size=1)
    with pytest.raises(ValueError, match="at least one global model"):
        ClientView(client_id=0, layout=layout, global_models=())
    with pytest.raises(ValueError, match="at least one contributing"):
        AggregateView(1, torch.tensor([], dtype=torch.int64), layout, p, p, p, recipe)


def test_score_inversion_matches_by_hungarian_and_counts_labels_order_free() -> None:
    gen = torch.Generator().manual_seed(0)
    truth = torch.rand(3, 1, 12, 12, generator=gen)
    recon = truth[[2, 0, 1]].clone()  # a permutation of the truth: perfect after matching
    res = score_inversion(
        recon, truth, torch.tensor([5, 1, 1]), torch.tensor([1, 5, 2]), bounds=(0.0, 1.0)
    )
    assert res.metrics["psnr"] == math.inf and res.metrics["mse"] == 0.0
    assert res.metrics["ssim"] == pytest.approx(1.0)
    assert res.metrics["label_accuracy"] == pytest.approx(2 / 3)  # {1, 5} of {1, 5, 2}


def test_membership_metrics_agree_with_the_metric_functions() -> None:
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(400, generator=gen)
    m = torch.arange(400) < 150
    s[m] += 1.0
    res = membership_metrics(s, m)
    assert res.metrics["auc"] == pytest.approx(roc_auc(s[m], s[~m]))
    assert 0.5 < res.metrics["auc"] < 1.0
    with pytest.raises(ValueError, match="at least one member"):
        membership_metrics(s, torch.zeros(400, dtype=torch.bool))


# --------------------------------------------------------------------------------- config


def test_privacy_attack_entries_parse_round_trip_and_reject_mistakes(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        [
            {"kind": "ig", "rounds": [1], "targets": [3]},
            {"kind": "loss_threshold", "view": "client"},
        ],
    )
    assert cfg.privacy_attack[0].targets == (3,)
    assert from_dict(cfg.to_dict()) == cfg
    bad = [
        ({"kind": "ig", "view": "client"}, "needs an upload"),
        ({"kind": "lira_online", "view": "server_sum"}, "attacks a model"),
        ({"kind": "fedavg_ig", "view": "server_sum"}, "one client's multi-step"),
        ({"kind": "lira_online", "num_shadow": 5}, "must be even"),
        ({"kind": "ig", "rounds": [2]}, "after the last round"),
        ({"kind": "ig", "targets": [40]}, "are not clients"),
        ({"kind": "ig", "rounds": []}, "is empty"),
        ({"kind": "igg"}, "is not allowed"),
        ({"kind": "ig", "bogus": 1}, "unknown key 'privacy_attack\\[0\\].bogus'"),
    ]
    for entry, message in bad:
        with pytest.raises(ConfigError, match=message):
            _cfg(tmp_path, [entry])


# ---------------------------------------------------------------------------- live runs


def test_idlg_on_live_uploads_recovers_each_clients_image_without_changing_training(
    tmp_path: Path,
) -> None:
    """The curious server inverts the actual uploads of both sampled clients (one image
    each): >= 30 dB and the right label; the run's training is identical to a run
    without the attack; metrics, summary and image grids are written."""
    cfg = _cfg(tmp_path / "a", [{"kind": "idlg", "rounds": [1], "iterations": 10, "targets": []}])
    cfg_all = from_dict(
        {**cfg.to_dict(), "privacy_attack": [{"kind": "idlg", "iterations": 10, "targets": []}]}
    )
    res = run_experiment(cfg_all)
    records = res.history[0]["privacy_attacks"]
    assert len(records) == 1  # default target: the first reporting client
    rec = records[0]
    assert rec["num_images"] == 1 and rec["label_accuracy"] == 1.0
    assert rec["psnr"] >= 30.0, rec
    assert (res.run_dir / rec["grid"]).is_file()
    saved = [json.loads(line) for line in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert saved[0]["privacy_attacks"][0]["psnr"] == pytest.approx(rec["psnr"])
    summary = json.loads((res.run_dir / "summary.json").read_text())["privacy_attacks"]
    assert summary[0]["attacks"] == 1 and summary[0]["psnr"] == pytest.approx(rec["psnr"])

    plain = run_experiment(from_dict({**cfg.to_dict(), "privacy_attack": []}))
    assert torch.equal(plain.params, res.params)


def test_local_dp_noise_on_the_upload_defeats_the_inversion(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        [{"kind": "idlg", "iterations": 10}],
        privacy={
            "mode": "local",
            "local_mechanism": "gaussian",
            "local_epsilon": 1.0,
            "clip_norm": 1.0,
        },
    )
    rec = run_experiment(cfg).history[0]["privacy_attacks"][0]
    assert rec["psnr"] < 15.0, rec


def test_targets_missing_sums_and_too_many_images_are_recorded_not_fatal(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        [
            {"kind": "idlg", "iterations": 2, "targets": [0, 1, 2, 3, 4, 5]},
            {"kind": "ig", "view": "server_sum", "iterations": 5, "max_images": 1},
            {"kind": "ig", "view": "server_sum", "iterations": 5},
        ],
    )
    res = run_experiment(cfg)
    recs = res.history[0]["privacy_attacks"]
    skipped = [r for r in recs if r["index"] == 0 and "skipped" in r]
    attacked = [r for r in recs if r["index"] == 0 and "psnr" in r]
    assert len(skipped) + len(attacked) == 6
    assert all("sent no upload in round 1" in r["skipped"] for r in skipped)
    (too_many,) = [r for r in recs if r["index"] == 1]
    assert "the sum covers 2 images > max_images = 1" in too_many["skipped"]
    (summed,) = [r for r in recs if r["index"] == 2]
    assert summed["client"] == -1 and summed["num_images"] == 2
    summary = res.final_metrics["privacy_attacks"]
    assert summary[1]["skipped"] == 1 and summary[1]["attacks"] == 0


def test_loss_threshold_on_the_global_model_sees_overfitting(tmp_path: Path) -> None:
    """A curious client scores the global model after the last round: members are the
    clients' training images, non-members test images. On a model trained many epochs on
    few images the loss threshold separates them (AUC well above 0.5)."""
    cfg = _cfg(
        tmp_path,
        [
            {
                "kind": "loss_threshold",
                "view": "client",
                "rounds": [8],
                "num_members": 200,
                "num_nonmembers": 300,
            }
        ],
        data={"num_clients": 2, "partition": "iid"},
        train={"batch_size": 16, "local_steps": 0, "local_epochs": 3, "lr": 0.1, "momentum": 0.9},
        server={"rounds": 8, "clients_per_round": 2},
    )
    res = run_experiment(cfg)
    rec = res.history[-1]["privacy_attacks"][0]
    assert rec["members"] == 200 and rec["nonmembers"] == 300
    assert 0.0 <= rec["tpr_at_0.1%_fpr"] <= rec["tpr_at_1%_fpr"] <= 1.0
    assert rec["auc"] > 0.5


def test_attacking_a_saved_run_replays_it_exactly(tmp_path: Path) -> None:
    """``attack_saved_run`` replays the saved run up to the round: the attack sees the same
    upload as an attack configured in the original run (identical scores), and the
    replayed training losses equal the saved ones."""
    entry = {"kind": "idlg", "iterations": 10, "rounds": [2]}
    base = _cfg(tmp_path / "runs", [], server={"rounds": 2, "clients_per_round": 2})
    plain = run_experiment(base)
    live = run_experiment(from_dict({**base.to_dict(), "privacy_attack": [entry]}))
    rep = attack_saved_run(plain.run_dir, entry)
    assert rep.consistent and rep.mismatches == []
    assert rep.replay_dir.parent == plain.run_dir / "attacks"
    live_rec = live.history[1]["privacy_attacks"][0]
    assert rep.results[0]["psnr"] == pytest.approx(live_rec["psnr"])
    assert rep.results[0]["client"] == live_rec["client"]
    with pytest.raises(ConfigError, match="after the last round"):
        attack_saved_run(plain.run_dir, {"kind": "ig", "rounds": [3]})


def test_cli_attack_prints_the_scores_and_rejects_bad_requests(tmp_path: Path) -> None:
    plain = run_experiment(_cfg(tmp_path / "runs", []))
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["attack", str(plain.run_dir), "--kind", "idlg", "--round", "1", "--set", "iterations=5"],
    )
    assert res.exit_code == 0, res.output
    assert "psnr" in res.output and "replay and image grids" in res.output
    res = runner.invoke(app, ["attack", str(plain.run_dir), "--kind", "ig", "--round", "9"])
    assert res.exit_code == 2 and "after the last round" in res.output
    res = runner.invoke(app, ["attack", str(tmp_path / "nope"), "--kind", "ig"])
    assert res.exit_code == 2


def test_lira_on_a_clients_upload_with_engine_trained_shadows(tmp_path: Path) -> None:
    """A curious server runs LiRA on one client's upload: the shadows are local trainings
    from the same global model on random halves of the candidates (the client's images
    and as many test images), in one vectorised trainer call. A client that trains 10
    epochs on its ~24 images is exposed: measured AUC 0.90 (online) and 0.84 (offline,
    loss threshold 0.84) on this seed; the bounds leave room for platform noise."""
    cfg = _cfg(
        tmp_path,
        [
            {"kind": "lira_online", "rounds": [2], "num_shadow": 8},
            {"kind": "lira_offline", "rounds": [2], "num_shadow": 8},
            {"kind": "loss_threshold", "rounds": [2], "num_nonmembers": 200},
        ],
        data={"num_clients": 60, "partition": "iid"},
        model={"name": "mlp_2nn"},
        train={"batch_size": 8, "local_steps": 0, "local_epochs": 10, "momentum": 0.9},
        server={"rounds": 2, "clients_per_round": 3},
    )
    recs = {r["kind"]: r for r in run_experiment(cfg).history[1]["privacy_attacks"]}
    online, offline, loss = recs["lira_online"], recs["lira_offline"], recs["loss_threshold"]
    assert online["members"] == online["nonmembers"] == offline["members"]
    assert loss["nonmembers"] == 200
    assert online["auc"] > 0.75 and offline["auc"] > 0.7 and loss["auc"] > 0.65
