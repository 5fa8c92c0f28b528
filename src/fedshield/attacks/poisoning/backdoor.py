"""Backdoor triggers: BadNets patch, blended pattern, and DBA's distributed pieces.

- Gu, Dolan-Gavitt, Garg. "BadNets: Identifying Vulnerabilities in the Machine Learning
  Model Supply Chain." 2017: a small square of maximal-intensity pixels in a corner.
- Chen, Liu, Li, Lu, Song. "Targeted Backdoor Attacks on Deep Learning Systems Using Data
  Poisoning." 2017: blended trigger ``x' = (1 - alpha) x + alpha * pattern``.
- Xie, Huang, Chen, Li. "DBA: Distributed Backdoor Attacks against Federated Learning."
  ICLR 2020 (reference code ``AI-secure/DBA``): the global trigger is split into 4 local
  pieces of 1 x 6 pixels, on rows 0 and 4 and columns 0-5 and 9-14 (gap 3); adversary
  ``k`` stamps only piece ``k mod 4``; the test uses the full trigger.

All functions are pure: they return stamped copies of ``x: [N, C, H, W]`` (normalised
pixels; ``value`` is the normalised intensity of a white pixel, e.g. ``x.max()``).
A poisoned sample's label becomes the target label.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: (row, first column) of DBA's four 1 x 6 pieces (AI-secure/DBA, MNIST/CIFAR params)
DBA_PIECES: tuple[tuple[int, int], ...] = ((0, 0), (0, 9), (4, 0), (4, 9))
DBA_PIECE_WIDTH = 6


def _check_images(x: Tensor, need_h: int, need_w: int, what: str) -> None:
    if x.dim() != 4:
        raise ValueError(
            f"{what} needs image inputs [N, C, H, W], got shape {tuple(x.shape)}; triggers are "
            "defined on images"
        )
    if x.shape[2] < need_h or x.shape[3] < need_w:
        raise ValueError(
            f"{what} needs images of at least {need_h} x {need_w} pixels, got "
            f"{x.shape[2]} x {x.shape[3]}"
        )


def badnets(x: Tensor, *, size: int = 4, value: float = 1.0, margin: int = 1) -> Tensor:
    """Stamp a ``size x size`` square of intensity ``value`` in the bottom-right corner.

    Args:
        x: ``[N, C, H, W]`` images.
        size: Side of the square in pixels.
        value: Pixel value of the patch (all channels).
        margin: Pixels between the patch and the image border.

    Returns:
        Stamped copy of ``x``.

    Raises:
        ValueError: Not images, or the patch does not fit.
    """
    if size < 1 or margin < 0:
        raise ValueError(f"badnets needs size >= 1 and margin >= 0, got {size}, {margin}")
    _check_images(x, size + margin, size + margin, "the BadNets trigger")
    out = x.clone()
    h, w = x.shape[2], x.shape[3]
    out[:, :, h - margin - size : h - margin, w - margin - size : w - margin] = value
    return out


def blend_pattern(shape: tuple[int, ...], *, low: float, high: float, seed: int) -> Tensor:
    """A fixed random pattern in ``[low, high]`` for the blended trigger (seeded)."""
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(shape, generator=g)


def blended(x: Tensor, *, pattern: Tensor, alpha: float = 0.2) -> Tensor:
    """Blend ``pattern`` into every image: ``(1 - alpha) x + alpha * pattern``.

    Raises:
        ValueError: ``alpha`` outside ``(0, 1]`` or a pattern of the wrong shape.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"blend alpha must be in (0, 1], got {alpha}")
    if tuple(pattern.shape) != tuple(x.shape[1:]):
        raise ValueError(
            f"blend pattern has shape {tuple(pattern.shape)}, images have {tuple(x.shape[1:])}"
        )
    return (1.0 - alpha) * x + alpha * pattern.to(x.dtype)


def dba(x: Tensor, *, piece: int | None = None, value: float = 1.0) -> Tensor:
    """Stamp one DBA piece (``piece`` in 0..3) or, with ``piece=None``, the full trigger.

    Raises:
        ValueError: Not images, images narrower than 15 or shorter than 5 pixels, or a
            piece index out of range.
    """
    _check_images(x, 5, DBA_PIECES[1][1] + DBA_PIECE_WIDTH, "the DBA trigger")
    if piece is not None and not 0 <= piece < len(DBA_PIECES):
        raise ValueError(f"DBA piece must be in 0..{len(DBA_PIECES) - 1} or None, got {piece}")
    out = x.clone()
    pieces = DBA_PIECES if piece is None else (DBA_PIECES[piece],)
    for row, col in pieces:
        out[:, :, row, col : col + DBA_PIECE_WIDTH] = value
    return out


def attack_success_rate(pred: Tensor, true_labels: Tensor, target: int) -> float:
    """Backdoor attack success rate.

    ``ASR = |{i : y_i != t and pred_i == t}| / |{i : y_i != t}|``: triggered test inputs
    whose true label is not the target, classified as the target.

    Raises:
        ValueError: No test input has a label other than the target.
    """
    keep = true_labels != target
    n = int(keep.sum())
    if n == 0:
        raise ValueError(f"every test label is the target {target}: the success rate is undefined")
    return float((pred[keep] == target).sum()) / n


__all__ = [
    "DBA_PIECES",
    "DBA_PIECE_WIDTH",
    "attack_success_rate",
    "badnets",
    "blend_pattern",
    "blended",
    "dba",
]
