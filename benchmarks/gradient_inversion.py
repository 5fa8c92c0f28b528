"""Gradient inversion (DLG, Inverting Gradients) on MNIST against gradient defenses and
against multi-step FedAvg uploads.

Setting: one MNIST test image per attack (the first ``--images`` of the test split),
LeNet (sigmoid, 1x28x28) at initialisation with Zhu et al.'s uniform(-0.5, 0.5) weights
(one model per image, seed = image index), the gradient of the cross-entropy on that
image. The attacker knows the model and the (defended) gradient; the label comes from
iDLG on the defended gradient. Attacks: DLG (L-BFGS with strong-Wolfe line search,
``--dlg-steps`` steps, output clamped to [0, 1]) and Inverting Gradients (Adam on the
sign of the gradient, ``--ig-iterations``, TV 1e-4). Defenses: none; Gaussian noise
N(0, s^2) added to every gradient entry; top-k pruning (keep the largest-magnitude
fraction of the flat gradient, zero the rest); b-bit uniform quantisation of each
parameter tensor's gradient between its min and max. Scores: PSNR and SSIM on [0, 1]
pixels (``fedshield.metrics``). Also times a 4000-iteration IG attack on one image.

FedAvg rows (Geiping et al. 2020, Section 6): the client runs ``K`` local steps of
``torch.optim.SGD`` (``--fedavg-lr``) and uploads ``local - global`` parameters; the
attacker knows the recipe and replays the steps (``invert_fedavg_update``, IG through
the local steps, ``--fedavg-iterations``). ``K`` in ``--fedavg-steps``; one image per
client (label from iDLG on ``-update``) and, with ``--fedavg-batch-clients``, clients
holding 4 images that train on mini-batches of ``--fedavg-batch-size`` (labels given,
reconstructions Hungarian-matched to the originals).

Writes ``benchmarks/results/gradient_inversion.json``, ``docs/img/gradient_inversion.png``
(originals top row, then one row per defense and attack) and ``docs/privacy-attacks.md``
(generated in full; ``--doc-only`` rewrites it from the JSON without attacking;
``--quick`` is a small smoke run whose outputs go under ``--out``)::

    python benchmarks/gradient_inversion.py [--images 10] [--ig-iterations 500]
    python benchmarks/gradient_inversion.py --quick --out /tmp/gi-quick
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from fedshield.attacks.privacy import (  # noqa: E402
    batch_labels,
    flat_gradient,
    hungarian_match,
    idlg_label,
    invert_gradients,
    zhu_init_,
)
from fedshield.attacks.privacy.fedavg_inversion import invert_fedavg_update  # noqa: E402
from fedshield.attacks.privacy.gradient_inversion import _last_weight_grad  # noqa: E402
from fedshield.data import load_dataset  # noqa: E402
from fedshield.data.datasets import MNIST_MEAN, MNIST_STD  # noqa: E402
from fedshield.engine.layout import ParamLayout  # noqa: E402
from fedshield.metrics import psnr, ssim  # noqa: E402
from fedshield.models import build_model  # noqa: E402
from fedshield.privacy.mechanisms import gaussian_noise  # noqa: E402

SHAPE = (1, 28, 28)
DEFENSES: tuple[str, ...] = (
    "none",
    "gauss-1e-3",
    "gauss-1e-2",
    "gauss-1e-1",
    "topk-10%",
    "topk-1%",
    "quant-8bit",
    "quant-4bit",
)
ATTACKS: tuple[str, ...] = ("dlg", "ig")
ATTACK_NAMES = {"dlg": "DLG", "ig": "IG", "ig-fedavg": "IG (FedAvg)"}
BATCH_IMAGES = 4  # images per client in the multi-image FedAvg rows


def dlg_lenet(seed: int) -> nn.Module:
    """LeNet with Zhu et al.'s uniform(-0.5, 0.5) initialisation."""
    return zhu_init_(build_model("lenet", SHAPE, 10, seed=seed), seed=seed)


