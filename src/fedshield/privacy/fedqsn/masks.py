"""Structured subnetwork masks of FedQSN's model proxies.

Reference: Xu et al., "FedQSN" (EMNLP 2025 Findings, arXiv 2508.18911). The model owner
(server) lets clients fine-tune its model without handing it over: each round every
client receives a *proxy* in which a random subnetwork is removed (and the rest quantized,
see :mod:`~fedshield.privacy.fedqsn.quantize`). Masks are structured at the granularity of
hidden units (neurons of a ``Linear``, channels of a ``Conv2d``):

* a **server mask** ``M_s`` drawn once per run removes a fraction ``p1`` of the hidden
  units of every maskable layer (:func:`server_mask`);
* a **client mask**, fresh per client and per round, removes a further fraction ``p2`` of
  the units ``M_s`` kept (:func:`client_mask`).

Every ``Linear`` / ``Conv2d`` except the last parametric layer (the classifier output,
never masked) is maskable (:func:`unit_groups`). Removing hidden unit ``j`` of a layer
removes *all* of its parameters from the proxy: row ``j`` of the layer's weight, entry ``j``
of its bias, and the next parametric layer's input weights that read unit ``j`` -- column
``j`` of a following ``Linear``, the in-channel slice ``[:, j]`` of a following ``Conv2d``,
or, for a conv channel reaching a ``Linear`` through ``Flatten``, the ``spatial = H * W``
consecutive columns ``j * spatial ... (j + 1) * spatial - 1`` (:func:`coordinate_mask`).
With those coordinates zeroed the proxy computes exactly what the full model computes with
the unit's activation zeroed (:func:`apply_mask`); optionally with inverted-dropout scaling,
the kept units' outgoing weights multiplied by ``num_units / kept``.

Faithful reading. The reference implementation masks only the *activations* at run time
and still ships the full weights to the client, so nothing of the owner's model is actually
hidden from it. fedshield implements the protection the paper describes: the coordinates
of removed units are not sent (zero in the proxy, ``False`` in :func:`coordinate_mask`,
which a transport can use to drop them), and :func:`revealed_fraction` measures how much of
the model a client saw over a run. The merge of the clients' updates is in
:mod:`~fedshield.privacy.fedqsn.merge`.

All randomness comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from numbers import Real

import torch
from torch import Tensor, nn

from fedshield.engine.layout import ParamLayout

__all__ = [
    "UnitGroup",
    "apply_mask",
    "client_mask",
    "coordinate_mask",
    "draw_unit_mask",
    "revealed_fraction",
    "server_mask",
    "unit_groups",
]


@dataclass(frozen=True)
class UnitGroup:
    """The maskable hidden units of one parametric layer.

    Attributes:
        layer: The layer's module path, e.g. ``"1"`` or ``"0.3"``.
        num_units: ``out_features`` (Linear) or ``out_channels`` (Conv2d).
        rows: Parameter names whose dimension 0 indexes the units (weight, then bias).
        next_weight: Parameter name of the next parametric layer's weight, or ``""``
            when no single weight reads the units (a transformer's attention output feeds
            the residual stream: only its rows are removed, and inverted-dropout scaling
            scales the kept rows themselves).
        next_axis: Dimension of ``next_weight`` that reads the units (1: the in-dimension
            of a Linear or Conv2d).
        spatial: Entries of ``next_weight`` along ``next_axis`` per unit: 1, or ``H * W``
            when a conv's channels reach a Linear through ``Flatten`` (channel ``c`` owns
            the consecutive columns ``c * spatial ... (c + 1) * spatial - 1``).
    """

    layer: str
    num_units: int
    rows: tuple[str, ...]
    next_weight: str
    next_axis: int
    spatial: int


# --------------------------------------------------------------------------- structure


def _is_plain_sequential(module: nn.Module) -> bool:
    """True for an ``nn.Sequential`` (or subclass) that keeps Sequential's forward."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _leaves(seq: nn.Sequential, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    """The modules of ``seq`` in forward order, nested Sequentials flattened."""
    for name, child in seq.named_children():
        path = f"{prefix}{name}"
        if _is_plain_sequential(child):
            assert isinstance(child, nn.Sequential)
            yield from _leaves(child, f"{path}.")
        elif isinstance(child, nn.Sequential | nn.ModuleList | nn.ModuleDict):
            raise ValueError(
                f"module {path!r} ({type(child).__name__}) is not sequential in structure"
            )
        else:
            yield path, child


