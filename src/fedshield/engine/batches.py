"""The batch plan: which samples every client uses at every local step of a round.

All three local-training paths (sequential, vmap, fused) consume the same plan, so they
train on identical minibatches and agree to float rounding. A client with fewer batches
than the longest client in the round is *masked* at the missing steps (its parameters do
not move), and a partial last batch masks its empty slots: no fake data enters any loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class BatchPlan:
    """Minibatch schedule of one round for ``C`` clients, ``S`` steps, batch size ``B``.

    Attributes:
        index: ``int64 [C, S, B]`` sample indices into the training arrays; the valid
            samples of a step come first, padding slots hold index 0.
        mask: ``float32 [C, S, B]``, 1.0 for a real sample, 0.0 for a padding slot.
        counts: ``int64 [C, S]`` number of real samples of each step (0 = client idle).
    """

    index: Tensor
    mask: Tensor
    counts: Tensor

    @property
    def num_clients(self) -> int:
        """Number of clients (rows)."""
        return int(self.index.shape[0])

    @property
    def num_steps(self) -> int:
        """Number of steps of the longest client."""
        return int(self.index.shape[1])

    @property
    def batch_size(self) -> int:
        """Batch size ``B``."""
        return int(self.index.shape[2])

    def rows(self, start: int, stop: int) -> BatchPlan:
        """The plan restricted to clients ``start:stop`` (steps trimmed to their longest)."""
        counts = self.counts[start:stop]
        active = (counts > 0).any(dim=0).nonzero()
        steps = int(active.max()) + 1 if active.numel() else 0
        return BatchPlan(
            index=self.index[start:stop, :steps],
            mask=self.mask[start:stop, :steps],
            counts=counts[:, :steps],
        )


def client_batches(
    indices: np.ndarray,
    *,
    batch_size: int,
    local_epochs: int,
    local_steps: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """One client's minibatches for one round.

    Each epoch is a fresh permutation of the client's samples cut into batches of
    ``batch_size`` (the last one may be partial). With ``local_steps > 0`` epochs are
    drawn until exactly ``local_steps`` batches exist.

    Args:
        indices: The client's sample indices into the training arrays.
        batch_size: Batch size.
        local_epochs: Epochs per round (used when ``local_steps == 0``).
        local_steps: Fixed number of steps, or 0.
        rng: The client's generator for this round.

    Returns:
        A list of index arrays, one per step.
    """
    n = len(indices)
    if n == 0:
        return []
    batches: list[np.ndarray] = []
    epochs = 0
    while True:
        perm = indices[rng.permutation(n)]
        batches.extend(perm[i : i + batch_size] for i in range(0, n, batch_size))
        epochs += 1
        if local_steps > 0:
            if len(batches) >= local_steps:
                return batches[:local_steps]
        elif epochs >= local_epochs:
            return batches


def make_batch_plan(
    client_indices: Sequence[np.ndarray],
    *,
    batch_size: int,
    local_epochs: int = 1,
    local_steps: int = 0,
    rngs: Sequence[np.random.Generator],
) -> BatchPlan:
    """Stack every client's minibatches into a :class:`BatchPlan`.

    Args:
        client_indices: Per client, its sample indices.
        batch_size: Batch size ``B``.
        local_epochs: Epochs per round (when ``local_steps == 0``).
        local_steps: Fixed steps per round, or 0.
        rngs: One generator per client (derived from the seed, round and client id).

    Returns:
        The plan.
    """
    per_client = [
        client_batches(
            idx,
            batch_size=batch_size,
            local_epochs=local_epochs,
            local_steps=local_steps,
            rng=rng,
        )
        for idx, rng in zip(client_indices, rngs, strict=True)
    ]
    C = len(per_client)
    S = max((len(b) for b in per_client), default=0)
    index = np.zeros((C, S, batch_size), dtype=np.int64)
    counts = np.zeros((C, S), dtype=np.int64)
    for k, batches in enumerate(per_client):
        for s, b in enumerate(batches):
            index[k, s, : len(b)] = b
            counts[k, s] = len(b)
    counts_t = torch.from_numpy(counts)
    mask = (torch.arange(batch_size).view(1, 1, -1) < counts_t.unsqueeze(-1)).float()
    return BatchPlan(index=torch.from_numpy(index), mask=mask, counts=counts_t)
