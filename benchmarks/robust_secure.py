"""Robust under secrecy: how much robustness survives secure aggregation on MNIST.

For each attack (none, Gaussian, IPM, ALIE, scaling backdoor) with 20% malicious clients,
compares plaintext mean, plaintext median, group-wise SecAgg+ (random groups of ``g``
clients, median over the group means, norm bounding before masking) and SecAgg+ over all
clients with the mean (with and without norm bounding). Every run is a real federated run
through the engine (real SecAgg+ with X25519/AES/Shamir per group); reports final test
accuracy, backdoor success and the SecAgg+ cost per round. Writes
``benchmarks/results/robust_secure.json`` and prints a markdown table (the one in
docs/secure-aggregation.md, "Robust under secrecy"). About 10 minutes on 2 idle cores
(much more when they are shared)::

    python benchmarks/robust_secure.py [--rounds 20] [--per-round 50] [--ckks]

``--ckks`` adds one CKKS round over the same clients for its cost per round.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from fedshield.config import from_dict  # noqa: E402
from fedshield.data import load_dataset  # noqa: E402
from fedshield.engine import run_experiment  # noqa: E402

ATTACKS: dict[str, dict[str, Any]] = {
    "none": {},
    "gaussian": {"model": "gaussian", "sigma": 100.0},
    "ipm": {"model": "ipm", "epsilon": 100.0},
    "alie": {"model": "alie"},
    "backdoor": {
        "data": "backdoor",
        "trigger": "badnets",
        "target_label": 0,
        "poison_fraction": 0.5,
        "model": "scaling",
    },
}


def defenses(norm_bound: float) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Name -> (server overrides, secure section)."""
    return {
        "plaintext mean": ({"aggregator": "mean"}, {}),
        "plaintext median": ({"aggregator": "median"}, {}),
        "plaintext trimmed mean": ({"aggregator": "trimmed_mean"}, {}),
        "plaintext multi-Krum": ({"aggregator": "multi_krum"}, {}),
        "SecAgg g=2 + median + NB": (
            {"aggregator": "median"},
            {"mode": "secagg", "group_size": 2, "norm_bound": norm_bound},
        ),
        "SecAgg g=5 + median + NB": (
            {"aggregator": "median"},
            {"mode": "secagg", "group_size": 5, "norm_bound": norm_bound},
        ),
        "SecAgg g=5 + trimmed mean + NB": (
            {"aggregator": "trimmed_mean"},
            {"mode": "secagg", "group_size": 5, "norm_bound": norm_bound},
        ),
        "SecAgg g=5 + multi-Krum + NB": (
            {"aggregator": "multi_krum"},
            {"mode": "secagg", "group_size": 5, "norm_bound": norm_bound},
        ),
        "SecAgg + mean": ({"aggregator": "mean"}, {"mode": "secagg"}),
        "SecAgg + mean + NB": (
            {"aggregator": "mean"},
            {"mode": "secagg", "norm_bound": norm_bound},
        ),
    }


