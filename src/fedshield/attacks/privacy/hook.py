"""Runs the ``[[privacy_attack]]`` entries of an experiment on the live training.

The hook sits after the threat model and every privacy mechanism in the hook chain, so a
curious server attacks the uploads exactly as they reached it (after local DP noise and
clipping; central DP noise is added to the aggregate later and a curious server sees the
rows before it, which is the trust assumption of central DP). It builds an attacker view
(:mod:`fedshield.attacks.privacy.views`), runs the attack on the view, and only then looks
at the ground truth to score it. It never changes the updates or the model.

Per attack it records, in the round's metrics under ``privacy_attacks``, one entry per
target: reconstruction scores (MSE, PSNR, SSIM on ``[0, 1]``, label accuracy) or
membership scores (AUC, TPR at 0.1% and 1% FPR, balanced accuracy); image grids go to
``<run>/privacy_attacks/``; :meth:`PrivacyAttackHook.summary` averages them for the
run's summary.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fedshield.attacks.privacy.attack import (
    INVERSION_KINDS,
    invert_view,
    membership_metrics,
    score_inversion,
)
from fedshield.attacks.privacy.views import (
    AggregateView,
    ClientView,
    LocalRecipeView,
    ServerView,
)
from fedshield.config.schema import ExperimentConfig, PrivacyAttackConfig
from fedshield.data.datasets import Dataset
from fedshield.engine.batches import make_batch_plan
from fedshield.engine.hooks import ClientUpdates, Hook, RoundContext
from fedshield.engine.seeding import Stream, numpy_rng
from fedshield.metrics import loss_threshold_scores

__all__ = ["PrivacyAttackHook", "input_bounds", "plot_reconstructions"]


def input_bounds(x: Tensor) -> tuple[float, float]:
    """The box the (normalised) inputs live in: an attacker knows the normalisation, so
    the pixel range ``[0, 1]`` maps to ``[min, max]`` of the data."""
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        raise ValueError("the inputs are constant: no image box to reconstruct in")
    return lo, hi


def plot_reconstructions(truth: Tensor, recon: Tensor, path: Path, title: str) -> Path:
    """Image grid: originals in the top row, reconstructions below (both ``[0, 1]``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(truth)
    fig = Figure(figsize=(max(2.0, 1.3 * n), 3.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, n, squeeze=False)
    for row, imgs, name in ((0, truth, "original"), (1, recon, "reconstruction")):
        for i in range(n):
            ax = axes[row][i]
            img = imgs[i].detach().cpu().float()
            if img.dim() == 3 and img.shape[0] in (1, 3):
                img = img.permute(1, 2, 0)
            arr = img.squeeze(-1).numpy() if img.dim() == 3 and img.shape[-1] == 1 else img
            ax.imshow(np.asarray(arr), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


class PrivacyAttackHook(Hook):
    """Runs the configured privacy attacks at their rounds and records the leakage.

    Args:
        cfg: The experiment (its ``privacy_attack`` entries).
        dataset: The run's dataset (clean; for ground truth and candidates only).
        clients: Each client's sample indices.
        model: The run's model (copied; the architecture the attacker knows).
        model_spec: What built the model (name or factory), for LiRA shadow runs.
    """

    name = "privacy_attack"

    def __init__(
        self,
        cfg: ExperimentConfig,
        dataset: Dataset,
        clients: list[np.ndarray],
        model: nn.Module,
        model_spec: str | Callable[..., nn.Module] | None = None,
    ) -> None:
        self.cfg = cfg
        self.entries = cfg.privacy_attack
        self.dataset = dataset
        self.clients = clients
        self.model = copy.deepcopy(model)
        self.model_spec = model_spec
        self.bounds = input_bounds(dataset.x_train)
        self.run_dir: Path | None = None
        self.results: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ hook API
    def before_aggregation(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        """Server-side attacks on the uploads as received (the rows are not modified)."""
        r1 = ctx.round + 1
        real = updates.client_ids >= 0  # negative ids are DP-audit canaries, not clients
        rows = updates.select(real) if not bool(real.all()) else updates
        for i, e in enumerate(self.entries):
            if r1 not in e.rounds or e.view == "client" or len(rows) == 0:
                continue
            if e.view == "server_sum":
                try:
                    out = self._attack_sum(i, e, ctx, rows)
                except ValueError as exc:
                    out = {**self._base(i, e, r1, -1), "error": str(exc)}
                self._record(ctx, out)
                continue
            ids = rows.client_ids.tolist()
            for k in e.targets:
                if k not in ids:
                    self._record(
                        ctx,
                        {
                            **self._base(i, e, r1, k),
                            "skipped": f"client {k} sent no upload in round {r1} (reporting: "
                            f"{ids})",
                        },
                    )
            targets = [k for k in e.targets if k in ids] if e.targets else ids[:1]
            for k in targets:
                j = ids.index(k)
                try:
                    if e.kind in INVERSION_KINDS:
                        out = self._attack_upload(i, e, ctx, rows, j)
                    else:
                        out = self._membership_upload(i, e, ctx, rows, j)
                except ValueError as exc:  # an attack that cannot run must not end training
                    out = {**self._base(i, e, r1, k), "error": str(exc)}
                self._record(ctx, out)
        return updates

    def on_round_end(self, ctx: RoundContext, record: dict[str, Any]) -> None:
        """Curious-client membership inference on the global model after the round."""
        r1 = ctx.round + 1
        for i, e in enumerate(self.entries):
            if r1 in e.rounds and e.view == "client" and ctx.new_params is not None:
                try:
                    out = self._membership_global(i, e, ctx, ctx.new_params)
                except ValueError as exc:
                    out = {**self._base(i, e, r1, -1), "error": str(exc)}
                self.results.append(out)
                record.setdefault("privacy_attacks", []).append(out)

    def state_dict(self) -> dict[str, Any]:
        """The results so far (so a resumed run's summary keeps them)."""
        return {"results": copy.deepcopy(self.results)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.results = list(state.get("results", []))

    def summary(self) -> list[dict[str, Any]]:
        """Per entry: the mean of each numeric metric over its attacks."""
        out = []
        for i, e in enumerate(self.entries):
            mine = [
                r
                for r in self.results
                if r["index"] == i and "skipped" not in r and "error" not in r
            ]
            entry: dict[str, Any] = {
                "index": i,
                "kind": e.kind,
                "view": e.view,
                "attacks": len(mine),
                "skipped": sum(1 for r in self.results if r["index"] == i and "skipped" in r),
                "errors": sum(1 for r in self.results if r["index"] == i and "error" in r),
            }
            keys = [k for k in (mine[0] if mine else {}) if k not in ("index", "round", "client")]
            for k in keys:
                vals = [r[k] for r in mine if isinstance(r.get(k), int | float)]
                if vals and not isinstance(mine[0][k], bool):
                    entry[k] = float(np.mean(vals))
            out.append(entry)
        return out

    # ------------------------------------------------------------------ helpers
    def _record(self, ctx: RoundContext, out: dict[str, Any]) -> None:
        self.results.append(out)
        ctx.metrics.setdefault("privacy_attacks", []).append(out)

    def _recipe(self, ctx: RoundContext, steps: int) -> LocalRecipeView:
        t = self.cfg.train
        return LocalRecipeView(
            lr=ctx.lr,
            local_steps=steps,
            batch_size=t.batch_size,
            momentum=t.momentum,
            weight_decay=t.weight_decay,
        )

    def _used(self, r: int, k: int) -> tuple[np.ndarray, int]:
        """The sample indices client ``k`` trained on in round ``r`` (0-based) and its
        number of steps, replayed from the engine's seeded batch plan (ground truth)."""
        t = self.cfg.train
        plan = make_batch_plan(
            [self.clients[k]],
            batch_size=t.batch_size,
            local_epochs=t.local_epochs,
            local_steps=t.local_steps,
            rngs=[numpy_rng(self.cfg.seed, Stream.BATCHES, r, k)],
        )
        idx = plan.index[0][plan.mask[0] > 0]
        return np.unique(idx.numpy()), int((plan.counts[0] > 0).sum())

    def _base(self, i: int, e: PrivacyAttackConfig, r1: int, client: int) -> dict[str, Any]:
        return {"index": i, "kind": e.kind, "view": e.view, "round": r1, "client": client}

    def _seed(self, e: PrivacyAttackConfig, r: int, k: int) -> int:
        return int(numpy_rng(self.cfg.seed, Stream.PRIVACY_ATTACK, e.seed, r, k).integers(2**31))

    def _invert(
        self,
        i: int,
        e: PrivacyAttackConfig,
        view: ServerView | AggregateView,
        idx: np.ndarray,
        base: dict[str, Any],
        seed: int,
    ) -> dict[str, Any]:
        x_true = self.dataset.x_train[torch.as_tensor(idx)]
        y_true = self.dataset.y_train[torch.as_tensor(idx)]
        t0 = time.perf_counter()
        recon, labels = invert_view(
            view,
            self.model,
            kind=e.kind,
            num_images=len(idx),
            image_shape=tuple(self.dataset.input_shape),
            bounds=self.bounds,
            labels=y_true.clone() if e.known_labels else None,
            iterations=e.iterations,
            restarts=e.restarts,
            lr=e.lr or None,
            tv_weight=e.tv_weight,
            seed=seed,
        )
        elapsed = time.perf_counter() - t0
        res = score_inversion(recon, x_true, labels, y_true, bounds=self.bounds)
        out = {**base, **res.metrics, "time_s": elapsed}
        if e.grid and self.run_dir is not None:
            who = "sum" if base["client"] < 0 else f"client{base['client']}"
            path = self.run_dir / "privacy_attacks" / f"{i}_{e.kind}_round{base['round']}_{who}.png"
            title = f"{e.kind} ({e.view}), round {base['round']}: PSNR {res.metrics['psnr']:.1f} dB"
            plot_reconstructions(res.truth, res.images, path, title)
            out["grid"] = str(path.relative_to(self.run_dir))
        return out

    def _server_view(
        self, ctx: RoundContext, rows: ClientUpdates, j: int, steps: int
    ) -> ServerView:
        """What the server received from the client of row ``j`` this round."""
        return ServerView(
            round=ctx.round + 1,
            client_id=int(rows.client_ids[j]),
            layout=ctx.layout,
            global_params=ctx.global_params.detach().clone(),
            upload=rows.updates[j].detach().clone(),
            num_samples=int(rows.num_samples[j]),
            recipe=self._recipe(ctx, steps),
        )

    def _attack_upload(
        self, i: int, e: PrivacyAttackConfig, ctx: RoundContext, rows: ClientUpdates, j: int
    ) -> dict[str, Any]:
        k = int(rows.client_ids[j])
        base = self._base(i, e, ctx.round + 1, k)
        idx, steps = self._used(ctx.round, k)
        if len(idx) > e.max_images:
            return {
                **base,
                "skipped": f"client trained on {len(idx)} images > max_images = {e.max_images}",
            }
        view = self._server_view(ctx, rows, j, steps)
        return self._invert(i, e, view, idx, base, self._seed(e, ctx.round, k))

    def _attack_sum(
        self, i: int, e: PrivacyAttackConfig, ctx: RoundContext, rows: ClientUpdates
    ) -> dict[str, Any]:
        base = self._base(i, e, ctx.round + 1, -1)
        if ctx.groups is not None:
            # secure aggregation: rows are group means; the sum covers every member of the
            # released groups, and the server knows only the weighted sum of all uploads
            ids = torch.cat(list(ctx.groups)).sort().values if ctx.groups else rows.client_ids
            ids = ids[ids >= 0]
            upload_sum = (rows.updates * rows.weights[:, None].to(rows.updates.dtype)).sum(0)
            counts = torch.tensor([len(self.clients[int(k)]) for k in ids], dtype=torch.int64)
        else:
            ids = rows.client_ids
            upload_sum = rows.updates.sum(dim=0)
            counts = rows.num_samples.clone()
        used = [self._used(ctx.round, int(k)) for k in ids]
        idx = np.concatenate([u[0] for u in used])
        if len(idx) > e.max_images:
            return {
                **base,
                "skipped": f"the sum covers {len(idx)} images > max_images = {e.max_images}",
            }
        view = AggregateView(
            round=ctx.round + 1,
            client_ids=ids.clone(),
            layout=ctx.layout,
            global_params=ctx.global_params.detach().clone(),
            upload_sum=upload_sum,
            num_samples=counts,
            recipe=self._recipe(ctx, max(u[1] for u in used)),
        )
        return self._invert(i, e, view, idx, base, self._seed(e, ctx.round, 2**31 - 1))

    # ------------------------------------------------------------ membership inference
    def _candidates(
        self, members: np.ndarray, num_nonmembers: int, seed: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Members ``members`` of the train split plus ``num_nonmembers`` test images."""
        rng = np.random.default_rng(seed)
        n_test = len(self.dataset.y_test)
        out = rng.choice(n_test, size=min(num_nonmembers, n_test), replace=False)
        x = torch.cat([self.dataset.x_train[members], self.dataset.x_test[out]])
        y = torch.cat([self.dataset.y_train[members], self.dataset.y_test[out]])
        is_member = torch.zeros(len(y), dtype=torch.bool)
        is_member[: len(members)] = True
        return x, y, is_member

    def _logits(self, params: Tensor, layout: Any, x: Tensor) -> Tensor:
        net = copy.deepcopy(self.model)
        layout.load_into(net, params)
        net.eval()
        bs = self.cfg.eval.batch_size
        with torch.no_grad():
            return torch.cat([net(x[s : s + bs]) for s in range(0, len(x), bs)])

    def _mia_scores(
        self,
        e: PrivacyAttackConfig,
        logits: Tensor,
        x: Tensor,
        y: Tensor,
        seed: int,
        init_params: Tensor | None,
        r: int,
    ) -> Tensor:
        """Scores of the candidates ``(x, y)`` given the target model's ``logits``.

        LiRA's shadows: with ``init_params`` (a client's upload) one local training per
        shadow from the global model the client started from, all in one vectorised call
        of the engine's trainer (recipe of round ``r``); without (the global model), one
        federated run of the experiment per shadow on a random half of the candidates.
        """
        if e.kind == "loss_threshold":
            return loss_threshold_scores(logits, y)
        from fedshield.attacks.privacy.membership import membership_scores, train_shadow_models

        shadow = train_shadow_models(
            _shadow_config(self.cfg),
            x,
            y,
            num_shadow=e.num_shadow,
            seed=seed,
            model=self.model_spec,
            init_params=init_params,
            at_round=r if init_params is not None else None,
            num_classes=self.dataset.num_classes,
        )
        return membership_scores(e.kind, logits, y, shadow, fix_variance=e.fix_variance)

    def _membership_upload(
        self, i: int, e: PrivacyAttackConfig, ctx: RoundContext, rows: ClientUpdates, j: int
    ) -> dict[str, Any]:
        k = int(rows.client_ids[j])
        base = self._base(i, e, ctx.round + 1, k)
        idx, steps = self._used(ctx.round, k)
        view = self._server_view(ctx, rows, j, steps)
        seed = self._seed(e, ctx.round, k)
        # LiRA's game: the shadows train on half the candidates, so with as many
        # non-members as the client has members they train on as many images as it did
        n_out = len(idx) if e.kind.startswith("lira") else e.num_nonmembers
        x, y, is_member = self._candidates(idx, n_out, seed)
        t0 = time.perf_counter()
        logits = self._logits(view.local_params, view.layout, x)
        scores = self._mia_scores(e, logits, x, y, seed, view.global_params, ctx.round)
        res = membership_metrics(scores, is_member)
        return {**base, **res.metrics, "time_s": time.perf_counter() - t0}

    def _membership_global(
        self, i: int, e: PrivacyAttackConfig, ctx: RoundContext, params: Tensor
    ) -> dict[str, Any]:
        view = ClientView(
            client_id=-1,
            layout=ctx.layout,
            global_models=((ctx.round + 1, params.detach().clone()),),
        )
        base = self._base(i, e, ctx.round + 1, -1)
        seed = self._seed(e, ctx.round, 2**31 - 2)
        rng = np.random.default_rng(seed)
        pool = np.concatenate(self.clients)
        members = rng.choice(pool, size=min(e.num_members, len(pool)), replace=False)
        x, y, is_member = self._candidates(np.sort(members), e.num_nonmembers, seed)
        t0 = time.perf_counter()
        logits = self._logits(view.latest, view.layout, x)
        scores = self._mia_scores(e, logits, x, y, seed, None, ctx.round)
        res = membership_metrics(scores, is_member)
        return {**base, **res.metrics, "time_s": time.perf_counter() - t0}


def _shadow_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The run's configuration for shadow training: same recipe, no attacks of any kind,
    nothing written but a temporary run directory."""
    import dataclasses

    from fedshield.config.schema import AttackConfig, OutputConfig

    return dataclasses.replace(
        cfg,
        privacy_attack=(),
        privacy=dataclasses.replace(cfg.privacy, audit_canaries=0),
        attack=AttackConfig(),
        output=OutputConfig(dir=cfg.output.dir, checkpoint=False, plot=False, progress=False),
    )
