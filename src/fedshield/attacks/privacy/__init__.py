"""Privacy attacks on federated learning: reconstructing training data from gradients."""

from __future__ import annotations

from fedshield.attacks.privacy.gradient_inversion import (
    INVERSION_METHODS,
    batch_labels,
    flat_gradient,
    hungarian_match,
    idlg_label,
    invert_gradients,
    zhu_init_,
)

__all__ = [
    "INVERSION_METHODS",
    "batch_labels",
    "flat_gradient",
    "hungarian_match",
    "idlg_label",
    "invert_gradients",
    "zhu_init_",
]