def defend(g: Tensor, layout: ParamLayout, defense: str, seed: int) -> Tensor:
    """Applies ``defense`` to the flat gradient ``g``."""
    if defense == "none":
        return g.clone()
    kind, arg = defense.split("-", 1)
    if kind == "gauss":
        gen = torch.Generator().manual_seed(10_000 + seed)
        return g + gaussian_noise(g.shape, std=float(arg), generator=gen, dtype=g.dtype)
    if kind == "topk":
        k = max(1, round(g.numel() * float(arg.rstrip("%")) / 100))
        out = torch.zeros_like(g)
        idx = g.abs().topk(k).indices
        out[idx] = g[idx]
        return out
    if kind == "quant":
        levels = 2 ** int(arg.removesuffix("bit")) - 1
        parts = []
        for t in layout.unflatten(g).values():
            lo, hi = t.min(), t.max()
            scale = (hi - lo) / levels if hi > lo else torch.ones(())
            parts.append((torch.round((t - lo) / scale) * scale + lo).reshape(-1))
        return torch.cat(parts)
    raise ValueError(defense)


def client_update(
    model: nn.Module, x: Tensor, y: Tensor, *, steps: int, lr: float, batch_size: int
) -> Tensor:
    """A FedAvg client's upload ``local - global`` (flat, parameter order): ``steps`` steps
    of ``torch.optim.SGD(lr)`` on a copy of ``model``, step ``s`` on the images
    ``s*B .. s*B+B-1`` modulo ``n`` (unshuffled passes over the local data)."""
    n = x.shape[0]
    local = copy.deepcopy(model)
    opt = torch.optim.SGD(local.parameters(), lr=lr)
    for s in range(steps):
        idx = torch.tensor([(s * batch_size + j) % n for j in range(batch_size)])
        opt.zero_grad()
        F.cross_entropy(local(x[idx]), y[idx]).backward()
        opt.step()
    return torch.cat(
        [
            (p - q).detach().reshape(-1)
            for p, q in zip(local.parameters(), model.parameters(), strict=True)
        ]
    )


def steps_name(k: int) -> str:
    return f"fedavg-{k}step" + ("" if k == 1 else "s")


def attack(
    model: nn.Module, g: Tensor, label: int, method: str, args: argparse.Namespace, seed: int
) -> Tensor:
    if method == "dlg":
        return invert_gradients(
            model,
            g,
            num_images=1,
            image_shape=SHAPE,
            labels=torch.tensor([label]),
            method="dlg",
            iterations=args.dlg_steps,
            line_search="strong_wolfe",
            clamp=True,
            seed=seed,
        )
    return invert_gradients(
        model,
        g,
        num_images=1,
        image_shape=SHAPE,
        labels=torch.tensor([label]),
        method="ig",
        iterations=args.ig_iterations,
        seed=seed,
    )


