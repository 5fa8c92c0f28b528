"""Client-level DP-FedAvg on MNIST: final accuracy vs epsilon with 1,000 and 10,000 clients.

Runs ``examples/dp_mnist_10k.toml`` (Poisson sampling q = 0.1, clip 0.5, FedAvgM, 2NN,
100 rounds, 5 local steps of batch 10) for epsilon in {1, 2, 4, 8, inf} at delta = 1e-5
and N in {1000, 10000} clients (IID), noise calibrated by the accountant for the whole
run; epsilon = inf is the same recipe without DP. Writes
``benchmarks/results/dp_mnist_last.json`` and a markdown table (``dp_mnist.json`` holds
the runs of docs/privacy.md: FedAvgM, and server SGD with ``--set
server.optimizer='sgd'``). About 25 minutes on 2 cores::

    python benchmarks/dp_mnist.py [--rounds 100] [--clients 1000 10000] [--set KEY=VALUE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fedshield.config import load_toml  # noqa: E402
from fedshield.data import load_dataset  # noqa: E402
from fedshield.engine import run_experiment  # noqa: E402

EPSILONS = (1.0, 2.0, 4.0, 8.0, float("inf"))
POPULATIONS = (1000, 10000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dp_mnist_last.md"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "dp_mnist_last.json"))
    ap.add_argument("--runs", default="/tmp/dp_mnist_runs")
    ap.add_argument("--clients", type=int, nargs="+", default=list(POPULATIONS))
    ap.add_argument("--set", dest="extra", action="append", default=[], help="extra override")
    args = ap.parse_args()
    ds = load_dataset("mnist", seed=0)
    rows = []
    for n in args.clients:
        for eps in EPSILONS:
            sets = [
                f"data.num_clients={n}",
                f"server.rounds={args.rounds}",
                f"output.dir={args.runs!r}",
                "output.progress=false",
                "output.plot=false",
                "engine.client_chunk=50",
                "train.batch_size=10",
                "train.local_steps=5",
                "eval.every=25",
                *args.extra,
            ]
            sets += (
                ["privacy.mode='none'"]
                if eps == float("inf")
                else [f"privacy.target_epsilon={eps}"]
            )
            cfg = load_toml(ROOT / "examples" / "dp_mnist_10k.toml", sets)
            t0 = time.perf_counter()
            res = run_experiment(cfg, dataset=ds)
            fm = res.final_metrics
            priv = fm.get("privacy", {})
            row = {
                "clients": n,
                "target_epsilon": eps,
                "epsilon": priv.get("epsilon", float("inf")),
                "noise_multiplier": priv.get("noise_multiplier", 0.0),
                "accuracy": fm["final_test_accuracy"],
                "best_accuracy": fm["best_test_accuracy"],
                "seconds": time.perf_counter() - t0,
                "overrides": args.extra,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            Path(args.json).write_text(json.dumps(rows, indent=2))
    lines = [
        "| clients | epsilon (delta = 1e-5) | noise multiplier | final accuracy | best accuracy |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        eps = "inf (no DP)" if r["target_epsilon"] == float("inf") else f"{r['epsilon']:.2f}"
        lines.append(
            f"| {r['clients']:,} | {eps} | {r['noise_multiplier']:.3f} | "
            f"{100 * r['accuracy']:.2f}% | {100 * r['best_accuracy']:.2f}% |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
