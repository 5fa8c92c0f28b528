"""The threat model of a run: who is malicious, when they attack, what they know and do.

Built from ``[attack]`` (:class:`fedshield.config.schema.AttackConfig`). It plugs into
the round loop in three places:

1. **Sampling**: with ``always_participate`` the malicious clients are in every round
   (the other seats are sampled from the benign clients); otherwise they are sampled like
   everyone else.
2. **Data poisoning** (client side, before training): the training arrays are extended
   once with a poisoned copy of every malicious client's samples (flipped label, or
   trigger stamped and target label); in rounds where the attack is active, the first
   ``round(poison_fraction * |b|)`` slots of every malicious minibatch ``b`` (batches are
   random permutations, so these are random samples) are redirected to the poisoned
   copies. All local-training paths (sequential, vmap, fused) consume the same plan.
3. **Model poisoning** (client side, after training, before upload), as a
   :class:`fedshield.engine.hooks.Hook`: the malicious rows of the update matrix are
   rewritten by a pure attack function of :mod:`fedshield.attacks.poisoning`, from what
   the attackers know: ``own`` = their own honest updates (pooled when they ``collude``,
   else each attacker alone), ``omniscient`` = every benign update of the round.

It also gives the backdoor test set (full trigger, for the attack success rate) and the
malicious mask of any set of rows (for detection statistics of a defense).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedshield.aggregators.checks import nonfinite_rows
from fedshield.attacks.poisoning.alie import alie
from fedshield.attacks.poisoning.backdoor import (
    attack_success_rate,
    badnets,
    blend_pattern,
    blended,
    dba,
)
from fedshield.attacks.poisoning.fang import fang_krum, fang_trimmed_mean
from fedshield.attacks.poisoning.free_rider import free_rider
from fedshield.attacks.poisoning.gaussian import gaussian
from fedshield.attacks.poisoning.ipm import ipm
from fedshield.attacks.poisoning.label_flip import flip_labels
from fedshield.attacks.poisoning.min_max import min_max, min_sum
from fedshield.attacks.poisoning.scaling import project_norm
from fedshield.config.schema import AttackConfig, ConfigError, ExperimentConfig
from fedshield.data import Dataset
from fedshield.engine.batches import BatchPlan
from fedshield.engine.hooks import ClientUpdates, Hook, RoundContext
from fedshield.engine.seeding import Stream, derive_seed, numpy_rng, torch_generator


def choose_malicious(cfg: ExperimentConfig) -> np.ndarray:
    """Sorted ids of the malicious clients: the configured ids or a seeded random choice."""
    if cfg.attack.malicious_ids:
        return np.sort(np.asarray(cfg.attack.malicious_ids, dtype=np.int64))
    f = cfg.num_malicious
    rng = numpy_rng(cfg.seed, Stream.MALICIOUS)
    return np.sort(rng.choice(cfg.data.num_clients, size=f, replace=False)).astype(np.int64)


class ThreatModel(Hook):
    """The configured adversary of a run (see the module docstring).

    Args:
        cfg: The experiment configuration (its ``attack`` section is used).
        dataset: The federation's dataset.
        clients: Per client, its sample indices into the training arrays.

    Raises:
        ConfigError: A label out of range for the dataset, or a trigger the data cannot
            carry (e.g. a pixel trigger on tabular data).
    """

    name = "threat_model"

    def __init__(self, cfg: ExperimentConfig, dataset: Dataset, clients: Sequence[np.ndarray]):
        self.cfg = cfg
        self.attack: AttackConfig = cfg.attack
        self.num_clients = cfg.data.num_clients
        self.malicious = choose_malicious(cfg)
        self.is_malicious = torch.zeros(self.num_clients, dtype=torch.bool)
        self.is_malicious[torch.from_numpy(self.malicious)] = True
        self.dataset = dataset
        self._previous_global: Tensor | None = None
        self._stale: Tensor | None = None
        a = self.attack
        c = dataset.num_classes
        for key, label in (
            ("attack.target_label", a.target_label if a.data == "backdoor" else 0),
            ("attack.flip_target", a.flip_target if a.data == "label_flip" else 0),
            ("attack.flip_source", a.flip_source if a.data == "label_flip" else 0),
        ):
            if label >= c:
                raise ConfigError(
                    f"{key} = {label} is out of range for {dataset.name!r}: classes are 0..{c - 1}"
                )
        self.fraction = a.poison_fraction or (1.0 if a.data == "label_flip" else 0.5)
        self._white = float(dataset.x_train.max())
        self._pattern: Tensor | None = None
        if a.data == "backdoor":
            try:
                self._stamp(dataset.x_test[:1], None)
            except ValueError as exc:
                raise ConfigError(f"attack.trigger = {a.trigger!r}: {exc}") from exc
        self.x_train, self.y_train, self.poisoned_index = self._extend(
            dataset.x_train, dataset.y_train, clients
        )

    # ------------------------------------------------------------------ who and when
    @property
    def enabled(self) -> bool:
        """True when there are malicious clients that do something."""
        return len(self.malicious) > 0 and self.attack.enabled

    def active(self, r: int) -> bool:
        """Whether the malicious clients attack in round ``r`` (0-based)."""
        a = self.attack
        return self.enabled and r + 1 >= a.start_round and (a.end_round == 0 or r < a.end_round)

    def always(self) -> np.ndarray | None:
        """Ids that must be sampled every round (``always_participate``), else None."""
        return self.malicious if self.attack.always_participate and self.enabled else None

    def mask(self, client_ids: Tensor) -> Tensor:
        """``bool [n]``: which of ``client_ids`` are malicious (negative ids, e.g. audit
        canaries, are not clients and never malicious)."""
        return self.is_malicious[client_ids.clamp(min=0)] & (client_ids >= 0)

    # ------------------------------------------------------------------ data poisoning
    def _stamp(self, x: Tensor, attacker: int | None) -> Tensor:
        """Trigger-stamped copies (``attacker`` = rank among the malicious; None = test)."""
        a = self.attack
        if a.trigger == "badnets":
            return badnets(x, size=a.trigger_size, value=self._white)
        if a.trigger == "blended":
            if self._pattern is None:
                self._pattern = blend_pattern(
                    tuple(x.shape[1:]),
                    low=float(self.dataset.x_train.min()),
                    high=self._white,
                    seed=derive_seed(self.cfg.seed, Stream.POISON, 1),
                )
            return blended(x, pattern=self._pattern, alpha=a.blend_alpha)
        piece = None if attacker is None else attacker % 4
        return dba(x, piece=piece, value=self._white)

    def _extend(
        self, x: Tensor, y: Tensor, clients: Sequence[np.ndarray]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Training arrays with a poisoned copy of every malicious sample appended."""
        index = torch.full((len(y),), -1, dtype=torch.int64)
        if self.attack.data == "none" or not self.enabled:
            return x, y, index
        xs, ys = [x], [y]
        offset = len(y)
        gen = torch_generator(self.cfg.seed, Stream.POISON, 0)
        for rank, k in enumerate(self.malicious.tolist()):
            idx = torch.from_numpy(np.asarray(clients[k], dtype=np.int64))
            if len(idx) == 0:
                continue
            if self.attack.data == "label_flip":
                px = x[idx]
                py = flip_labels(
                    y[idx],
                    num_classes=self.dataset.num_classes,
                    mode=self.attack.flip,
                    source=self.attack.flip_source,
                    target=self.attack.flip_target,
                    generator=gen,
                )
            else:
                px = self._stamp(x[idx], rank)
                py = torch.full_like(y[idx], self.attack.target_label)
            index[idx] = torch.arange(offset, offset + len(idx))
            offset += len(idx)
            xs.append(px)
            ys.append(py)
        return torch.cat(xs), torch.cat(ys), index

    def poison_plan(self, plan: BatchPlan, client_ids: Tensor, r: int) -> BatchPlan:
        """Redirect the poisoned share of every malicious minibatch to poisoned copies."""
        if self.attack.data == "none" or not self.active(r):
            return plan
        rows = self.mask(client_ids)
        if not bool(rows.any()):
            return plan
        k = torch.round(plan.counts.to(torch.float64) * self.fraction).to(torch.int64)
        slots = torch.arange(plan.batch_size).view(1, 1, -1) < k.unsqueeze(-1)
        slots &= rows.view(-1, 1, 1)
        target = self.poisoned_index[plan.index]
        index = torch.where(slots & (target >= 0), target, plan.index)
        return BatchPlan(index=index, mask=plan.mask, counts=plan.counts)

    def backdoor_metrics(self, model: torch.nn.Module, batch_size: int) -> dict[str, float]:
        """Backdoor attack success rate of ``model`` on the triggered test set."""
        if self.attack.data != "backdoor" or not self.enabled:
            return {}
        ds = self.dataset
        model.eval()
        preds = []
        with torch.no_grad():
            for i in range(0, ds.num_test, batch_size):
                xb = self._stamp(ds.x_test[i : i + batch_size], None)
                preds.append(model(xb).argmax(1))
        asr = attack_success_rate(torch.cat(preds), ds.y_test, self.attack.target_label)
        return {"backdoor_success": asr}

    # ------------------------------------------------------------------ model poisoning
    def on_round_start(self, ctx: RoundContext) -> None:
        """Remember the last global step (what a stale free-rider uploads)."""
        if self._previous_global is not None:
            self._stale = ctx.global_params - self._previous_global
        self._previous_global = ctx.global_params.clone()

    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Rewrite the malicious rows with the configured model-poisoning attack."""
        bad = self.mask(updates.client_ids)
        ctx.metrics["num_malicious_reporting"] = int(bad.sum())
        ctx.metrics["attack_active"] = self.active(ctx.round)
        if self.attack.model == "none" or not self.active(ctx.round) or not bool(bad.any()):
            return updates
        u = updates.updates.clone()
        rows = bad.nonzero().flatten()
        benign = (~bad).nonzero().flatten()
        crafted = self._craft(u, rows, benign, updates.weights, ctx)
        if self.attack.norm_bound > 0:
            crafted = project_norm(crafted, max_norm=self.attack.norm_bound)
        u[rows] = crafted.to(u.dtype)
        return updates.replace(updates=u)

    def _known(self, u: Tensor, rows: Tensor, benign: Tensor) -> list[tuple[Tensor, Tensor]]:
        """(attacker rows, what they know) groups under the knowledge/collusion model."""
        if self.attack.knowledge == "omniscient" and len(benign) > 0:
            return [(rows, u[benign])]
        if self.attack.collude:
            return [(rows, u[rows])]
        return [(rows[i : i + 1], u[rows[i : i + 1]]) for i in range(len(rows))]

    def _craft(
        self, u: Tensor, rows: Tensor, benign: Tensor, weights: Tensor, ctx: RoundContext
    ) -> Tensor:
        a = self.attack
        n, d = u.shape
        f = len(rows)
        gen = ctx.generator
        kind = a.model
        if kind == "sign_flip":
            return -(a.scale or 1.0) * u[rows]
        if kind == "scaling":
            w = weights.to(torch.float64)
            factor = a.scale or float(w.sum() / w[rows].sum())
            ctx.metrics["attack_scale"] = factor
            return factor * u[rows]
        if kind == "gaussian":
            num = 1 if a.collude else f
            return gaussian(num, d, sigma=a.sigma, generator=gen).expand(f, d)
        if kind == "free_rider":
            prev = self._stale
            return torch.stack(
                [
                    free_rider(
                        d, previous_update=prev, mode=a.free_rider, sigma=a.sigma, generator=gen
                    )
                    for _ in range(f)
                ]
            )
        if kind == "sybil":
            return u[rows[:1]].expand(f, d)
        out = torch.empty(f, d, dtype=u.dtype)
        pos = {int(r): i for i, r in enumerate(rows.tolist())}
        for group, known in self._known(u, rows, benign):
            idx = [pos[int(g)] for g in group.tolist()]
            known = known[~nonfinite_rows(known)]  # a diverged client teaches nothing
            if known.shape[0] == 0:  # nothing usable: the honest rows go up (and are
                out[idx] = u[group]  # rejected by the server if they are not finite)
                continue
            out[idx] = self._from_knowledge(kind, known, n, len(idx), gen).to(u.dtype)
        return out

    def _from_knowledge(
        self, kind: str, known: Tensor, n: int, f: int, gen: torch.Generator
    ) -> Tensor:
        """One crafted update (``[d]`` or ``[f, d]``) from the known benign rows."""
        a = self.attack
        if kind == "alie":
            if known.shape[0] < 2:  # one known row: its std is 0, ALIE sends that row
                return known[0]
            # s = floor(n/2 + 1) - f supporters needed; with more attackers than a majority
            # needs (a heavy round under random sampling) s is kept at 1
            s = max(1, math.floor(n / 2 + 1) - f)
            z = float(NormalDist().inv_cdf((n - s) / n)) if s < n else 0.0
            return alie(known, num_clients=n, num_byzantine=f, z=z)
        if kind == "ipm":
            return ipm(known, epsilon=a.epsilon)
        if kind == "min_max":
            return min_max(known, perturbation=a.perturbation)
        if kind == "min_sum":
            return min_sum(known, perturbation=a.perturbation)
        if kind == "fang_krum":
            if known.shape[0] >= f + 3:
                return fang_krum(known, num_byzantine=f)
            # too few known rows for the lambda search (partial knowledge, few attackers):
            # the same directed deviation -lambda * sign(mean), lambda = mean |mean|
            mu = known.mean(dim=0)
            return -mu.abs().mean() * torch.sign(mu)
        if kind == "fang_trmean":
            return fang_trimmed_mean(known, num_byzantine=f, generator=gen)
        raise ValueError(f"unknown model-poisoning attack {kind!r}")  # pragma: no cover

    def state_dict(self) -> dict[str, Any]:
        """The previous global model and stale update (free-rider) for resuming."""
        return {"previous_global": self._previous_global, "stale": self._stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self._previous_global = state.get("previous_global")
        self._stale = state.get("stale")


def expected_byzantine(cfg: ExperimentConfig, num_reporting: int) -> int:
    """Expected number of malicious rows among ``num_reporting`` (rounded up).

    With ``always_participate`` it is the number of malicious clients; otherwise the
    malicious share of the federation times the rows, rounded up.
    """
    f = cfg.num_malicious
    if f == 0 or not cfg.attack.enabled:
        return 0
    if cfg.attack.always_participate:
        return min(f, num_reporting)
    return min(num_reporting, math.ceil(f * num_reporting / cfg.data.num_clients - 1e-9))