def save_grid(originals: Tensor, recons: dict[str, Tensor], path: Path) -> None:
    """Originals on top, one row per defense / attack; a row with fewer images than
    originals leaves the remaining cells empty."""
    rows = [("original", originals), *recons.items()]
    n = originals.shape[0]
    width = 1.0 * n + 2.4  # inches; 2.4 for the row names
    fig = Figure(figsize=(width, 1.0 * len(rows)))
    FigureCanvasAgg(fig)
    for r, (name, imgs) in enumerate(rows):
        for c in range(n):
            ax = fig.add_subplot(len(rows), n, r * n + c + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c < imgs.shape[0]:
                ax.imshow(imgs[c, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                for spine in ax.spines.values():
                    spine.set_visible(False)
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(
        left=2.4 / width, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def summarise(
    psnrs: list[float],
    ssims: list[float],
    labels_correct: int,
    seconds: list[float],
    **extra: object,
) -> dict[str, object]:
    return {
        "n": len(psnrs),
        "psnr": psnrs,
        "ssim": ssims,
        "psnr_mean": sum(psnrs) / len(psnrs),
        "ssim_mean": sum(ssims) / len(ssims),
        "n_ge_30db": sum(p >= 30 for p in psnrs),
        "labels_correct": labels_correct,
        "seconds_mean": sum(seconds) / len(seconds),
        **extra,
    }


def cosine(a: Tensor, b: Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def run_defenses(
    args: argparse.Namespace,
    xs: Tensor,
    ys: Tensor,
    results: dict[str, dict[str, dict[str, object]]],
    recons: dict[str, Tensor],
    t_start: float,
) -> None:
    for defense in DEFENSES:
        for method in ATTACKS:
            psnrs: list[float] = []
            ssims: list[float] = []
            times: list[float] = []
            imgs: list[Tensor] = []
            labels_ok = 0
            for i in range(args.images):
                model = dlg_lenet(i)
                layout = ParamLayout.from_module(model)
                g = defend(flat_gradient(model, xs[i : i + 1], ys[i : i + 1]), layout, defense, i)
                label = idlg_label(g, layout)
                labels_ok += int(label == int(ys[i]))
                t0 = time.time()
                r = attack(model, g, label, method, args, seed=i).clamp(0, 1)
                times.append(time.time() - t0)
                imgs.append(r)
                psnrs.append(float(psnr(xs[i : i + 1], r)))
                ssims.append(float(ssim(xs[i : i + 1], r)))
            record(
                results, recons, defense, method, imgs, summarise(psnrs, ssims, labels_ok, times)
            )
            report(defense, method, results, t_start)


def run_fedavg_single(
    args: argparse.Namespace,
    xs: Tensor,
    ys: Tensor,
    results: dict[str, dict[str, dict[str, object]]],
    recons: dict[str, Tensor],
    t_start: float,
) -> None:
    """One image per client, ``K`` local SGD steps on it; label by iDLG on ``-update``."""
    for k in args.fedavg_steps:
        psnrs: list[float] = []
        ssims: list[float] = []
        times: list[float] = []
        cosines: list[float] = []
        imgs: list[Tensor] = []
        labels_ok = 0
        for i in range(args.images):
            model = dlg_lenet(i)
            layout = ParamLayout.from_module(model)
            x, y = xs[i : i + 1], ys[i : i + 1]
            u = client_update(model, x, y, steps=k, lr=args.fedavg_lr, batch_size=1)
            cosines.append(cosine(-u, flat_gradient(model, x, y)))
            label = idlg_label(-u, layout)
            labels_ok += int(label == int(ys[i]))
            t0 = time.time()
            r = invert_fedavg_update(
                model,
                u,
                num_images=1,
                image_shape=SHAPE,
                local_steps=k,
                local_lr=args.fedavg_lr,
                labels=torch.tensor([label]),
                iterations=args.fedavg_iterations,
                seed=i,
            ).clamp(0, 1)
            times.append(time.time() - t0)
            imgs.append(r)
            psnrs.append(float(psnr(x, r)))
            ssims.append(float(ssim(x, r)))
        row = summarise(
            psnrs,
            ssims,
            labels_ok,
            times,
            local_steps=k,
            batch_size=1,
            images_per_client=1,
            cos_update_gradient=cosines,
        )
        record(results, recons, steps_name(k), "ig-fedavg", imgs, row)
        report(steps_name(k), "ig-fedavg", results, t_start)


def run_fedavg_batch(
    args: argparse.Namespace,
    xs: Tensor,
    ys: Tensor,
    results: dict[str, dict[str, dict[str, object]]],
    recons: dict[str, Tensor],
    t_start: float,
) -> None:
    """Clients with ``BATCH_IMAGES`` images: one full-batch step for ``K = 1``, else
    mini-batches of ``--fedavg-batch-size``; labels given (see the doc), Hungarian
    matching before scoring."""
    clients = min(args.fedavg_batch_clients, args.images // BATCH_IMAGES)
    for k in args.fedavg_steps:
        b = BATCH_IMAGES if k == 1 else args.fedavg_batch_size
        psnrs: list[float] = []
        ssims: list[float] = []
        times: list[float] = []
        cosines: list[float] = []
        imgs: list[Tensor] = []
        labels_ok = 0
        for c in range(clients):
            model = dlg_lenet(c)
            layout = ParamLayout.from_module(model)
            sl = slice(c * BATCH_IMAGES, (c + 1) * BATCH_IMAGES)
            x, y = xs[sl], ys[sl]
            u = client_update(model, x, y, steps=k, lr=args.fedavg_lr, batch_size=b)
            cosines.append(cosine(-u, flat_gradient(model, x, y)))
            est = batch_labels(_last_weight_grad(-u, layout), BATCH_IMAGES).tolist()
            truth = y.tolist()
            labels_ok += sum(min(est.count(v), truth.count(v)) for v in set(truth))
            t0 = time.time()
            r = invert_fedavg_update(
                model,
                u,
                num_images=BATCH_IMAGES,
                image_shape=SHAPE,
                local_steps=k,
                local_lr=args.fedavg_lr,
                batch_size=b,
                labels=y,
                iterations=args.fedavg_iterations,
                seed=c,
            ).clamp(0, 1)
            times.extend([(time.time() - t0) / BATCH_IMAGES] * BATCH_IMAGES)
            r = r[hungarian_match(r, x)]
            imgs.append(r)
            psnrs.extend(float(psnr(x[j : j + 1], r[j : j + 1])) for j in range(BATCH_IMAGES))
            ssims.extend(float(ssim(x[j : j + 1], r[j : j + 1])) for j in range(BATCH_IMAGES))
        if not imgs:
            return
        name = f"{steps_name(k)}-{BATCH_IMAGES}img-B{b}"
        row = summarise(
            psnrs,
            ssims,
            labels_ok,
            times,
            local_steps=k,
            batch_size=b,
            images_per_client=BATCH_IMAGES,
            labels_given=True,
            cos_update_gradient=cosines,
        )
        record(results, recons, name, "ig-fedavg", imgs, row)
        report(name, "ig-fedavg", results, t_start)


def record(
    results: dict[str, dict[str, dict[str, object]]],
    recons: dict[str, Tensor],
    defense: str,
    method: str,
    imgs: list[Tensor],
    row: dict[str, object],
) -> None:
    results.setdefault(defense, {})[method] = row
    recons[f"{defense} / {ATTACK_NAMES[method]}"] = torch.cat(imgs)


def report(
    defense: str, method: str, results: dict[str, dict[str, dict[str, object]]], t_start: float
) -> None:
    r = results[defense][method]
    psnrs = r["psnr"]
    assert isinstance(psnrs, list)
    print(
        f"{defense + ' / ' + method:34s} PSNR {[round(p, 1) for p in psnrs]} SSIM mean "
        f"{r['ssim_mean']:.3f} ({time.time() - t_start:.0f}s)",
        flush=True,
    )


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--dlg-steps", type=int, default=20)
    ap.add_argument("--ig-iterations", type=int, default=300)
    ap.add_argument("--timing-iterations", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fedavg-steps", default="1,5,20", help="comma-separated local steps K")
    ap.add_argument("--fedavg-lr", type=float, default=0.1, help="the client's SGD lr")
    ap.add_argument("--fedavg-iterations", type=int, default=None, help="default: --ig-iterations")
    ap.add_argument("--fedavg-batch-clients", type=int, default=1)
    ap.add_argument("--fedavg-batch-size", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (use with --out)")
    ap.add_argument("--doc-only", action="store_true", help="rewrite the doc from the JSON")
    ap.add_argument("--out", type=Path, default=ROOT, help="root of the output paths")
    args = ap.parse_args()
    if args.quick:
        args.images, args.dlg_steps, args.ig_iterations = 4, 3, 20
        args.timing_iterations, args.fedavg_steps = 50, "1,3"
    args.fedavg_steps = [int(k) for k in str(args.fedavg_steps).split(",")]
    if args.fedavg_iterations is None:
        args.fedavg_iterations = args.ig_iterations
    return args


def main() -> None:
    args = parse_args()
    json_path = args.out / "benchmarks" / "results" / "gradient_inversion.json"
    doc_path = args.out / "docs" / "privacy-attacks.md"
    if args.doc_only:
        data = json.loads(json_path.read_text())
        write_doc(data["meta"], data["results"], doc_path)
        return
    torch.set_num_threads(args.threads)
    t_start = time.time()
    load_start = os.getloadavg()[0]

    ds = load_dataset("mnist")
    xs = (ds.x_test[: args.images] * MNIST_STD + MNIST_MEAN).clamp(0, 1)
    ys = ds.y_test[: args.images]

    results: dict[str, dict[str, dict[str, object]]] = {}
    recons: dict[str, Tensor] = {}
    run_defenses(args, xs, ys, results, recons, t_start)
    t_fedavg = time.time()
    run_fedavg_single(args, xs, ys, results, recons, t_start)
    run_fedavg_batch(args, xs, ys, results, recons, t_start)
    fedavg_s = time.time() - t_fedavg

    # timing: one long IG attack on image 0
    model = dlg_lenet(0)
    g = flat_gradient(model, xs[:1], ys[:1])
    t0 = time.time()
    r = invert_gradients(
        model,
        g,
        num_images=1,
        image_shape=SHAPE,
        labels=ys[:1],
        method="ig",
        iterations=args.timing_iterations,
        seed=0,
    )
    ig_long_s = time.time() - t0
    ig_long_psnr = float(psnr(xs[:1], r))
    print(f"IG {args.timing_iterations} iterations: {ig_long_s:.1f}s, PSNR {ig_long_psnr:.1f}")

    meta = {
        "date": dt.date.today().isoformat(),
        "command": "python benchmarks/gradient_inversion.py " + " ".join(sys.argv[1:]),
        "images": args.images,
        "dlg_steps": args.dlg_steps,
        "ig_iterations": args.ig_iterations,
        "threads": args.threads,
        "fedavg_steps": args.fedavg_steps,
        "fedavg_lr": args.fedavg_lr,
        "fedavg_iterations": args.fedavg_iterations,
        "fedavg_batch_clients": min(args.fedavg_batch_clients, args.images // BATCH_IMAGES),
        "fedavg_batch_size": args.fedavg_batch_size,
        "fedavg_batch_images": BATCH_IMAGES,
        "fedavg_seconds": fedavg_s,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "ig_timing_iterations": args.timing_iterations,
        "ig_timing_seconds": ig_long_s,
        "ig_timing_psnr": ig_long_psnr,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0],
        "total_seconds": time.time() - t_start,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    save_grid(xs, recons, args.out / "docs" / "img" / "gradient_inversion.png")
    write_doc(meta, results, doc_path)
    print(json.dumps(meta, indent=2))


Results = dict[str, dict[str, dict[str, object]]]


def _num(row: dict[str, object], key: str) -> float:
    v = row[key]
    assert isinstance(v, int | float)
    return float(v)


def _vals(row: dict[str, object], key: str = "psnr") -> list[float]:
    v = row[key]
    assert isinstance(v, list)
    return [float(p) for p in v]


def _span(vals: list[float]) -> str:
    return f"{min(vals):.1f}-{max(vals):.1f} dB" if vals else "n/a"


def _ge30(row: dict[str, object]) -> str:
    return f"{int(_num(row, 'n_ge_30db'))}/{int(_num(row, 'n'))}"


def table(meta: dict[str, object], results: Results) -> str:
    lines = [
        "| defense / upload | attack | PSNR mean (dB) | SSIM mean | images >= 30 dB "
        "| labels (iDLG / batch est.) | s / image |",
        "|---|---|---|---|---|---|---|",
    ]
    for defense, per in results.items():
        for method, r in per.items():
            n = int(_num(r, "n")) if "n" in r else int(str(meta["images"]))
            labels = f"{int(_num(r, 'labels_correct'))}/{n}"
            if r.get("labels_given"):
                labels += " (given)"
            lines.append(
                f"| {defense} | {ATTACK_NAMES.get(method, method)} | {_num(r, 'psnr_mean'):.1f} "
                f"| {_num(r, 'ssim_mean'):.3f} | {int(_num(r, 'n_ge_30db'))}/{n} | {labels} "
                f"| {_num(r, 'seconds_mean'):.1f} |"
            )
    return "\n".join(lines)


def _bullet(text: str) -> str:
    return textwrap.fill(text, width=90, subsequent_indent="  ", break_on_hyphens=False)


def _groups(vals: list[float]) -> str:
    """``"k images at a-b dB, m at c-d dB"`` split at 30 dB."""
    hi = [p for p in vals if p >= 30]
    lo = [p for p in vals if p < 30]
    parts = [f"{len(g)} at {_span(g)}" for g in (hi, lo) if g]
    return ", ".join(parts)


def reading(meta: dict[str, object], results: Results) -> list[str]:
    """The "Reading" bullets; every number is taken from ``results``."""
    out: list[str] = []
    dlg, ig = results["none"]["dlg"], results["none"]["ig"]
    rows = [r for d in DEFENSES for r in results[d].values()]
    hit = sum(int(_num(r, "labels_correct")) for r in rows)
    tot = sum(int(_num(r, "n")) for r in rows)
    out.append(
        f"**No defense**: DLG (strong-Wolfe L-BFGS, iDLG label) reaches >= 30 dB on "
        f"{_ge30(dlg)} images ({_span(_vals(dlg))}, about {_num(dlg, 'seconds_mean'):.0f} s "
        f"per image). IG with only {meta['ig_iterations']} iterations: images "
        f"{_groups(_vals(ig))}; below 30 dB the digit is usually still visible in the "
        "figure, under a noisy background (with "
        f"{meta['ig_timing_iterations']} iterations image 0 reaches "
        f"{_num(meta, 'ig_timing_psnr'):.1f} dB; more iterations or restarts are needed for "
        f"the rest, not measured here). iDLG recovers {hit} of {tot} labels over all "
        "defense rows."
    )
    g = {s: results[f"gauss-{s}"] for s in ("1e-3", "1e-2", "1e-1")}
    out.append(
        f"**Gaussian noise**: std 1e-3: DLG {_ge30(g['1e-3']['dlg'])} >= 30 dB "
        f"({_span(_vals(g['1e-3']['dlg']))}); std 1e-2: DLG {_span(_vals(g['1e-2']['dlg']))} "
        f"(SSIM {_num(g['1e-2']['dlg'], 'ssim_mean'):.2f}); std 1e-1: DLG "
        f"{_span(_vals(g['1e-1']['dlg']))}, IG {_span(_vals(g['1e-1']['ig']))} (SSIM "
        f"{_num(g['1e-1']['dlg'], 'ssim_mean'):.2f} / {_num(g['1e-1']['ig'], 'ssim_mean'):.2f})."
    )
    topk = [p for d in ("topk-10%", "topk-1%") for r in results[d].values() for p in _vals(r)]
    out.append(
        f"**Top-k pruning** (keep 10% or 1%): both attacks end at {_span(topk)}. With 90%+ "
        "of the entries zeroed, the matched gradient is no longer the gradient of any image "
        "for this model, so the optimisers find nothing close."
    )
    q8, q4 = results["quant-8bit"]["dlg"], results["quant-4bit"]["dlg"]
    out.append(
        f"**Quantisation**: 8 bits: DLG {_span(_vals(q8))}, {_ge30(q8)} >= 30 dB (no "
        f"defense: {_ge30(dlg)}); 4 bits: DLG {_span(_vals(q4))}, SSIM "
        f"{_num(q4, 'ssim_mean'):.2f} (see the figure for how much of the digits survives)."
    )
    fedavg = [per["ig-fedavg"] for per in results.values() if "ig-fedavg" in per]
    single = [r for r in fedavg if r.get("images_per_client") == 1]
    batch = [r for r in fedavg if r.get("images_per_client", 1) != 1]
    if single:
        parts = [
            f"K = {int(_num(r, 'local_steps'))}: {_num(r, 'psnr_mean'):.1f} dB mean, "
            f"images {_groups(_vals(r))}; cos(update, -gradient at the global model) "
            f"{min(_vals(r, 'cos_update_gradient')):.4f}-"
            f"{max(_vals(r, 'cos_update_gradient')):.4f}"
            for r in single
        ]
        out.append(
            f"**FedAvg, one image per client** (local lr {meta['fedavg_lr']}, attack "
            f"{meta['fedavg_iterations']} iterations through the replayed steps): "
            + "; ".join(parts)
            + f". IG on the plain gradient (same iterations): {_num(ig, 'psnr_mean'):.1f} "
            f"dB, {_ge30(ig)} >= 30 dB. Every local step sees the same image, so the K "
            "gradients point in nearly the same direction (the cosine) and the upload is "
            "almost a scaled gradient: local steps on their own do not hide a single image "
            "from a server that knows the recipe and replays it; the cost is K times the "
            "attack's compute (the s / image column)."
        )
    if batch:
        parts = [
            f"K = {int(_num(r, 'local_steps'))} (B = {int(_num(r, 'batch_size'))}): "
            f"{_num(r, 'psnr_mean'):.1f} dB mean ({_span(_vals(r))})"
            for r in batch
        ]
        out.append(
            f"**FedAvg, {meta['fedavg_batch_images']} images per client** "
            f"({meta['fedavg_batch_clients']} client, labels given, Hungarian-matched): "
            + "; ".join(parts)
            + ". The K = 1 row is plain FedSGD on the 4 images, the baseline for the "
            "others: at this iteration budget IG does not invert a 4-image MNIST "
            "gradient either, so these rows measure the difficulty of the batch, not a "
            "protection by the local steps (a 4-image FedAvg client with 4 steps, "
            "mini-batches of 2 and momentum 0.9 is inverted on 8x8 digits, see "
            "`tests/attacks/test_fedavg_inversion.py`). The labels are given because with "
            "mini-batches the attacker must also know which image went into which step; "
            "the batch label estimate only gives the multiset (its hits are in the labels "
            "column)."
        )
    out.append(
        "Caveat: these are attacks at a randomly initialised sigmoid LeNet with Zhu et "
        "al.'s init, the most favourable setting for the attacker; no training utility of "
        "the defended gradients was measured here."
    )
    return [_bullet("- " + b) for b in out]


def write_doc(meta: dict[str, object], results: Results, path: Path) -> None:
    """Writes the whole ``docs/privacy-attacks.md`` from the benchmark's results."""
    n = meta["images"]
    settings = [
        f"Data: the first {n} MNIST test images, pixels in [0, 1] (`x * 0.3081 + 0.1307`).",
        'Model: LeNet (`build_model("lenet", (1, 28, 28), 10)`, sigmoid, 3 conv + 1 linear) '
        "at initialisation, **with Zhu et al.'s uniform(-0.5, 0.5) initialisation of every "
        "parameter** (as in the DLG paper's released code), one model per image (seed = "
        "image index). The initialisation matters: with fedshield's default (PyTorch) init "
        "the same DLG attack stalls at 26-38 dB (4 of 10 images >= 30 dB, measured), "
        "because the small weights make the sigmoid network's gradient nearly insensitive "
        "to the input.",
        "Threat: honest-but-curious server that knows the model and sees the (defended) "
        "gradient of the cross-entropy on a single image. Labels from iDLG on the defended "
        "gradient (the labels column).",
        f'DLG: L-BFGS (lr 1, `line_search="strong_wolfe"`), {meta["dlg_steps"]} steps (runs '
        "stop early once L-BFGS stops moving), known (iDLG) label, output clamped to [0, 1].",
        f"IG: Adam on the sign of the gradient, lr 0.1, {meta['ig_iterations']} iterations "
        "(reduced from 4000 to fit the run in the time budget), TV weight 1e-4, box [0, 1].",
        "Defenses on the flat gradient: Gaussian noise N(0, s^2) per entry; top-k pruning "
        "(keep the 10% / 1% largest-magnitude entries, zero the rest); uniform quantisation "
        "of each parameter tensor's gradient to 2^b levels between its min and max.",
    ]
    if "fedavg_steps" in meta:
        steps = meta["fedavg_steps"]
        assert isinstance(steps, list)
        per_client = int(str(meta["fedavg_batch_images"]))
        last = per_client * int(str(meta["fedavg_batch_clients"])) - 1
        settings.append(
            "FedAvg uploads (Geiping et al. 2020, Section 6; their `FedAvgReconstructor`): "
            f"the client runs K = {', '.join(str(k) for k in steps)} steps of plain "
            f"`torch.optim.SGD` (lr {meta['fedavg_lr']}, no momentum) from the global model "
            "and uploads `local - global` parameters, undefended. The attacker knows the "
            "recipe (K, lr, batch size and order, number of images) and runs "
            "`invert_fedavg_update`: IG whose cosine compares the upload with the replayed "
            "local steps on the dummy images, differentiated through all K steps "
            f"({meta['fedavg_iterations']} iterations, lr 0.1, TV 1e-4). Local lr "
            f"{meta['fedavg_lr']} is a usual SGD rate for LeNet on MNIST; Geiping et al. "
            "used 1e-4, which keeps the K steps almost linear. `fedavg-Ksteps`: one image "
            "per client (model seed = image index, label from iDLG on `-update`). "
            f"`fedavg-Ksteps-{per_client}img-B*`: {meta['fedavg_batch_clients']} client with "
            f"{per_client} images (images 0-{last}, model seed 0), one full-batch step for "
            f"K = 1 (FedSGD) and mini-batches of {meta['fedavg_batch_size']} in a fixed order "
            "for K > 1, labels given to the attack, reconstructions Hungarian-matched to the "
            f"originals before scoring (the image grid shows them in columns 0-{last})."
        )
    settings.append("Scores: PSNR (dB) and SSIM (11x11 Gaussian window) from `fedshield.metrics`.")
    total_min = _num(meta, "total_seconds") / 60
    results_par = (
        f"Date {meta['date']}, command `{str(meta['command']).strip()}` ({n} images, DLG "
        f"{meta['dlg_steps']} steps, IG {meta['ig_iterations']} iterations, "
        f"{meta['threads']} thread(s); total about {total_min:.1f} minutes on 2 CPU cores"
    )
    if "fedavg_seconds" in meta:
        results_par += f", of which {_num(meta, 'fedavg_seconds') / 60:.1f} for the FedAvg rows"
    results_par += ")."
    if "load_average_start" in meta:
        results_par += (
            f" 1-minute load average {_num(meta, 'load_average_start'):.1f} at the start and "
            f"{_num(meta, 'load_average_end'):.1f} at the end (the 2 cores are shared with "
            "other jobs; the times are inflated accordingly)."
        )
    timing_it = meta.get("ig_timing_iterations", 4000)
    timing_s = _num(meta, "ig_timing_seconds" if "ig_timing_seconds" in meta else "ig_4000_seconds")
    timing_p = _num(meta, "ig_timing_psnr" if "ig_timing_psnr" in meta else "ig_4000_psnr")
    text = "\n".join(
        [
            "# Gradient inversion on MNIST (DLG, Inverting Gradients) against gradient "
            "defenses and FedAvg",
            "",
            "<!-- generated by benchmarks/gradient_inversion.py; edit the generator, not "
            "this file -->",
            "",
            "Benchmark: `benchmarks/gradient_inversion.py`; raw numbers (per-image PSNR/SSIM) in",
            "`benchmarks/results/gradient_inversion.json`.",
            "",
            "## Settings",
            "",
            *[_bullet("- " + b) for b in settings],
            "",
            "## Results",
            "",
            textwrap.fill(results_par, width=90, break_on_hyphens=False),
            "",
            textwrap.fill(
                f"Timing of one {timing_it}-iteration IG attack on one 28x28 image: "
                f"{timing_s:.1f} s (PSNR {timing_p:.1f} dB on image 0).",
                width=90,
            ),
            "",
            "<!-- table -->",
            table(meta, results),
            "<!-- table -->",
            "",
            "![originals (top) and reconstructions, one row per defense / attack]"
            "(img/gradient_inversion.png)",
            "",
            "## Reading",
            "",
            *reading(meta, results),
            "",
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(table(meta, results))


if __name__ == "__main__":
    main()
