"""Small reference models used across the federated-learning literature.

Each factory has the signature ``(input_shape, num_classes) -> nn.Module`` (a
:data:`fedshield.models.ModelFactory`) and builds a plain ``nn.Sequential`` of standard
layers, so the engine can recognise and vectorise it. Layer sizes that depend on the input
are computed with a dummy forward pass on zeros (which draws no random numbers).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

__all__ = ["cnn", "lenet", "logreg", "mlp_2nn"]


def _check_shape(
    input_shape: tuple[int, ...], num_classes: int, model: str
) -> tuple[tuple[int, ...], int]:
    """Validates and normalises ``(input_shape, num_classes)`` to plain ints."""
    shape = tuple(input_shape)
    if len(shape) == 0 or any(
        isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in shape
    ):
        raise ValueError(
            f"{model}: input_shape must be a non-empty tuple of positive sizes, got {shape}"
        )
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, numbers.Integral)
        or num_classes < 1
    ):
        raise ValueError(f"{model}: num_classes must be an int >= 1, got {num_classes!r}")
    return tuple(int(d) for d in shape), int(num_classes)


def _check_image(
    input_shape: tuple[int, ...], num_classes: int, model: str
) -> tuple[tuple[int, ...], int]:
    shape, k = _check_shape(input_shape, num_classes, model)
    if len(shape) != 3:
        raise ValueError(f"{model}: input_shape must be (channels, height, width), got {shape}")
    return shape, k


def _flat_size(features: nn.Module, input_shape: tuple[int, ...], model: str) -> int:
    """Number of features ``features`` outputs per sample, from a forward pass on zeros."""
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, *input_shape))
    except RuntimeError as exc:
        raise ValueError(
            f"{model}: input_shape {tuple(input_shape)} is too small for this architecture ({exc})"
        ) from exc
    return int(out[0].numel())


def mlp_2nn(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """The "2NN" multilayer perceptron: two hidden layers of 200 ReLU units.

    Reference: B. McMahan, E. Moore, D. Ramage, S. Hampson, B. Agüera y Arcas,
    "Communication-Efficient Learning of Deep Networks from Decentralized Data",
    AISTATS 2017, Section 3 (199,210 parameters on MNIST).

    Args:
        input_shape: Shape of one sample; it is flattened.
        num_classes: Number of output logits.

    Returns:
        ``Sequential(Flatten, Linear(D, 200), ReLU, Linear(200, 200), ReLU,
        Linear(200, num_classes))``.
    """
    input_shape, num_classes = _check_shape(input_shape, num_classes, "mlp_2nn")
    d = math.prod(input_shape)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(d, 200),
        nn.ReLU(),
        nn.Linear(200, 200),
        nn.ReLU(),
        nn.Linear(200, num_classes),
    )


def logreg(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """Multinomial logistic regression (a single linear layer on flattened inputs).

    The convex baseline of federated optimisation studies, e.g. T. Li et al.,
    "Federated Optimization in Heterogeneous Networks" (FedProx), MLSys 2020.

    Args:
        input_shape: Shape of one sample; it is flattened.
        num_classes: Number of output logits.

    Returns:
        ``Sequential(Flatten, Linear(D, num_classes))``.
    """
    input_shape, num_classes = _check_shape(input_shape, num_classes, "logreg")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


def cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """The FedAvg CNN: two 5x5 conv layers (32, 64 channels) with max-pooling, FC 512.

    Reference: B. McMahan, E. Moore, D. Ramage, S. Hampson, B. Agüera y Arcas,
    "Communication-Efficient Learning of Deep Networks from Decentralized Data",
    AISTATS 2017, Section 3 (1,663,370 parameters on MNIST).

    Args:
        input_shape: ``(channels, height, width)``, height and width at least 4.
        num_classes: Number of output logits.

    Returns:
        ``Sequential(Conv2d(C, 32, 5, padding=2), ReLU, MaxPool2d(2),
        Conv2d(32, 64, 5, padding=2), ReLU, MaxPool2d(2), Flatten, Linear(F, 512), ReLU,
        Linear(512, num_classes))``.
    """
    input_shape, num_classes = _check_image(input_shape, num_classes, "cnn")
    features = nn.Sequential(
        nn.Conv2d(input_shape[0], 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    flat = _flat_size(features, input_shape, "cnn")
    return nn.Sequential(
        *features,
        nn.Linear(flat, 512),
        nn.ReLU(),
        nn.Linear(512, num_classes),
    )


def lenet(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """The sigmoid LeNet variant used by gradient-inversion attacks.

    Reference: L. Zhu, Z. Liu, S. Han, "Deep Leakage from Gradients", NeurIPS 2019
    (the model of their released code; also used by iDLG, Zhao et al. 2020). Sigmoid
    activations keep it twice differentiable, which gradient matching needs.

    Args:
        input_shape: ``(channels, height, width)``.
        num_classes: Number of output logits.

    Returns:
        ``Sequential(Conv2d(C, 12, 5, padding=2, stride=2), Sigmoid,
        Conv2d(12, 12, 5, padding=2, stride=2), Sigmoid,
        Conv2d(12, 12, 5, padding=2, stride=1), Sigmoid, Flatten, Linear(F, num_classes))``.
    """
    input_shape, num_classes = _check_image(input_shape, num_classes, "lenet")
    features = nn.Sequential(
        nn.Conv2d(input_shape[0], 12, 5, padding=2, stride=2),
        nn.Sigmoid(),
        nn.Conv2d(12, 12, 5, padding=2, stride=2),
        nn.Sigmoid(),
        nn.Conv2d(12, 12, 5, padding=2, stride=1),
        nn.Sigmoid(),
        nn.Flatten(),
    )
    flat = _flat_size(features, input_shape, "lenet")
    return nn.Sequential(*features, nn.Linear(flat, num_classes))