def config(
    args: argparse.Namespace, attack: dict[str, Any], server: dict[str, Any], secure: dict
) -> dict[str, Any]:
    """The experiment: 100 IID MNIST clients, 2NN, 20% malicious (omniscient, colluding)."""
    raw: dict[str, Any] = {
        "name": "robust_secure",
        "seed": args.seed,
        "data": {"dataset": "mnist", "num_clients": 100, "partition": "iid"},
        "model": {"name": "mlp_2nn"},
        "train": {"lr": 0.05, "momentum": 0.9, "batch_size": 64, "local_steps": 10},
        "server": {
            "rounds": args.rounds,
            "clients_per_round": args.per_round,
            "weighting": "uniform",
            **server,
        },
        "eval": {"per_client": False, "every": args.rounds},
        "secure": secure,
        "output": {"dir": args.runs, "progress": False, "plot": False, "checkpoint": False},
    }
    if attack:
        raw["attack"] = {
            "malicious_fraction": 0.2,
            "knowledge": "omniscient",
            "collude": True,
            **attack,
        }
    return raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--per-round", type=int, default=50)
    ap.add_argument("--norm-bound", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attacks", nargs="+", default=list(ATTACKS))
    ap.add_argument("--defenses", nargs="+", default=None)
    ap.add_argument("--ckks", action="store_true", help="add one CKKS round's cost")
    ap.add_argument("--runs", default="/tmp/robust_secure_runs")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "robust_secure.json"))
    args = ap.parse_args()
    ds = load_dataset("mnist", seed=0)
    table = defenses(args.norm_bound)
    names = args.defenses or list(table)
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for attack in args.attacks:
        for name in names:
            server, secure = table[name]
            cfg = from_dict(config(args, ATTACKS[attack], server, secure))
            t0 = time.perf_counter()
            res = run_experiment(cfg, dataset=ds)
            sec = [h["secure"] for h in res.history if "secure" in h]
            # plaintext runs summarise only their communication cost
            total = res.final_metrics.get("secure") or res.final_metrics["communication"]
            row = {
                "attack": attack,
                "defense": name,
                "test_accuracy": res.final_metrics["test_accuracy"],
                "backdoor_success": res.final_metrics.get("final_backdoor_success"),
                "bytes_per_client_per_round": total["bytes_per_client_per_round"],
                "bytes_server_per_round": total["bytes_server_total"] / max(1, len(sec)),
                "secure_time_s_per_round": (
                    sum(s.get("time_s", 0.0) for s in sec) / len(sec) if sec else 0.0
                ),
                "client_cpu_s_per_round": {
                    k: v / len(sec) for k, v in total.get("client_cpu_s_total", {}).items()
                },
                "failed_groups": total.get("failed_groups", 0),
                "max_clipped_fraction": total.get("max_clipped_fraction"),
                "run_s": time.perf_counter() - t0,
            }
            rows.append(row)
            bd = row["backdoor_success"]
            print(
                f"{attack:9s} {name:28s} acc {row['test_accuracy']:.4f}"
                + (f"  backdoor {bd:.3f}" if bd is not None else "")
                + f"  {row['bytes_per_client_per_round'] / 1e6:.2f} MB/client/round"
                f"  ({row['run_s']:.0f} s)",
                flush=True,
            )
    ckks: dict[str, Any] | None = None
    if args.ckks:
        cfg = from_dict(
            config(
                argparse.Namespace(**{**vars(args), "rounds": 1}),
                {},
                {"aggregator": "mean"},
                {"mode": "ckks"},
            )
        )
        res = run_experiment(cfg, dataset=ds)
        ckks = res.history[-1]["secure"]
        print("ckks round:", json.dumps(ckks))
    out = {
        "setup": {
            "dataset": "mnist",
            "model": "mlp_2nn",
            "num_clients": 100,
            "clients_per_round": args.per_round,
            "rounds": args.rounds,
            "malicious_fraction": 0.2,
            "norm_bound": args.norm_bound,
            "seed": args.seed,
            "machine": f"{platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads",
            "total_s": time.perf_counter() - t_all,
        },
        "rows": rows,
        "ckks_round": ckks,
    }
    Path(args.json).write_text(json.dumps(out, indent=1))
    print()
    print(markdown(rows, names, args.attacks))


def markdown(rows: list[dict[str, Any]], names: list[str], attacks: list[str]) -> str:
    """Accuracy (backdoor success) per defense (rows) and attack (columns)."""
    head = (
        "| defense | "
        + " | ".join(attacks)
        + " | kB/client/round | server MB/round | secure step s/round |"
    )
    lines = [head, "|---|" + "---:|" * (len(attacks) + 3)]
    for name in names:
        cells = []
        mine = [x for x in rows if x["defense"] == name]
        for a in attacks:
            r = next((x for x in mine if x["attack"] == a), None)
            if r is None:
                cells.append("")
                continue
            c = f"{100 * r['test_accuracy']:.1f}"
            if r["backdoor_success"] is not None:
                c += f" ({100 * r['backdoor_success']:.0f})"
            cells.append(c)
        ref = mine[0] if mine else None  # cost of the first attack column (no NaN rounds)
        cost = (
            f"{ref['bytes_per_client_per_round'] / 1e3:.1f} | "
            f"{ref['bytes_server_per_round'] / 1e6:.1f} | {ref['secure_time_s_per_round']:.2f}"
            if ref
            else " | | "
        )
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {cost} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
