"""DP-SGD local training (Abadi et al. 2016) against the sequential path and a hand loop.

The trainer must reduce to the sequential reference when nothing is clipped and no noise is
added, match an independent per-sample autograd loop when clipping is active, inject noise of
std ``lr * sigma * C / B`` keyed by ``(seed, round, client id)``, and bound the effect of
any single sample on a step by ``lr * C / B``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedshield.engine import LocalRecipe, ParamLayout, SequentialTrainer, make_batch_plan
from fedshield.engine.batches import BatchPlan
from fedshield.engine.dp_sgd import DPSGDTrainer, per_client_steps
from fedshield.engine.seeding import Stream, torch_generator


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def _logreg(d: int, k: int, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, k))


def _plan(sizes: list[int], batch_size: int, epochs: int = 1) -> BatchPlan:
    starts = np.cumsum([0, *sizes])
    parts = [np.arange(a, b) for a, b in itertools.pairwise(starts)]
    rngs = [np.random.default_rng(10 + k) for k in range(len(sizes))]
    return make_batch_plan(parts, batch_size=batch_size, local_epochs=epochs, rngs=rngs)


def _one_step_plan(index: list[int], batch_size: int) -> BatchPlan:
    """A plan of one client and one step over ``index`` (padded to ``batch_size``)."""
    n = len(index)
    idx = torch.zeros(1, 1, batch_size, dtype=torch.int64)
    idx[0, 0, :n] = torch.tensor(index)
    mask = (torch.arange(batch_size) < n).float().view(1, 1, -1)
    return BatchPlan(index=idx, mask=mask, counts=torch.tensor([[n]]))


def test_without_clipping_or_noise_equals_the_sequential_path() -> None:
    # Arrange: every batch full (sizes are multiples of B), uneven step counts (masking)
    model = _mlp()
    layout = ParamLayout.from_module(model)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 6, generator=gen), torch.randint(0, 3, (40,), generator=gen)
    plan = _plan([12, 8, 20], batch_size=4, epochs=2)
    assert bool((plan.counts[plan.counts > 0] == 4).all())
    assert per_client_steps(plan).tolist() == [6, 4, 10]
    start = layout.flatten(model).clone()
    recipe = LocalRecipe(lr=0.1, momentum=0.9, weight_decay=0.01, prox_mu=0.1)

    # Act
    seq = SequentialTrainer(model, layout, x, y).train(start, plan, recipe)
    before = layout.flatten(model)  # (the sequential path uses the module as scratch)
    dp = [
        DPSGDTrainer(
            model, layout, x, y, clip_norm=1e6, noise_multiplier=0.0, seed=0, chunk=chunk
        ).train(start, plan, recipe)
        for chunk in (0, 2)
    ]

    # Assert
    assert (seq.params - start).abs().max() > 1e-2  # training moved every client
    for res in dp:
        diff = (res.params - seq.params).abs().max().item()
        assert diff < 1e-5, f"DP-SGD differs from sequential by {diff}"
        assert torch.allclose(res.loss, seq.loss, atol=1e-5)
    assert torch.equal(layout.flatten(model), before)  # DP-SGD leaves the module alone


def test_partial_batch_is_divided_by_the_configured_batch_size() -> None:
    # Arrange: one step of 3 real samples with B = 4, plain SGD
    model = _mlp()
    layout = ParamLayout.from_module(model)
    x, y = torch.randn(3, 6), torch.tensor([0, 1, 2])
    plan = _one_step_plan([0, 1, 2], batch_size=4)
    start = layout.flatten(model).clone()
    recipe = LocalRecipe(lr=0.5)

    # Act
    seq = SequentialTrainer(model, layout, x, y).train(start, plan, recipe)
    dp = DPSGDTrainer(model, layout, x, y, clip_norm=1e6, noise_multiplier=0.0, seed=0)
    res = dp.train(start, plan, recipe)

    # Assert: the sequential step is the mean over n = 3, DP-SGD's the sum over B = 4
    torch.testing.assert_close(res.params - start, 0.75 * (seq.params - start), atol=1e-6, rtol=0)


def _reference_dp_sgd(
    start: Tensor,
    x: Tensor,
    y: Tensor,
    plan: BatchPlan,
    recipe: LocalRecipe,
    clip: float,
    d: int,
    k: int,
) -> tuple[Tensor, int, int]:
    """Per-sample autograd loop for logistic regression ``[W (k x d), b (k)]``.

    Returns the final parameters and the numbers of clipped and unclipped samples seen.
    """
    out = torch.empty(plan.num_clients, start.numel())
    clipped = unclipped = 0
    B = plan.batch_size
    for c in range(plan.num_clients):
        w = start.clone()
        v = torch.zeros_like(w)
        for s in range(plan.num_steps):
            n = int(plan.counts[c, s])
            if n == 0:
                continue
            total = torch.zeros_like(w)
            for i in plan.index[c, s, :n].tolist():
                wi = w.clone().requires_grad_(True)
                logits = F.linear(x[i : i + 1], wi[: k * d].view(k, d), wi[k * d :])
                (g,) = torch.autograd.grad(F.cross_entropy(logits, y[i : i + 1]), wi)
                norm = float(g.norm())
                if norm > clip:
                    clipped += 1
                    g = g * (clip / norm)
                else:
                    unclipped += 1
                total += g
            step = total / B + recipe.weight_decay * w + recipe.prox_mu * (w - start)
            v = recipe.momentum * v + step
            w = w - recipe.lr * v
        out[c] = w
    return out, clipped, unclipped


def test_clipping_matches_a_per_sample_autograd_loop() -> None:
    # Arrange: logistic regression, a partial last batch, momentum + decay + FedProx
    d, k = 5, 3
    model = _logreg(d, k)
    layout = ParamLayout.from_module(model)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(30, d, generator=gen) * torch.linspace(0.2, 3.0, 30).view(-1, 1)
    y = torch.randint(0, k, (30,), generator=gen)
    plan = _plan([10, 7, 13], batch_size=4, epochs=2)
    start = layout.flatten(model).clone()
    recipe = LocalRecipe(lr=0.3, momentum=0.5, weight_decay=0.02, prox_mu=0.05)
    clip = 2.0

    # Act
    ref, clipped, unclipped = _reference_dp_sgd(start, x, y, plan, recipe, clip, d, k)
    dp = DPSGDTrainer(model, layout, x, y, clip_norm=clip, noise_multiplier=0.0, seed=0, chunk=2)
    res = dp.train(start, plan, recipe)

    # Assert: clipping was really active for some samples and not for others
    assert clipped > 10 and unclipped > 10
    assert (ref - start).abs().max() > 1e-2
    diff = (res.params - ref).abs().max().item()
    assert diff < 1e-5, f"DP-SGD differs from the per-sample loop by {diff}"
    unclipped_run = DPSGDTrainer(model, layout, x, y, clip_norm=1e6, noise_multiplier=0.0, seed=0)
    assert (unclipped_run.train(start, plan, recipe).params - ref).abs().max() > 1e-3


def _noise_setup(clients: int) -> tuple[nn.Module, ParamLayout, Tensor, Tensor, BatchPlan]:
    d, k = 40, 10
    model = _logreg(d, k)
    layout = ParamLayout.from_module(model)
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(8 * clients, d, generator=gen), torch.randint(0, k, (8 * clients,))
    return model, layout, x, y, _plan([8] * clients, batch_size=8)  # one full step each


def test_noise_has_the_calibrated_std_and_is_keyed_by_seed_round_and_client() -> None:
    # Arrange: one step per client; the noiseless run isolates the noise exactly
    model, layout, x, y, plan = _noise_setup(clients=20)
    start = layout.flatten(model).clone()
    lr, clip, sigma, B = 0.2, 0.5, 1.3, plan.batch_size
    recipe = LocalRecipe(lr=lr, round=4, client_ids=tuple(range(100, 120)))

    def run(noise: float, seed: int = 7, rec: LocalRecipe = recipe) -> Tensor:
        trainer = DPSGDTrainer(
            model, layout, x, y, clip_norm=clip, noise_multiplier=noise, seed=seed
        )
        return trainer.train(start, plan, rec).params

    # Act
    noisy, clean = run(sigma), run(0.0)
    z = (clean - noisy) / lr  # = sigma * C / B * N(0, I)

    # Assert: 20 x 410 = 8200 coordinates; the sd estimate has relative sd ~0.8 %
    expected = sigma * clip / B
    assert abs(z.std().item() / expected - 1) < 0.05
    assert abs(z.mean().item()) < 0.05 * expected
    # exactly the draws of client 105's stream for round 4
    want = torch.randn(layout.numel, generator=torch_generator(7, Stream.DP_NOISE, 4, 105))
    torch.testing.assert_close(z[5], expected * want, atol=1e-5, rtol=1e-4)
    # reproducible; other seed, round or client ids give other noise
    assert torch.equal(run(sigma), noisy)
    assert not torch.allclose(run(sigma, seed=8), noisy)
    other_round = LocalRecipe(lr=lr, round=5, client_ids=recipe.client_ids)
    assert not torch.allclose(run(sigma, rec=other_round), noisy)
    shifted = LocalRecipe(lr=lr, round=4, client_ids=tuple(range(200, 220)))
    moved = run(sigma, rec=shifted)
    assert not (moved - noisy).abs().amax(dim=1).lt(1e-6).any()  # every row's noise differs


def test_noise_follows_the_client_id_not_the_row_or_the_chunk() -> None:
    # Arrange: two clients with the same data; swap their ids between runs
    model, layout, x, _, _ = _noise_setup(clients=1)
    y = torch.randint(0, 10, (8,))
    plan = BatchPlan(
        index=torch.arange(8).repeat(2, 1, 1),
        mask=torch.ones(2, 1, 8),
        counts=torch.full((2, 1), 8),
    )
    start = layout.flatten(model).clone()
    trainer = DPSGDTrainer(model, layout, x, y, clip_norm=1.0, noise_multiplier=1.0, seed=1)
    chunked = DPSGDTrainer(
        model, layout, x, y, clip_norm=1.0, noise_multiplier=1.0, seed=1, chunk=1
    )

    # Act
    a = trainer.train(start, plan, LocalRecipe(lr=0.1, client_ids=(3, 9))).params
    b = trainer.train(start, plan, LocalRecipe(lr=0.1, client_ids=(9, 3))).params
    c = chunked.train(start, plan, LocalRecipe(lr=0.1, client_ids=(3, 9))).params
    default = trainer.train(start, plan, LocalRecipe(lr=0.1)).params
    explicit = trainer.train(start, plan, LocalRecipe(lr=0.1, client_ids=(0, 1))).params

    # Assert
    assert not torch.allclose(a[0], a[1])
    assert torch.equal(a[0], b[1]) and torch.equal(a[1], b[0])
    assert torch.equal(a, c)
    assert torch.equal(default, explicit)


def test_idle_steps_draw_no_noise() -> None:
    # Arrange: client 4 idle at step 0 and active at step 1, beside a busy client 2
    model, layout, x, y, _ = _noise_setup(clients=2)
    busy = torch.arange(16).view(1, 2, 8)
    plan = BatchPlan(
        index=torch.cat([busy, busy]),
        mask=torch.tensor([[1.0, 1.0], [0.0, 1.0]]).unsqueeze(-1).expand(2, 2, 8).clone(),
        counts=torch.tensor([[8, 8], [0, 8]]),
    )
    alone = BatchPlan(index=busy[:, 1:], mask=torch.ones(1, 1, 8), counts=torch.tensor([[8]]))
    start = layout.flatten(model).clone()
    trainer = DPSGDTrainer(model, layout, x, y, clip_norm=1.0, noise_multiplier=1.0, seed=2)

    # Act
    both = trainer.train(start, plan, LocalRecipe(lr=0.1, momentum=0.9, client_ids=(2, 4)))
    single = trainer.train(start, alone, LocalRecipe(lr=0.1, momentum=0.9, client_ids=(4,)))

    # Assert: the idle step neither moves the client nor consumes its noise stream
    assert per_client_steps(plan).tolist() == [2, 1]
    assert torch.equal(both.params[1], single.params[0])
    assert torch.allclose(both.loss[1], single.loss[0])


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_one_outlier_moves_a_step_by_at_most_lr_c_over_b(noise: float) -> None:
    # Arrange: adjacent batches, with and without an outlier of huge loss in the last slot
    d, k, B = 6, 3, 8
    model = _logreg(d, k)
    layout = ParamLayout.from_module(model)
    gen = torch.Generator().manual_seed(4)
    x = torch.cat([torch.randn(B - 1, d, generator=gen), torch.full((1, d), 1e3)])
    y = torch.randint(0, k, (B,), generator=gen)
    start = layout.flatten(model).clone()
    y[-1] = int(model(x[-1:]).argmin())  # a confidently wrong prediction: loss ~ 1e3
    assert F.cross_entropy(model(x[-1:]), y[-1:]) > 100
    without, with_ = _one_step_plan(list(range(B - 1)), B), _one_step_plan(list(range(B)), B)
    lr, clip = 0.5, 0.1
    recipe = LocalRecipe(lr=lr)
    dp = DPSGDTrainer(model, layout, x, y, clip_norm=clip, noise_multiplier=noise, seed=5)
    seq = SequentialTrainer(model, layout, x, y)

    # Act
    dp_change = dp.train(start, with_, recipe).params - dp.train(start, without, recipe).params
    seq_change = seq.train(start, with_, recipe).params - seq.train(start, without, recipe).params

    # Assert: bounded by lr C / B, and tight (the outlier's gradient is clipped to exactly C)
    bound = lr * clip / B
    assert dp_change.norm().item() <= bound * (1 + 1e-5)
    assert dp_change.norm().item() >= bound * 0.99
    assert seq_change.norm().item() > 100 * bound  # without clipping it dominates the step


def test_models_with_buffers_are_rejected() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    layout = ParamLayout.from_module(model)
    with pytest.raises(ValueError, match=r"buffers \(1\.running_mean.*per-sample gradients"):
        DPSGDTrainer(
            model,
            layout,
            torch.randn(4, 4),
            torch.zeros(4, dtype=torch.int64),
            clip_norm=1.0,
            noise_multiplier=1.0,
            seed=0,
        )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"clip_norm": 0.0}, "clip_norm must be a finite number > 0, got 0.0"),
        ({"clip_norm": -1.0}, "clip_norm must be a finite number > 0"),
        ({"clip_norm": float("inf")}, "clip_norm must be a finite number > 0"),
        ({"clip_norm": float("nan")}, "clip_norm"),
        ({"noise_multiplier": -0.1}, r"noise_multiplier must be a finite number >= 0.*-0\.1"),
        ({"noise_multiplier": float("nan")}, "noise_multiplier"),
        ({"seed": -1}, r"seed must be an int in \[0, 2\*\*64\)"),
        ({"chunk": -2}, "chunk must be an int >= 0"),
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, float], match: str) -> None:
    model = _logreg(4, 2)
    layout = ParamLayout.from_module(model)
    args: dict = {"clip_norm": 1.0, "noise_multiplier": 1.0, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        DPSGDTrainer(model, layout, torch.randn(4, 4), torch.zeros(4, dtype=torch.int64), **args)


def test_client_ids_must_name_every_row() -> None:
    model = _logreg(4, 2)
    layout = ParamLayout.from_module(model)
    x, y = torch.randn(8, 4), torch.zeros(8, dtype=torch.int64)
    trainer = DPSGDTrainer(model, layout, x, y, clip_norm=1.0, noise_multiplier=1.0, seed=0)
    plan = _plan([4, 4], batch_size=4)
    start = layout.flatten(model)
    with pytest.raises(ValueError, match="names 3 clients but the plan has 2 rows"):
        trainer.train(start, plan, LocalRecipe(lr=0.1, client_ids=(0, 1, 2)))
    with pytest.raises(ValueError, match="stream keys"):
        trainer.train(start, plan, LocalRecipe(lr=0.1, round=-1))
