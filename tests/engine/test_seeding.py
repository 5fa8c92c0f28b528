"""Tests for fedshield.engine.seeding: named random streams keyed by (seed, stream, keys)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.engine.seeding import Stream, derive_seed, numpy_rng, torch_generator


def _np_draws(seed: int, stream: Stream, *keys: int) -> np.ndarray:
    return numpy_rng(seed, stream, *keys).random(8)


def _torch_draws(seed: int, stream: Stream, *keys: int) -> torch.Tensor:
    return torch.rand(8, generator=torch_generator(seed, stream, *keys))


def test_same_key_same_draws() -> None:
    # Execute / Assert
    np.testing.assert_array_equal(
        _np_draws(7, Stream.BATCHES, 3, 11), _np_draws(7, Stream.BATCHES, 3, 11)
    )
    assert torch.equal(_torch_draws(7, Stream.HOOKS, 2), _torch_draws(7, Stream.HOOKS, 2))
    assert derive_seed(7, Stream.SAMPLING, 4) == derive_seed(7, Stream.SAMPLING, 4)


def test_generators_do_not_touch_global_state() -> None:
    # Prepare
    torch.manual_seed(123)
    np.random.seed(123)
    expected_t, expected_np = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)

    # Execute
    _np_draws(0, Stream.BATCHES, 1)
    _torch_draws(0, Stream.HOOKS, 1)

    # Assert
    assert torch.equal(torch.rand(3), expected_t)
    np.testing.assert_array_equal(np.random.rand(3), expected_np)


def test_pinned_values() -> None:
    # Execute / Assert: a change of derivation would silently change every experiment.
    # The documented encoding is [seed_lo32, seed_hi32, stream, number_of_keys, *keys].
    expected = np.random.SeedSequence([0, 0, int(Stream.HOOKS), 1, 2]).generate_state(1, np.uint64)
    assert derive_seed(0, Stream.HOOKS, 2) == int(expected[0] >> np.uint64(1))
    assert derive_seed(0, Stream.HOOKS, 2) == 1071455285921195610
    np.testing.assert_allclose(
        _np_draws(0, Stream.BATCHES, 3)[:3], [0.21949319, 0.11427661, 0.20120381], rtol=1e-6
    )


def test_large_seeds_do_not_collide_with_extra_keys() -> None:
    # 2**32 + 5 must not alias seed 5 with an extra key word
    assert not np.array_equal(
        _np_draws(2**32 + 5, Stream.PARTITION), _np_draws(5, Stream.PARTITION, 1)
    )
    with pytest.raises(ValueError, match="seed"):
        derive_seed(2**64, Stream.PARTITION)


KEYS: list[tuple[int, Stream, tuple[int, ...]]] = [
    (0, Stream.BATCHES, (0, 0)),
    (1, Stream.BATCHES, (0, 0)),  # other seed
    (0, Stream.SAMPLING, (0, 0)),  # other stream
    (0, Stream.BATCHES, (1, 0)),  # other round
    (0, Stream.BATCHES, (0, 1)),  # other client
    (0, Stream.BATCHES, (1, 1)),
]


@pytest.mark.parametrize(
    ("a", "b"),
    list(itertools.combinations(KEYS, 2)),
)
def test_different_keys_different_draws(
    a: tuple[int, Stream, tuple[int, ...]], b: tuple[int, Stream, tuple[int, ...]]
) -> None:
    # Execute
    xa, xb = _np_draws(a[0], a[1], *a[2]), _np_draws(b[0], b[1], *b[2])
    ta, tb = _torch_draws(a[0], a[1], *a[2]), _torch_draws(b[0], b[1], *b[2])

    # Assert
    assert not np.array_equal(xa, xb)
    assert not torch.equal(ta, tb)
    assert derive_seed(a[0], a[1], *a[2]) != derive_seed(b[0], b[1], *b[2])


def test_every_stream_differs_from_every_other() -> None:
    # Execute
    seeds = {s: derive_seed(0, s, 5) for s in Stream}

    # Assert
    assert len(set(seeds.values())) == len(Stream)


def test_rounds_and_clients_of_a_run_get_distinct_seeds() -> None:
    # Execute: the BATCHES keys of 20 rounds x 50 clients
    seeds = {derive_seed(3, Stream.BATCHES, r, k) for r in range(20) for k in range(50)}

    # Assert
    assert len(seeds) == 20 * 50


def test_trailing_zero_key_gives_a_different_stream() -> None:
    # Execute / Assert
    assert derive_seed(0, Stream.HOOKS, 2) != derive_seed(0, Stream.HOOKS, 2, 0)


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**64 - 1),
    stream=st.sampled_from(list(Stream)),
    keys=st.lists(st.integers(0, 10**6), max_size=3),
)
def test_derive_seed_is_a_63_bit_integer(seed: int, stream: Stream, keys: list[int]) -> None:
    # Execute
    s = derive_seed(seed, stream, *keys)

    # Assert
    assert type(s) is int
    assert 0 <= s < 2**63
    torch.Generator().manual_seed(s)  # accepted by torch as a seed


def test_derive_seed_uses_the_top_bit_range() -> None:
    # Execute: over 2000 keys, a uniform 63-bit value exceeds 2**62 about half the time
    seeds = np.array([derive_seed(0, Stream.HOOKS, r) for r in range(2000)], dtype=np.float64)

    # Assert: binomial(2000, 0.5) has sd ~22; 200 is ~9 sd
    assert abs(int((seeds >= 2.0**62).sum()) - 1000) < 200
