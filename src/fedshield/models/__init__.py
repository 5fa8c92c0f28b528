"""Model registry and seeded construction.

A model is described by a :data:`ModelFactory`, any callable
``(input_shape, num_classes) -> torch.nn.Module``. The reference architectures live in
:mod:`fedshield.models.reference` and are registered by name in :data:`MODELS`;
:func:`build_model` builds either a registered name or a user factory with a
deterministic initialisation that leaves the global RNG untouched.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
from torch import nn

from fedshield.models.reference import cnn, lenet, logreg, mlp_2nn
from fedshield.models.transformer import TinyTransformer, tiny_transformer
from fedshield.models.unet import unet

__all__ = [
    "MODELS",
    "ModelFactory",
    "TinyTransformer",
    "build_model",
    "cnn",
    "lenet",
    "logreg",
    "mlp_2nn",
    "tiny_transformer",
    "unet",
]

ModelFactory = Callable[[tuple[int, ...], int], nn.Module]
"""``(input_shape, num_classes) -> nn.Module``; ``input_shape`` excludes the batch axis."""

MODELS: dict[str, ModelFactory] = {
    "mlp_2nn": mlp_2nn,
    "cnn": cnn,
    "lenet": lenet,
    "logreg": logreg,
    "unet": unet,
    "transformer": tiny_transformer,
}
"""Registry of reference models: name -> factory."""


def build_model(
    name_or_factory: str | ModelFactory,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    seed: int,
) -> nn.Module:
    """Builds a model with a deterministic initialisation.

    The factory runs inside ``torch.random.fork_rng(devices=[])`` after
    ``torch.manual_seed(seed)``: the same seed gives identical parameters, and the
    caller's global CPU RNG state is restored afterwards. (Only the CPU generator is
    seeded; a factory that draws on an accelerator's generator is not made deterministic.)

    Args:
        name_or_factory: A key of :data:`MODELS` (``"mlp_2nn"``, ``"cnn"``, ``"lenet"``,
            ``"logreg"``) or any callable ``(input_shape, num_classes) -> nn.Module``.
        input_shape: Shape of one sample, without the batch axis, e.g. ``(1, 28, 28)``.
        num_classes: Number of output logits.
        seed: Seed of the parameter initialisation.

    Returns:
        The model, in training mode, on the device the factory chose (CPU for the
        reference models).

    Raises:
        ValueError: If the name is unknown (the message lists the known names), the seed
            is not an int, or the model has no trainable parameters.
        TypeError: If ``name_or_factory`` is neither a string nor callable, or the factory
            does not return an ``nn.Module``.
    """
    if isinstance(name_or_factory, str):
        try:
            factory = MODELS[name_or_factory]
        except KeyError:
            raise ValueError(
                f"unknown model {name_or_factory!r}; known models: {', '.join(sorted(MODELS))}"
            ) from None
        label = repr(name_or_factory)
    elif callable(name_or_factory):
        factory = name_or_factory
        label = getattr(factory, "__qualname__", None) or repr(factory)
    else:
        raise TypeError(
            "name_or_factory must be a model name or a callable (input_shape, num_classes) "
            f"-> nn.Module, got {type(name_or_factory).__name__}: {name_or_factory!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int, got {seed!r}")

    shape = tuple(input_shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = factory(shape, num_classes)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model factory {label} must return a torch.nn.Module, "
            f"got {type(model).__name__}: {model!r:.200}"
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"model built by {label} has no trainable parameters")
    return model
