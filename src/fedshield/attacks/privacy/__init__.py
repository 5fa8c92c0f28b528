"""Privacy attacks on federated learning: reconstructing training data from gradients."""

from __future__ import annotations

from fedshield.attacks.privacy.gradient_inversion import (
    INVERSION_METHODS,
    batch_labels,
    hungarian_match,
    idlg_label,
    invert_gradients,
)

__all__ = [
    "INVERSION_METHODS",
    "batch_labels",
    "hungarian_match",
    "idlg_label",
    "invert_gradients",
]
