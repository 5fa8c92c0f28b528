"""SecAgg+ cost: client and server CPU, bytes, against a plaintext sum (and Flower 1.41).

Setting: ``n`` clients with ``d = 100,000``-dimensional float32 updates (N(0, 0.5^2),
clip 1.0, ring 2^32, auto scale), ``k = default_num_neighbours(n)``,
``t = default_threshold(k)``, 0% and 10% dropouts (spread evenly over the four stages),
one round of :func:`fedshield.privacy.secagg.secure_sum` per setting. Client CPU is the
thread CPU time of each client's four round functions, averaged over clients; the server
CPU is its four round functions. Bytes are those of the serialized messages. Baseline:
plaintext sum (``updates.sum(0)``) and ``4 d`` bytes per client.

If Flower 1.41 is importable (``.venv-bench``), the same settings at 0% dropout also run
Flower's SecAgg+ client stages (``flwr.client.mod.secure_aggregation.secaggplus_mod``)
end to end in process, with the server side (routing, share combination, unmasking,
dequantization) written here after ``SecAggPlusWorkflow``; its bytes are message
payloads only (no protobuf envelope) and its CPU is process time (its Shamir sharing
uses a thread pool).

Writes ``benchmarks/results/secagg.json``::

    python benchmarks/secagg.py [--d 100000] [--n 100 200 500 1000] [--no-flower]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import cryptography  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fedshield.privacy.secagg import (  # noqa: E402
    STAGES,
    default_num_neighbours,
    default_threshold,
    secure_sum,
)

CLIP = 1.0


def _dropouts(n: int, rate: float, seed: int) -> dict[str, list[int]]:
    ids = np.random.default_rng(seed).permutation(n)[: round(rate * n)].tolist()
    return {stage: ids[i :: len(STAGES)] for i, stage in enumerate(STAGES)}


def run_fedshield(updates: torch.Tensor, rate: float) -> dict[str, Any]:
    """One secure_sum round; costs and the error against the exact clipped sum."""
    n, d = updates.shape
    k = default_num_neighbours(n)
    t = default_threshold(k)
    drops = _dropouts(n, rate, seed=n)
    wall = time.perf_counter()
    res = secure_sum(updates, threshold=t, num_neighbours=k, dropout=drops, clip=CLIP)
    wall = time.perf_counter() - wall
    assert not res.failed and res.sum is not None, res.reason
    exact = updates.clamp(-CLIP, CLIP)[res.survivors].double().sum(0)
    active = [u for u in range(n) if u not in drops["advertise_keys"]]
    cpu = torch.stack([res.client_cpu_s[s] for s in STAGES]).sum(0)
    return {
        "n": n,
        "d": d,
        "k": res.num_neighbours,
        "t": t,
        "dropout": rate,
        "survivors": len(res.survivors),
        "client_cpu_s_mean": float(cpu[active].mean()),
        "client_cpu_s_by_stage": {s: float(res.client_cpu_s[s][active].mean()) for s in STAGES},
        "server_cpu_s": float(sum(res.server_cpu_s.values())),
        "server_cpu_s_by_stage": res.server_cpu_s,
        "bytes_per_client_mean": float(res.bytes_per_client[active].double().mean()),
        "bytes_per_client_overhead_mean": float(
            res.bytes_per_client[active].double().mean() - 4 * d
        ),
        "bytes_server": res.bytes_server,
        "wall_s": wall,
        "max_abs_error": float((res.sum.double() - exact).abs().max()),
        "quant_bound": res.quant_bound,
    }


def run_plaintext(updates: torch.Tensor) -> dict[str, Any]:
    """The plaintext baseline: each client sends 4 d bytes, the server sums."""
    n, d = updates.shape
    start = time.thread_time()
    updates.sum(0)
    return {"n": n, "d": d, "server_cpu_s": time.thread_time() - start, "bytes_per_client": 4 * d}


def run_flower(updates: torch.Tensor) -> dict[str, Any]:
    """Flower 1.41's SecAgg+ client stages, in process, no dropout, same n, d, k, t."""
    # The package re-exports a function of the module's name: import the module itself.
    fm = importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")
    from flwr.common import bytes_to_ndarray, ndarrays_to_parameters
    from flwr.common.secure_aggregation.crypto.shamir import combine_shares
    from flwr.common.secure_aggregation.ndarrays_arithmetic import factor_extract
    from flwr.common.secure_aggregation.quantization import dequantize
    from flwr.common.secure_aggregation.secaggplus_constants import Key
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen

    n, d = updates.shape
    k = default_num_neighbours(n)
    t = default_threshold(k)
    target, mod = 2**22, 2**32  # Flower's defaults; its clip range is set to ours
    nids = list(range(1, n + 1))
    order = np.random.default_rng(n).permutation(nids).tolist()
    half = k // 2
    neigh = {
        nid: {order[(i + o) % n] for o in range(-half, half + 1)} for i, nid in enumerate(order)
    }
    cpu = dict.fromkeys(nids, 0.0)
    sent = dict.fromkeys(nids, 0)
    recv = dict.fromkeys(nids, 0)
    states = {nid: fm.SecAggPlusState(nid=nid) for nid in nids}
    config = {
        Key.SAMPLE_NUMBER: n,
        Key.SHARE_NUMBER: k + 1,
        Key.THRESHOLD: t,
        Key.CLIPPING_RANGE: CLIP,
        Key.TARGET_RANGE: target,
        Key.MOD_RANGE: mod,
        Key.MAX_WEIGHT: 1.0,
    }
    server = 0.0
    wall = time.perf_counter()
    pks: dict[int, tuple[bytes, bytes]] = {}
    for nid in nids:
        c0 = time.process_time()
        out = fm._setup(states[nid], config)
        cpu[nid] += time.process_time() - c0
        pks[nid] = (out[Key.PUBLIC_KEY_1], out[Key.PUBLIC_KEY_2])
        sent[nid] += 64
    boxes: dict[int, tuple[list[int], list[bytes]]] = {nid: ([], []) for nid in nids}
    for nid in nids:
        cfg = {str(v): pks[v] for v in sorted(neigh[nid])}
        recv[nid] += 64 * len(cfg)
        c0 = time.process_time()
        out = fm._share_keys(states[nid], cfg)
        cpu[nid] += time.process_time() - c0
        for dst, ct in zip(out[Key.DESTINATION_LIST], out[Key.CIPHERTEXT_LIST], strict=True):
            boxes[dst][0].append(nid)
            boxes[dst][1].append(ct)
            sent[nid] += 8 + len(ct)
    total: list[np.ndarray] | None = None
    for nid in nids:
        srcs, cts = boxes[nid]
        recv[nid] += sum(8 + len(c) for c in cts)
        cfg2 = {Key.SOURCE_LIST: srcs, Key.CIPHERTEXT_LIST: cts}
        params = ndarrays_to_parameters([updates[nid - 1].numpy()])
        c0 = time.process_time()
        out = fm._collect_masked_vectors(states[nid], cfg2, 1, params)
        cpu[nid] += time.process_time() - c0
        blobs = out[Key.MASKED_PARAMETERS]
        sent[nid] += sum(len(b) for b in blobs)
        s0 = time.process_time()
        vec = [bytes_to_ndarray(b) for b in blobs]
        total = vec if total is None else [a + b for a, b in zip(total, vec, strict=True)]
        server += time.process_time() - s0
    shares: dict[int, list[bytes]] = {nid: [] for nid in nids}
    for nid in nids:
        cfg3 = {Key.ACTIVE_NODE_ID_LIST: sorted(neigh[nid]), Key.DEAD_NODE_ID_LIST: []}
        recv[nid] += 4 * len(neigh[nid])
        c0 = time.process_time()
        out = fm._unmask(states[nid], cfg3)
        cpu[nid] += time.process_time() - c0
        for owner, share in zip(out[Key.NODE_ID_LIST], out[Key.SHARE_LIST], strict=True):
            shares[owner].append(share)
            sent[nid] += 4 + len(share)
    s0 = time.process_time()
    assert total is not None
    masked = [a % mod for a in total]
    for nid in nids:
        seed = combine_shares(shares[nid][:t])
        mask = pseudo_rand_gen(seed, mod, [a.shape for a in masked])
        masked = [(a - m) % mod for a, m in zip(masked, mask, strict=True)]
    q_total, recon = factor_extract(masked)
    agg = dequantize(recon, CLIP, target)[0] + -(n - 1) * CLIP
    agg = agg * (target / q_total) * n  # Flower returns the weighted mean; all weights 1
    server += time.process_time() - s0
    wall = time.perf_counter() - wall
    exact = updates.clamp(-CLIP, CLIP).double().sum(0).numpy()
    return {
        "n": n,
        "d": d,
        "k": k,
        "t": t,
        "client_cpu_s_mean": float(np.mean(list(cpu.values()))),
        "server_cpu_s": server,
        "bytes_per_client_mean": float(np.mean([sent[u] + recv[u] for u in nids])),
        "wall_s": wall,
        "max_abs_error": float(np.abs(agg - exact).max()),
    }


