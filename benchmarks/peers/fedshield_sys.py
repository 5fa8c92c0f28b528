"""``fedshield-sequential`` / ``fedshield-vmap`` / ``fedshield-fused``: workload W on fedshield.

Runs ``fedshield.run_experiment`` with the engine backend named by the system
and reads the per-round ``time_round_s`` (whole round: local training of all
sampled clients plus aggregation) from ``result.history``. The test set is
evaluated once, at the last round (``eval.every = rounds``); that round's
``time_round_s`` includes the evaluation, so it is left out of the median (the
peers' round timings never include evaluation).

If ``fedshield`` is not installed in the running interpreter, the repository's
``src/`` is put on ``sys.path`` (its dependencies must then be installed).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from peers.common import CLIENTS_PER_ROUND, SEED, summarise

BACKENDS: dict[str, str] = {
    "fedshield-sequential": "sequential",
    "fedshield-vmap": "vmap",
    "fedshield-fused": "fused",
}


def _import_fedshield() -> Any:
    """Import fedshield, falling back to the repository's ``src/`` checkout."""
    try:
        import fedshield
    except ImportError:
        src = Path(__file__).resolve().parents[2] / "src"
        if not (src / "fedshield").is_dir():
            raise
        sys.path.insert(0, str(src))
        import fedshield
    return fedshield


def experiment_config(variant: str, rounds: int, backend: str, out_dir: str) -> dict[str, Any]:
    """The fedshield config dict of workload W for ``variant`` and engine ``backend``."""
    return {
        "name": f"bench-{variant}-{backend}",
        "seed": SEED,
        "data": {"dataset": "mnist", "num_clients": 100, "partition": "iid"},
        "model": {"name": "mlp_2nn"},
        "train": {"lr": 0.1, "batch_size": 10, "local_epochs": 1},
        "server": {"rounds": rounds, "clients_per_round": CLIENTS_PER_ROUND[variant]},
        "eval": {"every": rounds},
        "engine": {"backend": backend},
        "output": {"dir": out_dir, "progress": False, "plot": False},
    }


def run(
    system: str, variant: str, rounds: int, warmup: int, t_process_start: float
) -> dict[str, Any]:
    """Run workload ``variant`` on fedshield's ``system`` engine path."""
    fedshield = _import_fedshield()
    from fedshield.config import from_dict

    backend = BACKENDS[system]
    with tempfile.TemporaryDirectory(prefix="fedshield-bench-") as out_dir:
        cfg = from_dict(experiment_config(variant, rounds, backend, out_dir))
        result = fedshield.run_experiment(cfg)
    history = list(result.history)
    # Rounds that evaluated (the last one) include the evaluation in time_round_s; the
    # peers' timings exclude evaluation, so those rounds are left out of the median.
    timed = [h for h in history[warmup:] if "test_accuracy" not in h]
    round_times = [float(h["time_round_s"]) for h in history]
    final: dict[str, Any] = dict(result.final_metrics)
    nan = float("nan")
    accuracy = float(final.get("test_accuracy", final.get("final_test_accuracy", nan)))
    loss = float(final.get("test_loss", final.get("final_test_loss", nan)))
    extra: dict[str, Any] = {
        "engine_backend": backend,
        "timed_rounds": [int(h["round"]) for h in timed],
    }
    if timed:
        extra["s_per_round"] = statistics.median(float(h["time_round_s"]) for h in timed)
        extra["s_train_per_round"] = statistics.median(float(h["time_train_s"]) for h in timed)
    return summarise(system, variant, round_times, warmup, accuracy, loss, t_process_start, extra)
