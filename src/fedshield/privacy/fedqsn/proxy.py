"""FedQSN's model proxy: what the model owner actually sends one client in one round.

Reference: Xu et al., "FedQSN" (EMNLP 2025 Findings, arXiv 2508.18911). The proxy of
client ``k`` in round ``r`` is

    proxy = Q_b( (W * M_s * M_c^{k,r}) [scaled] )

restricted to the coordinates of the units both masks keep: removed units'
parameters are not in the message at all (:func:`build_proxy` keeps only the kept
coordinates of every parameter; :meth:`Proxy.to_bytes` serialises exactly those), the
hidden layers' weight matrices are blockwise quantized (:mod:`.quantize`; biases and the
classifier head stay float32, as in the reference code, which quantizes only the linear
weights of the transformer body), and the server's full-precision master ``W`` is never
modified (the reference code quantizes its master in place every round; fedshield does
not).

The client rebuilds the dense proxy with :meth:`Proxy.materialize` (zeros where a unit is
removed, which computes what the full model computes with those units' activations zeroed)
and trains it; :func:`proxy_scale` maps its update back to the master's units when
inverted-dropout scaling is on.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fedshield.engine.layout import ParamLayout
from fedshield.privacy.fedqsn.masks import UnitGroup, apply_mask, coordinate_mask
from fedshield.privacy.fedqsn.quantize import QuantizedTensor, quantize_blockwise

__all__ = ["Proxy", "build_proxy", "proxy_scale", "quantized_names"]

QUANTIZERS = ("nf", "uniform", "none")


def quantized_names(layout: ParamLayout, model: nn.Module | None = None) -> tuple[str, ...]:
    """The parameters a proxy quantizes: the weight matrices / kernels of the body (every
    parameter with 2 or more dimensions except the last one, the classifier head); biases
    and the head are sent in float32. A model can declare its own list with a method
    ``fedqsn_quantized() -> tuple[str, ...]`` (a transformer: q, k, v, attention output and
    feed-forward weights, not the embeddings), as the reference code does."""
    declared = getattr(model, "fedqsn_quantized", None)
    if callable(declared):
        names = tuple(declared())
        unknown = [n for n in names if n not in layout.slices]
        if unknown:
            raise ValueError(f"fedqsn_quantized() names {unknown} are not model parameters")
        return names
    matrices = [n for n, shape in zip(layout.names, layout.shapes, strict=True) if len(shape) >= 2]
    return tuple(matrices[:-1])


@dataclass(frozen=True, eq=False)
class Proxy:
    """One client's proxy as sent.

    Attributes:
        unit_masks: Per maskable layer, ``bool [units]``: the units the proxy contains.
        values: Per parameter (layout order), the kept coordinates' values in layout order
            of that parameter: a :class:`QuantizedTensor` (quantized weights) or a float32
            1-D tensor.
        numel: Parameters of the full model (``P``).
    """

    unit_masks: tuple[Tensor, ...]
    values: dict[str, QuantizedTensor | Tensor]
    numel: int

    def nbytes(self) -> int:
        """Bytes on the wire: the values (codes + block absmax, or 4 per float) plus one
        bit per hidden unit for the masks."""
        total = sum(
            v.nbytes() if isinstance(v, QuantizedTensor) else 4 * v.numel()
            for v in self.values.values()
        )
        return total + math.ceil(sum(int(m.numel()) for m in self.unit_masks) / 8)

    def to_bytes(self) -> bytes:
        """The serialised message (``torch.save`` of the masks and the kept values only)."""
        payload = {
            "unit_masks": [m.clone() for m in self.unit_masks],
            "values": {
                n: (
                    {"codes": v.codes, "absmax": v.absmax, "block_size": v.block_size}
                    if isinstance(v, QuantizedTensor)
                    else v.clone()
                )
                for n, v in self.values.items()
            },
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        return buf.getvalue()

    def materialize(self, layout: ParamLayout, groups: Sequence[UnitGroup]) -> Tensor:
        """The dense ``[P]`` model the client trains: kept coordinates from the message,
        zeros elsewhere."""
        keep = coordinate_mask(layout, groups, self.unit_masks)
        out = torch.zeros(layout.numel)
        for name in layout.names:
            sl = layout.slices[name]
            v = self.values[name]
            vals = v.dequantize() if isinstance(v, QuantizedTensor) else v
            out[sl][keep[sl]] = vals
        return out


def build_proxy(
    master: Tensor,
    layout: ParamLayout,
    groups: Sequence[UnitGroup],
    unit_masks: Sequence[Tensor],
    *,
    quantizer: str = "nf",
    bits: int = 4,
    block_size: int = 64,
    scale: bool = False,
    quantize: Sequence[str] | None = None,
) -> Proxy:
    """Build the proxy of ``master`` for one client.

    Args:
        master: ``[P]`` float32 full-precision parameters (not modified).
        layout: The model's layout.
        groups: Maskable layers (:func:`~fedshield.privacy.fedqsn.masks.unit_groups`).
        unit_masks: The client's kept units per group (server mask AND client mask).
        quantizer: ``"nf"``, ``"uniform"`` or ``"none"`` (float32 values).
        bits: Bits of the codebook.
        block_size: Quantization block size (over the kept values of one parameter).
        scale: Inverted-dropout scaling of the kept units' outgoing weights.
        quantize: Parameters to quantize (default :func:`quantized_names` of the layout).

    Returns:
        The :class:`Proxy`.

    Raises:
        ValueError: Unknown quantizer or a master of the wrong shape.
    """
    if quantizer not in QUANTIZERS:
        raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {quantizer!r}")
    if master.shape != (layout.numel,) or not master.is_floating_point():
        raise ValueError(
            f"master must be a float [{layout.numel}] vector, got {master.dtype} "
            f"{tuple(master.shape)}"
        )
    keep = coordinate_mask(layout, groups, unit_masks)
    masked = apply_mask(master.float(), layout, groups, unit_masks, scale=scale)
    names = quantized_names(layout) if quantize is None else tuple(quantize)
    quantized = set(names) if quantizer != "none" else set()
    values: dict[str, QuantizedTensor | Tensor] = {}
    for name in layout.names:
        sl = layout.slices[name]
        kept = masked[sl][keep[sl]].clone()
        if name in quantized:
            values[name] = quantize_blockwise(
                kept, bits=bits, block_size=block_size, kind=quantizer
            )
        else:
            values[name] = kept
    return Proxy(unit_masks=tuple(m.clone() for m in unit_masks), values=values, numel=layout.numel)


def proxy_scale(
    layout: ParamLayout, groups: Sequence[UnitGroup], unit_masks: Sequence[Tensor]
) -> Tensor:
    """``[P]`` factor by which inverted-dropout scaling multiplies each coordinate of a
    proxy (1 where nothing is scaled): divide a proxy update by it to express it in the
    master's units."""
    ones = torch.ones(layout.numel)
    return apply_mask(ones, layout, groups, unit_masks, scale=True).where(
        coordinate_mask(layout, groups, unit_masks), ones
    )
