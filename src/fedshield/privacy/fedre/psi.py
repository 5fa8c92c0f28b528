r"""PSI scores of FedRE: how sensitive each layer's gradient is to a private image region.

Reference: Xiao et al., "FedRE: Robust and Effective Federated Learning with Privacy
Preference", ACM ICMR 2025, Section 3.2.1, eqs. 3-5.

For one sample ``(x, y)`` with ``x`` of shape ``C x H x W`` and the per-layer parameter
gradient ``g_l(x) = d loss(model(x), y) / d w_l``:

- eq. 3, the Jacobian of the gradient with respect to the input:
  ``J_l(x) = d g_l / d x``, of shape ``|w_l| x C x H x W``;
- eq. 4, its Frobenius norm at each pixel ``(i, j)`` of the privacy-sensitive region
  ``R`` (the norm runs over all layer-``l`` parameters and all channels):
  ``J^R_l[i, j] = || J_l(x)[:, :, i, j] ||_F``;
- eq. 5, the PSI score: ``S_l = mean over (i, j) in R of J^R_l[i, j]``, then averaged over
  the samples.

A "layer" is a module path of :attr:`fedshield.engine.ParamLayout.layers` (all trainable
parameters of one module); scores come back as a tensor in that order. Regions are
boolean masks (the union of the half-open PSI boxes, see
:func:`fedshield.data.psi_region_mask`); an image with an empty region is skipped.

Two ways to compute eq. 4, neither of which builds the ``P x C x H x W`` Jacobian:

- :func:`psi_scores` (exact), forward-over-reverse. ``g(x) = torch.func.grad`` of the
  loss with respect to the flat parameter vector, as a function of ``x``; a
  ``torch.func.jvp`` of ``g`` along a one-hot tangent ``e_(c,i,j)`` returns the column
  ``J(x) e_(c,i,j)`` for *all* layers at once, and
  ``J^R_l[i, j]^2 = sum_c || (J(x) e_(c,i,j))[layer l] ||^2``. That is ``p * C`` JVPs for
  a region of ``p`` pixels, batched with ``torch.func.vmap`` in chunks; each costs a small
  constant times one forward + backward pass (the primal pass is shared by a chunk).
  Memory grows with the chunk size (the tangents of every activation are held for the
  whole chunk).
- :func:`psi_scores_hutchinson` (stochastic). For a Gaussian probe ``v ~ N(0, I)``
  restricted to layer ``l``'s parameters, ``grad_x (v . g_l(x)) = J_l^T v`` and
  ``E_v[(J_l^T v)[c, i, j]^2] = || J_l[:, c, i, j] ||^2``. One ``torch.func.vjp`` of
  ``x -> g(x)`` is evaluated on ``L * probes`` cotangents (vmapped), i.e. one
  double-backward per probe per layer, independent of the region size; the squares are
  averaged over probes before the square root, so the estimate of ``J^R`` is biased low
  by ``O(1/probes)`` (Jensen) and has a relative standard deviation of about
  ``1/sqrt(2 * probes * C)`` per pixel for pixels whose Jacobian columns are roughly
  isotropic (a chi-square with ``probes * C`` degrees of freedom).

Both evaluate the model with ``torch.func.functional_call``: the module's parameters,
their ``requires_grad`` flags and ``.grad`` fields are left untouched, and an explicit
flat parameter vector (``params=``, in :class:`~fedshield.engine.ParamLayout` order) can
be scored with the same module, as the PDA-PAM server does for every client model. The
loss is applied to one sample at a time (a batch of one), so the model is evaluated as
is: in training mode a module with batch statistics (BatchNorm) would see a batch of one
and, if it updates buffers, fail under ``vmap``; the models meant for FedRE have no
buffers. The computation runs under ``torch.enable_grad()``, so callers inside
``torch.no_grad()`` get the same scores.

This is hand-written: no library computes region norms of the Jacobian of the parameter
gradient with respect to the input (``torch.func`` supplies the derivatives).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from fedshield.engine import ParamLayout

__all__ = ["per_format_scores", "psi_scores", "psi_scores_hutchinson"]

LossFn = Callable[[Tensor, Tensor], Tensor]
METHODS = ("exact", "hutchinson")


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _check_inputs(
    model: nn.Module, x: Tensor, y: Tensor, region: Tensor, params: Tensor | None
) -> tuple[ParamLayout, Tensor]:
    """Validates shapes; returns the layout and the flat parameters to evaluate."""
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a 4-D tensor [N, C, H, W], got shape {shape}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor, got dtype {x.dtype}")
    N, _, H, W = x.shape
    if not isinstance(region, Tensor) or region.dtype != torch.bool:
        what = region.dtype if isinstance(region, Tensor) else type(region).__name__
        raise ValueError(f"region must be a bool tensor [N, H, W], got {what}")
    if tuple(region.shape) != (N, H, W):
        raise ValueError(
            f"region has shape {tuple(region.shape)}, expected (N, H, W) = {(N, H, W)} "
            f"to match x of shape {tuple(x.shape)}"
        )
    if not isinstance(y, Tensor) or y.dim() == 0 or y.shape[0] != N:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(
            f"y must have first dimension N = {N} (x has {tuple(x.shape)}), got {shape}"
        )
    layout = ParamLayout.from_module(model)
    if params is None:
        flat = layout.flatten(model)
    else:
        if not isinstance(params, Tensor) or params.dim() != 1 or params.numel() != layout.numel:
            shape = tuple(params.shape) if isinstance(params, Tensor) else type(params).__name__
            raise ValueError(
                f"params must be a flat vector of shape ({layout.numel},) in ParamLayout "
                f"order, got {shape}"
            )
        flat = params.detach()
    if not bool(region.any()):
        raise ValueError("region is empty for every image: no PSI pixel to score")
    return layout, flat.to(device=x.device, dtype=x.dtype)


def _gradient_fn(
    model: nn.Module,
    layout: ParamLayout,
    flat: Tensor,
    y1: Tensor,
    loss_fn: LossFn,
) -> Callable[[Tensor], Tensor]:
    """``x1 -> flat parameter gradient [P]`` of ``loss_fn(model(x1), y1)`` at ``flat``."""
    buffers = dict(model.named_buffers())

    def loss_of(p: Tensor, x1: Tensor) -> Tensor:
        state = {**buffers, **layout.unflatten(p)}
        return loss_fn(functional_call(model, state, (x1,)), y1)

    def g(x1: Tensor) -> Tensor:
        out: Tensor = grad(loss_of)(flat, x1)
        return out

    return g


def _layer_sq_norms(cols: Tensor, layout: ParamLayout) -> Tensor:
    """``[B, P]`` -> ``[B, L]``: squared norm of each layer's block of every row."""
    return torch.stack([cols[:, sl].pow(2).sum(dim=1) for sl in layout.layers.values()], dim=1)


