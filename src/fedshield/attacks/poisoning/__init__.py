"""Model-poisoning attacks: pure functions that craft the malicious rows of the update matrix.

Each attack takes what the attackers are assumed to know (their own honest updates, or all
benign updates of the round when omniscient) and returns the malicious update(s): a ``[d]``
vector every attacker sends, or a ``[num, d]`` matrix. Randomness only comes from an
explicit ``torch.Generator``.
"""

from __future__ import annotations

from fedshield.attacks.poisoning.alie import alie, alie_z
from fedshield.attacks.poisoning.backdoor import (
    DBA_PIECE_WIDTH,
    DBA_PIECES,
    attack_success_rate,
    badnets,
    blend_pattern,
    blended,
    dba,
)
from fedshield.attacks.poisoning.fang import (
    FangKrumResult,
    fang_krum,
    fang_krum_lambda_bound,
    fang_krum_search,
    fang_trimmed_mean,
)
from fedshield.attacks.poisoning.free_rider import FREE_RIDER_MODES, free_rider
from fedshield.attacks.poisoning.gaussian import gaussian
from fedshield.attacks.poisoning.ipm import ipm
from fedshield.attacks.poisoning.label_flip import FLIP_MODES, flip_labels
from fedshield.attacks.poisoning.min_max import (
    PERTURBATIONS,
    min_max,
    min_max_gamma,
    min_sum,
    min_sum_gamma,
    perturbation_vector,
)
from fedshield.attacks.poisoning.scaling import model_replacement_factor, project_norm, scale_update
from fedshield.attacks.poisoning.sign_flip import sign_flip
from fedshield.attacks.poisoning.sybil import sybil

__all__ = [
    "DBA_PIECES",
    "DBA_PIECE_WIDTH",
    "FLIP_MODES",
    "FREE_RIDER_MODES",
    "PERTURBATIONS",
    "FangKrumResult",
    "alie",
    "alie_z",
    "attack_success_rate",
    "badnets",
    "blend_pattern",
    "blended",
    "dba",
    "fang_krum",
    "fang_krum_lambda_bound",
    "fang_krum_search",
    "fang_trimmed_mean",
    "flip_labels",
    "free_rider",
    "gaussian",
    "ipm",
    "min_max",
    "min_max_gamma",
    "min_sum",
    "min_sum_gamma",
    "model_replacement_factor",
    "perturbation_vector",
    "project_norm",
    "scale_update",
    "sign_flip",
    "sybil",
]
