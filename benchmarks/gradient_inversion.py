"""Gradient inversion (DLG, Inverting Gradients) on MNIST against gradient defenses.

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

Writes ``benchmarks/results/gradient_inversion.json``, ``docs/img/gradient_inversion.png``
(originals top row, then one row per defense and attack) and ``docs/privacy-attacks.md``::

    python benchmarks/gradient_inversion.py [--images 10] [--ig-iterations 500]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from fedshield.attacks.privacy import (  # noqa: E402
    flat_gradient,
    idlg_label,
    invert_gradients,
    zhu_init_,
)
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
    rows = [("original", originals), *recons.items()]
    n = originals.shape[0]
    fig = Figure(figsize=(1.0 * n + 1.6, 1.0 * len(rows)))
    FigureCanvasAgg(fig)
    for r, (name, imgs) in enumerate(rows):
        for c in range(n):
            ax = fig.add_subplot(len(rows), n, r * n + c + 1)
            ax.imshow(imgs[c, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(left=0.16, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--dlg-steps", type=int, default=20)
    ap.add_argument("--ig-iterations", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.time()

    ds = load_dataset("mnist")
    xs = (ds.x_test[: args.images] * MNIST_STD + MNIST_MEAN).clamp(0, 1)
    ys = ds.y_test[: args.images]

    results: dict[str, dict[str, dict[str, object]]] = {}
    recons: dict[str, Tensor] = {}
    for defense in DEFENSES:
        for method in ATTACKS:
            key = f"{defense} / {method}"
            psnrs, ssims, labels_ok, times, imgs = [], [], 0, [], []
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
            recons[key] = torch.cat(imgs)
            results.setdefault(defense, {})[method] = {
                "psnr": psnrs,
                "ssim": ssims,
                "psnr_mean": sum(psnrs) / len(psnrs),
                "ssim_mean": sum(ssims) / len(ssims),
                "n_ge_30db": sum(p >= 30 for p in psnrs),
                "labels_correct": labels_ok,
                "seconds_mean": sum(times) / len(times),
            }
            print(
                f"{key:24s} PSNR {[round(p, 1) for p in psnrs]} SSIM mean "
                f"{results[defense][method]['ssim_mean']:.3f} ({time.time() - t_start:.0f}s)",
                flush=True,
            )

    # timing: one 4000-iteration IG attack on image 0
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
        iterations=4000,
        seed=0,
    )
    ig4000_s = time.time() - t0
    ig4000_psnr = float(psnr(xs[:1], r))
    print(f"IG 4000 iterations: {ig4000_s:.1f}s, PSNR {ig4000_psnr:.1f}", flush=True)

    meta = {
        "date": dt.date.today().isoformat(),
        "command": "python benchmarks/gradient_inversion.py " + " ".join(sys.argv[1:]),
        "images": args.images,
        "dlg_steps": args.dlg_steps,
        "ig_iterations": args.ig_iterations,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "ig_4000_seconds": ig4000_s,
        "ig_4000_psnr": ig4000_psnr,
        "total_seconds": time.time() - t_start,
    }
    out = ROOT / "benchmarks" / "results" / "gradient_inversion.json"
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    save_grid(xs, recons, ROOT / "docs" / "img" / "gradient_inversion.png")
    write_doc(meta, results)


def write_doc(meta: dict[str, object], results: dict[str, dict[str, dict[str, object]]]) -> None:
    n = meta["images"]
    lines = [
        "| defense | attack | PSNR mean (dB) | SSIM mean | images >= 30 dB | iDLG labels "
        "| s / image |",
        "|---|---|---|---|---|---|---|",
    ]
    for defense, per in results.items():
        for method, r in per.items():
            lines.append(
                f"| {defense} | {method.upper()} | {r['psnr_mean']:.1f} | {r['ssim_mean']:.3f} "
                f"| {r['n_ge_30db']}/{n} | {r['labels_correct']}/{n} | {r['seconds_mean']:.1f} |"
            )
    table = "\n".join(lines)
    path = ROOT / "docs" / "privacy-attacks.md"
    marker = "<!-- table -->"
    if path.exists() and path.read_text().count(marker) == 2:
        head, _, tail = path.read_text().split(marker)
        body = f"{marker}\n{table}\n{marker}"
        text = head + body + tail
    else:
        text = f"{marker}\n{table}\n{marker}\n"
    path.write_text(text)
    print(table)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
