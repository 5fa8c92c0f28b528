"""Aggregation rules: pure functions over the update matrix ``[n_clients, n_params]``.

Each rule is a function of the matrix and explicit options returning ``Tensor[n_params]``
(``krum(updates, *, num_byzantine)``, ``median(updates)``, ...); the ``*_aggregation``
variants also say which rows were kept (:class:`Aggregation`), for detection statistics.
:data:`AGGREGATORS` maps a config name (``server.aggregator``) to the adapter the round
loop runs (:mod:`fedshield.aggregators.rules`); :func:`get` fails with the known names.

Assumptions (checked, a ``ValueError`` names the rule and the condition): Krum and
Multi-Krum need ``n > 2f + 2``, Bulyan ``n >= 4f + 3``, trimmed mean ``n > 2 * num_trim``,
DnC ``n > filter_frac * f``. PDA-PAM (FedRE) weights each client's layers by its PSI
score on the server's public documents.
"""

from __future__ import annotations

from fedshield.aggregators.base import Aggregation, pairwise_sq_distances
from fedshield.aggregators.bulyan import bulyan, bulyan_aggregation
from fedshield.aggregators.centered_clipping import centered_clipping
from fedshield.aggregators.checks import check_updates, check_weights, nonfinite_rows
from fedshield.aggregators.dnc import dnc, dnc_aggregation
from fedshield.aggregators.flame import flame, flame_aggregation
from fedshield.aggregators.fltrust import fltrust, fltrust_aggregation
from fedshield.aggregators.foolsgold import (
    FoolsGoldHistory,
    foolsgold,
    foolsgold_aggregation,
    foolsgold_weights,
)
from fedshield.aggregators.geometric_median import geometric_median
from fedshield.aggregators.krum import krum, krum_aggregation, krum_scores, multi_krum
from fedshield.aggregators.mean import mean
from fedshield.aggregators.median import median
from fedshield.aggregators.norm_bound import clip_rows, norm_bound
from fedshield.aggregators.pda_pam import pda_pam, pda_pam_weights
from fedshield.aggregators.rules import RULES, AggregationContext, Rule
from fedshield.aggregators.signguard import signguard, signguard_aggregation
from fedshield.aggregators.trimmed_mean import trimmed_mean

#: name -> rule adapter run by the round loop (``server.aggregator``)
AGGREGATORS: dict[str, Rule] = RULES


def get(name: str) -> Rule:
    """Look up an aggregation rule by its config name.

    Raises:
        ValueError: Unknown name (the message lists the known ones).
    """
    try:
        return AGGREGATORS[name]
    except KeyError:
        known = ", ".join(sorted(AGGREGATORS))
        raise ValueError(f"unknown aggregator {name!r}: known aggregators are {known}") from None


__all__ = [
    "AGGREGATORS",
    "Aggregation",
    "AggregationContext",
    "FoolsGoldHistory",
    "Rule",
    "bulyan",
    "bulyan_aggregation",
    "centered_clipping",
    "check_updates",
    "check_weights",
    "clip_rows",
    "dnc",
    "dnc_aggregation",
    "flame",
    "flame_aggregation",
    "fltrust",
    "fltrust_aggregation",
    "foolsgold",
    "foolsgold_aggregation",
    "foolsgold_weights",
    "geometric_median",
    "get",
    "krum",
    "krum_aggregation",
    "krum_scores",
    "mean",
    "median",
    "multi_krum",
    "nonfinite_rows",
    "norm_bound",
    "pairwise_sq_distances",
    "pda_pam",
    "pda_pam_weights",
    "signguard",
    "signguard_aggregation",
    "trimmed_mean",
]
