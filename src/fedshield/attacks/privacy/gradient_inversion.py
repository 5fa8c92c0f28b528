"""Gradient inversion: recovering training images and labels from a shared gradient.

References:
    - L. Zhu, Z. Liu, S. Han, "Deep Leakage from Gradients", NeurIPS 2019 (DLG):
      minimise ``sum_layers ||grad_theta CE(f(x'), softmax(l')) - grad_true||^2`` over
      dummy inputs ``x'`` and label logits ``l'`` with L-BFGS.
    - B. Zhao, K. R. Mopuri, H. Bilen, "iDLG: Improved Deep Leakage from Gradients",
      arXiv:2001.02610, 2020: for one sample with softmax cross-entropy, the last
      layer's weight gradient is ``dW[i, :] = (p_i - y_i) h`` with ``h >= 0``, so only the
      true label's row is non-positive: ``label = argmin_i sum_j dW[i, j]``.
    - J. Geiping, H. Bauermeister, H. Droege, M. Moeller, "Inverting Gradients - How easy
      is it to break privacy in federated learning?", NeurIPS 2020 (IG): minimise
      ``1 - <g', g> / (||g'|| ||g||) + lambda_TV TV(x')`` (one global cosine over the
      concatenated gradient) with Adam on ``sign(grad_x')``, step decay x0.1 at 3/8, 5/8
      and 7/8 of the iterations, and clamping ``x'`` into the image box after each step.
    - A. Wainakh, F. Ventola, T. Muessig, J. Keim, C. Garcia Cordero, E. Zimmer,
      T. Grube, K. Kersting, M. Muehlhaeuser, "User-Level Label Leakage from Gradients in
      Federated Learning", PETS 2022 (LLG), and H. Yin, A. Mallya, A. Vahdat, J. M.
      Alvarez, J. Kautz, P. Molchanov, "See through Gradients: Image Batch Recovery via
      GradInversion", CVPR 2021: batch label recovery from the last-layer weight gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, vmap

from fedshield.engine.layout import ParamLayout

__all__ = [
    "INVERSION_METHODS",
    "batch_labels",
    "flat_gradient",
    "hungarian_match",
    "idlg_label",
    "invert_gradients",
    "zhu_init_",
]

INVERSION_METHODS: tuple[str, ...] = ("dlg", "ig")
"""Values accepted by :func:`invert_gradients`'s ``method``."""

_EPS = 1e-12


def _last_weight_grad(gradients: Mapping[str, Tensor] | Tensor, layout: ParamLayout) -> Tensor:
    """The last 2-D weight gradient (in layout order) from a dict or a flat vector."""
    if not isinstance(layout, ParamLayout):
        raise ValueError(f"layout must be a ParamLayout, got {type(layout).__name__}")
    if isinstance(gradients, Tensor):
        if gradients.dim() != 1 or gradients.numel() != layout.numel:
            raise ValueError(
                f"flat gradient has shape {tuple(gradients.shape)}, expected ({layout.numel},)"
            )
        named = layout.unflatten(gradients)
    elif isinstance(gradients, Mapping):
        named = dict(gradients)
    else:
        raise ValueError(
            f"gradients must be a dict name -> Tensor or a flat Tensor, got "
            f"{type(gradients).__name__}"
        )
    for name, shape in zip(reversed(layout.names), reversed(layout.shapes), strict=True):
        if len(shape) == 2:
            if name not in named:
                raise ValueError(f"gradient of the last 2-D weight {name!r} is missing")
            g = named[name]
            if not isinstance(g, Tensor) or tuple(g.shape) != tuple(shape):
                got = tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__
                raise ValueError(f"gradient {name!r} has shape {got}, expected {tuple(shape)}")
            return g.detach()
    raise ValueError("layout has no 2-D weight: idlg_label needs a final Linear layer")


def idlg_label(gradients: Mapping[str, Tensor] | Tensor, layout: ParamLayout) -> int:
    """iDLG label recovery for a single sample (Zhao et al. 2020).

    With softmax cross-entropy and a final ``Linear`` layer, ``dW[i, :] = (p_i - y_i) h``
    with ``h >= 0`` (e.g. after a sigmoid/ReLU), so the true label's row is the only one
    with non-positive entries: the label is ``argmin_i sum_j dW[i, j]``.

    Args:
        gradients: name -> gradient, or a flat gradient vector ``[layout.numel]``.
        layout: Layout of the model's parameters; the last 2-D parameter in its order is
            taken as the output layer's weight.

    Returns:
        The recovered label.

    Raises:
        ValueError: If ``layout`` is not a ParamLayout, the vector has the wrong length,
            the weight gradient is missing or misshapen, or the layout has no 2-D weight.
    """
    g = _last_weight_grad(gradients, layout)
    if not torch.isfinite(g).all():
        raise ValueError("last-layer weight gradient contains NaN or Inf")
    return int(torch.argmin(g.sum(dim=1)).item())


