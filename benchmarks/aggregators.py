"""Robust-aggregator speed benchmark: fedshield vs Flower 1.41 on one update matrix.

One seeded float32 update matrix ``[n, d]`` (default ``n = 100`` clients, ``d = 10^6``
parameters): ``n - f`` honest rows ``mu + sigma_i * N(0, I)`` with per-client spreads
``sigma_i ~ U(0.5, 1.5)``, and ``f`` Byzantine rows ``-3 mu + N(0, I)`` (a colluding
sign-flipped cluster), rows shuffled. The unequal spreads make every Krum / Bulyan choice
unambiguous (score gaps are many orders above float32 rounding), so that fedshield's and
Flower's selections can be compared.

Timed, each as the median of ``--repeats`` runs after one untimed warm-up call, with
``torch.set_num_threads(--threads)``:

* baselines: the pairwise-distance GEMM alone (``U @ U.T``) and one
  ``torch.sort(U, dim=0)``;
* fedshield: krum, multi_krum (``m = n - f``), bulyan (``f_b = min(f, (n - 3) // 4)`` so
  that ``n >= 4 f_b + 3``), median, trimmed_mean (``num_trim = f``), and for information
  geometric_median, centered_clipping (centre 0, ``tau`` = median row norm, 1 iteration)
  and norm_bound (bound = median row norm);
* Flower 1.41 (if ``flwr`` is importable) on the same data, one ndarray of shape ``(d,)``
  per client and equal ``num_examples``: ``aggregate_krum(num_malicious=f, to_keep=0)``,
  ``aggregate_krum(num_malicious=f, to_keep=n - f)``,
  ``aggregate_bulyan(num_malicious=f_b, aggregation_rule=aggregate_krum, to_keep=0)``,
  ``aggregate_median`` and ``aggregate_trimmed_avg(proportiontocut=(f + 0.5) / n)``
  (Flower cuts ``int(proportiontocut * n)`` = ``f`` values per end; the ``+ 0.5`` keeps
  that exact in floating point). Flower's Krum counts ``max(1, n - f - 2)`` closest
  neighbours, as fedshield does. Each Flower rule runs once as a warm-up and then
  ``--flower-repeats`` times; one whose first run takes longer than ``--flower-once-s`` is
  timed by that first run only.

Outputs are compared with ``np.allclose(fedshield, flower, rtol=RTOL, atol=ATOL)``; the
number of differing coordinates and the largest difference are reported. Ratios: Krum,
Multi-Krum, Bulyan and the information-only rules to the GEMM; median and trimmed mean to
the sort. The machine is shared, so each row also reports the CPU time other processes
used while it was timed ("foreign load", in cores).

Usage (the bench venv has no fedshield installed; ``src/`` is put on ``sys.path``)::

    .venv-bench/bin/python benchmarks/aggregators.py            # n=100, d=1e6, f=20
    .venv-bench/bin/python benchmarks/aggregators.py --d 100000 --repeats 3 --no-flower
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from fedshield.aggregators.bulyan import bulyan  # noqa: E402
from fedshield.aggregators.centered_clipping import centered_clipping  # noqa: E402
from fedshield.aggregators.geometric_median import geometric_median  # noqa: E402
from fedshield.aggregators.krum import krum, multi_krum  # noqa: E402
from fedshield.aggregators.median import median  # noqa: E402
from fedshield.aggregators.norm_bound import norm_bound  # noqa: E402
from fedshield.aggregators.trimmed_mean import trimmed_mean  # noqa: E402

#: tolerance of the output comparison (float32 sums of up to n values of magnitude ~5)
RTOL = 1e-5
ATOL = 1e-5

#: target ratio per rule: (baseline, max ratio)
TARGETS: dict[str, tuple[str, float]] = {
    "krum": ("gemm", 2.0),
    "multi_krum": ("gemm", 2.0),
    "bulyan": ("gemm", 10.0),
    "median": ("sort", 2.0),
    "trimmed_mean": ("sort", 2.0),
}


# --------------------------------------------------------------------------- measuring


def _busy_jiffies() -> int | None:
    """Busy CPU time of the whole machine (all cores) from /proc/stat, in clock ticks."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle


@dataclass
class Timing:
    """Wall times of the runs of one function, and the machine's load meanwhile."""

    runs: list[float] = field(default_factory=list)
    foreign_load: float | None = None  # cores used by other processes while timed

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def time_call(fn: Callable[[], Any], repeats: int, *, warmup: bool = True) -> tuple[Timing, Any]:
    """Median wall time of ``fn()`` over ``repeats`` runs (after one untimed warm-up)."""
    out = fn() if warmup else None
    timing = Timing()
    busy0, cpu0, wall0 = _busy_jiffies(), time.process_time(), time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        timing.runs.append(time.perf_counter() - t0)
    busy1, cpu1, wall1 = _busy_jiffies(), time.process_time(), time.perf_counter()
    if busy0 is not None and busy1 is not None:
        tick = os.sysconf("SC_CLK_TCK")
        foreign = (busy1 - busy0) / tick - (cpu1 - cpu0)
        timing.foreign_load = max(0.0, foreign / (wall1 - wall0))
    return timing, out


