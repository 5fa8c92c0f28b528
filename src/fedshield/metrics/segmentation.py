"""Binary segmentation scores of a predicted mask: IoU, precision, recall, F1, accuracy.

FedRE (Xiao et al., ICMR 2025) evaluates text-tamper detection by the IoU, precision,
recall and F-score of the predicted tamper mask (Tables 1, 3, 4). With the pixel counts
``TP, FP, FN, TN`` of the positive class summed over the whole set (micro-averaging)::

    IoU       = TP / (TP + FP + FN)
    precision = TP / (TP + FP)
    recall    = TP / (TP + FN)
    F1        = 2 P R / (P + R)          (= 2 TP / (2 TP + FP + FN))
    accuracy  = (TP + TN) / (TP + FP + FN + TN)

Zero-division convention (this implementation's choice; the paper does not say):

- If neither the target nor the prediction has any positive pixel (``TP + FP + FN = 0``),
  the prediction is perfect: IoU = precision = recall = F1 = 1.
- Otherwise a 0/0 ratio is 0: precision = 0 when nothing is predicted positive, recall = 0
  when the target has no positive (but the prediction has), and IoU = F1 = 0 whenever
  ``TP = 0``. This is scikit-learn's ``zero_division=0`` in that case, and
  ``zero_division=1`` in the all-empty case.

``iou_per_image_mean`` is the mean of the per-image IoU over the images whose target or
prediction has a positive pixel (an image empty in both is perfect and is left out, so it
neither inflates nor dilutes the mean); it is 1.0 when every image is empty in both.
"""

from __future__ import annotations

from numbers import Integral

import torch
from torch import Tensor


def _is_whole(t: Tensor) -> bool:
    return bool(torch.isfinite(t).all()) and bool((t == t.round()).all())


def _labels(x: Tensor, name: str, *, allow_logits: bool) -> Tensor:
    """``x`` as an ``[N, H, W]`` int64 label map."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 4:
        if x.shape[1] == 1:
            x = x[:, 0]
        elif allow_logits:
            if not x.is_floating_point():
                raise ValueError(f"{name} logits [N, K, H, W] must be floating, got {x.dtype}")
            return x.argmax(dim=1)
        else:
            raise ValueError(
                f"{name} must be [N, H, W] or [N, 1, H, W], got shape {tuple(x.shape)}"
            )
    if x.dim() != 3 or x.numel() == 0:
        shapes = (
            "[N, H, W], [N, 1, H, W] or logits [N, K, H, W]"
            if allow_logits
            else "[N, H, W] or [N, 1, H, W]"
        )
        raise ValueError(f"{name} must be a non-empty {shapes} tensor, got {tuple(x.shape)}")
    if x.is_complex():
        raise ValueError(f"{name} must be real, got {x.dtype}")
    if x.is_floating_point() and not _is_whole(x):
        raise ValueError(
            f"{name} is a floating map with non-integer values (probabilities?): "
            "threshold it into a label or 0/1 mask first"
        )
    return x.to(torch.int64)


def _masks(pred: Tensor, target: Tensor, positive: int) -> tuple[Tensor, Tensor]:
    if isinstance(positive, bool) or not isinstance(positive, Integral):
        raise ValueError(f"positive must be an integer label, got {positive!r}")
    p = _labels(pred, "pred", allow_logits=True)
    t = _labels(target, "target", allow_logits=False)
    if p.shape != t.shape:
        raise ValueError(
            f"pred and target must cover the same [N, H, W], got {tuple(p.shape)} and "
            f"{tuple(t.shape)}"
        )
    return p == int(positive), t.to(p.device) == int(positive)


def _per_image_counts(pred: Tensor, target: Tensor, positive: int) -> dict[str, Tensor]:
    p, t = _masks(pred, target, positive)
    dims = (1, 2)
    return {
        "tp": (p & t).sum(dims),
        "fp": (p & ~t).sum(dims),
        "fn": (~p & t).sum(dims),
        "tn": (~p & ~t).sum(dims),
    }


def confusion_counts(pred: Tensor, target: Tensor, *, positive: int = 1) -> dict[str, int]:
    """Pixel counts of the positive class over the whole set.

    Args:
        pred: Logits ``[N, K, H, W]`` (argmax over ``K``; ``K >= 2``) or a label map
            ``[N, H, W]`` / ``[N, 1, H, W]`` (integer, bool, or floating with whole values).
        target: Label map or mask ``[N, H, W]`` or ``[N, 1, H, W]`` (integer, bool, or
            floating with whole values, e.g. a 0/1 float mask).
        positive: The label counted as positive.

    Returns:
        ``{"tp", "fp", "fn", "tn"}`` as Python ints.

    Raises:
        ValueError: Bad shapes or dtypes, or a floating map with non-integer values.
    """
    counts = _per_image_counts(pred, target, positive)
    return {k: int(v.sum()) for k, v in counts.items()}


def _ratio(num: int, den: int) -> float:
    return num / den if den > 0 else 0.0


def segmentation_scores(pred: Tensor, target: Tensor, *, positive: int = 1) -> dict[str, float]:
    """Micro-averaged IoU, precision, recall, F1 and pixel accuracy of a predicted mask.

    See the module docstring for the formulas and the zero-division convention.

    Args:
        pred: Logits ``[N, K, H, W]`` (argmax over ``K``) or a label map ``[N, H, W]`` /
            ``[N, 1, H, W]``.
        target: Label map or mask ``[N, H, W]`` or ``[N, 1, H, W]``.
        positive: The label counted as positive (1: the tampered class).

    Returns:
        ``{"iou", "precision", "recall", "f1", "pixel_accuracy", "iou_per_image_mean"}``.

    Raises:
        ValueError: As :func:`confusion_counts`.
    """
    per_image = _per_image_counts(pred, target, positive)
    tp, fp, fn, tn = (int(per_image[k].sum()) for k in ("tp", "fp", "fn", "tn"))
    total = tp + fp + fn + tn
    if tp + fp + fn == 0:
        iou = precision = recall = f1 = 1.0
    else:
        iou = tp / (tp + fp + fn)
        precision = _ratio(tp, tp + fp)
        recall = _ratio(tp, tp + fn)
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    union = per_image["tp"] + per_image["fp"] + per_image["fn"]
    keep = union > 0
    if bool(keep.any()):
        per_iou = per_image["tp"][keep].to(torch.float64) / union[keep].to(torch.float64)
        iou_per_image = float(per_iou.mean())
    else:
        iou_per_image = 1.0
    return {
        "iou": iou,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "pixel_accuracy": (tp + tn) / total,
        "iou_per_image_mean": iou_per_image,
    }


__all__ = ["confusion_counts", "segmentation_scores"]
