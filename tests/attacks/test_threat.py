"""Tests for fedshield.attacks.threat: who is malicious, data poisoning of the batch plan,
model poisoning of the update matrix under the knowledge/collusion model, sampling."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from fedshield.attacks.poisoning.alie import alie
from fedshield.attacks.threat import ThreatModel, choose_malicious, expected_byzantine
from fedshield.config import from_dict
from fedshield.config.schema import ConfigError
from fedshield.data import from_arrays
from fedshield.engine.batches import make_batch_plan
from fedshield.engine.hooks import ClientUpdates, RoundContext
from fedshield.engine.layout import ParamLayout
from fedshield.engine.loop import sample_clients

N_CLIENTS = 6


def _cfg(**attack: Any) -> Any:
    return from_dict(
        {
            "data": {"dataset": "digits", "num_clients": N_CLIENTS, "partition": "iid"},
            "server": {"clients_per_round": N_CLIENTS},
            "attack": attack,
        }
    )


def _data() -> Any:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(60, 1, 28, 28, generator=g)
    y = torch.arange(60) % 10
    return from_arrays(x, y, x[:20], y[:20], name="toy")


CLIENTS = [np.arange(k * 10, (k + 1) * 10) for k in range(N_CLIENTS)]


def _ctx(cfg: Any, r: int = 0, d: int = 4) -> RoundContext:
    layout = ParamLayout.from_module(torch.nn.Linear(d, 1, bias=False))
    return RoundContext(
        round=r,
        num_rounds=5,
        config=cfg,
        layout=layout,
        global_params=torch.zeros(d),
        sampled=torch.arange(N_CLIENTS),
        reporting=torch.arange(N_CLIENTS),
        lr=0.1,
        generator=torch.Generator().manual_seed(1),
    )


def _updates(u: torch.Tensor, weights: torch.Tensor | None = None) -> ClientUpdates:
    n = u.shape[0]
    return ClientUpdates(
        client_ids=torch.arange(n),
        updates=u,
        weights=torch.ones(n) if weights is None else weights,
        num_samples=torch.full((n,), 10),
        loss=torch.zeros(n),
    )


def test_malicious_choice_is_seeded_or_explicit() -> None:
    a = choose_malicious(_cfg(num_malicious=2, model="sign_flip"))
    b = choose_malicious(_cfg(num_malicious=2, model="sign_flip"))
    assert len(a) == 2 and np.array_equal(a, b) and len(set(a.tolist())) == 2
    assert choose_malicious(_cfg(malicious_ids=[4, 1])).tolist() == [1, 4]
    assert len(choose_malicious(_cfg(malicious_fraction=0.5, model="ipm"))) == 3


def test_label_flip_plan_redirects_only_malicious_slots() -> None:
    # Prepare: clients 1 and 4 malicious, reverse flip, poison fraction 0.5 of each batch
    cfg = _cfg(malicious_ids=[1, 4], data="label_flip", poison_fraction=0.5)
    tm = ThreatModel(cfg, _data(), CLIENTS)
    plan = make_batch_plan(
        CLIENTS, batch_size=4, rngs=[np.random.default_rng(k) for k in range(N_CLIENTS)]
    )

    # Execute
    poisoned = tm.poison_plan(plan, torch.arange(N_CLIENTS), 0)

    # Assert: batches of 4, 4, 2 -> round(0.5 * count) = 2, 2, 1 slots redirected
    changed = poisoned.index != plan.index
    assert changed[[0, 2, 3, 5]].sum() == 0
    for k in (1, 4):
        assert changed[k].sum(dim=1).tolist() == [2, 2, 1]
        idx = poisoned.index[k][changed[k]]
        orig = plan.index[k][changed[k]]
        assert bool((idx >= 60).all())  # the appended poisoned copies
        assert torch.equal(tm.x_train[idx], tm.x_train[orig])  # same pixels
        assert torch.equal(tm.y_train[idx], 9 - tm.y_train[orig])  # reversed labels


def test_backdoor_copies_carry_trigger_and_target() -> None:
    cfg = _cfg(malicious_ids=[2], data="backdoor", trigger="badnets", target_label=3)
    ds = _data()
    tm = ThreatModel(cfg, ds, CLIENTS)
    copies = tm.poisoned_index[CLIENTS[2]]
    assert bool((copies >= 60).all()) and bool((tm.poisoned_index[CLIENTS[0]] == -1).all())
    white = float(ds.x_train.max())
    assert bool((tm.x_train[copies][:, :, 23:27, 23:27] == white).all())
    assert bool((tm.y_train[copies] == 3).all())


def test_attack_window_and_inactive_rounds() -> None:
    cfg = _cfg(malicious_ids=[0], data="label_flip", start_round=3, end_round=4)
    tm = ThreatModel(cfg, _data(), CLIENTS)
    assert [tm.active(r) for r in range(6)] == [False, False, True, True, False, False]
    plan = make_batch_plan(CLIENTS, batch_size=4, rngs=[np.random.default_rng(0)] * N_CLIENTS)
    assert tm.poison_plan(plan, torch.arange(N_CLIENTS), 0) is plan


def test_scaling_uses_model_replacement_factor() -> None:
    # Prepare: weights [1, 2, 1, 1, 1, 2]; malicious {1, 5} with weight 4 of 8 -> factor 2
    cfg = _cfg(malicious_ids=[1, 5], model="scaling")
    tm = ThreatModel(cfg, _data(), CLIENTS)
    u = torch.arange(24, dtype=torch.float32).view(6, 4)
    w = torch.tensor([1.0, 2.0, 1.0, 1.0, 1.0, 2.0])
    ctx = _ctx(cfg)

    # Execute
    out = tm.after_local_training(ctx, _updates(u, w)).updates

    # Assert
    assert torch.equal(out[[1, 5]], 2 * u[[1, 5]])
    assert torch.equal(out[[0, 2, 3, 4]], u[[0, 2, 3, 4]])
    assert ctx.metrics["attack_scale"] == 2.0 and ctx.metrics["num_malicious_reporting"] == 2


def test_omniscient_alie_uses_benign_rows_and_own_uses_own() -> None:
    # Prepare
    u = torch.randn(6, 4, generator=torch.Generator().manual_seed(3))
    omni = _cfg(malicious_ids=[0, 1], model="alie", knowledge="omniscient")
    own = _cfg(malicious_ids=[0, 1], model="alie", knowledge="own")

    # Execute
    a = ThreatModel(omni, _data(), CLIENTS).after_local_training(_ctx(omni), _updates(u))
    b = ThreatModel(own, _data(), CLIENTS).after_local_training(_ctx(own), _updates(u))

    # Assert: n = 6 rows, f = 2
    expect_omni = alie(u[2:], num_clients=6, num_byzantine=2)
    expect_own = alie(u[:2], num_clients=6, num_byzantine=2)
    torch.testing.assert_close(a.updates[0], expect_omni)
    torch.testing.assert_close(a.updates[1], expect_omni)
    torch.testing.assert_close(b.updates[0], expect_own)
    torch.testing.assert_close(a.updates[2:], u[2:])


def test_without_collusion_each_attacker_knows_only_its_row() -> None:
    u = torch.randn(6, 4, generator=torch.Generator().manual_seed(4))
    cfg = _cfg(malicious_ids=[0, 1], model="ipm", epsilon=2.0, collude=False)
    out = ThreatModel(cfg, _data(), CLIENTS).after_local_training(_ctx(cfg), _updates(u))
    torch.testing.assert_close(out.updates[:2], -2.0 * u[:2])


def test_norm_bound_projects_crafted_rows() -> None:
    u = torch.ones(6, 4)
    cfg = _cfg(malicious_ids=[3], model="scaling", scale=10.0, norm_bound=1.0)
    out = ThreatModel(cfg, _data(), CLIENTS).after_local_training(_ctx(cfg), _updates(u))
    torch.testing.assert_close(torch.linalg.vector_norm(out.updates[3]), torch.tensor(1.0))


def test_always_participating_attackers_are_sampled_and_never_drop() -> None:
    cfg = from_dict(
        {
            "data": {"dataset": "digits", "num_clients": 20},
            "server": {"clients_per_round": 5, "dropout": 0.9},
            "attack": {"malicious_ids": [3, 17], "model": "ipm", "always_participate": True},
        }
    )
    for r in range(10):
        sampled, reporting = sample_clients(cfg, r, np.array([3, 17]))
        assert len(sampled) == 5 and {3, 17} <= set(reporting.tolist())


def test_expected_byzantine() -> None:
    # 4 of 20 malicious, 10 rows -> 2; 7 rows -> ceil(1.4) = 2; always -> 4
    cfg = from_dict({"data": {"num_clients": 20}, "attack": {"num_malicious": 4, "model": "ipm"}})
    assert [expected_byzantine(cfg, n) for n in (10, 7, 20, 1)] == [2, 2, 4, 1]
    always = from_dict(
        {
            "data": {"num_clients": 20},
            "attack": {"num_malicious": 4, "model": "ipm", "always_participate": True},
        }
    )
    assert expected_byzantine(always, 10) == 4


def test_labels_out_of_range_fail_before_training() -> None:
    cfg = _cfg(malicious_ids=[0], data="backdoor", target_label=12)
    with pytest.raises(ConfigError, match=r"attack\.target_label = 12 is out of range"):
        ThreatModel(cfg, _data(), CLIENTS)


def test_pixel_triggers_need_images() -> None:
    x = torch.rand(60, 64)
    y = torch.arange(60) % 10
    ds = from_arrays(x, y, x[:10], y[:10], name="flat")
    cfg = _cfg(malicious_ids=[0], data="backdoor")
    with pytest.raises(ConfigError, match=r"attack\.trigger = 'badnets'.*image inputs"):
        ThreatModel(cfg, ds, CLIENTS)


@pytest.mark.parametrize(
    ("attack", "match"),
    [
        ({"num_malicious": 2, "malicious_fraction": 0.1}, "both set"),
        ({"malicious_ids": [1, 1]}, "distinct client ids"),
        ({"num_malicious": 99}, "more than data.num_clients"),
        ({"start_round": 5, "end_round": 2}, "before attack.start_round"),
        ({"model": "gaussain"}, "attack.model = 'gaussain' is not allowed"),
    ],
)
def test_bad_threat_configs_are_named(attack: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _cfg(**attack)