def psi_scores(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    region: Tensor,
    *,
    params: Tensor | None = None,
    loss_fn: LossFn | None = None,
    chunk: int = 64,
) -> Tensor:
    """Exact per-layer PSI scores (eqs. 3-5), by batched forward-over-reverse JVPs.

    Args:
        model: The network; evaluated functionally, never modified.
        x: ``[N, C, H, W]`` images.
        y: Targets with first dimension ``N`` (e.g. ``int64 [N, H, W]`` masks or ``[N]``
            labels), as ``loss_fn`` expects.
        region: ``bool [N, H, W]``, the privacy-sensitive pixels of each image. Images with
            an empty region are skipped.
        params: Optional flat ``[P]`` parameters (``ParamLayout.from_module(model)``
            order) to evaluate instead of the model's own.
        loss_fn: ``(logits, targets) -> scalar`` applied per sample (a batch of one);
            default ``torch.nn.functional.cross_entropy`` (mean reduction).
        chunk: Number of ``(pixel, channel)`` tangents per vmapped JVP call; trades
            memory (activations' tangents for ``chunk`` columns) for speed.

    Returns:
        ``float32 [L]``: ``S_l`` for each layer of ``ParamLayout.from_module(model).layers``
        in order, averaged over the images with a non-empty region.

    Raises:
        ValueError: On malformed shapes, a ``params`` of the wrong length, a bad ``chunk``,
            or a region that is empty for every image.
    """
    chunk = _positive_int(chunk, "chunk")
    layout, flat = _check_inputs(model, x, y, region, params)
    loss = loss_fn if loss_fn is not None else F.cross_entropy
    _, C, H, W = x.shape
    per_sample: list[Tensor] = []
    with torch.enable_grad():
        for n in range(x.shape[0]):
            pix = torch.nonzero(region[n]).to(x.device)  # [p, 2]
            p = pix.shape[0]
            if p == 0:
                continue
            x1 = x[n : n + 1].detach()
            g = _gradient_fn(model, layout, flat, y[n : n + 1], loss)

            def column(e: Tensor, g: Callable[[Tensor], Tensor] = g, x1: Tensor = x1) -> Tensor:
                return jvp(g, (x1,), (e,))[1]

            batched = vmap(column)
            # tangent k <-> (pixel k // C, channel k % C)
            total = p * C
            acc = torch.zeros(p, len(layout.layers), dtype=x.dtype, device=x.device)
            for start in range(0, total, chunk):
                k = torch.arange(start, min(start + chunk, total), device=x.device)
                pk, ck = k // C, k % C
                e = torch.zeros(k.numel(), 1, C, H, W, dtype=x.dtype, device=x.device)
                e[torch.arange(k.numel(), device=x.device), 0, ck, pix[pk, 0], pix[pk, 1]] = 1
                acc.index_add_(0, pk, _layer_sq_norms(batched(e), layout))
            per_sample.append(acc.sqrt().mean(dim=0))
    return torch.stack(per_sample).mean(dim=0).to(torch.float32)


