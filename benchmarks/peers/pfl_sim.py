"""``pfl-1proc`` and ``pfl-2workers``: workload W on pfl-research 0.6 (PyTorch backend).

Setup follows pfl's own simulation path: a ``PyTorchModel`` (local optimizer
``torch.optim.SGD``, central optimizer SGD with lr 1.0 so that applying the
averaged model difference is exactly FedAvg), ``FederatedAveraging``, a
``SimulatedBackend`` over a ``FederatedDataset`` built from the same 100 IID
splits as every other system, and ``WeightByDatapoints`` for the
sample-weighted mean.

Multi-worker mode: the same code started by ``torchrun --nproc-per-node 2``.
pfl creates its gloo process group when ``pfl.internal.ops.pytorch_ops`` is
imported (``TORCHELASTIC_RUN_ID`` set), splits each cohort between the ranks and
all-reduces the summed statistics every round. Only rank 0 reports.

The global model is evaluated on the 10k test set once, after the last round.
pfl's ``evaluation_frequency`` always evaluates iteration 0 (each user's data,
before and after local training); iteration 0 is a warm-up round here and is
never timed.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from peers.common import (
    BATCH_SIZE,
    CLIENTS_PER_ROUND,
    LOCAL_EPOCHS,
    LR,
    NUM_CLIENTS,
    SEED,
    evaluate,
    iid_partitions,
    load_mnist,
    make_2nn,
    summarise,
)


class _RoundSampler:
    """pfl user sampler: ``k`` distinct clients per round, uniformly at random.

    pfl calls the sampler once per user in the same order on every worker, so a
    stateful sampler seeded identically yields the same cohort on all ranks and
    pfl hands each rank its share. The draws equal the plain-torch loop's.
    """

    def __init__(self, k: int, seed: int = SEED) -> None:
        self._k = k
        self._rng = np.random.default_rng(seed)
        self._buffer: list[int] = []

    def __call__(self) -> int:
        if not self._buffer:
            draw = np.sort(self._rng.choice(NUM_CLIENTS, size=self._k, replace=False))
            self._buffer = [int(c) for c in draw]
        return self._buffer.pop(0)


class _PflMLP(nn.Module):
    """The 2NN with the ``loss``/``metrics`` methods that ``PyTorchModel`` requires."""

    def __init__(self) -> None:
        super().__init__()
        self.net = make_2nn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x``."""
        return self.net(x)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the batch (pfl's training objective)."""
        self.train()
        return nn.functional.cross_entropy(self(x), y)

    @torch.no_grad()
    def metrics(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """Summed loss and accuracy weighted by the number of samples."""
        from pfl.metrics import Weighted

        self.eval()
        logits = self(x)
        loss = float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct = float((logits.argmax(dim=1) == y).sum())
        return {"loss": Weighted(loss, len(y)), "accuracy": Weighted(correct, len(y))}


def run(
    variant: str, rounds: int, warmup: int, t_process_start: float, distributed: bool
) -> dict[str, Any] | None:
    """Run workload ``variant`` on pfl; return the result dict (``None`` on ranks > 0)."""
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    # Importing PyTorchModel selects pfl's PyTorch ops and, under torchrun,
    # initialises the gloo process group.
    from pfl.aggregate.simulate import SimulatedBackend
    from pfl.aggregate.weighting import WeightByDatapoints
    from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
    from pfl.callback.base import TrainingProcessCallback
    from pfl.data.dataset import Dataset
    from pfl.data.federated_dataset import FederatedDataset
    from pfl.hyperparam import NNEvalHyperParams, NNTrainHyperParams
    from pfl.internal.ops import pytorch_ops
    from pfl.metrics import Metrics
    from pfl.model.pytorch import PyTorchModel

    dist_ctx = pytorch_ops.distributed
    assert dist_ctx is not None
    world_size = dist_ctx.world_size
    rank = dist_ctx.global_rank
    if distributed and world_size < 2:
        raise RuntimeError("pfl-2workers must be started by torchrun with 2 processes")

    x_train, y_train, x_test, y_test = load_mnist()
    parts = iid_partitions(len(x_train))
    users = {
        cid: (torch.from_numpy(x_train[p]), torch.from_numpy(y_train[p]))
        for cid, p in enumerate(parts)
    }
    k = CLIENTS_PER_ROUND[variant]
    federated = FederatedDataset(
        make_dataset_fn=lambda uid: Dataset(users[uid], user_id=str(uid)),
        user_sampler=_RoundSampler(k),
    )
    backend = SimulatedBackend(
        training_data=federated, val_data=None, postprocessors=[WeightByDatapoints()]
    )
    module = _PflMLP()
    model = PyTorchModel(
        model=module,
        local_optimizer_create=torch.optim.SGD,
        central_optimizer=torch.optim.SGD(module.parameters(), lr=1.0),
    )

    durations: list[float] = []

    class _RoundTimes(TrainingProcessCallback):
        """Wall-clock time between consecutive central iterations."""

        def __init__(self) -> None:
            self._t = 0.0

        def on_train_begin(self, *, model: Any) -> Metrics:
            self._t = time.perf_counter()
            return Metrics()

        def after_central_iteration(
            self, aggregate_metrics: Metrics, model: Any, *, central_iteration: int
        ) -> tuple[bool, Metrics]:
            now = time.perf_counter()
            durations.append(now - self._t)
            self._t = now
            return False, Metrics()

    algorithm = FederatedAveraging()
    t_train = time.perf_counter()
    algorithm.run(
        algorithm_params=NNAlgorithmParams(
            central_num_iterations=rounds,
            evaluation_frequency=rounds + 1,
            train_cohort_size=k,
            val_cohort_size=None,
        ),
        backend=backend,
        model=model,
        model_train_params=NNTrainHyperParams(
            local_num_epochs=LOCAL_EPOCHS, local_learning_rate=LR, local_batch_size=BATCH_SIZE
        ),
        model_eval_params=NNEvalHyperParams(local_batch_size=None),
        callbacks=[_RoundTimes()],
        send_metrics_to_platform=False,
    )
    t_train_total = time.perf_counter() - t_train
    if rank != 0:
        return None
    accuracy, loss = evaluate(module.net, x_test, y_test)
    return summarise(
        "pfl-2workers" if distributed else "pfl-1proc",
        variant,
        durations,
        warmup,
        accuracy,
        loss,
        t_process_start,
        {
            "train_total_s": t_train_total,
            "world_size": world_size,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
    )
