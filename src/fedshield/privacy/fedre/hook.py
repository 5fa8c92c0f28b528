"""FedRE in the round loop: PSI scores, layer-wise budgets and perturbation of uploads.

Xiao et al., "FedRE: ... privacy-preference-aware ... federated learning", ICMR 2025
(``methods.md`` section 1). Every round:

1. **PSI scores** (eqs. 3-5). The paper's per-format shortcut: for every document format,
   ``fedre.psi_samples`` training documents of that format are scored with the global
   model and averaged (:func:`~fedshield.privacy.fedre.psi.per_format_scores`); the
   result is reused (recomputed every ``fedre.psi_refresh`` rounds, else once). A client's
   score vector is the average of its formats' scores weighted by how many documents of
   each format it holds, so clients with different document mixes get different budgets.
   (The templates are computed from documents of the federation on the simulator's
   side; in a deployment each client scores its own documents of a format -- same
   formula, same cost per format.)
2. **Budget** (eq. 6): ``eps_l = eps (1/S_l) / sum_t (1/S_t)`` (``fedre.budget = "psi"``)
   or ``eps / L`` (``"uniform"``, the uniform layer-wise LDP baseline); ``delta_l =
   delta / L``; ``sigma_l = sqrt(2 T ln(1/delta_l)) / eps_l`` (eq. 9) times
   ``fedre.sigma_scale``, or the override ``fedre.sigma``.
3. **Clip and noise** (eqs. 7-8). ``fedre.clip_mode = "update"``: every layer of the
   upload is clipped to ``C_l`` and gets ``N(0, C_l^2 sigma_l^2)`` per coordinate (here,
   in ``after_local_training``). ``"sample"``: local training clips each sample's
   per-layer gradient to ``C_l`` and adds the layer noise to every step's gradient sum
   (:class:`~fedshield.engine.dp_sgd.DPSGDTrainer` with this hook's per-client noise);
   the upload then passes through unchanged.

The round's metrics record the mode, the per-layer PSI scores, epsilon_l and sigma_l
actually used (means over the reporting clients); the run summary records per-client
spending: the paper's claim (simple composition, Corollary 1, from the sigma used) and
an independent RDP accounting of the Gaussian mechanisms that ran (``dp-accounting``).

:class:`LDPFed` is the LDP-Fed baseline (Truex et al., EdgeSys 2020): every client
uploads a random fraction of its coordinates, each clipped, discretised and perturbed
with alpha-CLDP (:func:`~fedshield.privacy.fedre.baselines.cldp_perturb`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fedshield.config.schema import ConfigError, ExperimentConfig
from fedshield.engine.hooks import ClientUpdates, Hook, RoundContext
from fedshield.engine.layout import ParamLayout
from fedshield.engine.seeding import Stream, torch_generator
from fedshield.privacy.fedre.baselines import cldp_perturb
from fedshield.privacy.fedre.budget import (
    allocate_budget,
    fedre_accounting,
    fedre_sigma,
    perturb_layers,
    split_delta,
    uniform_budget,
)
from fedshield.privacy.fedre.psi import per_format_scores, psi_scores, psi_scores_hutchinson

__all__ = ["FedREHook", "LDPFed", "check_psi_dataset", "public_psi_scorer"]

#: per-format PSI scores already computed in this process (see FedREHook._score_formats)
_PSI_CACHE: dict[tuple[Any, ...], Tensor] = {}


def check_psi_dataset(dataset: Any, what: str) -> None:
    """Fail before training unless ``dataset`` carries PSI regions (a DocumentDataset).

    Raises:
        ConfigError: Naming ``what`` needed it.
    """
    if getattr(dataset, "task", None) != "segmentation" or not hasattr(dataset, "psi_train"):
        raise ConfigError(
            f"{what} needs a dataset with privacy-sensitive regions: data.dataset = "
            f"'documents' or a fedshield.data.DocumentDataset (got {dataset!r})"
        )


class FedREHook(Hook):
    """FedRE's client-side mechanism (``privacy.mode = "fedre"``).

    Args:
        cfg: The experiment configuration.
        dataset: A :class:`~fedshield.data.DocumentDataset` (PSI regions and formats).
        clients: Each client's training indices.
        model: The global model's module (its parameters are never changed here).
        layout: The model's parameter layout.
    """

    name = "fedre"

    def __init__(
        self,
        cfg: ExperimentConfig,
        dataset: Any,
        clients: Sequence[np.ndarray],
        model: nn.Module,
        layout: ParamLayout,
    ) -> None:
        check_psi_dataset(dataset, "privacy.mode = 'fedre'")
        self.cfg = cfg
        self.f = cfg.fedre
        self.dataset = dataset
        self.model = model
        self.layout = layout
        self.slices = list(layout.layers.values())
        self.layer_names = list(layout.layers)
        L = len(self.slices)
        self.rounds = self.f.noise_rounds or cfg.server.rounds
        self.delta_l = split_delta(self.f.delta, L)
        formats = list(dataset.formats_train)
        self.format_names = list(dataset.format_names)
        # mix[k, f] = share of client k's documents of format f
        self.mix = torch.zeros(len(clients), len(self.format_names), dtype=torch.float64)
        code = {f: i for i, f in enumerate(self.format_names)}
        for k, idx in enumerate(clients):
            for i in np.asarray(idx).tolist():
                self.mix[k, code[formats[i]]] += 1.0
        self.mix /= self.mix.sum(dim=1, keepdim=True).clamp(min=1.0)
        digest = hashlib.sha256()
        for t in (dataset.x_train, dataset.y_train, dataset.psi_train):
            digest.update(t.contiguous().numpy().tobytes())
        digest.update("|".join(formats).encode())
        self._data_key = digest.hexdigest()
        self.format_scores: Tensor | None = None  # [F, L]
        self.scored_round = -1
        self.participations = np.zeros(len(clients), dtype=np.int64)
        self.sigma_sum = torch.zeros(len(clients), L, dtype=torch.float64)  # for accounting
        self.sigma_sq_inv = torch.zeros(len(clients), L, dtype=torch.float64)
        self._round_sigma: Tensor | None = None  # [num_clients, L] of the current round
        self._round_eps: Tensor | None = None

    # ------------------------------------------------------------------ scores, budgets

    def _score_formats(self, ctx: RoundContext) -> None:
        ds = self.dataset
        f = self.f
        # the scores are a pure function of these: runs that start from the same model on
        # the same documents (a study's FedRE variants) compute them once per process
        key = (
            self._data_key,
            hashlib.sha256(ctx.global_params.numpy().tobytes()).hexdigest(),
            type(self.model).__name__,
            f.psi_method,
            f.psi_samples,
            f.psi_probes,
            self.cfg.seed,
            ctx.round,
        )
        cached = _PSI_CACHE.get(key)
        if cached is not None:
            self.format_scores = cached.clone()
            self.scored_round = ctx.round
            return
        gen = torch_generator(self.cfg.seed, Stream.FEDRE_PSI, ctx.round)
        scores = per_format_scores(
            self.model,
            ds.x_train,
            ds.y_train,
            ds.psi_train,
            ds.formats_train,
            samples=self.f.psi_samples,
            generator=gen,
            method=self.f.psi_method,
            probes=self.f.psi_probes,
            params=ctx.global_params,
        )
        L = len(self.slices)
        table = torch.full((len(self.format_names), L), float("nan"), dtype=torch.float64)
        for i, name in enumerate(self.format_names):
            if name in scores:
                table[i] = scores[name].to(torch.float64)
        # a format no document has a PSI region for: use the mean of the others
        missing = torch.isnan(table).any(dim=1)
        if bool(missing.all()):
            raise ValueError("no training document has a PSI region: FedRE cannot score")
        table[missing] = table[~missing].mean(dim=0)
        self.format_scores = table.clamp(min=torch.finfo(torch.float32).tiny)
        self.scored_round = ctx.round
        if len(_PSI_CACHE) >= 16:
            _PSI_CACHE.pop(next(iter(_PSI_CACHE)))
        _PSI_CACHE[key] = self.format_scores.clone()

    def client_scores(self, ids: Tensor) -> Tensor:
        """``[n, L]`` PSI scores of the given clients (format mix times format scores)."""
        assert self.format_scores is not None
        return self.mix[ids] @ self.format_scores

    def on_round_start(self, ctx: RoundContext) -> None:
        """Score the formats if due; fix every reporting client's epsilon_l and sigma_l."""
        refresh = self.f.psi_refresh
        due = self.format_scores is None or (
            refresh > 0 and ctx.round - self.scored_round >= refresh
        )
        if due and self.f.budget == "psi":
            self._score_formats(ctx)
        elif self.format_scores is None:  # uniform budgets do not read the scores
            self.format_scores = torch.ones(len(self.format_names), len(self.slices))
            self.scored_round = ctx.round
        n = self.mix.shape[0]
        L = len(self.slices)
        ids = torch.arange(n)
        if self.f.budget == "psi":
            eps = allocate_budget(self.client_scores(ids), self.f.epsilon).to(torch.float64)
        else:
            eps = uniform_budget(L, self.f.epsilon).to(torch.float64).expand(n, L).clone()
        if self.f.sigma > 0:
            sigma = torch.full((n, L), self.f.sigma, dtype=torch.float64)
        else:
            sigma = fedre_sigma(eps, self.delta_l.expand(n, L), self.rounds).to(torch.float64)
            sigma = sigma * self.f.sigma_scale
        self._round_eps = eps
        self._round_sigma = sigma

    def noise_std(self, client_id: int) -> Tensor:
        """``[P]`` per-coordinate noise std ``C_l sigma_l`` of a client this round (the
        DP-SGD trainer adds it to every step's clipped gradient sum in ``"sample"`` mode)."""
        assert self._round_sigma is not None
        per_layer = self._round_sigma[client_id].to(torch.float32) * self.f.clip
        sizes = torch.tensor([s.stop - s.start for s in self.slices])
        return per_layer.repeat_interleave(sizes)

    # ------------------------------------------------------------------ perturbation

    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Clip and perturb every real client's row layer by layer (``"update"`` mode)."""
        assert self._round_sigma is not None and self._round_eps is not None
        # rows that are not finite pass through: the engine rejects them next
        real = (updates.client_ids >= 0) & torch.isfinite(updates.updates).all(dim=1)
        ids = updates.client_ids[real]
        out = updates.updates
        if self.f.clip_mode == "update" and len(ids):
            gen = torch_generator(self.cfg.seed, Stream.FEDRE_NOISE, ctx.round)
            noisy = perturb_layers(
                out[real], self.slices, self.f.clip, self._round_sigma[ids].float(), generator=gen
            )
            out = out.clone()
            out[real] = noisy.to(out.dtype)
        if len(ids):
            np.add.at(self.participations, ids.numpy(), 1)
            self.sigma_sq_inv[ids] += self._round_sigma[ids].pow(-2)
            assert self.format_scores is not None
            ctx.metrics["fedre"] = {
                "clip_mode": self.f.clip_mode,
                "budget": self.f.budget,
                "clip": self.f.clip,
                "psi_score": (
                    self.client_scores(ids).mean(0).tolist() if self.f.budget == "psi" else None
                ),
                "epsilon_l": self._round_eps[ids].mean(0).tolist(),
                "sigma_l": self._round_sigma[ids].mean(0).tolist(),
            }
        return updates.replace(updates=out)

    # ------------------------------------------------------------------ records

    def summary(self) -> dict[str, Any]:
        """What each client spent, as the paper claims it and as RDP accounting gives it."""
        assert self._round_sigma is not None or not self.participations.any()
        L = len(self.slices)
        claimed, rdp = [], []
        for k, count in enumerate(self.participations.tolist()):
            if count == 0:
                claimed.append(0.0)
                rdp.append(0.0)
                continue
            # one constant sigma with the same total RDP weight as the rounds taken
            # (the Gaussian's RDP is proportional to 1 / sigma^2)
            sigma_eff = (self.sigma_sq_inv[k] / count).pow(-0.5)
            # eq. 9 inverted: the epsilon_l the sigma actually used stands for over T rounds
            eps_used = (2 * self.rounds * torch.log(1 / self.delta_l)).sqrt() / sigma_eff
            # replace-one sensitivity of a released clipped block is its diameter 2 C_l
            acc = fedre_accounting(eps_used, self.delta_l, sigma_eff, count, sensitivity_scale=2.0)
            claimed.append(float(acc["claimed_epsilon"]))
            rdp.append(float(acc["rdp_epsilon"]))
        part = self.participations > 0
        pick = np.asarray(rdp)[part] if part.any() else np.zeros(1)
        pick_c = np.asarray(claimed)[part] if part.any() else np.zeros(1)
        return {
            "mode": "fedre",
            "budget": self.f.budget,
            "clip_mode": self.f.clip_mode,
            "clip": self.f.clip,
            "epsilon": self.f.epsilon,
            "delta": self.f.delta,
            "noise_rounds": self.rounds,
            "sigma_override": self.f.sigma or None,
            "sigma_scale": self.f.sigma_scale,
            "layers": self.layer_names,
            "num_layers": L,
            "format_scores": (
                {n: self.format_scores[i].tolist() for i, n in enumerate(self.format_names)}
                if self.format_scores is not None
                else None
            ),
            "claimed_epsilon": {"max": float(pick_c.max()), "median": float(np.median(pick_c))},
            # per-sample clipping adds noise at every local step: the update-level RDP
            # figure below then bounds one release of the clipped update's noise only
            "rdp_epsilon": {"max": float(pick.max()), "median": float(np.median(pick))},
            "rdp_note": (
                "update-level LDP (replace-one, sensitivity 2 C_l), composed over the rounds "
                "each client took part in"
            ),
            "client_participations": self.participations.tolist(),
            "client_rdp_epsilons": rdp,
        }

    def state_dict(self) -> dict[str, Any]:
        """Scores, the round they were computed in and the accounting sums."""
        return {
            "format_scores": self.format_scores,
            "scored_round": self.scored_round,
            "participations": self.participations.copy(),
            "sigma_sq_inv": self.sigma_sq_inv.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.format_scores = state["format_scores"]
        self.scored_round = int(state["scored_round"])
        self.participations = np.asarray(state["participations"], dtype=np.int64).copy()
        self.sigma_sq_inv = state["sigma_sq_inv"].clone()


def public_psi_scorer(
    cfg: ExperimentConfig, dataset: Any, model: nn.Module, layout: ParamLayout, round_: int
) -> Any:
    """A closure ``(global_params [P], updates [n, P]) -> S [n, L]`` scoring every client
    model ``global + update_k`` on the server's public documents (PDA-PAM, eq. 10).

    Raises:
        ConfigError: The dataset has no public documents with PSI regions.
    """
    check_psi_dataset(dataset, "server.aggregator = 'pda_pam'")
    public = getattr(dataset, "public", None)
    if public is None or len(public) == 0:
        raise ConfigError(
            "server.aggregator = 'pda_pam' needs the server's public documents "
            "(DocumentDataset.public; the bundled 'documents' dataset has 16)"
        )
    from fedshield.data.documents import psi_region_mask

    f = cfg.fedre
    n_pub = len(public) if f.pda_public == 0 else min(f.pda_public, len(public))
    size = (int(public.images.shape[2]), int(public.images.shape[3]))
    x = public.images[:n_pub].float()
    y = (public.masks[:n_pub, 0] > 0.5).long()
    region = torch.stack([psi_region_mask(public.psi_boxes[i], size) for i in range(n_pub)])
    keep = region.flatten(1).any(dim=1)
    x, y, region = x[keep], y[keep], region[keep]

    def score(global_params: Tensor, updates: Tensor) -> Tensor:
        out = []
        for k in range(updates.shape[0]):
            params = global_params + updates[k]
            if f.psi_method == "exact":
                s = psi_scores(model, x, y, region, params=params)
            else:
                gen = torch_generator(cfg.seed, Stream.PDA_PAM, round_, k)
                s = psi_scores_hutchinson(
                    model, x, y, region, probes=f.psi_probes, generator=gen, params=params
                )
            out.append(s)
        return torch.stack(out)

    return score


class LDPFed(Hook):
    """LDP-Fed (Truex et al., "LDP-Fed: Federated Learning with Local Differential
    Privacy", EdgeSys 2020): each client uploads ``ceil(cldp_fraction * P)`` random
    coordinates, each clipped to ``[-C, C]``, discretised to ``cldp_levels`` levels and
    perturbed with alpha-CLDP; the round's budget ``fedre.epsilon`` is split evenly over
    the uploaded coordinates (each is ``epsilon / k``-LDP over its whole domain, so
    ``alpha = epsilon / (k (levels - 1))``). The other coordinates are not sent and count
    as zero in the server's mean (unbiasing by ``1 / cldp_fraction`` would multiply the
    mechanism's noise by the same factor and, measured, blows the model up).

    Args:
        cfg: The experiment configuration (``privacy.mode = "ldp_fed"``).
    """

    name = "ldp_fed"

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.f = cfg.fedre
        self.participations = np.zeros(cfg.data.num_clients, dtype=np.int64)

    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Select, clip, discretise and perturb the uploaded coordinates of every row."""
        u = updates.updates
        n, P = u.shape
        k = max(1, math.ceil(self.f.cldp_fraction * P))
        alpha = self.f.epsilon / (k * (self.f.cldp_levels - 1))
        out = torch.zeros_like(u)
        for row in range(n):
            if not bool(torch.isfinite(u[row]).all()):
                out[row] = u[row]  # the engine rejects it next
                continue
            cid = int(updates.client_ids[row])
            gen = torch_generator(self.cfg.seed, Stream.LDP_FED, ctx.round, max(cid, 0))
            idx = torch.randperm(P, generator=gen)[:k]
            vals = cldp_perturb(
                u[row, idx],
                alpha=alpha,
                clip=self.f.clip,
                levels=self.f.cldp_levels,
                generator=gen,
            )
            out[row, idx] = vals
        ids = updates.client_ids[updates.client_ids >= 0].numpy()
        np.add.at(self.participations, ids, 1)
        ctx.metrics["ldp_fed"] = {"coordinates": k, "alpha": alpha}
        return updates.replace(updates=out)

    def summary(self) -> dict[str, Any]:
        """Per-client epsilon by simple composition of the rounds taken part in."""
        eps = self.participations * self.f.epsilon
        return {
            "mode": "ldp_fed",
            "epsilon_per_round": self.f.epsilon,
            "cldp_levels": self.f.cldp_levels,
            "cldp_fraction": self.f.cldp_fraction,
            "clip": self.f.clip,
            "epsilon": float(eps.max()) if len(eps) else 0.0,
            "client_participations": self.participations.tolist(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Participation counts."""
        return {"participations": self.participations.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.participations = np.asarray(state["participations"], dtype=np.int64).copy()
