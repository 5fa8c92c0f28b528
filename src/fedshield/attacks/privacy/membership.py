"""Membership inference against federated models with shadow models trained by the engine.

Two attacks, both scored "higher = more likely a member" (see
:mod:`fedshield.metrics.membership` for the statistics themselves):

* **Loss threshold** -- Yeom, Giacomelli, Fredrikson, Jha. "Privacy Risk in Machine
  Learning: Analyzing the Connection to Overfitting." CSF 2018. The score is ``-CE`` of the
  target model on the example; no shadow model is needed.
* **LiRA** -- Carlini, Chien, Nasr, Song, Terzis, Tramèr. "Membership Inference Attacks
  From First Principles." IEEE S&P 2022. ``S`` shadow models are trained on random halves
  of a data pool, so every pool example is IN for some shadows and OUT for the others;
  per example, Gaussians are fitted to the shadows' logit-scaled confidences
  ``phi = log(p_y / (1 - p_y))`` and the target's ``phi`` is tested against them (online:
  likelihood ratio IN vs OUT; offline: one-sided test against OUT only).

Federated threat models (methods spec, section 8, "FL adaptation"):

* **Curious client** (target = the global model): each shadow is a whole federated run of
  :func:`fedshield.engine.loop.run_experiment` with the target's configuration (clients,
  partition, rounds, local recipe, server, privacy) on its half of the pool.
* **Curious server** (target = one client's upload at a round): the server knows the global
  parameters it sent and the local recipe, so each shadow is the local training of one
  client from those parameters on its half of the pool. All shadows are trained in one
  call of the engine's vectorised local trainer (each shadow is one "client" row).

Halves are drawn as complementary pairs: shadows ``2j`` and ``2j + 1`` split the pool into a
random half and its complement, so every example is IN for exactly ``S / 2`` shadows (as in
Carlini et al.'s code) and every shadow trains on ``floor(N / 2)`` or ``ceil(N / 2)``
examples (the reference code's independent halves vary in size; pairs keep each shadow's
training set the size of a target trained on half the pool).

Query augmentations (``augment=True``): the identity plus the four 1-pixel shifts of an
image (``torch.roll`` along height and width). LiRA scores every augmentation separately
and averages the scores (the reference code does the same with flips and shifts).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from fedshield.config.schema import ExperimentConfig
from fedshield.data import from_arrays
from fedshield.engine.batches import make_batch_plan
from fedshield.engine.layout import ParamLayout
from fedshield.engine.local import LocalRecipe
from fedshield.engine.loop import lr_at, make_model, make_trainer, predict, run_experiment
from fedshield.metrics.membership import (
    balanced_accuracy,
    lira_offline_scores,
    lira_online_scores,
    logit_confidence,
    loss_threshold_scores,
    roc_auc,
    tpr_at_fpr,
)

__all__ = [
    "MIA_KINDS",
    "ShadowModels",
    "evaluate_membership",
    "membership_scores",
    "plot_roc",
    "query_logits",
    "shadow_halves",
    "shift_views",
    "train_shadow_models",
]

MIA_KINDS: tuple[str, ...] = ("loss", "lira_online", "lira_offline")
"""Attack scores :func:`membership_scores` computes."""

ModelFactory = Callable[[tuple[int, ...], int], nn.Module]


@dataclass(frozen=True)
class ShadowModels:
    """What the shadow models reveal about a pool of ``N`` examples.

    Attributes:
        logits: ``[S, N, C]`` logits of every shadow on every pool example, or
            ``[S, N, A, C]`` with ``A`` query augmentations (index 0 = the identity).
        in_mask: ``bool [S, N]``; ``in_mask[s, i]`` is True when example ``i`` was in the
            training half of shadow ``s``.
        seeds: The configuration seed of each shadow's federated run (empty for shadows
            trained from ``init_params``, which draw no model initialisation).
    """

    logits: Tensor
    in_mask: Tensor
    seeds: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.logits.ndim not in (3, 4):
            raise ValueError(
                f"ShadowModels.logits must have shape [S, N, C] or [S, N, A, C], got "
                f"{tuple(self.logits.shape)}"
            )
        if self.in_mask.dtype != torch.bool or tuple(self.in_mask.shape) != tuple(
            self.logits.shape[:2]
        ):
            raise ValueError(
                f"ShadowModels.in_mask must be bool of shape {tuple(self.logits.shape[:2])} "
                f"(= logits.shape[:2]), got {self.in_mask.dtype} {tuple(self.in_mask.shape)}"
            )

    @property
    def num_shadow(self) -> int:
        """Number of shadow models ``S``."""
        return int(self.logits.shape[0])

    @property
    def num_examples(self) -> int:
        """Pool size ``N``."""
        return int(self.logits.shape[1])


# --------------------------------------------------------------------------- halves, queries


def _check_num_shadow(num_shadow: int) -> None:
    if isinstance(num_shadow, bool) or not isinstance(num_shadow, int | np.integer):
        raise ValueError(f"num_shadow must be an int, got {num_shadow!r}")
    if num_shadow < 2 or num_shadow % 2:
        raise ValueError(
            f"num_shadow must be even and >= 2 (every example is IN for exactly half of the "
            f"shadows), got {num_shadow}"
        )


def shadow_halves(num_examples: int, num_shadow: int, *, seed: int = 0) -> Tensor:
    """Random training halves of ``num_shadow`` shadows over a pool, in complementary pairs.

    Shadow ``2j`` gets a uniformly random subset of ``floor(N / 2)`` examples (``ceil``
    for odd ``j`` when ``N`` is odd, so sizes balance) and shadow ``2j + 1`` its
    complement. Every example is therefore IN for exactly ``num_shadow / 2`` shadows.

    Args:
        num_examples: Pool size ``N >= 2``.
        num_shadow: Number of shadows ``S`` (even, >= 2).
        seed: Seed of the draw (the same seed gives the same halves).

    Returns:
        ``bool [S, N]`` membership mask.

    Raises:
        ValueError: ``num_shadow`` odd or < 2, or ``num_examples < 2``.
    """
    _check_num_shadow(num_shadow)
    if num_examples < 2:
        raise ValueError(f"the pool needs at least 2 examples, got {num_examples}")
    rng = np.random.default_rng([seed, 0x4C495241])  # "LIRA": a stream of its own
    mask = np.zeros((num_shadow, num_examples), dtype=bool)
    for j in range(num_shadow // 2):
        size = num_examples // 2 + (num_examples % 2) * (j % 2)
        mask[2 * j, rng.permutation(num_examples)[:size]] = True
        mask[2 * j + 1] = ~mask[2 * j]
    return torch.from_numpy(mask)


def shift_views(x: Tensor, *, shift: int = 1) -> Tensor:
    """Query augmentations of images: the identity and the four ``shift``-pixel shifts.

    Shifts use ``torch.roll`` along height and width (the wrapped-around border of a digit
    is background). ``[N, C, H, W] -> [A = 5, N, C, H, W]`` in the order identity, down,
    up, right, left.

    Args:
        x: Images ``[N, C, H, W]``.
        shift: Shift in pixels (>= 1).

    Returns:
        ``[5, N, C, H, W]`` views.

    Raises:
        ValueError: ``x`` not 4-D or ``shift < 1``.
    """
    if x.ndim != 4:
        raise ValueError(f"shift views need images [N, C, H, W], got shape {tuple(x.shape)}")
    if shift < 1:
        raise ValueError(f"shift must be >= 1, got {shift}")
    views = [x]
    for dim in (2, 3):
        views += [torch.roll(x, shift, dims=dim), torch.roll(x, -shift, dims=dim)]
    return torch.stack(views)


def query_logits(
    model: nn.Module, x: Tensor, *, augment: bool = False, batch_size: int = 1024
) -> Tensor:
    """Logits of ``model`` on ``x`` (no gradients, eval mode, in batches).

    Args:
        model: The model to query.
        x: Inputs ``[N, ...]``.
        augment: Also query the shifted views of :func:`shift_views` (images only).
        batch_size: Forward batch size.

    Returns:
        ``[N, C]`` logits, or ``[N, A, C]`` with ``augment`` (``A = 5``, index 0 = identity).
    """
    if not augment:
        return predict(model, x, batch_size).detach()
    views = shift_views(x)
    return torch.stack([predict(model, v, batch_size).detach() for v in views], dim=1)


# --------------------------------------------------------------------------- shadows


def _check_pool(x_pool: Tensor, y_pool: Tensor) -> None:
    if not isinstance(x_pool, Tensor) or not isinstance(y_pool, Tensor):
        raise ValueError("x_pool and y_pool must be torch tensors")
    if x_pool.ndim < 2:
        raise ValueError(f"x_pool must have shape [N, ...], got {tuple(x_pool.shape)}")
    if y_pool.ndim != 1 or y_pool.shape[0] != x_pool.shape[0]:
        raise ValueError(
            f"y_pool must have shape [{x_pool.shape[0]}] to match x_pool, got {tuple(y_pool.shape)}"
        )
    if y_pool.dtype.is_floating_point or y_pool.dtype == torch.bool:
        raise ValueError(f"y_pool must hold integer labels, got dtype {y_pool.dtype}")
    if x_pool.shape[0] < 2:
        raise ValueError(f"the pool needs at least 2 examples, got {x_pool.shape[0]}")


def _quiet(config: ExperimentConfig, out_dir: str, seed: int, name: str) -> ExperimentConfig:
    """The configuration of one shadow run: no progress, plot or checkpoint, evaluated once."""
    return dataclasses.replace(
        config,
        name=name,
        seed=seed,
        output=dataclasses.replace(
            config.output, dir=out_dir, progress=False, plot=False, checkpoint=False
        ),
        eval=dataclasses.replace(config.eval, every=config.server.rounds, per_client=False),
    )


def train_shadow_models(
    config: ExperimentConfig,
    x_pool: Tensor,
    y_pool: Tensor,
    *,
    num_shadow: int,
    seed: int = 0,
    model: str | ModelFactory | None = None,
    init_params: Tensor | None = None,
    augment: bool = False,
    at_round: int | None = None,
    same_seed: bool = False,
    num_classes: int | None = None,
    out_dir: str | Path | None = None,
) -> ShadowModels:
    """Train LiRA shadow models with fedshield's engine (Carlini et al., S&P 2022).

    Each shadow ``s`` trains on the examples ``in_mask[s]`` of :func:`shadow_halves`.

    * ``init_params is None`` (curious client, target = the global model): shadow ``s`` is a
      full federated run, :func:`run_experiment` with ``config`` (clients, partition,
      rounds, local recipe, server optimizer, privacy...) on
      ``from_arrays(pool[in], y[in], pool[out], y[out])`` (the OUT half is only the run's
      test split), output in a temporary directory, no progress, plot or checkpoint.
      Its logits are the final global model's.
    * ``init_params`` given (curious server, target = one client's upload): shadow ``s`` is
      the local training of one client from ``init_params`` with the configured recipe
      (``local_epochs`` / ``local_steps``, ``batch_size``, the learning rate of round
      ``at_round`` after the schedule, momentum, weight decay, FedProx ``mu``), and all
      ``S`` shadows train in ONE call of the engine's local trainer
      (:func:`fedshield.engine.loop.make_trainer`: vmap / fused / DP-SGD as configured).
      Client-side hooks (clipping, local DP) are not applied: the shadows are the raw
      local models.

    Args:
        config: The target's experiment configuration.
        x_pool: Pool inputs ``[N, ...]`` (already normalised like the target's data).
        y_pool: Pool labels ``[N]``.
        num_shadow: Number of shadows ``S`` (even, >= 2).
        seed: Seed of the halves and of the shadows' runs.
        model: Model name or factory (as ``run_experiment(model=...)``); default
            ``config.model.name``.
        init_params: ``[P]`` flat parameters every shadow starts local training from.
        augment: Record logits of the :func:`shift_views` augmentations too (images).
        at_round: 0-based round whose learning rate the local training uses (``init_params``
            path); default the last round.
        same_seed: Run every federated shadow with ``config.seed`` (the target's model
            initialisation, client sampling and batch order; a curious client knows at
            least the initial global model). Default: shadow ``s`` gets its own seed.
        num_classes: Number of classes (default ``max(y_pool) + 1``).
        out_dir: Where the shadows' run directories go (default: a temporary directory
            removed afterwards).

    Returns:
        The :class:`ShadowModels` (logits ``[S, N, C]`` or ``[S, N, 5, C]``, ``in_mask``).

    Raises:
        ValueError: Bad ``num_shadow``, pool shapes, ``init_params`` shape or ``at_round``.
    """
    _check_num_shadow(num_shadow)
    _check_pool(x_pool, y_pool)
    n = int(x_pool.shape[0])
    n_cls = int(y_pool.max()) + 1 if num_classes is None else int(num_classes)
    if n_cls < 2 or int(y_pool.min()) < 0 or int(y_pool.max()) >= n_cls:
        raise ValueError(f"y_pool labels must lie in [0, num_classes = {n_cls}), num_classes >= 2")
    if augment and x_pool.ndim != 4:
        raise ValueError(f"augment=True needs images [N, C, H, W], got {tuple(x_pool.shape)}")
    in_mask = shadow_halves(n, num_shadow, seed=seed)
    x_pool = x_pool.detach().to(torch.float32)
    y_pool = y_pool.detach().to(torch.int64)
    batch = config.eval.batch_size
    threads = torch.get_num_threads()
    if config.engine.threads:
        torch.set_num_threads(config.engine.threads)
    try:
        if init_params is not None:
            logits = _local_shadows(
                config, x_pool, y_pool, in_mask, init_params, model, n_cls, seed, at_round, augment
            )
            return ShadowModels(logits=logits, in_mask=in_mask)
        rng = np.random.default_rng([seed, 0x53484457])  # "SHDW"
        seeds = tuple(
            config.seed if same_seed else int(s) for s in rng.integers(2**31, size=num_shadow)
        )
        rows: list[Tensor] = []
        with tempfile.TemporaryDirectory(prefix="fedshield-shadows-") as tmp:
            root = str(out_dir) if out_dir is not None else tmp
            for s in range(num_shadow):
                keep, drop = in_mask[s], ~in_mask[s]
                data = from_arrays(
                    x_pool[keep],
                    y_pool[keep],
                    x_pool[drop],
                    y_pool[drop],
                    name="shadow",
                    num_classes=n_cls,
                )
                cfg = _quiet(config, root, seeds[s], f"{config.name}-shadow{s}")
                result = run_experiment(cfg, dataset=data, model=model)
                rows.append(query_logits(result.model, x_pool, augment=augment, batch_size=batch))
        return ShadowModels(logits=torch.stack(rows), in_mask=in_mask, seeds=seeds)
    finally:
        torch.set_num_threads(threads)


def _local_shadows(
    config: ExperimentConfig,
    x_pool: Tensor,
    y_pool: Tensor,
    in_mask: Tensor,
    init_params: Tensor,
    model: str | ModelFactory | None,
    n_cls: int,
    seed: int,
    at_round: int | None,
    augment: bool,
) -> Tensor:
    """All shadows as clients of one vectorised local-training call; their pool logits."""
    rounds = config.server.rounds
    r = rounds - 1 if at_round is None else at_round
    if not 0 <= r < rounds:
        raise ValueError(f"at_round must be in [0, {rounds - 1}] (0-based), got {at_round}")
    shape_ds = from_arrays(x_pool[:1], y_pool[:1], x_pool[:1], y_pool[:1], num_classes=n_cls)
    net = make_model(config, shape_ds, model)
    layout = ParamLayout.from_module(net)
    if (
        not isinstance(init_params, Tensor)
        or init_params.ndim != 1
        or init_params.shape[0] != layout.numel
    ):
        got = tuple(init_params.shape) if isinstance(init_params, Tensor) else init_params
        raise ValueError(
            f"init_params must be the model's flat parameters of shape [{layout.numel}], got {got}"
        )
    start = init_params.detach().to(torch.float32).clone()
    S = int(in_mask.shape[0])
    trainer = make_trainer(config, net, layout, x_pool, y_pool)
    plan = make_batch_plan(
        [np.flatnonzero(in_mask[s].numpy()) for s in range(S)],
        batch_size=config.train.batch_size,
        local_epochs=config.train.local_epochs,
        local_steps=config.train.local_steps,
        rngs=[np.random.default_rng([seed, 0x4C4F4341, s]) for s in range(S)],  # "LOCA"
    )
    recipe = LocalRecipe(
        lr=lr_at(config.train, r, rounds),
        momentum=config.train.momentum,
        weight_decay=config.train.weight_decay,
        prox_mu=config.train.prox_mu,
        round=r,
        client_ids=tuple(range(S)),
    )
    local = trainer.train(start, plan, recipe)
    rows = []
    for s in range(S):
        layout.load_into(net, local.params[s])
        rows.append(query_logits(net, x_pool, augment=augment, batch_size=config.eval.batch_size))
    return torch.stack(rows)


# --------------------------------------------------------------------------- scores


def _confidences(logits: Tensor, labels: Tensor) -> Tensor:
    """phi of ``[..., N, A, C]`` logits against ``[N]`` labels -> ``[..., N, A]`` float64."""
    *lead, n, a, c = logits.shape
    flat = logits.to(torch.float64).reshape(-1, c)
    lab = labels.long().view(1, n, 1).expand(math.prod(lead) if lead else 1, n, a).reshape(-1)
    return logit_confidence(flat, lab).view(*lead, n, a)


def _per_side(phi: Tensor, mask: Tensor, side: str) -> Tensor:
    """``[S, N]`` shadow confidences -> ``[N, k]`` of the shadows with ``mask`` true."""
    counts = mask.sum(dim=0)
    k = int(counts[0])
    if not bool((counts == k).all()):
        raise ValueError(
            f"every example must be {side} for the same number of shadows (got between "
            f"{int(counts.min())} and {int(counts.max())}); draw halves with shadow_halves"
        )
    if k < 2:
        raise ValueError(
            f"LiRA needs at least 2 {side} shadows per example to fit a Gaussian, got {k}"
        )
    return phi.T[mask.T].view(phi.shape[1], k)


def membership_scores(
    kind: str,
    target_logits: Tensor,
    labels: Tensor,
    shadow: ShadowModels | None = None,
    *,
    fix_variance: bool = False,
) -> Tensor:
    """Membership scores of pool examples against a target model; higher = member.

    * ``"loss"``: Yeom et al. (CSF 2018), ``-CE(target(x), y)``
      (:func:`fedshield.metrics.membership.loss_threshold_scores`).
    * ``"lira_online"``: Carlini et al. (S&P 2022), ``log N(phi; mu_in, s_in^2) -
      log N(phi; mu_out, s_out^2)`` with per-example Gaussians fitted to the IN and OUT
      shadows (:func:`~fedshield.metrics.membership.lira_online_scores`).
    * ``"lira_offline"``: the one-sided test against the OUT Gaussian only
      (:func:`~fedshield.metrics.membership.lira_offline_scores`).

    With augmentations (``target_logits [N, A, C]``) every augmentation is scored on its
    own (its own Gaussians) and the ``A`` scores are averaged.

    Args:
        kind: One of :data:`MIA_KINDS`.
        target_logits: ``[N, C]`` or ``[N, A, C]`` target logits on the pool.
        labels: ``[N]`` integer true classes.
        shadow: The shadow models on the same pool (LiRA only; same ``A``).
        fix_variance: One pooled sigma per side instead of per-example sigmas (the paper's
            fixed-variance variant, better with few shadows).

    Returns:
        ``[N]`` float scores (float64 for LiRA).

    Raises:
        ValueError: Unknown kind, LiRA without shadows, mismatched shapes, non-finite
            logits, or examples IN (or OUT) for fewer than 2 / unequal numbers of shadows.
    """
    if kind not in MIA_KINDS:
        raise ValueError(f"unknown membership score {kind!r}; choose one of {MIA_KINDS}")
    if target_logits.ndim not in (2, 3):
        raise ValueError(
            f"target_logits must have shape [N, C] or [N, A, C], got {tuple(target_logits.shape)}"
        )
    n = int(target_logits.shape[0])
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(
            f"labels must have shape [{n}] to match target_logits, got {tuple(labels.shape)}"
        )
    target = target_logits if target_logits.ndim == 3 else target_logits.unsqueeze(1)
    a, c = int(target.shape[1]), int(target.shape[2])
    if kind == "loss":
        flat = target.permute(1, 0, 2).reshape(a * n, c)
        scores = loss_threshold_scores(flat, labels.repeat(a))
        return scores.view(a, n).mean(dim=0)
    if shadow is None:
        raise ValueError(f"{kind!r} needs shadow models (train_shadow_models)")
    sh = shadow.logits if shadow.logits.ndim == 4 else shadow.logits.unsqueeze(2)
    if tuple(sh.shape[1:]) != (n, a, c):
        raise ValueError(
            f"shadow logits have shape {tuple(shadow.logits.shape)} but target_logits "
            f"{tuple(target_logits.shape)}: they must describe the same N examples, "
            "augmentations and classes"
        )
    phi_t = _confidences(target, labels)  # [N, A]
    phi_s = _confidences(sh, labels)  # [S, N, A]
    mask = shadow.in_mask
    out = torch.zeros(n, dtype=torch.float64)
    for j in range(a):
        out_confs = _per_side(phi_s[:, :, j], ~mask, "OUT")
        if kind == "lira_online":
            in_confs = _per_side(phi_s[:, :, j], mask, "IN")
            out += lira_online_scores(phi_t[:, j], in_confs, out_confs, fix_variance=fix_variance)
        else:
            out += lira_offline_scores(phi_t[:, j], out_confs, fix_variance=fix_variance)
    return out / a


def _split(scores: Tensor | np.ndarray, is_member: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    s = torch.as_tensor(scores).detach().to(torch.float64)
    m = torch.as_tensor(is_member)
    if s.ndim != 1 or m.shape != s.shape:
        raise ValueError(
            f"scores and is_member must be 1-D of the same length, got {tuple(s.shape)} and "
            f"{tuple(m.shape)}"
        )
    if m.dtype != torch.bool:
        raise ValueError(f"is_member must be a bool tensor, got dtype {m.dtype}")
    if not bool(m.any()) or bool(m.all()):
        raise ValueError("is_member must mark at least one member and one non-member")
    return s[m], s[~m]


def evaluate_membership(
    scores: Tensor | np.ndarray, is_member: Tensor | np.ndarray
) -> dict[str, float]:
    """How well ``scores`` separate members from non-members (Carlini et al.'s metrics).

    Args:
        scores: ``[n]`` attack scores (higher = member).
        is_member: ``bool [n]`` ground truth.

    Returns:
        ``{"auc", "tpr@0.1%fpr", "tpr@1%fpr", "balanced_accuracy"}`` from
        :mod:`fedshield.metrics.membership`. TPR at 0.1% FPR is only resolvable with at
        least 1,000 non-members (0.1% of them is one false positive).

    Raises:
        ValueError: Shapes differ, ``is_member`` not bool or one-sided, scores non-finite.
    """
    mem, non = _split(scores, is_member)
    return {
        "auc": roc_auc(mem, non),
        "tpr@0.1%fpr": tpr_at_fpr(mem, non, 0.001),
        "tpr@1%fpr": tpr_at_fpr(mem, non, 0.01),
        "balanced_accuracy": balanced_accuracy(mem, non),
    }


def plot_roc(
    curves: Mapping[str, tuple[Tensor | np.ndarray, Tensor | np.ndarray]],
    path: str | Path,
    *,
    title: str | None = None,
) -> None:
    """Log-log ROC curves of several attacks (Carlini et al.'s recommended view).

    Uses a bare ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot global state).

    Args:
        curves: Label -> ``(scores, is_member)``; the legend shows AUC and TPR at 0.1% FPR.
        path: Output image path (the format follows the suffix).
        title: Optional figure title.

    Raises:
        ValueError: No curves, or bad scores / labels (as :func:`evaluate_membership`).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    if not curves:
        raise ValueError("plot_roc needs at least one curve")
    fig = Figure(figsize=(5.5, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lo = 1.0
    for label, (scores, is_member) in curves.items():
        mem, non = _split(scores, is_member)
        y = np.concatenate([np.ones(len(mem)), np.zeros(len(non))])
        fpr, tpr, _ = roc_curve(y, torch.cat([mem, non]).numpy(), drop_intermediate=False)
        lo = min(lo, 1.0 / len(non), 1.0 / len(mem))
        stats = evaluate_membership(torch.cat([mem, non]), torch.from_numpy(y.astype(bool)))
        ax.plot(
            fpr,
            tpr,
            label=f"{label} (AUC {stats['auc']:.3f}, TPR@0.1% {100 * stats['tpr@0.1%fpr']:.1f}%)",
        )
    lo = 10 ** math.floor(math.log10(lo))
    ax.plot([lo, 1.0], [lo, 1.0], "k--", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, 1.0)
    ax.set_ylim(lo, 1.0)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path), dpi=120)
