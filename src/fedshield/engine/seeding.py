"""Explicit, named random streams derived from the experiment seed.

Every random draw of a run comes from a generator keyed by ``(seed, purpose, round,
client)``, never from global state. The same config and seed give the same numbers, and a
resumed run draws exactly what the uninterrupted run would have drawn.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch


class Stream(IntEnum):
    """Purposes of random streams (part of the key, so streams never collide)."""

    PARTITION = 1
    MODEL_INIT = 2
    SAMPLING = 3
    DROPOUT = 4
    BATCHES = 5
    HOOKS = 6
    MALICIOUS = 7
    POISON = 8
    ATTACK = 9
    DEFENSE = 10
    ROOT_DATA = 11
    DP_NOISE = 12
    CENTRAL_DP = 13
    LOCAL_DP = 14
    AUDIT = 15
    PRIVACY_ATTACK = 16
    SECURE = 17
    FEDRE_PSI = 18
    FEDRE_NOISE = 19
    PDA_PAM = 20
    LDP_FED = 21
    FEDQSN_SERVER = 22
    FEDQSN_CLIENT = 23


def _entropy(seed: int, stream: Stream, keys: tuple[int, ...]) -> list[int]:
    """An injective encoding of the key as 32-bit words.

    NumPy pads short entropy with zeros, so ``[s, 6, 2]`` and ``[s, 6, 2, 0]`` would give
    the same stream; the seed is split into two fixed words and the number of keys is part
    of the encoding, so distinct keys never share a stream.
    """
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    if any(not 0 <= k < 2**32 for k in keys):
        raise ValueError(f"stream keys must be in [0, 2**32), got {keys}")
    return [seed & 0xFFFFFFFF, seed >> 32, int(stream), len(keys), *keys]


def numpy_rng(seed: int, stream: Stream, *keys: int) -> np.random.Generator:
    """A NumPy generator for ``(seed, stream, *keys)``."""
    return np.random.default_rng(_entropy(seed, stream, keys))


def derive_seed(seed: int, stream: Stream, *keys: int) -> int:
    """A 63-bit integer seed for ``(seed, stream, *keys)``."""
    state = np.random.SeedSequence(_entropy(seed, stream, keys)).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def torch_generator(seed: int, stream: Stream, *keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for ``(seed, stream, *keys)``."""
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, stream, *keys))
    return g