def main() -> None:
    """Run the grid, print a table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=100_000)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 200, 500, 1000])
    parser.add_argument("--dropouts", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--no-flower", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/secagg.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        import flwr

        flower_version: str | None = None if args.no_flower else flwr.__version__
    except ImportError:
        flower_version = None
    rows, plain, flower = [], [], []
    for n in args.n:
        gen = torch.Generator().manual_seed(n)
        updates = torch.randn(n, args.d, generator=gen) * 0.5
        plain.append(run_plaintext(updates))
        for rate in args.dropouts:
            rows.append(run_fedshield(updates, rate))
            r = rows[-1]
            print(
                f"fedshield n={n:5d} k={r['k']:2d} t={r['t']:2d} drop={rate:.0%} "
                f"client {r['client_cpu_s_mean'] * 1e3:7.2f} ms  "
                f"server {r['server_cpu_s']:6.2f} s  "
                f"bytes/client {r['bytes_per_client_mean'] / 1e3:8.1f} kB "
                f"(+{r['bytes_per_client_overhead_mean'] / 1e3:5.1f} kB)  "
                f"server {r['bytes_server'] / 1e6:7.1f} MB  err {r['max_abs_error']:.1e} "
                f"<= {r['quant_bound']:.1e}  wall {r['wall_s']:.1f} s",
                flush=True,
            )
        if flower_version is not None:
            flower.append(run_flower(updates))
            f = flower[-1]
            print(
                f"flower    n={n:5d} k={f['k']:2d} t={f['t']:2d} drop=0% "
                f"client {f['client_cpu_s_mean'] * 1e3:7.2f} ms  "
                f"server {f['server_cpu_s']:6.2f} s  "
                f"bytes/client {f['bytes_per_client_mean'] / 1e3:8.1f} kB  "
                f"err {f['max_abs_error']:.1e}  wall {f['wall_s']:.1f} s",
                flush=True,
            )
        p = plain[-1]
        print(f"plaintext n={n:5d} server {p['server_cpu_s'] * 1e3:.1f} ms  bytes/client "
              f"{p['bytes_per_client'] / 1e3:.1f} kB", flush=True)  # fmt: skip
        del updates
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cryptography": cryptography.__version__,
        "flwr": flower_version,
        "d": args.d,
        "clip": CLIP,
        "bits": 32,
        "torch_threads": 1,
    }
    out = {"meta": meta, "fedshield": rows, "plaintext": plain, "flower": flower}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
