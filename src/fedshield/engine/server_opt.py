"""Server optimizers: how the aggregated update moves the global model.

With ``Delta_r`` the aggregate of the client updates ``w_k - w_g`` (a descent direction):

* ``sgd`` (FedAvg, McMahan et al. 2017):      ``w <- w + eta_s * Delta``
* ``fedavgm`` (Hsu, Qi, Brown 2019):           ``v <- beta v + Delta;  w <- w + eta_s * v``
* ``fedadam`` (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Alg. 2)::

      m <- beta1 m + (1 - beta1) Delta
      v <- beta2 v + (1 - beta2) Delta^2
      w <- w + eta_s * m / (sqrt(v) + tau)

The state is a plain dict of tensors so that it checkpoints with ``torch.save``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fedshield.config.schema import ServerConfig

ServerState = dict[str, Tensor]


def init_state(kind: str, numel: int) -> ServerState:
    """Zero state for server optimizer ``kind`` over ``numel`` parameters."""
    if kind == "sgd":
        return {}
    if kind == "fedavgm":
        return {"v": torch.zeros(numel)}
    if kind == "fedadam":
        return {"m": torch.zeros(numel), "v": torch.zeros(numel)}
    raise ValueError(f"unknown server optimizer {kind!r}: known are sgd, fedavgm, fedadam")


def server_step(
    weights: Tensor, delta: Tensor, state: ServerState, cfg: ServerConfig
) -> tuple[Tensor, ServerState]:
    """One server optimizer step.

    Args:
        weights: Global parameters ``[P]``.
        delta: Aggregated update ``[P]``.
        state: Optimizer state from :func:`init_state` or the previous step.
        cfg: Server settings (optimizer, lr, momentum, beta1, beta2, tau).

    Returns:
        New global parameters and new state (inputs are not modified).
    """
    if cfg.optimizer == "sgd":
        return weights + cfg.lr * delta, state
    if cfg.optimizer == "fedavgm":
        v = cfg.momentum * state["v"] + delta
        return weights + cfg.lr * v, {"v": v}
    if cfg.optimizer == "fedadam":
        m = cfg.beta1 * state["m"] + (1 - cfg.beta1) * delta
        v = cfg.beta2 * state["v"] + (1 - cfg.beta2) * delta * delta
        return weights + cfg.lr * m / (v.sqrt() + cfg.tau), {"m": m, "v": v}
    raise ValueError(f"unknown server optimizer {cfg.optimizer!r}")
