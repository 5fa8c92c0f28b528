"""``plain-torch``: the reference plain PyTorch FedAvg loop for workload W.

Per sampled client: copy the global model, run one epoch of ``torch.optim.SGD``
with manual seeded mini-batching (no DataLoader), and accumulate the
sample-weighted average of the clients' state dicts.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch

from peers.common import (
    CLIENTS_PER_ROUND,
    NUM_CLIENTS,
    SEED,
    RoundTimer,
    evaluate,
    iid_partitions,
    load_mnist,
    local_train,
    make_2nn,
    shuffle_order,
    summarise,
)


def run(variant: str, rounds: int, warmup: int, t_process_start: float) -> dict[str, Any]:
    """Run ``rounds`` FedAvg rounds of workload ``variant``; return the result dict."""
    x_train, y_train, x_test, y_test = load_mnist()
    parts = iid_partitions(len(x_train))
    clients = [(torch.from_numpy(x_train[p]), torch.from_numpy(y_train[p])) for p in parts]
    k = CLIENTS_PER_ROUND[variant]
    sampler = np.random.default_rng(SEED)
    global_model = make_2nn()
    timer = RoundTimer(warmup)
    t_first_round = time.perf_counter()
    for rnd in range(rounds):
        timer.start()
        sampled = np.sort(sampler.choice(NUM_CLIENTS, size=k, replace=False))
        acc: dict[str, torch.Tensor] = {
            name: torch.zeros_like(t) for name, t in global_model.state_dict().items()
        }
        total = 0
        for cid in sampled:
            x, y = clients[cid]
            local = copy.deepcopy(global_model)
            local_train(local, x, y, shuffle_order(rnd, int(cid), len(x)))
            weight = len(x)
            with torch.no_grad():
                for name, t in local.state_dict().items():
                    acc[name].add_(t, alpha=weight)
            total += weight
        with torch.no_grad():
            global_model.load_state_dict({name: t / total for name, t in acc.items()})
        timer.stop()
    t_train_total = time.perf_counter() - t_first_round
    accuracy, loss = evaluate(global_model, x_test, y_test)
    return summarise(
        "plain-torch",
        variant,
        timer.durations,
        warmup,
        accuracy,
        loss,
        t_process_start,
        {"train_total_s": t_train_total},
    )
