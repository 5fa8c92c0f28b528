"""Differential privacy: mechanisms, accounting, local and central DP, auditing.

- :mod:`~fedshield.privacy.mechanisms`: clipping, Gaussian / Laplace noise from explicit
  generators, the analytic Gaussian calibration.
- :mod:`~fedshield.privacy.accounting`: epsilon of DP-FedAvg, local DP and DP-SGD from
  Google's ``dp-accounting`` (RDP, PLD), noise calibration, an incremental accountant.
- :mod:`~fedshield.privacy.central`, :mod:`~fedshield.privacy.local`,
  :mod:`~fedshield.privacy.hooks`: the round-loop hooks (``[privacy]`` in a config).
- :mod:`~fedshield.privacy.audit`: canary clients and an empirical epsilon lower bound.
- :mod:`~fedshield.privacy.secure`: secure aggregation in runs (``[secure]``: SecAgg+ or
  HE sums, group-wise robust aggregation, norm bounding) and distributed DP.
"""

from __future__ import annotations

from fedshield.privacy.accounting import (
    PrivacyAccountant,
    adaptive_clipping_noise_multiplier,
    calibrate_noise,
    dp_fedavg_epsilon,
    dp_sgd_epsilon,
    local_dp_epsilon,
    local_epsilons,
)
from fedshield.privacy.audit import (
    AuditResult,
    CanaryAudit,
    canary_scores,
    clopper_pearson,
    epsilon_lower_bound,
    make_canaries,
)
from fedshield.privacy.mechanisms import (
    analytic_gaussian_sigma,
    clip_updates,
    gaussian_noise,
    laplace_noise,
    laplace_scale,
)
from fedshield.privacy.secure import (
    DistributedDP,
    SecureAggregation,
    assign_groups,
    group_sizes,
)

__all__ = [
    "AuditResult",
    "CanaryAudit",
    "DistributedDP",
    "PrivacyAccountant",
    "SecureAggregation",
    "adaptive_clipping_noise_multiplier",
    "analytic_gaussian_sigma",
    "assign_groups",
    "calibrate_noise",
    "canary_scores",
    "clip_updates",
    "clopper_pearson",
    "dp_fedavg_epsilon",
    "dp_sgd_epsilon",
    "epsilon_lower_bound",
    "gaussian_noise",
    "group_sizes",
    "laplace_noise",
    "laplace_scale",
    "local_dp_epsilon",
    "local_epsilons",
    "make_canaries",
]
