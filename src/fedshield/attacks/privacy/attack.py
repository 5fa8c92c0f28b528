"""Attacks that consume an attacker view (see :mod:`fedshield.attacks.privacy.views`).

Gradient inversion from what a curious server saw (:func:`invert_view`), scored against
the ground truth only afterwards (:func:`score_inversion`: Hungarian matching, then MSE,
PSNR, SSIM on ``[0, 1]`` pixels and label accuracy), and membership inference against a
model a party saw (:func:`membership_attack`: loss threshold of Yeom et al. 2018, LiRA of
Carlini et al. 2022 with shadow models trained by fedshield's engine).

Kinds:
    * ``"idlg"`` -- labels by the iDLG rule (one image) or the batch rule, then DLG
      (L-BFGS, L2 matching) with the labels fixed (Zhao et al. 2020).
    * ``"dlg"`` -- DLG with labels optimised jointly (Zhu et al. 2019).
    * ``"ig"`` -- Inverting Gradients (Geiping et al. 2020) on the implied gradient.
    * ``"fedavg_ig"`` -- the multi-step variant: differentiate through the client's local
      SGD steps (Geiping et al.'s FedAvg reconstructor).
    * ``"loss_threshold"``, ``"lira_online"``, ``"lira_offline"`` -- membership inference.

The first three treat the upload as ``-lr x gradient`` (:meth:`ServerView.gradient_estimate`),
exact for one local step; ``"fedavg_ig"`` models several steps.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedshield.attacks.privacy.gradient_inversion import (
    _last_weight_grad,
    batch_labels,
    hungarian_match,
    idlg_label,
    invert_gradients,
)
from fedshield.attacks.privacy.views import (
    AggregateView,
    InversionResult,
    MembershipResult,
    ServerView,
)
from fedshield.metrics import (
    balanced_accuracy,
    mse,
    psnr,
    roc_auc,
    ssim,
    tpr_at_fpr,
)

__all__ = [
    "INVERSION_KINDS",
    "MEMBERSHIP_KINDS",
    "PRIVACY_ATTACK_KINDS",
    "invert_view",
    "membership_metrics",
    "score_inversion",
    "to_unit",
]

INVERSION_KINDS: tuple[str, ...] = ("idlg", "dlg", "ig", "fedavg_ig")
MEMBERSHIP_KINDS: tuple[str, ...] = ("loss_threshold", "lira_online", "lira_offline")
PRIVACY_ATTACK_KINDS: tuple[str, ...] = INVERSION_KINDS + MEMBERSHIP_KINDS

#: default optimiser steps per kind (L-BFGS steps for DLG; Adam steps for IG)
DEFAULT_ITERATIONS: dict[str, int] = {"idlg": 100, "dlg": 100, "ig": 2000, "fedavg_ig": 2000}


def _model_at(model: nn.Module, view: ServerView | AggregateView) -> nn.Module:
    """A copy of ``model`` holding the view's global parameters (the run is never touched)."""
    net = copy.deepcopy(model)
    view.layout.load_into(net, view.global_params)
    return net


