"""Evaluation metrics: reconstruction quality (image) and membership inference.

``fedshield.metrics.psnr(a, b)`` and ``fedshield.metrics.ssim(a, b)`` score images in
``[0, 1]``; the membership functions follow "higher score = more likely a member".
"""

from fedshield.metrics.image import (
    LPIPSUnavailableError,
    lpips,
    mse,
    psnr,
    ssim,
    to_unit_range,
)
from fedshield.metrics.membership import (
    balanced_accuracy,
    lira_offline_scores,
    lira_online_scores,
    logit_confidence,
    loss_threshold_scores,
    roc_auc,
    tpr_at_fpr,
)

__all__ = [
    "LPIPSUnavailableError",
    "balanced_accuracy",
    "lira_offline_scores",
    "lira_online_scores",
    "logit_confidence",
    "loss_threshold_scores",
    "lpips",
    "mse",
    "psnr",
    "roc_auc",
    "ssim",
    "to_unit_range",
    "tpr_at_fpr",
]