def batch_labels(last_weight_grad: Tensor, num_images: int) -> Tensor:
    """Labels of a batch from the output layer's weight gradient.

    Method: Yin et al. 2021 for the label set, the LLG counting of Wainakh et al. 2022
    for repeats. With the mean cross-entropy, ``dW[i, :] = (1/B) sum_b (p_bi - y_bi)
    h_b`` with ``h_b >= 0``: rows of labels present in the batch have negative entries.

    1. Labels whose row minimum ``min_j dW[i, j]`` is negative, most negative first (at
       most ``num_images`` of them).
    2. Impact ``m = (sum_{s_i < 0} s_i) / num_images`` of one sample on the row sums
       ``s_i = sum_j dW[i, j]``; each chosen label's sum is raised by ``-m``.
    3. While fewer than ``num_images`` labels: append ``argmin_i s_i`` and raise it by
       ``-m`` (a label may repeat).

    Exact for batches with distinct labels when every present label's row has a negative
    entry (measured: 20/20 batches of 2 and 4 digits, 19/20 of 6, for LeNet at
    initialisation); the counts for repeated labels are only an estimate.

    Args:
        last_weight_grad: ``Tensor[C, F]``, gradient of the output ``Linear`` weight.
        num_images: Batch size ``B >= 1``.

    Returns:
        ``Tensor[num_images]`` int64 labels, sorted ascending.

    Raises:
        ValueError: If the gradient is not a finite 2-D tensor or ``num_images < 1``.
    """
    if not isinstance(last_weight_grad, Tensor) or last_weight_grad.dim() != 2:
        raise ValueError("last_weight_grad must be a 2-D Tensor [num_classes, features]")
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be an int >= 1, got {num_images!r}")
    if not torch.isfinite(last_weight_grad).all():
        raise ValueError("last_weight_grad contains NaN or Inf")
    g = last_weight_grad.detach().double()
    s = g.sum(dim=1)
    mins = g.min(dim=1).values
    negative = s < 0
    impact = s[negative].sum() / num_images if negative.any() else torch.zeros((), dtype=s.dtype)
    if impact == 0:  # degenerate gradient: fall back to ordering by row sum
        impact = torch.tensor(-1.0, dtype=s.dtype)
    order = torch.argsort(mins)
    labels = [int(i) for i in order[: int((mins < 0).sum())]][:num_images]
    for i in labels:
        s[i] -= impact
    while len(labels) < num_images:
        i = int(torch.argmin(s))
        labels.append(i)
        s[i] -= impact
    return torch.tensor(sorted(labels), dtype=torch.int64)


def hungarian_match(recon: Tensor, truth: Tensor) -> Tensor:
    """Permutation of ``recon`` that best matches ``truth`` (minimum total MSE).

    Args:
        recon: ``Tensor[n, ...]`` reconstructions.
        truth: ``Tensor[n, ...]`` ground truth, same shape.

    Returns:
        ``perm`` (int64 ``[n]``) with ``recon[perm][j]`` matched to ``truth[j]``.

    Raises:
        ValueError: If the shapes differ or are empty.
    """
    if not isinstance(recon, Tensor) or not isinstance(truth, Tensor):
        raise ValueError("recon and truth must be Tensors")
    if recon.shape != truth.shape or recon.dim() < 1 or recon.shape[0] == 0:
        raise ValueError(
            f"recon {tuple(recon.shape)} and truth {tuple(truth.shape)} must have the same "
            "non-empty shape [n, ...]"
        )
    a = recon.detach().reshape(recon.shape[0], -1).double()
    b = truth.detach().reshape(truth.shape[0], -1).double()
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).mean(dim=2)  # cost[i, j]: recon i vs truth j
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    perm = torch.empty(recon.shape[0], dtype=torch.int64)
    perm[torch.as_tensor(cols, dtype=torch.int64)] = torch.as_tensor(rows, dtype=torch.int64)
    return perm