def unit_groups(model: nn.Module, input_shape: tuple[int, ...]) -> list[UnitGroup]:
    """The maskable hidden units of a sequential model, in forward order.

    A model that declares its own units (a method ``fedqsn_groups() -> list[UnitGroup]``,
    e.g. :class:`fedshield.models.transformer.TinyTransformer`) is asked for them instead.

    Every ``Linear`` / ``Conv2d`` except the last parametric layer is a group; its units
    are read by the next parametric layer. ``spatial`` is found by a dummy forward pass on
    zeros (batch 1, ``torch.no_grad``, no random draws), recording the output shape of the
    module right before the ``Flatten`` between a conv and a Linear.

    Args:
        model: An ``nn.Sequential`` (possibly nested) of ``Linear``, ``Conv2d`` and
            parameter-free elementwise / per-channel modules (activations, pooling,
            ``Flatten``, ``Dropout``).
        input_shape: Shape of one sample (without the batch dimension).

    Returns:
        One :class:`UnitGroup` per maskable layer (empty for a single-layer model).

    Raises:
        ValueError: If ``model`` is not an ``nn.Sequential`` (or nests a non-sequential
            container), contains a module with parameters or buffers other than
            ``Linear`` / ``Conv2d`` (the message names its type, e.g. ``BatchNorm2d``), a
            grouped conv, a Linear feeding a conv, or a layer between two parametric layers
            that does not keep the unit axis (checked on the dummy forward's shapes).
    """
    declared = getattr(model, "fedqsn_groups", None)
    if callable(declared):
        return list(declared())
    if not _is_plain_sequential(model):
        raise ValueError(
            f"FedQSN masks need a sequential model (nn.Sequential) or one that declares its "
            f"units (fedqsn_groups()), got {type(model).__name__}"
        )
    assert isinstance(model, nn.Sequential)
    leaves = list(_leaves(model, ""))
    seen: set[int] = set()
    for path, mod in leaves:
        if isinstance(mod, nn.Linear | nn.Conv2d):
            if id(mod) in seen:
                raise ValueError(f"module {path!r} is used twice (shared weights)")
            seen.add(id(mod))
            if isinstance(mod, nn.Conv2d) and mod.groups != 1:
                raise ValueError(f"module {path!r}: grouped Conv2d (groups={mod.groups})")
        elif any(True for _ in mod.parameters()) or any(True for _ in mod.buffers()):
            raise ValueError(
                f"module {path!r} is a {type(mod).__name__}: FedQSN masks support only "
                "Linear and Conv2d parametric layers"
            )
    parametric = [i for i, (_, m) in enumerate(leaves) if isinstance(m, nn.Linear | nn.Conv2d)]
    if len(parametric) < 2:
        return []

    # dummy forward, module by module, recording every output shape
    first = next(model.parameters())
    x = torch.zeros(1, *input_shape, dtype=first.dtype, device=first.device)
    shapes: list[torch.Size] = []
    with torch.no_grad():
        for _, mod in leaves:
            x = mod(x)
            shapes.append(x.shape)

    groups: list[UnitGroup] = []
    for i, j in itertools.pairwise(parametric):
        path, layer = leaves[i]
        next_path, nxt = leaves[j]
        if isinstance(layer, nn.Linear):
            units = layer.out_features
        else:
            assert isinstance(layer, nn.Conv2d)
            units = layer.out_channels
        spatial = 1
        if isinstance(nxt, nn.Conv2d):
            if not isinstance(layer, nn.Conv2d):
                raise ValueError(f"Linear {path!r} feeds Conv2d {next_path!r}: not supported")
            ok = all(len(s) == 4 and s[1] == units for s in shapes[i:j])
        elif isinstance(layer, nn.Linear):
            ok = all(len(s) == 2 and s[1] == units for s in shapes[i:j])
        else:  # conv -> ... -> Flatten -> ... -> Linear
            k = i
            while k < j and len(shapes[k]) == 4 and shapes[k][1] == units:
                k += 1
            pre_flatten = shapes[k - 1]
            spatial = math.prod(pre_flatten[2:])
            ok = (
                k < j
                and isinstance(leaves[k][1], nn.Flatten)
                and all(len(s) == 2 and s[1] == units * spatial for s in shapes[k:j])
            )
        if not ok:
            raise ValueError(
                f"the modules between {path!r} and {next_path!r} do not keep the unit axis "
                f"(output shapes {[tuple(s) for s in shapes[i:j]]})"
            )
        rows = (f"{path}.weight",) + ((f"{path}.bias",) if layer.bias is not None else ())
        groups.append(
            UnitGroup(
                layer=path,
                num_units=units,
                rows=rows,
                next_weight=f"{next_path}.weight",
                next_axis=1,
                spatial=int(spatial),
            )
        )
    return groups


# --------------------------------------------------------------------------- drawing


