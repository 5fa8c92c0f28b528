"""Local differential privacy: every client perturbs its own update before upload.

With clip norm ``C``, each participating client releases, every round it takes part in::

    gaussian:  u <- clip_L2(u, C) + N(0, sigma^2 I),  sigma = analytic_sigma(eps, delta, 2C)
    laplace:   u <- clip_L1(u, C) + Laplace(b)^d,     b = 2C / eps

Two clipped updates of a client (any two datasets) differ by at most ``2C`` in the clip
norm, so one round is ``(eps, delta)``-DP (Gaussian, analytic calibration of Balle & Wang,
ICML 2018) or ``eps``-DP (Laplace, L1 sensitivity ``2C``) for that client's whole data.
A client's spent budget composes over the rounds it took part in, computed by the
accountant (``dp-accounting``), never by adding epsilons by hand; the run records the
per-client epsilon and its distribution.

Reference for local DP in FL: Truex et al. "LDP-Fed", EdgeSys 2020; the Gaussian and
Laplace mechanisms: Dwork & Roth 2014.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedshield.config.schema import ExperimentConfig
from fedshield.engine.hooks import ClientUpdates, Hook, RoundContext
from fedshield.engine.seeding import Stream, torch_generator
from fedshield.privacy.accounting import local_dp_epsilon
from fedshield.privacy.mechanisms import (
    analytic_gaussian_sigma,
    clip_updates,
    gaussian_noise,
    laplace_noise,
    laplace_scale,
)


def clip_rows_l1(updates: Tensor, *, clip_norm: float) -> Tensor:
    """Row-wise L1 clipping (the Laplace mechanism's sensitivity is in L1); zero rows stay."""
    norms = updates.abs().sum(dim=1, keepdim=True)
    scale = torch.clamp(
        clip_norm / torch.clamp(norms, min=torch.finfo(updates.dtype).tiny), max=1.0
    )
    return updates * scale


class LocalDP(Hook):
    """Local DP perturbation of every upload with per-client accounting.

    Args:
        cfg: The experiment configuration (``privacy.mode == "local"``).
    """

    name = "local_dp"

    def __init__(self, cfg: ExperimentConfig) -> None:
        p = cfg.privacy
        self.cfg = cfg
        self.clip_norm = p.clip_norm
        sensitivity = 2.0 * p.clip_norm
        if p.local_mechanism == "gaussian":
            self.sigma = analytic_gaussian_sigma(
                epsilon=p.local_epsilon, delta=p.delta, sensitivity=sensitivity
            )
            self.multiplier = self.sigma / sensitivity  # noise std in units of sensitivity
        else:
            self.sigma = laplace_scale(epsilon=p.local_epsilon, sensitivity=sensitivity)
            self.multiplier = self.sigma / sensitivity
        self.participations = np.zeros(cfg.data.num_clients, dtype=np.int64)
        self._eps_cache: dict[int, float] = {0: 0.0}

    def epsilon_after(self, count: int) -> float:
        """Epsilon of a client that perturbed ``count`` uploads (composed by the accountant)."""
        if count not in self._eps_cache:
            p = self.cfg.privacy
            self._eps_cache[count] = local_dp_epsilon(
                mechanism=p.local_mechanism,
                noise_multiplier=self.multiplier,
                count=count,
                delta=p.delta,
                accountant=p.accountant,
            )
        return self._eps_cache[count]

    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Clip and perturb every row; count the participation of every real client."""
        gen = torch_generator(self.cfg.seed, Stream.LOCAL_DP, ctx.round)
        u = updates.updates
        if self.cfg.privacy.local_mechanism == "gaussian":
            noisy = clip_updates(u, clip_norm=self.clip_norm) + gaussian_noise(
                u.shape, std=self.sigma, generator=gen, dtype=u.dtype
            )
        else:
            noisy = clip_rows_l1(u, clip_norm=self.clip_norm) + laplace_noise(
                u.shape, scale=self.sigma, generator=gen, dtype=u.dtype
            )
        ids = updates.client_ids[updates.client_ids >= 0].numpy()
        np.add.at(self.participations, ids, 1)
        spent = [self.epsilon_after(int(c)) for c in self.participations[ids]]
        if spent:
            ctx.metrics["local_epsilon_max"] = max(spent)
        return updates.replace(updates=noisy)

    def summary(self) -> dict[str, Any]:
        """Per-client spent epsilon (composed over each client's participations)."""
        eps = np.array([self.epsilon_after(int(c)) for c in self.participations])
        p = self.cfg.privacy
        return {
            "mode": "local",
            "mechanism": p.local_mechanism,
            "accountant": f"dp_accounting {p.accountant.upper()}",
            "epsilon_per_round": p.local_epsilon,
            "delta": p.delta if p.local_mechanism == "gaussian" else 0.0,
            "noise_std": self.sigma if p.local_mechanism == "gaussian" else None,
            "laplace_scale": self.sigma if p.local_mechanism == "laplace" else None,
            "clip_norm": p.clip_norm,
            "epsilon": float(eps.max()) if len(eps) else 0.0,
            "client_epsilon": {
                "max": float(eps.max()),
                "median": float(np.median(eps)),
                "min": float(eps.min()),
            },
            "client_participations": self.participations.tolist(),
            "client_epsilons": eps.tolist(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Participation counts."""
        return {"participations": self.participations.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.participations = np.asarray(state["participations"], dtype=np.int64).copy()
