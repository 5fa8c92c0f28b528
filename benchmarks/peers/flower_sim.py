"""``flower-sim``: workload W on the Flower 1.41 Simulation Runtime (Ray backend).

A ``ServerApp`` running the message-API ``FedAvg`` strategy (sample-weighted by
``num-examples``, no federated evaluation) and a ``ClientApp`` whose ``train``
handler runs the same local epoch as the plain loop, launched with
``flwr.simulation.run_simulation(backend_name="ray")``.

Each Ray actor loads MNIST and builds its model once (module-level cache) and
reuses them for every message it handles. Per-round time is measured inside the
strategy, from the start of ``configure_train`` to the end of
``aggregate_train``: node sampling, message fan-out, client training, replies
and aggregation. The final model is evaluated on the test set once, in the
ServerApp thread, after the last round.

Ray may only run inside a private network namespace: the driver starts this
worker under ``unshare -n sh -c 'ip link set lo up && exec ...'``.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, cast

import torch

from peers.common import (
    CLIENTS_PER_ROUND,
    NUM_CLIENTS,
    SEED,
    client_arrays,
    evaluate,
    load_mnist,
    local_train,
    make_2nn,
    shuffle_order,
    summarise,
)

# Module-level caches: one per Ray actor process (and one in the driver).
_CLIENT_CACHE: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
_MODEL_CACHE: dict[str, torch.nn.Module] = {}
# Shared between the ServerApp thread and the worker's main thread.
_SERVER_STATE: dict[str, Any] = {}


def _client_tensors(cid: int) -> tuple[torch.Tensor, torch.Tensor]:
    if cid not in _CLIENT_CACHE:
        x, y = client_arrays(cid)
        _CLIENT_CACHE[cid] = (torch.from_numpy(x), torch.from_numpy(y))
    return _CLIENT_CACHE[cid]


def _actor_model() -> torch.nn.Module:
    if "model" not in _MODEL_CACHE:
        _MODEL_CACHE["model"] = make_2nn()
    return _MODEL_CACHE["model"]


def _build_apps() -> tuple[Any, Any]:
    """Create the ``ServerApp`` and ``ClientApp`` (Flower imported lazily)."""
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        cid = int(context.node_config["partition-id"])
        x, y = _client_tensors(cid)
        model = _actor_model()
        model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
        server_round = int(cast(int, msg.content.config_records["config"]["server-round"]))
        local_train(model, x, y, shuffle_order(server_round - 1, cid, len(x)))
        content = RecordDict(
            {
                "arrays": ArrayRecord(model.state_dict()),
                "metrics": MetricRecord({"num-examples": len(x)}),
            }
        )
        return Message(content=content, reply_to=msg)

    class TimedFedAvg(FedAvg):
        """``FedAvg`` that records the wall-clock duration of every training round."""

        def configure_train(
            self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
        ) -> Any:
            _SERVER_STATE["t_round"] = time.perf_counter()
            return super().configure_train(server_round, arrays, config, grid)

        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            out = super().aggregate_train(server_round, replies)
            _SERVER_STATE["durations"].append(time.perf_counter() - _SERVER_STATE["t_round"])
            return out

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        random.seed(SEED)  # FedAvg samples nodes with the global `random` module
        k = _SERVER_STATE["clients_per_round"]
        strategy = TimedFedAvg(
            fraction_train=k / NUM_CLIENTS,
            fraction_evaluate=0.0,
            min_train_nodes=k,
            min_evaluate_nodes=0,
            min_available_nodes=NUM_CLIENTS,
        )
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(make_2nn().state_dict()),
            num_rounds=_SERVER_STATE["rounds"],
        )
        _SERVER_STATE["final_arrays"] = result.arrays

    return server_app, client_app


def run(
    variant: str, rounds: int, warmup: int, t_process_start: float, cpus_per_client: float
) -> dict[str, Any]:
    """Run workload ``variant`` on Flower's Ray simulation; return the result dict."""
    os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from flwr.simulation import run_simulation

    _SERVER_STATE.update(clients_per_round=CLIENTS_PER_ROUND[variant], rounds=rounds, durations=[])
    server_app, client_app = _build_apps()
    num_cpus = os.cpu_count() or 1
    t_sim = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=NUM_CLIENTS,
        backend_name="ray",
        backend_config={
            "client_resources": {"num_cpus": cpus_per_client, "num_gpus": 0.0},
            "init_args": {"num_cpus": num_cpus, "include_dashboard": False},
        },
    )
    t_sim_total = time.perf_counter() - t_sim
    if "final_arrays" not in _SERVER_STATE:
        raise RuntimeError("Flower simulation finished without a final model")
    model = make_2nn()
    model.load_state_dict(_SERVER_STATE["final_arrays"].to_torch_state_dict())
    _, _, x_test, y_test = load_mnist()
    accuracy, loss = evaluate(model, x_test, y_test)
    return summarise(
        "flower-sim",
        variant,
        _SERVER_STATE["durations"],
        warmup,
        accuracy,
        loss,
        t_process_start,
        {
            "run_simulation_s": t_sim_total,
            "cpus_per_client": cpus_per_client,
            "ray_actors": int(num_cpus // cpus_per_client),
        },
    )
