"""Aggregation rules as the round loop runs them: one adapter per rule name.

The pure functions (``krum``, ``median``, ...) take the update matrix and explicit
options. A *rule* adapts one of them to a run: it reads its options from ``[defense]``
(:class:`fedshield.config.schema.DefenseConfig`), the assumed number of Byzantine rows,
the previous aggregate, the server's root-data update (FLTrust) or per-client histories
(FoolsGold) from an :class:`AggregationContext`, and returns an
:class:`~fedshield.aggregators.base.Aggregation` (aggregate + which rows were kept, for
detection statistics)::

    rule(updates: Tensor[n, d], weights: Tensor[n], ctx: AggregationContext) -> Aggregation
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from fedshield.aggregators.base import Aggregation
from fedshield.aggregators.bulyan import bulyan_aggregation
from fedshield.aggregators.centered_clipping import centered_clipping
from fedshield.aggregators.dnc import dnc_aggregation
from fedshield.aggregators.flame import flame_aggregation
from fedshield.aggregators.fltrust import fltrust_aggregation
from fedshield.aggregators.foolsgold import FoolsGoldHistory, foolsgold_aggregation
from fedshield.aggregators.geometric_median import geometric_median
from fedshield.aggregators.krum import krum_aggregation
from fedshield.aggregators.mean import mean
from fedshield.aggregators.median import median
from fedshield.aggregators.norm_bound import norm_bound
from fedshield.aggregators.pda_pam import pda_pam, pda_pam_weights
from fedshield.aggregators.signguard import signguard_aggregation
from fedshield.aggregators.trimmed_mean import trimmed_mean
from fedshield.config.schema import DefenseConfig, FedREConfig


@dataclass
class AggregationContext:
    """What a rule may use besides the update matrix.

    Attributes:
        num_byzantine: Byzantine rows the rule assumes this round (``f``).
        defense: The rule options.
        generator: Random draws of the rule (FLAME noise, DnC/SignGuard subsets).
        global_params: ``[d]`` global parameters at the start of the round.
        client_ids: ``int64 [n]`` client of each row.
        previous: ``[d]`` previous round's aggregate (None in the first round).
        server_update: Computes the server's update on its root data (FLTrust).
        state: The rule's persistent state across rounds (checkpointed by the loop).
        layer_slices: Slices of the row covering each layer, in order (layer-wise rules).
        psi_scores: Maps the update matrix ``[n, d]`` to each client model's per-layer PSI
            score ``[n, L]`` on the server's public documents (PDA-PAM).
        fedre: FedRE options (PDA-PAM's mode, temperature, standardisation).
    """

    num_byzantine: int
    defense: DefenseConfig
    generator: torch.Generator
    global_params: Tensor
    client_ids: Tensor
    previous: Tensor | None = None
    server_update: Callable[[], Tensor] | None = None
    state: dict[str, Any] = field(default_factory=dict)
    layer_slices: Sequence[slice] | None = None
    psi_scores: Callable[[Tensor], Tensor] | None = None
    fedre: FedREConfig | None = None


Rule = Callable[[Tensor, Tensor, AggregationContext], Aggregation]


def _row_norm_median(updates: Tensor) -> float:
    return float(torch.linalg.vector_norm(updates, dim=1).median())


def _mean(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    return Aggregation(mean(u, w))


def _krum(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    return krum_aggregation(u, num_byzantine=ctx.num_byzantine)


def _multi_krum(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    m = ctx.defense.num_selected or u.shape[0] - ctx.num_byzantine
    return krum_aggregation(u, num_byzantine=ctx.num_byzantine, num_selected=m)


def _median(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    return Aggregation(median(u))


def _trimmed_mean(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    frac = ctx.defense.trim_fraction
    k = int(frac * u.shape[0]) if frac > 0 else ctx.num_byzantine
    return Aggregation(trimmed_mean(u, num_trim=k))


def _bulyan(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    return bulyan_aggregation(u, num_byzantine=ctx.num_byzantine)


def _geometric_median(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    return Aggregation(geometric_median(u, w))


def _centered_clipping(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    center = ctx.previous if ctx.previous is not None else torch.zeros_like(u[0])
    tau = ctx.defense.tau or _row_norm_median(u - center)
    if tau <= 0:  # every row equals the center
        return Aggregation(center.clone())
    return Aggregation(
        centered_clipping(u, center=center, tau=tau, iterations=ctx.defense.iterations)
    )


def _norm_bound(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    return Aggregation(norm_bound(u, w, max_norm=ctx.defense.max_norm or None))


def _pda_pam(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    if ctx.psi_scores is None or ctx.layer_slices is None or ctx.fedre is None:
        raise ValueError(
            "pda_pam needs the clients' PSI scores on public documents (psi_scores), the "
            "layer slices and the [fedre] options"
        )
    scores = ctx.psi_scores(u)
    f = ctx.fedre
    coeff = pda_pam_weights(
        scores, mode=f.pda_mode, temperature=f.pda_temperature, standardize=f.pda_standardize
    )
    agg = pda_pam(
        u,
        scores,
        ctx.layer_slices,
        mode=f.pda_mode,
        temperature=f.pda_temperature,
        standardize=f.pda_standardize,
    )
    return Aggregation(agg, weights=coeff.mean(dim=1))


def _fltrust(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    if ctx.server_update is None:
        raise ValueError("fltrust needs the server's root-data update (server_update)")
    return fltrust_aggregation(u, server_update=ctx.server_update())


def _foolsgold(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    history = ctx.state.get("foolsgold")
    if not isinstance(history, FoolsGoldHistory):
        history = FoolsGoldHistory()
        if isinstance(ctx.state.get("foolsgold_state"), dict):
            history.load_state_dict(ctx.state["foolsgold_state"])
        ctx.state["foolsgold"] = history
    hist = history.update(ctx.client_ids, u)
    return foolsgold_aggregation(u, history=hist, kappa=ctx.defense.kappa)


def _flame(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    g = ctx.global_params if ctx.defense.cluster_on == "models" else None
    return flame_aggregation(
        u, global_params=g, noise_lambda=ctx.defense.noise_lambda, generator=ctx.generator
    )


def _dnc(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    d = ctx.defense
    return dnc_aggregation(
        u,
        num_byzantine=ctx.num_byzantine,
        sub_dim=d.sub_dim,
        num_iters=d.dnc_iters,
        filter_frac=d.filter_frac,
        generator=ctx.generator,
    )


def _signguard(u: Tensor, w: Tensor, ctx: AggregationContext) -> Aggregation:
    return signguard_aggregation(u, generator=ctx.generator)


#: name -> rule adapter used by the round loop
RULES: dict[str, Rule] = {
    "mean": _mean,
    "krum": _krum,
    "multi_krum": _multi_krum,
    "median": _median,
    "trimmed_mean": _trimmed_mean,
    "bulyan": _bulyan,
    "geometric_median": _geometric_median,
    "centered_clipping": _centered_clipping,
    "norm_bound": _norm_bound,
    "fltrust": _fltrust,
    "pda_pam": _pda_pam,
    "foolsgold": _foolsgold,
    "flame": _flame,
    "dnc": _dnc,
    "signguard": _signguard,
}


def max_byzantine(name: str, n: int) -> int | None:
    """The largest ``f`` rule ``name`` tolerates with ``n`` rows (None = no limit).

    Krum needs ``n > 2f + 2``, Bulyan ``n >= 4f + 3``, trimmed mean ``n > 2f`` (it trims
    ``f`` at each end), DnC ``n > f``.
    """
    if name in ("krum", "multi_krum"):
        return (n - 3) // 2
    if name == "bulyan":
        return (n - 3) // 4
    if name == "trimmed_mean":
        return (n - 1) // 2
    if name == "dnc":
        return n - 1
    return None


def uses_num_byzantine(name: str, defense: DefenseConfig) -> bool:
    """Whether rule ``name`` depends on the assumed number of Byzantine rows."""
    if name == "trimmed_mean":
        return defense.trim_fraction == 0
    return name in ("krum", "multi_krum", "bulyan", "dnc")