def _check_generator(generator: torch.Generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def _check_p(p: float, name: str) -> float:
    if isinstance(p, bool) or not isinstance(p, Real) or not 0.0 <= float(p) < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {p!r}")
    return float(p)


def draw_unit_mask(
    num_units: int, p: float, generator: torch.Generator, *, among: Tensor | None = None
) -> Tensor:
    """Draw which units of one layer are kept.

    Removes exactly ``k = round(p * n)`` of the ``n`` eligible units (Python's ``round``,
    halves to even), chosen uniformly at random by ``torch.randperm`` with ``generator``;
    at least one eligible unit is always kept (if ``k == n``, ``n - 1`` are removed). No
    random number is drawn when ``k == 0``.

    Args:
        num_units: Number of units of the layer.
        p: Fraction of the eligible units to remove, in ``[0, 1)``.
        generator: Source of the draw.
        among: Optional ``bool [num_units]``: only units ``True`` here are eligible; units
            ``False`` here stay removed. Default: all units eligible.

    Returns:
        ``bool [num_units]``, ``True`` = kept (on ``among``'s device, else the CPU).

    Raises:
        ValueError: On a bad ``num_units``, ``p`` outside ``[0, 1)``, a non-generator, or an
            ``among`` of the wrong shape / dtype or without any ``True``.
    """
    if isinstance(num_units, bool) or not isinstance(num_units, int) or num_units < 1:
        raise ValueError(f"num_units must be an int >= 1, got {num_units!r}")
    p = _check_p(p, "p")
    _check_generator(generator)
    if among is None:
        mask = torch.ones(num_units, dtype=torch.bool)
    else:
        if among.dtype != torch.bool or among.shape != (num_units,):
            raise ValueError(
                f"among must be bool [{num_units}], got {among.dtype} {tuple(among.shape)}"
            )
        mask = among.clone()
    eligible = mask.nonzero().squeeze(1)
    n = eligible.numel()
    if n == 0:
        raise ValueError("among has no eligible (True) unit")
    k = min(round(p * n), n - 1)
    if k > 0:
        perm = torch.randperm(n, generator=generator, device=generator.device)
        mask[eligible[perm[:k].to(mask.device)]] = False
    return mask


def server_mask(groups: Sequence[UnitGroup], p1: float, generator: torch.Generator) -> list[Tensor]:
    """The server mask ``M_s``: a fraction ``p1`` of every group's units removed.

    Args:
        groups: The model's unit groups (:func:`unit_groups`).
        p1: Fraction removed per group, in ``[0, 1)``.
        generator: Source of the draws (one :func:`draw_unit_mask` per group, in order).

    Returns:
        One ``bool [num_units]`` per group, ``True`` = kept.
    """
    p1 = _check_p(p1, "p1")
    return [draw_unit_mask(g.num_units, p1, generator) for g in groups]


def client_mask(server: Sequence[Tensor], p2: float, generator: torch.Generator) -> list[Tensor]:
    """A client's per-round mask: a further fraction ``p2`` of the server-kept units removed.

    Args:
        server: The server mask (:func:`server_mask`), one ``bool [num_units]`` per group.
        p2: Fraction of each group's server-kept units removed, in ``[0, 1)``.
        generator: Source of the draws (one :func:`draw_unit_mask` per group, in order).

    Returns:
        One ``bool [num_units]`` per group, ``True`` = kept; a subset of ``server``.
    """
    p2 = _check_p(p2, "p2")
    return [draw_unit_mask(int(s.numel()), p2, generator, among=s) for s in server]


# --------------------------------------------------------------------------- coordinates


def _check_masks(
    layout: ParamLayout, groups: Sequence[UnitGroup], unit_masks: Sequence[Tensor]
) -> dict[str, torch.Size]:
    if len(groups) != len(unit_masks):
        raise ValueError(f"{len(groups)} groups but {len(unit_masks)} unit masks")
    shapes = dict(zip(layout.names, layout.shapes, strict=True))
    for g, m in zip(groups, unit_masks, strict=True):
        if m.dtype != torch.bool or m.shape != (g.num_units,):
            raise ValueError(
                f"unit mask of layer {g.layer!r} must be bool [{g.num_units}], "
                f"got {m.dtype} {tuple(m.shape)}"
            )
        for name in (*g.rows, *((g.next_weight,) if g.next_weight else ())):
            if name not in shapes:
                raise ValueError(f"parameter {name!r} of layer {g.layer!r} is not in the layout")
        for name in g.rows:
            if shapes[name][0] != g.num_units:
                raise ValueError(f"parameter {name!r} does not have {g.num_units} rows")
        if not g.next_weight:
            continue
        nw = shapes[g.next_weight]
        if g.next_axis >= len(nw) or nw[g.next_axis] != g.num_units * g.spatial:
            raise ValueError(
                f"{g.next_weight!r} of shape {tuple(nw)} does not have "
                f"{g.num_units} * {g.spatial} entries along axis {g.next_axis}"
            )
    return shapes


def coordinate_mask(
    layout: ParamLayout, groups: Sequence[UnitGroup], unit_masks: Sequence[Tensor]
) -> Tensor:
    """Which coordinates of the flat parameter vector a proxy carries.

    Args:
        layout: The model's layout.
        groups: The unit groups (:func:`unit_groups`).
        unit_masks: One ``bool [num_units]`` per group, ``True`` = kept.

    Returns:
        ``bool [layout.numel]`` in layout order (on the CPU): ``False`` for every
        coordinate of a removed unit (its entries in the ``rows`` parameters and its
        columns / in-channels in ``next_weight``), ``True`` otherwise; parameters in no
        group are always sent.

    Raises:
        ValueError: On a mask of the wrong shape / dtype, or groups that do not match the
            layout.
    """
    shapes = _check_masks(layout, groups, unit_masks)
    out = torch.ones(layout.numel, dtype=torch.bool)
    for g, m in zip(groups, unit_masks, strict=True):
        removed = ~m.cpu()
        for name in g.rows:
            out[layout.slices[name]].view(shapes[name])[removed] = False
        if not g.next_weight:
            continue
        cols = removed.repeat_interleave(g.spatial)
        nw = out[layout.slices[g.next_weight]].view(shapes[g.next_weight])
        nw.transpose(0, g.next_axis)[cols] = False
    return out


def apply_mask(
    params: Tensor,
    layout: ParamLayout,
    groups: Sequence[UnitGroup],
    unit_masks: Sequence[Tensor],
    *,
    scale: bool = False,
) -> Tensor:
    """The proxy's parameters: the coordinates of removed units zeroed.

    Loaded into the model, the result computes exactly what the full model computes with
    the removed units' activations zeroed (their outgoing weights are zero).

    Args:
        params: ``[layout.numel]`` flat parameters (floating); not modified.
        layout: The model's layout.
        groups: The unit groups (:func:`unit_groups`).
        unit_masks: One ``bool [num_units]`` per group, ``True`` = kept.
        scale: Inverted-dropout scaling: multiply each group's ``next_weight`` (its kept
            columns; the removed ones are zero) by ``num_units / kept`` so the expected
            pre-activation of the next layer is preserved. Biases are not scaled.

    Returns:
        A new ``[layout.numel]`` tensor.

    Raises:
        ValueError: If ``params`` is not a floating ``[layout.numel]`` vector, on bad
            masks, or with ``scale=True`` and a group with no kept unit.
    """
    if params.dim() != 1 or params.shape[0] != layout.numel or not params.is_floating_point():
        raise ValueError(
            f"params must be a floating [{layout.numel}] vector, got {params.dtype} "
            f"{tuple(params.shape)}"
        )
    keep = coordinate_mask(layout, groups, unit_masks).to(params.device)
    out = torch.where(keep, params, torch.zeros((), dtype=params.dtype, device=params.device))
    if scale:
        for g, m in zip(groups, unit_masks, strict=True):
            kept = int(m.sum())
            if kept == 0:
                raise ValueError(f"scale=True with every unit of layer {g.layer!r} removed")
            if g.next_weight:
                out[layout.slices[g.next_weight]] *= g.num_units / kept
            else:  # the units feed the residual stream: scale their own (kept) rows
                for name in g.rows:
                    out[layout.slices[name]] *= g.num_units / kept
    return out


def revealed_fraction(masks: Sequence[Tensor]) -> float:
    """Fraction of the model a client saw over a run.

    Args:
        masks: The ``bool [P]`` coordinate masks (:func:`coordinate_mask`) the client
            received, one per round it took part in.

    Returns:
        Fraction of the ``P`` coordinates ``True`` in at least one mask.

    Raises:
        ValueError: If ``masks`` is empty or its items are not ``bool [P]`` of one length.
    """
    if len(masks) == 0:
        raise ValueError("masks is empty")
    first = masks[0]
    if any(m.dtype != torch.bool or m.dim() != 1 or m.shape != first.shape for m in masks):
        raise ValueError("masks must all be bool [P] vectors of the same length")
    if first.numel() == 0:
        raise ValueError("masks have no coordinates")
    seen = torch.stack([m.to(first.device) for m in masks]).any(dim=0)
    return float(seen.sum().item()) / seen.numel()
