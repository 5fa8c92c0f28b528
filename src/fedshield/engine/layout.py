"""ParamLayout: a model's trainable parameters as one flat vector, and back.

Every client upload in a round is one row of the update matrix
``Tensor[n_clients, n_params]``; :class:`ParamLayout` knows where each named parameter
lives in a row (``slices``), its shape, and how parameters group into layers (``layers``),
which layer-wise mechanisms (FedRE) and partial sharing (personalised FL) need.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ParamLayout:
    """Flat layout of a model's trainable parameters.

    Attributes:
        names: Parameter names in ``model.named_parameters()`` order.
        shapes: Shape of each parameter.
        slices: Parameter name -> slice of the flat vector.
        layers: Layer (module path) -> slice covering all its parameters, in order.
        numel: Total number of parameters (the row length of the update matrix).
        dtype: Floating dtype of the parameters.
    """

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    slices: Mapping[str, slice] = field(repr=False)
    layers: Mapping[str, slice] = field(repr=False)
    numel: int
    dtype: torch.dtype = torch.float32

    @classmethod
    def from_module(cls, model: nn.Module) -> ParamLayout:
        """Layout of ``model``'s trainable parameters (``requires_grad=True``).

        Args:
            model: Any ``torch.nn.Module``.

        Returns:
            The layout.

        Raises:
            ValueError: If the model has no trainable parameters or mixes dtypes.
        """
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("model has no trainable parameters: nothing to federate")
        dtypes = {p.dtype for _, p in named}
        if len(dtypes) != 1:
            raise ValueError(f"model parameters mix dtypes {sorted(map(str, dtypes))}")
        return cls.from_shapes([(n, p.shape) for n, p in named], dtype=named[0][1].dtype)

    @classmethod
    def from_shapes(
        cls, named_shapes: list[tuple[str, torch.Size]], *, dtype: torch.dtype = torch.float32
    ) -> ParamLayout:
        """Layout from ``(name, shape)`` pairs in order."""
        slices: dict[str, slice] = {}
        layers: dict[str, slice] = {}
        start = 0
        for name, shape in named_shapes:
            n = math.prod(shape)
            slices[name] = slice(start, start + n)
            layer = name.rsplit(".", 1)[0] if "." in name else name
            if layer in layers and layers[layer].stop == start:
                layers[layer] = slice(layers[layer].start, start + n)
            elif layer in layers:
                raise ValueError(f"parameters of layer {layer!r} are not contiguous")
            else:
                layers[layer] = slice(start, start + n)
            start += n
        return cls(
            names=tuple(n for n, _ in named_shapes),
            shapes=tuple(torch.Size(s) for _, s in named_shapes),
            slices=slices,
            layers=layers,
            numel=start,
            dtype=dtype,
        )

    def flatten(self, model_or_state: nn.Module | Mapping[str, Tensor]) -> Tensor:
        """Concatenate parameters into one vector (or a matrix for stacked states).

        Args:
            model_or_state: A module, or a mapping name -> tensor. Tensors may carry one
                leading batch dimension (stacked client parameters), giving a
                ``[batch, numel]`` matrix.

        Returns:
            A new tensor ``[numel]`` or ``[batch, numel]`` (detached).

        Raises:
            KeyError: If a parameter is missing.
            ValueError: If a tensor has the wrong shape.
        """
        state: dict[str, Tensor] = (
            dict(model_or_state.named_parameters())
            if isinstance(model_or_state, nn.Module)
            else dict(model_or_state)
        )
        parts: list[Tensor] = []
        batch: int | None = None
        for name, shape in zip(self.names, self.shapes, strict=True):
            if name not in state:
                raise KeyError(f"parameter {name!r} missing from the state to flatten")
            t = state[name].detach()
            if t.shape == shape:
                lead = None
            elif t.dim() == len(shape) + 1 and t.shape[1:] == shape:
                lead = t.shape[0]
            else:
                raise ValueError(
                    f"parameter {name!r} has shape {tuple(t.shape)}, expected {tuple(shape)} "
                    f"or (batch, *{tuple(shape)})"
                )
            if parts and lead != batch:
                raise ValueError("all tensors must share the same (or no) batch dimension")
            batch = lead
            parts.append(t.reshape(-1) if lead is None else t.reshape(lead, -1))
        return torch.cat(parts, dim=-1)

    def write_rows(self, state: Mapping[str, Tensor], out: Tensor) -> Tensor:
        """Write stacked parameters ``name -> [n, *shape]`` into the rows of ``out``.

        The batched :meth:`flatten` without its intermediate copy: ``out`` may be a view
        (a block of rows of a larger update matrix).

        Args:
            state: Stacked parameters, each with the same leading dimension ``n``.
            out: ``[n, numel]`` destination.

        Returns:
            ``out``.
        """
        n = out.shape[0]
        for name, sl in self.slices.items():
            out[:, sl].copy_(state[name].reshape(n, -1))
        return out

    def unflatten(self, vector: Tensor) -> dict[str, Tensor]:
        """Split a vector ``[numel]`` (or matrix ``[batch, numel]``) into named views.

        Args:
            vector: Flat parameters.

        Returns:
            name -> view of ``vector`` with the parameter's shape (batched if the input was).

        Raises:
            ValueError: If the last dimension is not ``numel``.
        """
        if vector.dim() not in (1, 2) or vector.shape[-1] != self.numel:
            raise ValueError(
                f"vector has shape {tuple(vector.shape)}, expected ({self.numel},) or "
                f"(batch, {self.numel})"
            )
        lead = vector.shape[:-1]
        return {
            name: vector[..., self.slices[name]].view(*lead, *shape)
            for name, shape in zip(self.names, self.shapes, strict=True)
        }

    def load_into(self, model: nn.Module, vector: Tensor) -> None:
        """Copy a flat vector into ``model``'s parameters in place."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, t in self.unflatten(vector).items():
                params[name].copy_(t)
