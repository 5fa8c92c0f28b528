"""Client-level central DP-FedAvg, with optional adaptive clipping and budget enforcement.

McMahan, Ramage, Talwar, Zhang. "Learning Differentially Private Recurrent Language
Models." ICLR 2018 (DP-FedAvg with a fixed denominator); Andrew, Thakkar, McMahan,
Ramaswamy. "Differentially Private Learning with Adaptive Clipping." NeurIPS 2021.

Each round, with clip norm ``C``, noise multiplier ``z`` and ``W`` the expected number of
clients (``q * N`` under Poisson sampling, ``m`` under fixed-size sampling)::

    client k:  u_k <- u_k * min(1, C / ||u_k||)                   (client side)
    server:    Delta = (sum_k u_k + N(0, (z C)^2 I)) / W          (fixed denominator)

so one client changes the released sum by at most ``C`` and the round is a subsampled
Gaussian mechanism with multiplier ``z``; the accountant (``dp-accounting``, RDP or PLD)
composes it over rounds as what the sampling is (Poisson or without replacement).

Adaptive clipping: each client also reports ``b_k = 1[||u_k|| <= C]``; the server
releases ``b = (sum_k b_k + N(0, sigma_b^2)) / W`` and sets ``C <- C exp(-eta (b - gamma))``.
The update noise then uses ``z_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)`` so that the two
releases together cost exactly a Gaussian mechanism with multiplier ``z``.

The aggregation rule must be a (norm-bounded) uniform mean: the config refuses other
rules (see :class:`fedshield.config.schema.ExperimentConfig`), because only a clipped
sum has sensitivity ``C``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from fedshield.config.schema import ConfigError, ExperimentConfig
from fedshield.engine.hooks import ClientUpdates, Hook, RoundContext, StopRun
from fedshield.engine.seeding import Stream, torch_generator
from fedshield.privacy.accounting import (
    PrivacyAccountant,
    adaptive_clipping_noise_multiplier,
    calibrate_noise,
)
from fedshield.privacy.mechanisms import clip_updates, gaussian_noise


def resolve_noise_multiplier(cfg: ExperimentConfig) -> float:
    """The run's noise multiplier: configured, or calibrated to ``privacy.target_epsilon``
    over ``server.rounds`` rounds at the run's sampling rate.

    Raises:
        ConfigError: Central DP without noise (neither a multiplier nor a target).
    """
    p = cfg.privacy
    if p.target_epsilon > 0:
        return calibrate_noise(
            target_epsilon=p.target_epsilon,
            delta=p.delta,
            sample_rate=cfg.sample_rate,
            rounds=cfg.server.rounds,
            accountant=p.accountant,
            sampling=cfg.server.sampling,
            num_clients=cfg.data.num_clients,
        )
    if p.noise_multiplier <= 0:
        raise ConfigError(
            "privacy.mode = 'central' needs privacy.noise_multiplier > 0 or "
            "privacy.target_epsilon > 0 (without noise there is no DP guarantee)"
        )
    return p.noise_multiplier


class CentralDP(Hook):
    """DP-FedAvg as a round-loop hook (see the module docstring).

    Args:
        cfg: The experiment configuration (``privacy.mode == "central"``).
    """

    name = "central_dp"
    noise_on_empty = True  # a Poisson round with no client still releases noise

    def __init__(self, cfg: ExperimentConfig) -> None:
        p = cfg.privacy
        self.cfg = cfg
        self.noise_multiplier = resolve_noise_multiplier(cfg)
        self.clip_norm = p.clip_norm
        self.expected = cfg.sample_rate * cfg.data.num_clients
        self.sampling = cfg.server.sampling
        self.sigma_b = p.count_noise_multiplier or self.expected / 20.0
        self.update_noise = (
            adaptive_clipping_noise_multiplier(self.noise_multiplier, self.sigma_b)
            if p.adaptive_clipping
            else self.noise_multiplier
        )
        self.accountant = PrivacyAccountant(accountant=p.accountant, delta=p.delta)
        self._rows = 0
        self._unclipped = 0

    def _step_kwargs(self) -> dict[str, Any]:
        return {
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.cfg.sample_rate,
            "sampling": self.sampling,
            "num_clients": self.cfg.data.num_clients,
        }

    def on_round_start(self, ctx: RoundContext) -> None:
        """Budget enforcement: stop before a round that would exceed the budget."""
        self._rows = 0
        self._unclipped = 0
        budget = self.cfg.privacy.budget_epsilon
        if budget > 0:
            nxt = self.accountant.epsilon_if(**self._step_kwargs())
            if nxt > budget:
                raise StopRun(
                    f"privacy budget: round {ctx.round + 1} would bring epsilon to {nxt:.4g} > "
                    f"privacy.budget_epsilon = {budget:g} (spent so far "
                    f"{self.accountant.epsilon():.4g} at delta = {self.cfg.privacy.delta:g})"
                )

    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Client side: clip every update to ``C`` (and count those already inside)."""
        norms = torch.linalg.vector_norm(updates.updates, dim=1)
        self._unclipped = int((norms <= self.clip_norm).sum())
        clipped = clip_updates(updates.updates, clip_norm=self.clip_norm)
        return updates.replace(updates=clipped)

    def before_aggregation(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Remember how many rows the (uniform) mean will average."""
        self._rows = len(updates)
        return updates

    def after_aggregation(self, ctx: RoundContext, aggregate: Tensor) -> Tensor:
        """Sum, add ``N(0, (z C)^2)``, divide by the expected number of clients."""
        gen = torch_generator(self.cfg.seed, Stream.CENTRAL_DP, ctx.round)
        std = self.update_noise * self.clip_norm
        total = aggregate * self._rows
        noised = (total + gaussian_noise(total.shape, std=std, generator=gen)) / self.expected
        ctx.metrics["dp_clip_norm"] = self.clip_norm
        ctx.metrics["dp_noise_std"] = std
        if self.cfg.privacy.adaptive_clipping:
            count = self._unclipped + float(
                gaussian_noise((1,), std=self.sigma_b, generator=gen, dtype=torch.float64)[0]
            )
            frac = count / self.expected
            self.clip_norm *= math.exp(
                -self.cfg.privacy.clip_lr * (frac - self.cfg.privacy.target_quantile)
            )
            ctx.metrics["dp_unclipped_fraction"] = frac
        return noised.to(aggregate.dtype)

    def on_round_end(self, ctx: RoundContext, record: dict[str, Any]) -> None:
        """Account the round (it happened whether or not anyone was sampled)."""
        self.accountant.step(**self._step_kwargs())
        record["epsilon"] = self.accountant.epsilon()

    def summary(self) -> dict[str, Any]:
        """The privacy settings and what was spent, for the run summary."""
        p = self.cfg.privacy
        return {
            "mode": "central",
            "accountant": self.accountant.name,
            "epsilon": self.accountant.epsilon(),
            "delta": p.delta,
            "noise_multiplier": self.noise_multiplier,
            "update_noise_multiplier": self.update_noise,
            "clip_norm": p.clip_norm,
            "final_clip_norm": self.clip_norm,
            "adaptive_clipping": p.adaptive_clipping,
            "sample_rate": self.cfg.sample_rate,
            "sampling": self.sampling,
            "expected_clients": self.expected,
        }

    def state_dict(self) -> dict[str, Any]:
        """Accountant steps and the (adaptive) clip norm."""
        return {"accountant": self.accountant.state_dict(), "clip_norm": self.clip_norm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.accountant.load_state_dict(state["accountant"])
        self.clip_norm = float(state["clip_norm"])
