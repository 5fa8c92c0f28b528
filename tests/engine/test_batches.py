"""Tests for fedshield.engine.batches: per-client minibatches and the stacked BatchPlan."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.engine.batches import BatchPlan, client_batches, make_batch_plan

IDX = np.array([10, 11, 12, 13, 14], dtype=np.int64)


def _rngs(n: int, seed: int = 0) -> list[np.random.Generator]:
    return [np.random.default_rng([seed, k]) for k in range(n)]


# --------------------------------------------------------------------------- client_batches


def test_epoch_mode_covers_each_sample_once_per_epoch() -> None:
    # Execute: 5 samples, batch 2, 2 epochs -> per epoch batches of 2, 2, 1
    batches = client_batches(
        IDX, batch_size=2, local_epochs=2, local_steps=0, rng=np.random.default_rng(0)
    )

    # Assert
    assert [len(b) for b in batches] == [2, 2, 1, 2, 2, 1]
    for epoch in (batches[:3], batches[3:]):
        np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), IDX)


def test_batch_size_larger_than_client() -> None:
    # Execute
    batches = client_batches(
        IDX, batch_size=8, local_epochs=1, local_steps=0, rng=np.random.default_rng(0)
    )

    # Assert
    assert len(batches) == 1
    np.testing.assert_array_equal(np.sort(batches[0]), IDX)


def test_epochs_are_fresh_permutations() -> None:
    # Prepare: 20 samples, batch 20: the chance of two equal permutations is 1/20!
    idx = np.arange(20)

    # Execute
    batches = client_batches(
        idx, batch_size=20, local_epochs=2, local_steps=0, rng=np.random.default_rng(1)
    )

    # Assert
    assert len(batches) == 2
    assert not np.array_equal(batches[0], batches[1])
    assert not np.array_equal(batches[0], idx)


def test_local_steps_mode_gives_exactly_that_many_steps() -> None:
    # Execute: 7 steps of an epoch of 3 batches (2, 2, 1); local_epochs is ignored
    batches = client_batches(
        IDX, batch_size=2, local_epochs=5, local_steps=7, rng=np.random.default_rng(0)
    )

    # Assert: epochs cycle: 2 full epochs then the first batch of a third
    assert [len(b) for b in batches] == [2, 2, 1, 2, 2, 1, 2]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches[0:3])), IDX)
    np.testing.assert_array_equal(np.sort(np.concatenate(batches[3:6])), IDX)
    assert set(batches[6].tolist()) <= set(IDX.tolist())


def test_local_steps_shorter_than_an_epoch() -> None:
    # Execute
    batches = client_batches(
        np.arange(10), batch_size=3, local_epochs=1, local_steps=2, rng=np.random.default_rng(0)
    )

    # Assert: 2 disjoint batches of 3
    assert [len(b) for b in batches] == [3, 3]
    assert len(set(np.concatenate(batches).tolist())) == 6


def test_empty_client_has_no_batches() -> None:
    # Execute
    batches = client_batches(
        np.array([], dtype=np.int64),
        batch_size=2,
        local_epochs=1,
        local_steps=3,
        rng=np.random.default_rng(0),
    )

    # Assert
    assert batches == []


# --------------------------------------------------------------------------- make_batch_plan


def test_plan_hand_checked_shapes_counts_mask_and_padding() -> None:
    # Prepare: clients with 5, 2 and 0 samples, batch 2, one epoch
    clients = [IDX, np.array([20, 21]), np.array([], dtype=np.int64)]

    # Execute
    plan = make_batch_plan(clients, batch_size=2, local_epochs=1, rngs=_rngs(3))

    # Assert
    assert (plan.num_clients, plan.num_steps, plan.batch_size) == (3, 3, 2)
    assert plan.index.dtype == torch.int64 and plan.counts.dtype == torch.int64
    assert plan.mask.dtype == torch.float32
    assert plan.counts.tolist() == [[2, 2, 1], [2, 0, 0], [0, 0, 0]]
    assert plan.mask.tolist() == [
        [[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]],
        [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]],
        [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
    ]
    # padding slots hold index 0
    assert bool((plan.index[plan.mask == 0] == 0).all())
    # real slots hold each client's own samples, each exactly once
    assert sorted(plan.index[0][plan.mask[0] == 1].tolist()) == IDX.tolist()
    assert sorted(plan.index[1][plan.mask[1] == 1].tolist()) == [20, 21]


def test_plan_matches_client_batches_with_the_same_rngs() -> None:
    # Prepare
    clients = [np.arange(7), np.arange(100, 104)]

    # Execute
    plan = make_batch_plan(clients, batch_size=3, local_epochs=2, rngs=_rngs(2, seed=5))
    expected = [
        client_batches(c, batch_size=3, local_epochs=2, local_steps=0, rng=r)
        for c, r in zip(clients, _rngs(2, seed=5), strict=True)
    ]

    # Assert
    for k, batches in enumerate(expected):
        for s, b in enumerate(batches):
            assert plan.index[k, s, : len(b)].tolist() == b.tolist()
            assert int(plan.counts[k, s]) == len(b)


def test_local_steps_plan_gives_every_client_that_many_steps() -> None:
    # Execute
    plan = make_batch_plan(
        [np.arange(3), np.arange(50)], batch_size=4, local_steps=5, rngs=_rngs(2)
    )

    # Assert: a 3-sample client cycles 5 epochs of one partial batch
    assert plan.num_steps == 5
    assert plan.counts.tolist() == [[3, 3, 3, 3, 3], [4, 4, 4, 4, 4]]


def test_same_seed_same_plan_and_other_seed_other_plan() -> None:
    # Prepare
    clients = [np.arange(30), np.arange(30, 47)]

    # Execute
    a = make_batch_plan(clients, batch_size=4, local_epochs=2, rngs=_rngs(2, seed=3))
    b = make_batch_plan(clients, batch_size=4, local_epochs=2, rngs=_rngs(2, seed=3))
    c = make_batch_plan(clients, batch_size=4, local_epochs=2, rngs=_rngs(2, seed=4))

    # Assert
    assert torch.equal(a.index, b.index)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.counts, b.counts)
    assert not torch.equal(a.index, c.index)
    assert torch.equal(a.counts, c.counts)


def test_no_clients() -> None:
    # Execute
    plan = make_batch_plan([], batch_size=4, rngs=[])

    # Assert
    assert (plan.num_clients, plan.num_steps, plan.batch_size) == (0, 0, 4)


# --------------------------------------------------------------------------- rows


def _three_client_plan() -> BatchPlan:
    # client sizes 2, 6, 4 with batch 2 -> 1, 3, 2 steps
    clients = [np.arange(2), np.arange(10, 16), np.arange(20, 24)]
    return make_batch_plan(clients, batch_size=2, local_epochs=1, rngs=_rngs(3))


def test_rows_trims_steps_to_the_longest_selected_client() -> None:
    # Prepare
    plan = _three_client_plan()

    # Execute
    first = plan.rows(0, 1)
    last_two = plan.rows(1, 3)
    third = plan.rows(2, 3)

    # Assert
    assert plan.num_steps == 3
    assert (first.num_clients, first.num_steps) == (1, 1)
    assert (last_two.num_clients, last_two.num_steps) == (2, 3)
    assert (third.num_clients, third.num_steps) == (1, 2)
    assert torch.equal(third.index, plan.index[2:3, :2])
    assert torch.equal(third.mask, plan.mask[2:3, :2])
    assert third.counts.tolist() == [[2, 2]]
    assert torch.equal(first.index, plan.index[0:1, :1])


def test_rows_of_idle_clients_has_no_steps() -> None:
    # Prepare
    plan = make_batch_plan(
        [np.arange(4), np.array([], dtype=np.int64)], batch_size=2, rngs=_rngs(2)
    )

    # Execute
    idle = plan.rows(1, 2)

    # Assert
    assert (idle.num_clients, idle.num_steps, idle.batch_size) == (1, 0, 2)


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 23), min_size=1, max_size=6),
    batch_size=st.integers(1, 8),
    local_epochs=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_plan_invariants_epoch_mode(
    sizes: list[int], batch_size: int, local_epochs: int, seed: int
) -> None:
    # Prepare: disjoint index ranges per client
    starts = np.cumsum([0, *sizes])
    clients = [np.arange(starts[k], starts[k + 1]) for k in range(len(sizes))]

    # Execute
    plan = make_batch_plan(
        clients, batch_size=batch_size, local_epochs=local_epochs, rngs=_rngs(len(sizes), seed)
    )

    # Assert
    steps = [local_epochs * math.ceil(n / batch_size) for n in sizes]
    assert plan.num_steps == max(steps)
    assert torch.equal(plan.mask.sum(dim=-1).long(), plan.counts)
    assert bool((plan.index[plan.mask == 0] == 0).all())
    for k, n in enumerate(sizes):
        counts = plan.counts[k]
        # active steps first, then idle (counts 0) to the end
        assert bool((counts[: steps[k]] > 0).all()) and bool((counts[steps[k] :] == 0).all())
        per_epoch = steps[k] // local_epochs if n else 0
        for e in range(local_epochs if n else 0):
            sl = slice(e * per_epoch, (e + 1) * per_epoch)
            real = plan.index[k, sl][plan.mask[k, sl] == 1]
            assert sorted(real.tolist()) == clients[k].tolist()