def psi_scores_hutchinson(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    region: Tensor,
    *,
    probes: int = 16,
    generator: torch.Generator,
    params: Tensor | None = None,
    loss_fn: LossFn | None = None,
    chunk: int = 64,
) -> Tensor:
    """Hutchinson estimate of the per-layer PSI scores (eqs. 3-5).

    Per image and layer ``l``, ``probes`` Gaussian vectors ``v ~ N(0, I)`` on layer
    ``l``'s parameters (zero elsewhere) give ``J_l^T v = grad_x (v . g_l(x))``;
    ``mean over probes of sum_c (J_l^T v)[c, i, j]^2`` is an unbiased estimate of
    ``J^R_l[i, j]^2``, whose square root is averaged over the region, then over images.
    One vmapped VJP call per image (``L * probes`` cotangents, in batches of ``chunk``)
    covers every layer; the cost does not depend on the region size.

    Args:
        model: The network; evaluated functionally, never modified.
        x: ``[N, C, H, W]`` images.
        y: Targets with first dimension ``N``.
        region: ``bool [N, H, W]`` privacy-sensitive pixels; empty images are skipped.
        probes: Gaussian probes per layer and image.
        generator: Source of every random draw (the probes are drawn on its device).
        params: Optional flat ``[P]`` parameters to evaluate instead of the model's own.
        loss_fn: ``(logits, targets) -> scalar`` per sample; default cross-entropy.
        chunk: Number of cotangents per vmapped VJP call (memory vs speed).

    Returns:
        ``float32 [L]`` estimated scores, in ``ParamLayout.layers`` order.

    Raises:
        ValueError: On malformed shapes, bad ``probes`` / ``chunk``, a ``params`` of the
            wrong length, or a region that is empty for every image.
    """
    probes = _positive_int(probes, "probes")
    chunk = _positive_int(chunk, "chunk")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    layout, flat = _check_inputs(model, x, y, region, params)
    loss = loss_fn if loss_fn is not None else F.cross_entropy
    slices = list(layout.layers.values())
    L = len(slices)
    per_sample: list[Tensor] = []
    with torch.enable_grad():
        for n in range(x.shape[0]):
            mask = region[n]
            if not bool(mask.any()):
                continue
            g = _gradient_fn(model, layout, flat, y[n : n + 1], loss)
            pullback = vjp(g, x[n : n + 1].detach())[1]
            v = torch.randn(
                probes, layout.numel, generator=generator, device=generator.device, dtype=x.dtype
            ).to(x.device)
            cot = torch.zeros(L, probes, layout.numel, dtype=x.dtype, device=x.device)
            for li, sl in enumerate(slices):
                cot[li, :, sl] = v[:, sl]
            cot = cot.reshape(L * probes, layout.numel)
            batched = vmap(lambda c, pb=pullback: pb(c)[0])
            sq = torch.cat(
                [
                    batched(cot[s : s + chunk]).pow(2).sum(dim=(1, 2))  # [b, H, W]
                    for s in range(0, L * probes, chunk)
                ]
            )  # [L * probes, H, W]
            jr2 = sq.reshape(L, probes, *sq.shape[1:]).mean(dim=1)  # [L, H, W]
            per_sample.append(jr2[:, mask].sqrt().mean(dim=1))
    return torch.stack(per_sample).mean(dim=0).to(torch.float32)