def _total_variation(x: Tensor) -> Tensor:
    """Mean absolute difference of neighbouring pixels (Geiping et al.'s TV)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return dx + dy


def _target_vector(
    gradients: Tensor | Sequence[Tensor] | Mapping[str, Tensor], layout: ParamLayout
) -> Tensor:
    """The target gradient as a flat ``[P]`` vector in layout order."""
    if isinstance(gradients, Tensor):
        if gradients.dim() != 1 or gradients.numel() != layout.numel:
            raise ValueError(
                f"flat gradient has shape {tuple(gradients.shape)}, expected ({layout.numel},)"
            )
        flat = gradients.detach()
    elif isinstance(gradients, Mapping):
        flat = layout.flatten({k: v for k, v in gradients.items()})
    elif isinstance(gradients, Sequence) and not isinstance(gradients, str):
        if len(gradients) != len(layout.names):
            raise ValueError(
                f"got {len(gradients)} per-parameter gradients, the model has "
                f"{len(layout.names)} trainable parameters"
            )
        flat = layout.flatten(dict(zip(layout.names, gradients, strict=True)))
    else:
        raise ValueError(
            f"gradients must be a flat Tensor, a list or a dict, got {type(gradients).__name__}"
        )
    if not torch.isfinite(flat).all():
        raise ValueError("target gradient contains NaN or Inf")
    return flat.to(layout.dtype)


class _Matcher:
    """Functional gradient of the model's loss w.r.t. its (frozen) parameters."""

    def __init__(self, model: nn.Module, layout: ParamLayout) -> None:
        self.model = model
        self.layout = layout
        self.params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        fixed = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        fixed.update({n: b.detach() for n, b in model.named_buffers()})
        self.fixed = fixed

    def _loss(self, params: dict[str, Tensor], x: Tensor, target: Tensor) -> Tensor:
        out = functional_call(self.model, (params, self.fixed), (x,))
        return F.cross_entropy(out, target)

    def dummy_gradient(self, x: Tensor, target: Tensor) -> Tensor:
        """Flat gradient ``[P]`` of ``CE(f(x), target)``; differentiable in ``x``/target."""
        g = grad(self._loss)(self.params, x, target)
        return torch.cat([g[n].reshape(-1) for n in self.layout.names])


