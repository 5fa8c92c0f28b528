"""FedRE PSI-score benchmark: exact (forward-over-reverse) vs Hutchinson on one document.

One synthetic document (``generate_documents(1, seed=0)``, 64x128 grey-scale) scored by
the default U-Net (``unet((1, 64, 128), 2)``, seeded initialisation) with its tamper mask
as the segmentation target and its PSI boxes as the region. Timed, each as the median of
``--repeats`` runs after one untimed warm-up call, with ``torch.set_num_threads(--threads)``:
the exact scores (:func:`~fedshield.privacy.fedre.psi.psi_scores`, ``--chunk`` tangents
per vmapped JVP) and the Hutchinson estimate (``--probes`` probes per layer). Prints the
region pixel count, the seconds, the largest and mean relative per-layer difference
between the two, and the peak resident set size of the process.

Usage::

    .venv/bin/python benchmarks/fedre_psi.py
    .venv/bin/python benchmarks/fedre_psi.py --threads 2 --chunk 64 --probes 16
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from fedshield.data import generate_documents  # noqa: E402
from fedshield.data.documents import psi_region_mask  # noqa: E402
from fedshield.models import build_model  # noqa: E402
from fedshield.models.unet import unet  # noqa: E402
from fedshield.privacy.fedre.psi import psi_scores, psi_scores_hutchinson  # noqa: E402


def _timed(fn: Callable[[], Tensor], repeats: int) -> tuple[Tensor, float]:
    """Result of ``fn`` and the median wall time of ``repeats`` runs after a warm-up."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    """Runs the benchmark and prints the results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--chunk", type=int, default=64, help="tangents per vmapped JVP")
    ap.add_argument("--probes", type=int, default=16, help="Hutchinson probes per layer")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    ap.add_argument("--seed", type=int, default=0, help="model and probe seed")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    docs = generate_documents(1, seed=0)
    size = (int(docs.images.shape[-2]), int(docs.images.shape[-1]))
    x = docs.images
    y = docs.masks[:, 0].long()
    region = torch.stack([psi_region_mask(b, size) for b in docs.psi_boxes])
    model = build_model(lambda s, k: unet(s, k), (1, *size), 2, seed=args.seed)
    n_params = sum(p.numel() for p in model.parameters())

    exact, t_exact = _timed(lambda: psi_scores(model, x, y, region, chunk=args.chunk), args.repeats)
    hutch, t_hutch = _timed(
        lambda: psi_scores_hutchinson(
            model,
            x,
            y,
            region,
            probes=args.probes,
            generator=torch.Generator().manual_seed(args.seed),
        ),
        args.repeats,
    )
    rel = (hutch - exact).abs() / exact.abs().clamp_min(torch.finfo(exact.dtype).tiny)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    print(f"document: format={docs.formats[0]} boxes={docs.psi_boxes[0]} size={size}")
    print(f"model: unet(width=8, depth=2), {n_params} parameters, {exact.numel()} layers")
    print(f"threads={args.threads} chunk={args.chunk} probes={args.probes}")
    print(f"region pixels: {int(region.sum())}")
    print(f"exact:      {t_exact:.3f} s (median of {args.repeats})")
    print(f"hutchinson: {t_hutch:.3f} s (median of {args.repeats})")
    print(f"relative difference per layer: max {rel.max():.4f}, mean {rel.mean():.4f}")
    print(f"exact scores:      {[f'{v:.3e}' for v in exact.tolist()]}")
    print(f"hutchinson scores: {[f'{v:.3e}' for v in hutch.tolist()]}")
    print(f"peak RSS: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