def per_format_scores(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    region: Tensor,
    formats: Sequence[str],
    *,
    samples: int = 10,
    generator: torch.Generator,
    method: str = "exact",
    probes: int = 16,
    params: Tensor | None = None,
    loss_fn: LossFn | None = None,
) -> dict[str, Tensor]:
    """The paper's shortcut: PSI scores averaged over a few sampled images per format.

    Section 4 of the paper: documents of one format share a layout and PSI boxes, so the
    mean score of 10 sampled images of a format stands in for all of them. For each
    format (in order of first appearance), up to ``samples`` images with a non-empty
    region are drawn without replacement with ``generator``, and their scores averaged.
    A format none of whose images has a region pixel is left out of the result.

    Args:
        model: The network; evaluated functionally, never modified.
        x: ``[N, C, H, W]`` images.
        y: Targets with first dimension ``N``.
        region: ``bool [N, H, W]`` privacy-sensitive pixels.
        formats: Per image, its format name (length ``N``).
        samples: Images sampled per format (all of them if a format has fewer).
        generator: Source of the sampling (and of the Hutchinson probes).
        method: ``"exact"`` (:func:`psi_scores`) or ``"hutchinson"``
            (:func:`psi_scores_hutchinson`).
        probes: Probes per layer for ``method="hutchinson"``.
        params: Optional flat ``[P]`` parameters to evaluate instead of the model's own.
        loss_fn: ``(logits, targets) -> scalar`` per sample; default cross-entropy.

    Returns:
        format -> ``float32 [L]`` scores in ``ParamLayout.layers`` order.

    Raises:
        ValueError: On an unknown ``method`` (the message lists the choices), a
            ``formats`` of the wrong length, bad ``samples``, malformed shapes, or a
            region that is empty for every image.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choices: {', '.join(METHODS)}")
    samples = _positive_int(samples, "samples")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    fmts = [str(f) for f in formats]
    _check_inputs(model, x, y, region, params)
    if len(fmts) != x.shape[0]:
        raise ValueError(f"formats has {len(fmts)} entries, expected N = {x.shape[0]}")
    nonempty = region.flatten(1).any(dim=1).tolist()
    out: dict[str, Tensor] = {}
    for fmt in dict.fromkeys(fmts):
        idx = [i for i, f in enumerate(fmts) if f == fmt and nonempty[i]]
        if not idx:
            continue
        pick = torch.randperm(len(idx), generator=generator, device=generator.device)
        sel = torch.tensor(sorted(idx[int(j)] for j in pick[:samples]), device=x.device)
        xs, ys, rs = x[sel], y[sel], region[sel]
        if method == "exact":
            out[fmt] = psi_scores(model, xs, ys, rs, params=params, loss_fn=loss_fn)
        else:
            out[fmt] = psi_scores_hutchinson(
                model,
                xs,
                ys,
                rs,
                probes=probes,
                generator=generator,
                params=params,
                loss_fn=loss_fn,
            )
    return out
