"""Label flipping: malicious clients train on wrong labels.

Tolpegin, Truex, Gursoy, Liu. "Data Poisoning Attacks Against Federated Learning
Systems." ESORICS 2020 (source -> target pairs); Fang et al. USENIX Security 2020 and
FLPoison (reverse: ``y -> C - 1 - y``).

Modes, for ``C`` classes:

    reverse        y' = C - 1 - y
    all_to_one     y' = target                  for every y
    source_target  y' = target if y == source else y
    random         y' ~ Uniform({0..C-1} \\ {y})  (one draw per sample, seeded)
"""

from __future__ import annotations

import torch
from torch import Tensor

FLIP_MODES = ("reverse", "all_to_one", "source_target", "random")


def flip_labels(
    labels: Tensor,
    *,
    num_classes: int,
    mode: str = "reverse",
    source: int = 1,
    target: int = 7,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Flipped copies of integer labels.

    Args:
        labels: ``int64 [N]`` labels in ``[0, num_classes)``.
        num_classes: Number of classes ``C`` (>= 2).
        mode: One of ``FLIP_MODES``.
        source: Source label for ``source_target``.
        target: Target label for ``all_to_one`` and ``source_target``.
        generator: Random draws for ``random``.

    Returns:
        ``int64 [N]`` new labels (the input is not modified).

    Raises:
        ValueError: Unknown mode, fewer than 2 classes, labels or source/target out of range.
    """
    if mode not in FLIP_MODES:
        raise ValueError(f"unknown label-flip mode {mode!r}: choose one of {', '.join(FLIP_MODES)}")
    if num_classes < 2:
        raise ValueError(
            f"label flipping needs at least 2 classes, got num_classes = {num_classes}"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )
    used = {"all_to_one": ("target",), "source_target": ("source", "target")}.get(mode, ())
    for name, v in (("source", source), ("target", target)):
        if name in used and not 0 <= v < num_classes:
            raise ValueError(f"{name} label {v} is out of range: classes are 0..{num_classes - 1}")
    if mode == "reverse":
        return num_classes - 1 - labels
    if mode == "all_to_one":
        return torch.full_like(labels, target)
    if mode == "source_target":
        return torch.where(labels == source, torch.full_like(labels, target), labels)
    # random: an offset in 1..C-1 added modulo C never gives back y
    offset = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + offset) % num_classes


__all__ = ["FLIP_MODES", "flip_labels"]
