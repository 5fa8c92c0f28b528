"""FedRE (Xiao et al., ICMR 2025): privacy-preference-aware layer-wise local DP.

* :mod:`~fedshield.privacy.fedre.psi` -- per-layer PSI scores (eqs. 3-5): exact
  forward-over-reverse JVPs, a Hutchinson estimate, the per-format shortcut.
* :mod:`~fedshield.privacy.fedre.budget` -- budgets (eq. 6), delta split, sigma (eq. 9),
  per-layer clipping and noise (eqs. 7-8), accounting.
* :mod:`~fedshield.privacy.fedre.baselines` -- alpha-CLDP (LDP-Fed) and PSI-region blur.
* :mod:`~fedshield.privacy.fedre.hook` -- the mechanism in the round loop
  (``privacy.mode = "fedre"``), LDP-Fed (``"ldp_fed"``), the PDA-PAM scorer.

PDA-PAM itself is an aggregator: :func:`fedshield.aggregators.pda_pam`.
"""

from fedshield.privacy.fedre.baselines import blur_regions, cldp_perturb
from fedshield.privacy.fedre.budget import (
    allocate_budget,
    clip_layers,
    fedre_accounting,
    fedre_sigma,
    layer_norms,
    perturb_layers,
    split_delta,
    uniform_budget,
)
from fedshield.privacy.fedre.psi import per_format_scores, psi_scores, psi_scores_hutchinson

__all__ = [
    "allocate_budget",
    "blur_regions",
    "cldp_perturb",
    "clip_layers",
    "fedre_accounting",
    "fedre_sigma",
    "layer_norms",
    "per_format_scores",
    "perturb_layers",
    "psi_scores",
    "psi_scores_hutchinson",
    "split_delta",
    "uniform_budget",
]