# --------------------------------------------------------------------------- data


def make_updates(n: int, d: int, f: int, seed: int) -> torch.Tensor:
    """The benchmark's update matrix (see the module docstring), float32 ``[n, d]``."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(d, generator=g) * 0.5
    sigma = torch.rand(n - f, 1, generator=g) + 0.5
    honest = torch.randn(n - f, d, generator=g).mul_(sigma).add_(mu)
    byzantine = torch.randn(f, d, generator=g).add_(mu, alpha=-3.0)
    rows = torch.cat([honest, byzantine])
    del honest, byzantine
    return rows[torch.randperm(n, generator=g)].contiguous()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's description)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------- comparing


def compare(ours: np.ndarray, theirs: np.ndarray) -> dict[str, Any]:
    """``np.allclose`` verdict, count of coordinates outside it and largest difference."""
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    bad = ~np.isclose(ours, theirs, rtol=RTOL, atol=ATOL)
    return {
        "equal": bool(not bad.any()),
        "identical": bool(np.array_equal(ours, theirs)),
        "mismatches": int(bad.sum()),
        "max_abs_diff": float(diff.max()),
    }


def mismatch_cause(rule: str, ours: np.ndarray, theirs: np.ndarray, x: np.ndarray) -> str:
    """A short explanation of a mismatch (which rows were picked, ties in the trim)."""
    if rule == "krum":
        i = [j for j in range(x.shape[0]) if np.array_equal(x[j], ours)]
        k = [j for j in range(x.shape[0]) if np.array_equal(x[j], theirs)]
        return f"different rows selected: fedshield {i}, Flower {k}"
    bad = np.flatnonzero(~np.isclose(ours, theirs, rtol=RTOL, atol=ATOL))
    return (
        f"{bad.size} coordinates differ (first {bad[:5].tolist()}): different selections or "
        "ties at the edge of a per-coordinate window"
    )


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    n, d, f = args.n, args.d, args.f
    f_bulyan = min(f, (n - 3) // 4)
    if n <= 2 * f + 2:
        raise SystemExit(f"--f {f} too large for Krum with n = {n} (needs n > 2f + 2)")
    if f_bulyan < 0:
        raise SystemExit(f"n = {n} is too small for Bulyan (needs n >= 3)")

    print(f"data: n={n} d={d:,} f={f} (bulyan f={f_bulyan}) seed={args.seed}", flush=True)
    u = make_updates(n, d, f, args.seed)
    x = u.numpy()
    norms = torch.linalg.vector_norm(u, dim=1)
    tau = float(norms.median())
    center = torch.zeros(d)

    rows: list[dict[str, Any]] = []
    baselines: dict[str, Timing] = {}

    def log(msg: str) -> None:
        print(msg, flush=True)

    t, _ = time_call(lambda: u @ u.T, args.repeats)
    baselines["gemm"] = t
    log(f"  gemm          {t.median:8.3f} s")
    t, _ = time_call(lambda: torch.sort(u, dim=0), args.repeats)
    baselines["sort"] = t
    log(f"  torch.sort    {t.median:8.3f} s")

    rules: list[tuple[str, Callable[[], torch.Tensor], str]] = [
        ("krum", lambda: krum(u, num_byzantine=f), "gemm"),
        ("multi_krum", lambda: multi_krum(u, num_byzantine=f, num_selected=n - f), "gemm"),
        ("bulyan", lambda: bulyan(u, num_byzantine=f_bulyan), "gemm"),
        ("median", lambda: median(u), "sort"),
        ("trimmed_mean", lambda: trimmed_mean(u, num_trim=f), "sort"),
        ("geometric_median", lambda: geometric_median(u), "gemm"),
        ("centered_clipping", lambda: centered_clipping(u, center=center, tau=tau), "gemm"),
        ("norm_bound", lambda: norm_bound(u), "gemm"),
    ]
    outputs: dict[str, np.ndarray] = {}
    for name, fn, base in rules:
        t, out = time_call(fn, args.repeats)
        outputs[name] = out.numpy()
        ratio = t.median / baselines[base].median
        target = TARGETS.get(name)
        row: dict[str, Any] = {
            "rule": name,
            "fedshield_s": t.median,
            "fedshield_runs": t.runs,
            "foreign_load": t.foreign_load,
            "ratio": ratio,
            "ratio_to": base,
            "target": None if target is None else f"<= {target[1]:g}x {target[0]}",
            "target_met": None if target is None else ratio <= target[1],
            "flower_s": None,
            "flower_runs": [],
            "speedup": None,
            "equal": None,
            "note": "",
        }
        rows.append(row)
        log(f"  {name:<18} {t.median:8.3f} s  ({ratio:.2f}x {base})")

    flower = _flower(args) if not args.no_flower else None
    if flower is not None:
        agg = flower
        results = [([x[i]], 1) for i in range(n)]
        calls: dict[str, Callable[[], np.ndarray]] = {
            "krum": lambda: agg.aggregate_krum(list(results), num_malicious=f, to_keep=0)[0],
            "multi_krum": lambda: agg.aggregate_krum(list(results), num_malicious=f, to_keep=n - f)[
                0
            ],
            "bulyan": lambda: agg.aggregate_bulyan(
                list(results),  # Flower pops the selected entries from this list
                num_malicious=f_bulyan,
                aggregation_rule=agg.aggregate_krum,
                to_keep=0,
            )[0],
            "median": lambda: agg.aggregate_median(list(results))[0],
            "trimmed_mean": lambda: agg.aggregate_trimmed_avg(
                list(results), proportiontocut=(f + 0.5) / n
            )[0],
        }
        by_name = {r["rule"]: r for r in rows}
        for name, flower_fn in calls.items():
            row = by_name[name]
            t0 = time.perf_counter()
            first = flower_fn()
            first_s = time.perf_counter() - t0
            if first_s > args.flower_once_s or args.flower_repeats <= 1:
                t, theirs = Timing(runs=[first_s]), first
            else:  # the first run was the warm-up
                t, theirs = time_call(flower_fn, args.flower_repeats, warmup=False)
            row["flower_foreign_load"] = t.foreign_load
            theirs = np.asarray(theirs)
            row["flower_s"] = t.median
            row["flower_runs"] = t.runs
            row["speedup"] = t.median / row["fedshield_s"]
            cmp = compare(outputs[name], theirs)
            row.update(cmp)
            if not cmp["equal"]:
                row["note"] = mismatch_cause(name, outputs[name], theirs, x)
            elif not cmp["identical"]:
                row["note"] = f"float32 rounding only (max |diff| {cmp['max_abs_diff']:.1e})"
            log(
                f"  flower {name:<11} {t.median:8.3f} s  x{row['speedup']:.1f}  "
                f"equal={cmp['equal']} identical={cmp['identical']} "
                f"max|diff|={cmp['max_abs_diff']:.2e}"
            )

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(
            [".venv-bench/bin/python", "benchmarks/aggregators.py", *map(shlex.quote, args.argv)]
        ),
        "machine": {
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": args.threads,
            "python_version": platform.python_version(),
            "torch_version": torch.__version__,
            "numpy_version": np.__version__,
            "flwr_version": None if flower is None else _flwr_version(),
            "platform": platform.platform(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
        "config": {
            "n": n,
            "d": d,
            "f": f,
            "f_bulyan": f_bulyan,
            "trimmed_mean_num_trim": f,
            "flower_trimmed_proportiontocut": (f + 0.5) / n,
            "multi_krum_num_selected": n - f,
            "centered_clipping_tau": tau,
            "repeats": args.repeats,
            "flower_repeats": args.flower_repeats,
            "flower_once_s": args.flower_once_s,
            "seed": args.seed,
            "rtol": RTOL,
            "atol": ATOL,
            "dtype": "float32",
        },
        "baselines": {
            k: {"s": v.median, "runs": v.runs, "foreign_load": v.foreign_load}
            for k, v in baselines.items()
        },
        "rows": rows,
    }


def _flower(args: argparse.Namespace) -> Any:
    try:
        from flwr.server.strategy import aggregate as flower_aggregate
    except ImportError as err:
        print(f"flwr not importable ({err}): Flower columns left empty", flush=True)
        return None
    return flower_aggregate


def _flwr_version() -> str | None:
    try:
        import flwr

        return str(flwr.__version__)
    except ImportError:
        return None


# --------------------------------------------------------------------------- output


def _fmt(value: Any, spec: str, missing: str = "n/a") -> str:
    return missing if value is None else format(value, spec)


def markdown(doc: dict[str, Any]) -> str:
    m, c, b = doc["machine"], doc["config"], doc["baselines"]
    lines = [
        "# Robust aggregators: speed and agreement with Flower",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores (torch threads {m['torch_threads']}), "
        f"torch {m['torch_version']}, numpy {m['numpy_version']}, "
        f"flwr {m['flwr_version'] or 'not installed'}, Python {m['python_version']}. "
        f"Date: {doc['date']}. Peak RSS {m['peak_rss_mb']:.0f} MB.",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Data: one seeded float32 update matrix, n = {c['n']} clients x d = {c['d']:,} "
        f"parameters: {c['n'] - c['f']} honest rows `mu + sigma_i N(0, I)` "
        "(`sigma_i ~ U(0.5, 1.5)`), "
        f"{c['f']} Byzantine rows `-3 mu + N(0, I)`, shuffled. Krum / Multi-Krum use f = "
        f"{c['f']} (Multi-Krum keeps m = n - f = {c['multi_krum_num_selected']}), Bulyan "
        f"f = {c['f_bulyan']} (n >= 4f + 3), trimmed mean cuts {c['trimmed_mean_num_trim']} "
        f"per end (Flower: proportiontocut = {c['flower_trimmed_proportiontocut']:g}).",
        "",
        f"Baselines (median of {c['repeats']}): pairwise-distance GEMM `U @ U.T` "
        f"**{b['gemm']['s']:.3f} s**; `torch.sort(U, dim=0)` **{b['sort']['s']:.3f} s**.",
        "",
        "| rule | fedshield s | ratio | target | Flower 1.41 s | speed-up vs Flower | "
        "outputs equal | foreign load |",
        "|---|---:|---:|---|---:|---:|---|---:|",
    ]
    for r in doc["rows"]:
        target = (
            "-"
            if r["target"] is None
            else (f"{r['target']} ({'met' if r['target_met'] else 'NOT met'})")
        )
        flower_s = r["flower_s"]
        runs = len(r["flower_runs"])
        flower_cell = "-" if flower_s is None else f"{flower_s:.3f} ({runs} run{'s' * (runs > 1)})"
        equal = "-" if r["equal"] is None else ("yes" if r["equal"] else "**no**")
        if r["equal"] and r.get("identical"):
            equal = "yes (bit-identical)"
        lines.append(
            f"| {r['rule']} | {r['fedshield_s']:.3f} | {r['ratio']:.2f}x {r['ratio_to']} | "
            f"{target} | {flower_cell} | {_fmt(r['speedup'], '.1f', '-')}"
            f"{'x' if r['speedup'] is not None else ''} | {equal} | "
            f"{_fmt(r['foreign_load'], '.2f')} |"
        )
    lines += [
        "",
        f"fedshield times are the median of {c['repeats']} runs after one warm-up call; so are "
        f"Flower's ({c['flower_repeats']} runs after a warm-up), except that a Flower rule "
        f"whose first run takes more than {c['flower_once_s']:g} s is timed by that one run. "
        "Outputs are compared with "
        f"`np.allclose(rtol={c['rtol']:g}, atol={c['atol']:g})`. Foreign load: cores used by "
        "other processes while the fedshield rule was timed (the machine is shared).",
        "",
        "Notes:",
        "",
    ]
    for r in doc["rows"]:
        if r["note"]:
            lines.append(f"- {r['rule']}: {r['note']}")
    missed = [r["rule"] for r in doc["rows"] if r["target_met"] is False]
    lines.append("- targets: all met" if not missed else f"- targets NOT met: {', '.join(missed)}")
    return "\n".join(lines) + "\n"


def print_table(doc: dict[str, Any]) -> None:
    head = f"{'rule':<18} {'fedshield s':>11} {'ratio':>12} {'Flower s':>9} {'speed-up':>9}  equal"
    print("\n" + head + "\n" + "-" * len(head))
    for r in doc["rows"]:
        print(
            f"{r['rule']:<18} {r['fedshield_s']:>11.3f} "
            f"{r['ratio']:>6.2f}x {r['ratio_to']:<4} "
            f"{_fmt(r['flower_s'], '9.3f', '      n/a')} "
            f"{_fmt(r['speedup'], '8.1f', '     n/a')}x  {r['equal']}"
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="clients (rows)")
    p.add_argument("--d", type=int, default=1_000_000, help="parameters (columns)")
    p.add_argument("--f", type=int, default=20, help="Byzantine rows / Krum's f / num_trim")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per fedshield rule")
    p.add_argument("--flower-repeats", type=int, default=3, help="timed runs per Flower rule")
    p.add_argument(
        "--flower-once-s",
        type=float,
        default=20.0,
        help="a Flower rule whose first run takes longer than this is timed once",
    )
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-flower", action="store_true", help="skip the Flower columns")
    p.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks" / "results" / "aggregators.json"
    )
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-aggregators.md")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    doc = run(args)
    print_table(doc)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(doc))
    print(f"\nwrote {args.json} and {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