def invert_view(
    view: ServerView | AggregateView,
    model: nn.Module,
    *,
    kind: str,
    num_images: int,
    image_shape: tuple[int, ...],
    bounds: tuple[float, float],
    labels: Tensor | None = None,
    iterations: int = 0,
    restarts: int = 1,
    lr: float | None = None,
    tv_weight: float = 1e-4,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Reconstructs a client's (or, under secure aggregation, all clients') training images.

    Args:
        view: What the curious server saw.
        model: The architecture (any module whose parameters match ``view.layout``); a copy
            is loaded with ``view.global_params``.
        kind: One of :data:`INVERSION_KINDS`.
        num_images: Images to reconstruct (the client's batch size of the round).
        image_shape: Shape of one input.
        bounds: ``(low, high)`` box of the model's input space (the pixel range after the
            dataset's normalisation; an attacker knows how inputs are normalised).
        labels: Known labels, or None to recover them from the upload.
        iterations: Optimiser steps; 0 = :data:`DEFAULT_ITERATIONS` of the kind.
        restarts: Random restarts (vectorised for the IG kinds).
        lr: Attack step size; None = the method's default.
        tv_weight: Total-variation weight (IG kinds).
        seed: Seed of the attack's random draws.

    Returns:
        ``(images [num_images, *image_shape] in the model's input space, labels int64 [n])``.

    Raises:
        ValueError: Unknown kind, or a view this kind cannot attack.
    """
    if kind not in INVERSION_KINDS:
        raise ValueError(f"unknown inversion kind {kind!r}; expected one of {INVERSION_KINDS}")
    iterations = iterations or DEFAULT_ITERATIONS[kind]
    net = _model_at(model, view)
    grad = view.gradient_estimate()
    if labels is None:
        if kind == "fedavg_ig":
            # the summed first-to-last-step drift still has the label sign pattern
            grad_for_labels = -view.upload if isinstance(view, ServerView) else -view.upload_sum
        else:
            grad_for_labels = grad
        if num_images == 1:
            labels = torch.tensor([idlg_label(grad_for_labels, view.layout)])
        else:
            labels = batch_labels(_last_weight_grad(grad_for_labels, view.layout), num_images)
    labels = labels.to(torch.int64)
    if kind == "fedavg_ig":
        if not isinstance(view, ServerView):
            raise ValueError(
                "fedavg_ig inverts one client's multi-step update; under secure aggregation "
                "the server only has the sum (use 'ig' on the aggregate view)"
            )
        from fedshield.attacks.privacy.fedavg_inversion import invert_fedavg_update

        r = view.recipe
        x = invert_fedavg_update(
            net,
            view.upload,
            num_images=num_images,
            image_shape=image_shape,
            local_steps=max(1, r.local_steps),
            local_lr=r.lr,
            batch_size=min(r.batch_size, num_images),
            labels=labels,
            momentum=r.momentum,
            weight_decay=r.weight_decay,
            iterations=iterations,
            seed=seed,
            restarts=restarts,
            lr=0.1 if lr is None else lr,
            tv_weight=tv_weight,
            bounds=bounds,
        )
        return x, labels
    method = "ig" if kind == "ig" else "dlg"
    x = invert_gradients(
        net,
        grad,
        num_images=num_images,
        image_shape=image_shape,
        labels=None if kind == "dlg" else labels,
        method=method,
        iterations=iterations,
        seed=seed,
        restarts=restarts,
        lr=lr,
        tv_weight=tv_weight,
        bounds=bounds,
        line_search="strong_wolfe" if method == "dlg" else None,
        clamp=True,
    )
    if kind == "dlg":
        # DLG optimises soft labels; report the labels its matched gradient implies
        labels = _dlg_labels(net, x, grad, view, labels)
    return x, labels


def _dlg_labels(
    net: nn.Module, x: Tensor, grad: Tensor, view: ServerView | AggregateView, fallback: Tensor
) -> Tensor:
    """Labels that best explain ``grad`` for the reconstructed inputs (argmax of the
    cosine between each candidate label's last-layer gradient and the target's)."""
    if x.shape[0] != 1:
        return fallback
    target = _last_weight_grad(grad, view.layout).reshape(-1)
    best, best_cos = fallback, -math.inf
    with torch.no_grad():
        num_classes = int(net(x).shape[-1])
    for c in range(num_classes):
        y = torch.tensor([c])
        loss = F.cross_entropy(net(x), y)
        grads = torch.autograd.grad(loss, [p for p in net.parameters() if p.requires_grad])
        flat = torch.cat([g.reshape(-1) for g in grads])
        g_last = _last_weight_grad(flat, view.layout).reshape(-1)
        cos = float(torch.dot(g_last, target) / (g_last.norm() * target.norm() + 1e-12))
        if cos > best_cos:
            best, best_cos = y, cos
    return best


def to_unit(x: Tensor, bounds: tuple[float, float]) -> Tensor:
    """Maps the model's input box ``bounds`` linearly onto ``[0, 1]`` (clamped)."""
    lo, hi = bounds
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)


def score_inversion(
    recon: Tensor,
    truth: Tensor,
    labels: Tensor,
    true_labels: Tensor,
    *,
    bounds: tuple[float, float],
) -> InversionResult:
    """Scores a reconstruction against the ground truth.

    Both are mapped to ``[0, 1]`` with ``bounds``; reconstructions are matched to the true
    images by the Hungarian algorithm on MSE; then per-image MSE, PSNR, SSIM, and the
    label accuracy (recovered label multiset vs the true one, order-free).

    Args:
        recon: ``[n, *shape]`` reconstruction in the model's input space.
        truth: ``[n, *shape]`` true images in the same space.
        labels: Labels the attack used.
        true_labels: True labels.
        bounds: The input box.

    Returns:
        The :class:`InversionResult` (images matched to ``truth``).
    """
    a = to_unit(recon.detach().float(), bounds)
    b = to_unit(truth.detach().float(), bounds)
    perm = hungarian_match(a, b)
    a = a[perm]
    per_psnr = [psnr(b[i], a[i]) for i in range(len(b))]
    # SSIM's 11x11 Gaussian window needs images at least that large (8x8 digits are not)
    big = min(b.shape[-2:]) >= 11 if b.dim() >= 3 else False
    per_ssim = [ssim(b[i], a[i]) for i in range(len(b))] if big else []
    per_mse = [mse(b[i], a[i]) for i in range(len(b))]
    k = int(true_labels.max().item()) + 1 if len(true_labels) else 0
    k = max(k, int(labels.max().item()) + 1 if len(labels) else 0)
    hit = torch.minimum(
        torch.bincount(labels, minlength=k), torch.bincount(true_labels, minlength=k)
    )
    finite = [p for p in per_psnr if math.isfinite(p)]
    metrics: dict[str, Any] = {
        "num_images": len(b),
        "mse": float(np.mean(per_mse)),
        "psnr": float(np.mean(finite)) if len(finite) == len(per_psnr) else math.inf,
        "ssim": float(np.mean(per_ssim)) if per_ssim else None,
        "label_accuracy": float(hit.sum()) / max(1, len(true_labels)),
        "psnr_per_image": per_psnr,
        "ssim_per_image": per_ssim,
    }
    return InversionResult(
        images=a, truth=b, labels=labels, true_labels=true_labels, metrics=metrics
    )


def membership_metrics(scores: Tensor, is_member: Tensor) -> MembershipResult:
    """ROC AUC, TPR at 0.1% and 1% FPR and the best balanced accuracy of ``scores``.

    Args:
        scores: ``[N]`` scores, higher = more likely a member.
        is_member: ``bool [N]`` ground truth (both classes must be present).

    Returns:
        The :class:`MembershipResult`.
    """
    result = MembershipResult(scores=scores.detach().float(), is_member=is_member)
    s = result.scores
    inn, out = s[is_member], s[~is_member]
    if len(inn) == 0 or len(out) == 0:
        raise ValueError("membership metrics need at least one member and one non-member")
    result.metrics.update(
        {
            "auc": roc_auc(inn, out),
            "tpr_at_0.1%_fpr": tpr_at_fpr(inn, out, 0.001),
            "tpr_at_1%_fpr": tpr_at_fpr(inn, out, 0.01),
            "balanced_accuracy": balanced_accuracy(inn, out),
            "members": len(inn),
            "nonmembers": len(out),
        }
    )
    return result