def _cosine_match(
    produce: Callable[[Tensor, Tensor], Tensor],
    target: Tensor,
    labels: Tensor,
    x0: Tensor,
    *,
    iterations: int,
    lr: float,
    tv_weight: float,
    bounds: tuple[float, float],
) -> tuple[Tensor, Tensor]:
    """Geiping et al.'s optimisation on stacked restarts ``x0 [R, n, ...]``.

    Minimises ``1 - cos(produce(x, labels), target) + tv_weight * TV(x)`` with Adam on the
    sign of the gradient, step decay x0.1 at 3/8, 5/8, 7/8 and clamping into ``bounds``;
    ``produce`` maps dummy inputs to what the client would have sent (a gradient, or a
    multi-step update). Returns ``(x, final losses [R])``.
    """
    tnorm = target.norm()

    def loss_fn(x: Tensor) -> Tensor:
        g = produce(x, labels)
        cos = 1.0 - torch.dot(g, target) / (g.norm() * tnorm + _EPS)
        return cos + tv_weight * _total_variation(x)

    step_fn: Callable[[Tensor], tuple[Tensor, Tensor]] = vmap(grad_and_value(loss_fn))
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    milestones = [int(iterations * f / 8) for f in (3, 5, 7)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    for _ in range(iterations):
        gx, _ = step_fn(x.detach())
        x.grad = gx.sign()
        opt.step()
        sched.step()
        with torch.no_grad():
            x.clamp_(bounds[0], bounds[1])
    with torch.no_grad():
        final = vmap(loss_fn)(x.detach())
    return x.detach(), final


def _ig_run(
    matcher: _Matcher,
    target: Tensor,
    labels: Tensor,
    x0: Tensor,
    *,
    iterations: int,
    lr: float,
    tv_weight: float,
    bounds: tuple[float, float],
) -> tuple[Tensor, Tensor]:
    """Inverting Gradients on stacked restarts ``x0 [R, n, ...]``; returns (x, final losses)."""
    return _cosine_match(
        matcher.dummy_gradient,
        target,
        labels,
        x0,
        iterations=iterations,
        lr=lr,
        tv_weight=tv_weight,
        bounds=bounds,
    )


def _dlg_run(
    matcher: _Matcher,
    target: Tensor,
    labels: Tensor | None,
    x0: Tensor,
    l0: Tensor,
    *,
    iterations: int,
    lr: float,
    line_search: str | None = None,
) -> tuple[Tensor, float]:
    """DLG with L-BFGS from ``x0 [n, ...]`` (and label logits ``l0 [n, C]``)."""
    x = x0.clone().requires_grad_(True)
    variables = [x]
    logits = l0.clone().requires_grad_(labels is None)
    if labels is None:
        variables.append(logits)
    opt = torch.optim.LBFGS(variables, lr=lr, line_search_fn=line_search)

    def objective() -> Tensor:
        y = labels if labels is not None else F.softmax(logits, dim=-1)
        g = matcher.dummy_gradient(x, y)
        return ((g - target) ** 2).sum()

    def closure() -> Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    best_x, best = x.detach().clone(), float(objective().detach())
    for _ in range(iterations):
        before = [v.detach().clone() for v in variables]
        opt.step(closure)
        with torch.no_grad():
            cur = float(objective())
        if not math.isfinite(cur):
            break
        if cur < best:
            best, best_x = cur, x.detach().clone()
        if cur == 0.0:
            break
        if all(torch.equal(b, v.detach()) for b, v in zip(before, variables, strict=True)):
            break  # L-BFGS has converged (tolerances met): further steps change nothing
    return best_x, best


def invert_gradients(
    model: nn.Module,
    gradients: Tensor | Sequence[Tensor] | Mapping[str, Tensor],
    *,
    num_images: int,
    image_shape: tuple[int, ...],
    labels: Tensor | None = None,
    method: str = "ig",
    iterations: int = 4000,
    seed: int = 0,
    restarts: int = 1,
    lr: float | None = None,
    tv_weight: float = 1e-4,
    bounds: tuple[float, float] = (0.0, 1.0),
    line_search: str | None = None,
    clamp: bool = False,
    init: float | Tensor | None = None,
) -> Tensor:
    """Reconstructs the images behind a gradient (DLG or Inverting Gradients).

    ``"dlg"`` (Zhu et al. 2019): L-BFGS (lr 1 by default; ``iterations`` counts
    ``LBFGS.step`` calls of up to 20 evaluations each) on ``x' ~ N(0, 1)`` and, when
    ``labels`` is None, label logits ``l' ~ N(0, 1)``, minimising
    ``||grad(x', softmax(l')) - g||^2``. The output is the best iterate (clamped into
    ``bounds`` only with ``clamp=True``); a run stops early once L-BFGS no longer moves.

    ``"ig"`` (Geiping et al. 2020): ``1 - cos(grad(x', y), g) + tv_weight * TV(x')`` with
    one global cosine over the flat gradient; Adam (lr 0.1 by default) on
    ``sign(grad_x')``, decay x0.1 at 3/8, 5/8, 7/8 of ``iterations``, ``x'`` clamped to
    ``bounds`` after every step, ``x' ~ N(0, 1)`` clamped. Labels: given, else
    :func:`idlg_label` for one image, else :func:`batch_labels`. The ``restarts`` are
    optimised together (``torch.func.vmap`` over a leading restart axis, each restart
    matched separately); the one with the lowest final loss is returned.

    The model's parameters are read, never modified; the model is called as is (train
    or eval mode as set by the caller; buffers are not updated).

    Args:
        model: Any ``nn.Module`` with a classification output (cross-entropy loss).
        gradients: The target gradient of the mean cross-entropy over the batch w.r.t.
            the trainable parameters: a flat ``Tensor[P]`` in :class:`ParamLayout` order,
            a list of per-parameter tensors in that order, or a dict name -> tensor.
        num_images: Batch size ``n`` to reconstruct.
        image_shape: Shape of one input, e.g. ``(1, 28, 28)``.
        labels: Known int64 labels ``[n]`` (or dense targets ``[n, H, W]`` of a
            segmentation model), or None to infer them (see above).
        method: ``"ig"`` or ``"dlg"``.
        iterations: Optimiser steps.
        seed: Seed of ``torch.Generator`` for all random draws.
        restarts: Independent random initialisations; the best is returned.
        lr: Step size; default 0.1 (IG) or 1.0 (DLG).
        tv_weight: Total-variation weight (IG only).
        bounds: Image box ``(low, high)`` for the clamping (IG; DLG with ``clamp``).
        line_search: DLG only: ``LBFGS(line_search_fn=...)``, None (fixed step, Zhu et
            al.'s setting) or ``"strong_wolfe"`` (measured on MNIST 28x28, LeNet with
            uniform(-0.5, 0.5) weights: converges in about 20 steps where the fixed step
            can diverge).
        clamp: Clamp the returned image into ``bounds`` (DLG; IG always stays inside).
        init: IG only: start from this image (a constant, or a tensor broadcastable to
            ``[num_images, *image_shape]``: the attacker's prior, e.g. white paper for
            documents) plus ``N(0, 0.01^2)`` per restart, instead of ``N(0, 1)``.

    Returns:
        ``Tensor[num_images, *image_shape]`` reconstruction (detached).

    Raises:
        ValueError: On an unknown method, non-positive sizes, mismatched gradients or
            labels, or bad bounds.
    """
    if line_search not in (None, "strong_wolfe"):
        raise ValueError(f"line_search must be None or 'strong_wolfe', got {line_search!r}")
    if method not in INVERSION_METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {INVERSION_METHODS}")
    for name, v in (("num_images", num_images), ("restarts", restarts)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be an int >= 0, got {iterations!r}")
    shape = tuple(image_shape)
    if not shape or any(not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(f"image_shape must be a tuple of positive ints, got {image_shape!r}")
    if len(bounds) != 2 or not bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
    if lr is not None and not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if tv_weight < 0:
        raise ValueError(f"tv_weight must be >= 0, got {tv_weight!r}")
    layout = ParamLayout.from_module(model)
    target = _target_vector(gradients, layout)
    matcher = _Matcher(model, layout)
    with torch.no_grad():
        probe = functional_call(model, (matcher.params, matcher.fixed), (torch.zeros(1, *shape),))
        num_classes = int(probe.reshape(1, -1).shape[1] if probe.dim() == 1 else probe.shape[1])
    if labels is not None:
        labels = torch.as_tensor(labels).to(torch.int64)
        if labels.dim() <= 1:
            labels = labels.reshape(-1)
        # dense targets (segmentation masks [n, H, W]) keep their shape
        if labels.shape[0] != num_images or (labels.dim() == 1 and labels.numel() != num_images):
            raise ValueError(f"labels has {labels.shape[0]} entries, expected {num_images}")
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes})")

    gen = torch.Generator().manual_seed(seed)
    dtype = layout.dtype
    if method == "ig":
        if labels is None:
            if num_images == 1:
                labels = torch.tensor([idlg_label(target, layout)])
            else:
                labels = batch_labels(_last_weight_grad(target, layout), num_images)
        x0 = torch.randn((restarts, num_images, *shape), generator=gen, dtype=dtype)
        if init is not None:
            prior = torch.as_tensor(init, dtype=dtype).expand(num_images, *shape)
            x0 = prior.unsqueeze(0) + 0.01 * x0
        x0 = x0.clamp(bounds[0], bounds[1])
        xs, losses = _ig_run(
            matcher,
            target,
            labels,
            x0,
            iterations=iterations,
            lr=0.1 if lr is None else lr,
            tv_weight=tv_weight,
            bounds=bounds,
        )
        finite = torch.where(torch.isfinite(losses), losses, torch.full_like(losses, math.inf))
        return xs[int(torch.argmin(finite))]

    best_x: Tensor | None = None
    best = math.inf
    for _ in range(restarts):
        x0 = torch.randn((num_images, *shape), generator=gen, dtype=dtype)
        l0 = torch.randn((num_images, num_classes), generator=gen, dtype=dtype)
        x, loss = _dlg_run(
            matcher,
            target,
            labels,
            x0,
            l0,
            iterations=iterations,
            lr=1.0 if lr is None else lr,
            line_search=line_search,
        )
        if best_x is None or loss < best:
            best_x, best = x, loss
    assert best_x is not None
    return best_x.clamp(bounds[0], bounds[1]) if clamp else best_x


def zhu_init_(model: nn.Module, *, seed: int) -> nn.Module:
    """Re-initialise every parameter uniformly in [-0.5, 0.5), in place (the initialisation
    of Zhu et al.'s released DLG code; the attack is much stronger against it than against
    PyTorch's default init). Returns ``model``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) - 0.5)
    return model


def flat_gradient(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The flat cross-entropy gradient of ``model`` on ``(x, y)`` in parameter order: what
    a client uploads in FedSGD, the target of the inversion."""
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])
