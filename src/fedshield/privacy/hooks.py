"""The privacy hooks of a run, built from ``[privacy]``, and sample-level DP-SGD accounting.

Order in the round loop (after the threat model, before secure aggregation and user
hooks): central, local or distributed DP (clip on the client side; central noise after
aggregation; distributed noise shares on the client side, summed under
:mod:`fedshield.privacy.secure`), then the canary audit (appends canaries after clipping,
reads the noised aggregate).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedshield.config.schema import ExperimentConfig
from fedshield.engine.hooks import ClientUpdates, Hook, RoundContext
from fedshield.privacy.accounting import dp_sgd_epsilon


class SampleLevelDP(Hook):
    """Per-client accounting of DP-SGD in local training (record-level DP).

    Client ``k`` with ``n_k`` samples runs ``S_k`` local steps per round (``local_steps``, or
    ``local_epochs * ceil(n_k / B)``); each step is accounted as a Poisson-subsampled
    Gaussian with ``q_k = min(1, B / n_k)`` (the usual approximation for shuffled batches,
    as in Opacus and TF-Privacy) and composed over all the client's steps so far.
    """

    name = "dp_sgd_accounting"

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.steps = np.zeros(cfg.data.num_clients, dtype=np.int64)
        self.sizes = np.zeros(cfg.data.num_clients, dtype=np.int64)
        self._cache: dict[tuple[int, int], float] = {}

    def _steps_per_round(self, n: int) -> int:
        t = self.cfg.train
        return t.local_steps if t.local_steps > 0 else t.local_epochs * math.ceil(n / t.batch_size)

    def epsilon(self, size: int, steps: int) -> float:
        """Epsilon of a client with ``size`` samples after ``steps`` DP-SGD steps."""
        if steps == 0:
            return 0.0
        key = (size, steps)
        if key not in self._cache:
            p = self.cfg.privacy
            self._cache[key] = dp_sgd_epsilon(
                noise_multiplier=p.sample_noise_multiplier,
                sample_rate=min(1.0, self.cfg.train.batch_size / max(size, 1)),
                steps=steps,
                delta=p.delta,
                accountant=p.accountant,
            )
        return self._cache[key]

    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Add this round's steps to every client that trained."""
        ids = updates.client_ids.numpy()
        sizes = updates.num_samples.numpy()
        real = ids >= 0
        for k, n in zip(ids[real], sizes[real], strict=True):
            self.sizes[k] = n
            self.steps[k] += self._steps_per_round(int(n))
        eps = [self.epsilon(int(self.sizes[k]), int(self.steps[k])) for k in ids[real]]
        if eps:
            ctx.metrics["dp_sgd_epsilon_max"] = max(eps)
        return updates

    def summary(self) -> dict[str, Any]:
        """Per-client record-level epsilon."""
        eps = np.array(
            [self.epsilon(int(n), int(s)) for n, s in zip(self.sizes, self.steps, strict=True)]
        )
        p = self.cfg.privacy
        return {
            "mode": "dp_sgd",
            "accountant": f"dp_accounting {p.accountant.upper()}",
            "noise_multiplier": p.sample_noise_multiplier,
            "clip_norm": p.sample_clip_norm,
            "delta": p.delta,
            "epsilon": float(eps.max()) if len(eps) else 0.0,
            "client_epsilon": {
                "max": float(eps.max()),
                "median": float(np.median(eps)),
                "min": float(eps.min()),
            },
            "client_epsilons": eps.tolist(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Steps and sizes per client."""
        return {"steps": self.steps.copy(), "sizes": self.sizes.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.steps = np.asarray(state["steps"], dtype=np.int64).copy()
        self.sizes = np.asarray(state["sizes"], dtype=np.int64).copy()


def build_privacy_hooks(cfg: ExperimentConfig) -> list[Hook]:
    """The privacy hooks ``[privacy]`` asks for, in loop order.

    Raises:
        ConfigError: Central or distributed DP without noise.
    """
    from fedshield.privacy.central import CentralDP
    from fedshield.privacy.local import LocalDP

    p = cfg.privacy
    out: list[Hook] = []
    if p.dp_sgd:
        out.append(SampleLevelDP(cfg))
    if p.mode == "central":
        out.append(CentralDP(cfg))
    elif p.mode == "local":
        out.append(LocalDP(cfg))
    elif p.mode == "distributed":
        from fedshield.privacy.secure import DistributedDP

        out.append(DistributedDP(cfg))
    elif p.mode == "ldp_fed":
        from fedshield.privacy.fedre.hook import LDPFed

        out.append(LDPFed(cfg))
    # privacy.mode = "fedre" needs the data and the model: run_experiment adds FedREHook
    if p.audit_canaries > 0:
        from fedshield.privacy.audit import CanaryAudit

        out.append(
            CanaryAudit(
                num_canaries=p.audit_canaries,
                norm=p.clip_norm,
                insert_prob=p.audit_insert_prob,
                seed=cfg.seed,
            )
        )
    return out
