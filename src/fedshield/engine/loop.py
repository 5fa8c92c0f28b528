"""The federated round loop: sampling, local training, hooks, aggregation, evaluation,
checkpointing, and the run directory.

One round ``r``::

    S_r   ~ sample(clients, m)                     seeded by (seed, r)
    R_r   = S_r minus dropped clients              each drops with probability p
    U     = [w_k - w_g for k in R_r]               local training (update matrix [|R_r|, P])
    U     = hooks.after_local_training(U)          client side
    U     = U minus non-finite rows                rejected with a reason, recorded
    U     = hooks.before_aggregation(U)          [secure]: one row per group (a group mean)
    Delta = aggregator(U, weights)                 e.g. weighted mean = FedAvg
    Delta = hooks.after_aggregation(Delta)
    w_g   = server_optimizer(w_g, Delta)           sgd / fedavgm / fedadam
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fedshield import aggregators
from fedshield.aggregators.base import Aggregation
from fedshield.config.schema import ConfigError, ExperimentConfig, TrainConfig
from fedshield.data import Dataset, client_stats, load_dataset, partition
from fedshield.engine.batches import BatchPlan, make_batch_plan
from fedshield.engine.fused import FusedMLPTrainer, fused_layers
from fedshield.engine.hooks import ClientUpdates, Hook, LocalStart, RoundContext, StopRun
from fedshield.engine.layout import ParamLayout
from fedshield.engine.local import LocalRecipe, LocalTrainer, SequentialTrainer
from fedshield.engine.seeding import Stream, numpy_rng, torch_generator
from fedshield.engine.server_opt import ServerState, init_state, server_step
from fedshield.engine.vectorized import VmapTrainer
from fedshield.models import MODELS, build_model
from fedshield.report.store import RunStore, to_plain

CHECKPOINT_VERSION = 1
#: cache budget for one chunk of stacked client parameters in the fused path (bytes);
#: measured best for the 2NN on a 2-core machine with a 32 MB L3 (10 clients per chunk)
_CHUNK_BYTES = 8 * 2**20
#: memory budget for the per-sample gradients of one chunk of DP-SGD clients (bytes)
_DP_SGD_BYTES = 256 * 2**20

ModelFactory = Callable[[tuple[int, ...], int], nn.Module]


@dataclass
class Result:
    """What :func:`run_experiment` returns.

    Attributes:
        config: The configuration that ran.
        history: Per-round metric records (as in ``metrics.jsonl``).
        final_metrics: Metrics of the final evaluation plus run totals (``summary.json``).
        run_dir: The run directory.
        params: ``[P]`` final global parameters.
        layout: The model's parameter layout.
        model: The model with the final global parameters loaded.
    """

    config: ExperimentConfig
    history: list[dict[str, Any]]
    final_metrics: dict[str, Any]
    run_dir: Path
    params: Tensor
    layout: ParamLayout
    model: nn.Module = field(repr=False)


@dataclass(frozen=True)
class Federation:
    """The data side of an experiment: the dataset and each client's sample indices."""

    dataset: Dataset
    clients: list[np.ndarray]
    stats: dict[str, Any]

    @property
    def num_samples(self) -> Tensor:
        """``int64 [num_clients]`` training samples per client."""
        return torch.tensor([len(c) for c in self.clients], dtype=torch.int64)


def build_federation(cfg: ExperimentConfig, dataset: Dataset | None = None) -> Federation:
    """Load (or take) the dataset and split it over clients as configured.

    Raises:
        ConfigError: Unknown dataset, or a split the data cannot support.
    """
    if dataset is None:
        try:
            dataset = load_dataset(cfg.data.dataset, seed=cfg.seed)
        except ValueError as exc:
            raise ConfigError(f"data.dataset = {cfg.data.dataset!r}: {exc}") from exc
    labels = dataset.strata.numpy()
    n = len(labels)
    if cfg.data.num_clients > n:
        raise ConfigError(
            f"data.num_clients = {cfg.data.num_clients} is more than the {n} training samples "
            f"of {dataset.name!r}: every client needs at least one sample"
        )
    try:
        parts = partition(
            labels,
            cfg.data.num_clients,
            method=cfg.data.partition,
            seed=int(numpy_rng(cfg.seed, Stream.PARTITION).integers(2**31)),
            alpha=cfg.data.alpha,
            shards_per_client=cfg.data.shards_per_client,
            min_size=cfg.data.min_client_size,
        )
    except ValueError as exc:
        raise ConfigError(f"data.partition = {cfg.data.partition!r}: {exc}") from exc
    stats = client_stats(labels, parts, dataset.num_strata)
    return Federation(dataset=dataset, clients=parts, stats=stats)


def make_model(
    cfg: ExperimentConfig, dataset: Dataset, model: str | ModelFactory | None = None
) -> nn.Module:
    """Build the global model with a seeded initialisation.

    Raises:
        ConfigError: Unknown model name.
    """
    spec: str | ModelFactory = model if model is not None else cfg.model.name
    if isinstance(spec, str) and spec not in MODELS:
        raise ConfigError(
            f"model.name = {spec!r} is not a known model: choose one of "
            f"{', '.join(sorted(MODELS))} or pass a factory to run_experiment(model=...)"
        )
    seed = int(numpy_rng(cfg.seed, Stream.MODEL_INIT).integers(2**31))
    return build_model(spec, dataset.input_shape, dataset.num_classes, seed=seed)


def make_trainer(
    cfg: ExperimentConfig,
    model: nn.Module,
    layout: ParamLayout,
    x: Tensor,
    y: Tensor,
    fedre: Any = None,
) -> LocalTrainer:
    """Choose and build the local-training path (``engine.backend``; DP-SGD when
    ``privacy.dp_sgd`` or FedRE's ``fedre.clip_mode = "sample"``: per-sample clipping and
    noise need their own path; ``fedre`` is then the FedRE hook giving each client's
    per-layer noise).

    Raises:
        ConfigError: ``fused`` requested for a model it cannot run.
    """
    has_buffers = any(True for _ in model.buffers())
    weights = (
        torch.tensor(cfg.train.class_weights, dtype=torch.float32)
        if cfg.train.class_weights
        else None
    )
    if fedre is not None and cfg.fedre.clip_mode == "sample":
        from fedshield.engine.dp_sgd import DPSGDTrainer

        if has_buffers:
            raise ConfigError(
                "fedre.clip_mode = 'sample' needs a model without buffers (e.g. no BatchNorm)"
            )
        return DPSGDTrainer(
            model,
            layout,
            x,
            y,
            clip_norm=cfg.fedre.clip,
            noise_multiplier=0.0,
            seed=cfg.seed,
            chunk=cfg.engine.client_chunk
            or max(1, _DP_SGD_BYTES // (cfg.train.batch_size * layout.numel * 4)),
            layer_slices=list(layout.layers.values()),
            noise_std=fedre.noise_std,
            class_weights=weights,
        )
    if cfg.privacy.dp_sgd:
        from fedshield.engine.dp_sgd import DPSGDTrainer

        if has_buffers:
            raise ConfigError(
                "privacy.dp_sgd needs a model without buffers (e.g. no BatchNorm): per-sample "
                "gradients are undefined for batch statistics"
            )
        return DPSGDTrainer(
            model,
            layout,
            x,
            y,
            clip_norm=cfg.privacy.sample_clip_norm,
            noise_multiplier=cfg.privacy.sample_noise_multiplier,
            seed=cfg.seed,
            # per-sample gradients take C * B * P floats: chunk clients to ~256 MB of them
            chunk=cfg.engine.client_chunk
            or max(1, _DP_SGD_BYTES // (cfg.train.batch_size * layout.numel * 4)),
            class_weights=weights,
        )
    backend = cfg.engine.backend
    if backend == "fused" and weights is not None:
        raise ConfigError(
            "engine.backend = 'fused' does not support train.class_weights; use 'vmap' or 'auto'"
        )
    if backend == "auto":
        if fused_layers(model) is not None and weights is None and not cfg.fedqsn.enabled:
            backend = "fused"
        elif not has_buffers:
            backend = "vmap"
        else:
            backend = "sequential"
    chunk = cfg.engine.client_chunk
    if chunk == 0 and backend == "fused":
        chunk = max(1, _CHUNK_BYTES // (layout.numel * 4))
    if backend == "fused":
        if fused_layers(model) is None:
            raise ConfigError(
                "engine.backend = 'fused' needs an MLP: nn.Sequential([Flatten], Linear, "
                "[ReLU|Sigmoid|Tanh], ..., Linear) without buffers; use 'vmap' or 'auto'"
            )
        return FusedMLPTrainer(model, layout, x, y, chunk=chunk)
    if backend == "vmap":
        if has_buffers:
            raise ConfigError(
                "engine.backend = 'vmap' cannot train a model with buffers (e.g. BatchNorm "
                "running statistics); use 'sequential' or 'auto'"
            )
        return VmapTrainer(model, layout, x, y, chunk=chunk, class_weights=weights)
    return SequentialTrainer(model, layout, x, y, class_weights=weights)


def _local_start(hooks: list[Hook], ctx: RoundContext, n: int, numel: int) -> LocalStart | None:
    """The one hook's per-client starts of this round, checked (None: the global model)."""
    found: list[tuple[str, LocalStart]] = []
    for h in hooks:
        s = h.local_start(ctx)
        if s is not None:
            found.append((h.name, s))
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(
            f"round {ctx.round + 1}: hooks {[name for name, _ in found]} all set per-client "
            "starts; only one may"
        )
    name, s = found[0]
    if s.params.shape != (n, numel) or s.params.dtype != torch.float32:
        raise ValueError(
            f"round {ctx.round + 1}: hook {name!r} returned starts of {s.params.dtype} "
            f"{tuple(s.params.shape)}, expected float32 ({n}, {numel})"
        )
    t = s.trainable
    if t is not None and (t.shape != (n, numel) or t.dtype != torch.bool):
        raise ValueError(
            f"round {ctx.round + 1}: hook {name!r} returned a trainable mask of "
            f"{t.dtype} {tuple(t.shape)}, expected bool ({n}, {numel})"
        )
    return s


def lr_at(train: TrainConfig, r: int, rounds: int) -> float:
    """Client learning rate of round ``r`` (0-based) under the configured schedule."""
    if train.lr_schedule == "step":
        return train.lr * train.lr_decay ** (r // train.lr_step_rounds)
    if train.lr_schedule == "exponential":
        return train.lr * train.lr_decay**r
    if train.lr_schedule == "cosine":
        frac = r / max(rounds - 1, 1)
        return train.lr_min + 0.5 * (train.lr - train.lr_min) * (1 + math.cos(math.pi * frac))
    return train.lr


def sample_clients(
    cfg: ExperimentConfig, r: int, always: np.ndarray | None = None
) -> tuple[Tensor, Tensor]:
    """Clients sampled in round ``r`` and those of them that report (not dropped out).

    Args:
        cfg: The configuration.
        r: Round (0-based).
        always: Ids that take part in every round and never drop out (malicious clients
            with ``attack.always_participate``); the other seats are sampled from the rest.
            With ``server.sampling = "poisson"`` every client is in independently with
            probability ``q`` (so a round may have any number of clients, even none).

    Returns:
        ``(sampled, reporting)``, sorted ``int64`` id tensors.
    """
    m = cfg.sampled_per_round
    n = cfg.data.num_clients
    rng = numpy_rng(cfg.seed, Stream.SAMPLING, r)
    if cfg.server.sampling == "poisson":
        chosen = rng.random(n) < cfg.sample_rate
        if always is not None:
            chosen[always] = True
        sampled = np.flatnonzero(chosen)
        fixed = np.isin(sampled, always) if always is not None else np.zeros(len(sampled), bool)
        keep = numpy_rng(cfg.seed, Stream.DROPOUT, r).random(len(sampled)) >= cfg.server.dropout
        return torch.from_numpy(sampled), torch.from_numpy(sampled[keep | fixed])
    if always is None or len(always) == 0:
        sampled = np.sort(rng.choice(n, size=m, replace=False))
        fixed = np.zeros(m, dtype=bool)
    else:
        rest = np.setdiff1d(np.arange(n), always)
        others = rng.choice(rest, size=m - len(always), replace=False)
        sampled = np.sort(np.concatenate([always, others]))
        fixed = np.isin(sampled, always)
    keep = (numpy_rng(cfg.seed, Stream.DROPOUT, r).random(m) >= cfg.server.dropout) | fixed
    return torch.from_numpy(sampled), torch.from_numpy(sampled[keep])


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """Logits of ``model`` on ``x``, in batches."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def evaluate(
    model: nn.Module,
    fed: Federation,
    *,
    batch_size: int,
    per_client: bool,
    extra: Callable[[nn.Module], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Test accuracy/loss of the global model, and optionally per-client accuracy.

    Per-client accuracy is the global model's accuracy on each client's own training
    shard (what each client would observe), summarised as mean, std, min, p10, median,
    p90 and max. ``extra(model)`` adds further metrics (e.g. the backdoor success rate).
    On a segmentation dataset accuracies are pixel accuracies, and ``test_iou``,
    ``test_precision``, ``test_recall`` and ``test_f1`` of the positive class (the tamper
    mask) are added (micro-averaged over the test pixels).
    """
    ds = fed.dataset
    logits = predict(model, ds.x_test, batch_size)
    out: dict[str, Any] = {
        "test_accuracy": float((logits.argmax(1) == ds.y_test).float().mean()),
        "test_loss": float(nn.functional.cross_entropy(logits, ds.y_test)),
    }
    if ds.task == "segmentation":
        from fedshield.metrics.segmentation import segmentation_scores

        scores = segmentation_scores(logits, ds.y_test)
        for key in ("iou", "precision", "recall", "f1"):
            out[f"test_{key}"] = scores[key]
    if per_client:
        correct = (predict(model, ds.x_train, batch_size).argmax(1) == ds.y_train).float()
        if correct.dim() > 1:  # segmentation: pixel accuracy
            correct = correct.flatten(1).mean(1)
        accs = torch.tensor([float(correct[idx].mean()) for idx in fed.clients])
        q = torch.quantile(accs, torch.tensor([0.1, 0.5, 0.9]))
        out["client_accuracy"] = {
            "mean": float(accs.mean()),
            "std": float(accs.std()) if len(accs) > 1 else 0.0,
            "min": float(accs.min()),
            "p10": float(q[0]),
            "median": float(q[1]),
            "p90": float(q[2]),
            "max": float(accs.max()),
        }
    if extra is not None:
        out.update(extra(model))
    return out


def assumed_byzantine(
    cfg: ExperimentConfig, num_rows: int, group_sizes: Sequence[int] | None = None
) -> int:
    """Byzantine rows the defense assumes among ``num_rows`` (``defense.num_byzantine``).

    ``-1`` (auto) is the expected number of malicious rows (see
    :func:`fedshield.attacks.threat.expected_byzantine`), capped at what the rule
    tolerates for ``num_rows`` (fewer rows can report after dropouts). Under group-wise
    secure aggregation (``group_sizes``: clients behind each row) a row is Byzantine when
    any of its clients is: the expected number of contaminated groups, rounded up (see
    :func:`contaminated_groups`), capped the same way.
    """
    from fedshield.aggregators.rules import max_byzantine
    from fedshield.attacks.threat import expected_byzantine

    f = cfg.defense.num_byzantine
    if f >= 0:
        return f
    if group_sizes is not None and any(g > 1 for g in group_sizes):
        f = contaminated_groups(cfg, group_sizes)
    else:
        f = expected_byzantine(cfg, num_rows)
    cap = max_byzantine(cfg.server.aggregator, num_rows)
    return max(0, min(f, cap)) if cap is not None else f


def contaminated_groups(cfg: ExperimentConfig, group_sizes: Sequence[int]) -> int:
    """Expected number of groups with at least one malicious client, rounded up.

    Clients of a round are split at random into groups of the given sizes; with ``M`` of
    the round's ``n`` clients malicious (expected, as in
    :func:`fedshield.attacks.threat.expected_byzantine`), a group of ``g`` is clean with
    probability ``C(n - M, g) / C(n, g)`` (hypergeometric).
    """
    from fedshield.attacks.threat import expected_byzantine

    n = int(sum(group_sizes))
    bad = expected_byzantine(cfg, n)
    if bad == 0:
        return 0
    total = 0.0
    for g in group_sizes:
        clean = math.comb(n - bad, g) / math.comb(n, g) if g <= n - bad else 0.0
        total += 1.0 - clean
    return min(len(group_sizes), math.ceil(total - 1e-9))


def check_defense(cfg: ExperimentConfig) -> None:
    """Fail before training when the rule's assumption on ``(n, f)`` cannot hold.

    Raises:
        ConfigError: e.g. Bulyan with 10 clients per round and 2 assumed Byzantine.
    """
    from fedshield.aggregators.rules import max_byzantine, uses_num_byzantine
    from fedshield.attacks.threat import expected_byzantine

    name = cfg.server.aggregator
    if not uses_num_byzantine(name, cfg.defense):
        return
    n = cfg.sampled_per_round
    f = cfg.defense.num_byzantine
    if cfg.secure.enabled and cfg.secure.group_size > 0:
        # the rule sees one row per group; with f = -1 the assumed number of contaminated
        # groups is capped at what the rule tolerates (assumed_byzantine), so only an
        # explicit f is checked
        from fedshield.privacy.secure import group_sizes

        n = len(group_sizes(n, cfg.secure.group_size))
        if f < 0:
            return
    if f < 0:
        f = expected_byzantine(cfg, n)
    cap = max_byzantine(name, n)
    if cap is not None and f > cap:
        need = {
            "krum": "n > 2f + 2",
            "multi_krum": "n > 2f + 2",
            "bulyan": "n >= 4f + 3",
            "trimmed_mean": "n > 2f",
            "dnc": "n > f",
        }[name]
        auto = ", the expected number of malicious clients" if cfg.defense.num_byzantine < 0 else ""
        raise ConfigError(
            f"server.aggregator = {name!r} needs {need}, but {n} clients report per round and "
            f"f = {f} are assumed Byzantine (defense.num_byzantine = {cfg.defense.num_byzantine}"
            f"{auto}): sample more clients per round or assume at most f = {max(cap, 0)}"
        )


def root_indices(cfg: ExperimentConfig, fed: Federation) -> np.ndarray:
    """The server's clean root dataset for FLTrust: ``defense.root_size`` training samples
    drawn uniformly (seeded) from the whole training set (Cao et al. use 100)."""
    n = fed.dataset.num_train
    size = min(cfg.defense.root_size, n)
    return np.sort(numpy_rng(cfg.seed, Stream.ROOT_DATA).choice(n, size=size, replace=False))


def _root_update(
    trainer: LocalTrainer,
    params: Tensor,
    plan: BatchPlan,
    recipe: LocalRecipe,
    root: np.ndarray | None,
    cfg: ExperimentConfig,
    r: int,
) -> Callable[[], Tensor] | None:
    """A closure training the server on its root data with the clients' recipe, for as many
    local steps as the longest client of the round (FLTrust's g0)."""
    if root is None:
        return None

    def compute() -> Tensor:
        root_plan = make_batch_plan(
            [root],
            batch_size=cfg.train.batch_size,
            local_steps=max(plan.num_steps, 1),
            rngs=[numpy_rng(cfg.seed, Stream.ROOT_DATA, r)],
        )
        # the server's own row gets an id no client has (DP-SGD keys its noise on ids)
        root_recipe = dataclasses.replace(
            recipe, client_ids=(cfg.data.num_clients,), trainable=None
        )
        return trainer.train(params, root_plan, root_recipe).params[0] - params

    return compute


def detection_counts(result: Aggregation, malicious: Tensor) -> dict[str, int]:
    """Rows the rule rejected (positives) against the known malicious rows.

    A rule that keeps every row (mean, median, ...) rejects none. Rows with trust weight
    0 count as rejected.
    """
    accepted = result.accepted
    if accepted is None and result.weights is not None:
        accepted = result.weights > 0
    if accepted is None:
        accepted = torch.ones_like(malicious)
    flagged = ~accepted.to(torch.bool)
    return {
        "tp": int((flagged & malicious).sum()),
        "fp": int((flagged & ~malicious).sum()),
        "fn": int((~flagged & malicious).sum()),
        "tn": int((~flagged & ~malicious).sum()),
    }


def summarize_detection(rounds: list[dict[str, int]]) -> dict[str, float | int | None]:
    """Totals over rounds with the true/false positive rates of rejecting malicious rows."""
    tot = {k: sum(d[k] for d in rounds) for k in ("tp", "fp", "fn", "tn")}
    pos, neg = tot["tp"] + tot["fn"], tot["fp"] + tot["tn"]
    out: dict[str, float | int | None] = dict(tot)
    out["tpr"] = tot["tp"] / pos if pos else None
    out["fpr"] = tot["fp"] / neg if neg else None
    return out


def _rule_state(state: dict[str, Any]) -> dict[str, Any]:
    """The rule's state as plain checkpointable values (histories as state dicts)."""
    out = {k: v for k, v in state.items() if k != "foolsgold"}
    history = state.get("foolsgold")
    if history is not None:
        out["foolsgold_state"] = history.state_dict()
    return out


def reject_nonfinite(updates: ClientUpdates) -> tuple[ClientUpdates, list[dict[str, Any]]]:
    """Drop rows that are not finite; return the rest and the rejection records."""
    finite = ~aggregators.nonfinite_rows(updates.updates)
    if bool(finite.all()):
        return updates, []
    rejected = [
        {"client": int(c), "reason": "update has non-finite values (NaN/Inf)"}
        for c in updates.client_ids[~finite].tolist()
    ]
    return updates.select(finite), rejected


def _check_hook_output(name: str, stage: str, out: Any, numel: int) -> None:
    if not isinstance(out, ClientUpdates):
        raise TypeError(f"hook {name!r}.{stage} returned {type(out).__name__}, not ClientUpdates")
    u = out.updates
    n = len(out.client_ids)
    if u.dim() != 2 or u.shape[1] != numel or u.shape[0] != n:
        raise ValueError(
            f"hook {name!r}.{stage} returned updates of shape {tuple(u.shape)}, expected "
            f"({n}, {numel})"
        )
    if u.dtype != torch.float32:
        raise ValueError(f"hook {name!r}.{stage} returned dtype {u.dtype}, expected float32")


def _save_checkpoint(
    store: RunStore,
    *,
    round_done: int,
    params: Tensor,
    server_state: ServerState,
    hooks: Sequence[Hook],
    rule_state: dict[str, Any],
    elapsed: float,
) -> None:
    path = store.checkpoint_path
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "version": CHECKPOINT_VERSION,
            "round": round_done,
            "params": params,
            "server_state": server_state,
            "hooks": [h.state_dict() for h in hooks],
            "hook_names": [h.name for h in hooks],
            "rule_state": rule_state,
            "elapsed_s": elapsed,
        },
        tmp,
    )
    tmp.replace(path)


def _load_hook_states(
    hooks: Sequence[Hook], states: list[dict[str, Any]], names: list[str] | None
) -> None:
    """Give each hook its checkpointed state, matched by name in order (a checkpoint from
    a version with other built-in hooks still restores the hooks it knows)."""
    if names is None:  # checkpoints before hook names were saved: positional
        for h, st in zip(hooks, states, strict=False):
            h.load_state_dict(st)
        return
    pending = list(zip(names, states, strict=True))
    for h in hooks:
        for i, (name, st) in enumerate(pending):
            if name == h.name:
                h.load_state_dict(st)
                del pending[i]
                break


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]round"),
        MofNCompleteColumn(),
        BarColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        transient=False,
    )


def run_experiment(
    config: ExperimentConfig,
    *,
    dataset: Dataset | None = None,
    model: str | ModelFactory | None = None,
    hooks: Sequence[Hook] = (),
    resume: str | Path | None = None,
) -> Result:
    """Run a federated experiment end to end and write its run directory.

    Args:
        config: The validated experiment configuration.
        dataset: Use this dataset (e.g. ``fedshield.data.from_arrays(...)``) instead of
            ``config.data.dataset``.
        model: A model name or a factory ``(input_shape, num_classes) -> nn.Module``
            overriding ``config.model.name``.
        hooks: Attacks, mechanisms and measurements plugged into the loop, in order.
        resume: An existing run directory to continue from its last checkpoint (the
            configuration must be the one saved there).

    Returns:
        The :class:`Result`.

    Raises:
        ConfigError: A configuration the data, model or registries cannot support; raised
            before any training.
    """
    previous_threads = torch.get_num_threads()
    if config.engine.threads:
        torch.set_num_threads(config.engine.threads)
    try:
        return _run(config, dataset=dataset, model=model, hooks=hooks, resume=resume)
    finally:
        torch.set_num_threads(previous_threads)


def _run(
    cfg: ExperimentConfig,
    *,
    dataset: Dataset | None,
    model: str | ModelFactory | None,
    hooks: Sequence[Hook],
    resume: str | Path | None,
) -> Result:
    # imported here: the attacks import the engine, and the rules pull in scikit-learn
    from fedshield.aggregators.rules import AggregationContext
    from fedshield.attacks.threat import ThreatModel
    from fedshield.privacy.hooks import build_privacy_hooks
    from fedshield.privacy.secure import SecureAggregation

    t_start = time.perf_counter()
    try:
        rule = aggregators.get(cfg.server.aggregator)
    except ValueError as exc:
        raise ConfigError(f"server.aggregator = {cfg.server.aggregator!r}: {exc}") from exc
    check_defense(cfg)
    fed = build_federation(cfg, dataset)
    k = fed.dataset.num_classes
    if cfg.train.class_weights and len(cfg.train.class_weights) != k:
        raise ConfigError(
            f"train.class_weights = {list(cfg.train.class_weights)} has "
            f"{len(cfg.train.class_weights)} weights but {fed.dataset.name!r} has {k} classes: "
            "give one weight per class"
        )
    if fed.dataset.task != "classification":
        if cfg.attack.data != "none" and cfg.num_malicious > 0:
            raise ConfigError(
                f"attack.data = {cfg.attack.data!r} poisons class labels; the "
                f"{fed.dataset.task} dataset {fed.dataset.name!r} has dense targets"
            )
        if cfg.privacy_attack:
            raise ConfigError(
                "[[privacy_attack]] entries assume one class label per sample; for the "
                f"{fed.dataset.task} dataset {fed.dataset.name!r} run the inversion in "
                "`fedshield reproduce fedre` (targets known to the attacker)"
            )
    threat = ThreatModel(cfg, fed.dataset, fed.clients)
    privacy = build_privacy_hooks(cfg)
    secure = SecureAggregation(cfg)
    net = make_model(cfg, fed.dataset, model)
    layout = ParamLayout.from_module(net)
    fedre_hook = None
    if cfg.privacy.mode == "fedre":
        from fedshield.privacy.fedre.hook import FedREHook

        fedre_hook = FedREHook(cfg, fed.dataset, fed.clients, net, layout)
        privacy.append(fedre_hook)
    qsn: list[Hook] = []
    if cfg.fedqsn.enabled:
        from fedshield.privacy.fedqsn.hook import FedQSNHook

        qsn = [FedQSNHook(cfg, net, layout, tuple(fed.dataset.input_shape))]
    psi_scorer = None
    if cfg.server.aggregator == "pda_pam":
        from fedshield.privacy.fedre.hook import public_psi_scorer

        psi_scorer = functools.partial(public_psi_scorer, cfg, fed.dataset, net, layout)
        psi_scorer(0)  # fail before training if the data cannot support PDA-PAM
    spying: list[Hook] = []
    if cfg.privacy_attack:
        from fedshield.attacks.privacy.hook import PrivacyAttackHook

        spying = [PrivacyAttackHook(cfg, fed.dataset, fed.clients, net, model)]
    # order: attackers rewrite uploads, privacy mechanisms protect them, secure aggregation
    # turns them into (group) sums, curious parties observe what the server actually
    # received, then the user's hooks
    # FedQSN sends the proxies clients start from, and its merge (after aggregation) comes
    # before any server-side noise
    hooks = [threat, *qsn, *privacy, secure, *spying, *hooks]
    if layout.dtype != torch.float32:
        raise ConfigError(f"the model's parameters are {layout.dtype}; fedshield trains float32")
    trainer = make_trainer(cfg, net, layout, threat.x_train, threat.y_train, fedre_hook)
    params = layout.flatten(net).clone()
    server_state = init_state(cfg.server.optimizer, layout.numel)
    rule_state: dict[str, Any] = {}
    root = root_indices(cfg, fed) if cfg.server.aggregator == "fltrust" else None
    start_round = 0
    elapsed_before = 0.0

    if resume is not None:
        store = RunStore.open(resume)
        saved = store.read_config()
        if saved != cfg.to_dict():
            raise ConfigError(
                f"cannot resume {store.run_dir}: its saved config differs from the one given "
                "(resume with the run directory's own config)"
            )
        ckpt_path = store.checkpoint_path
        if ckpt_path.exists():
            ckpt = torch.load(ckpt_path, weights_only=False)
            if ckpt.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"{ckpt_path}: unsupported checkpoint version")
            params = ckpt["params"]
            if params.shape != (layout.numel,):
                raise ValueError(f"{ckpt_path}: checkpoint does not match the model's layout")
            server_state = ckpt["server_state"]
            rule_state = dict(ckpt.get("rule_state", {}))
            _load_hook_states(hooks, ckpt["hooks"], ckpt.get("hook_names"))
            start_round = int(ckpt["round"]) + 1
            elapsed_before = float(ckpt["elapsed_s"])
        store.truncate_metrics(start_round)  # records are 1-based: keep rounds done
    else:
        store = RunStore.create(cfg.output.dir, cfg.name)
        store.write_config(cfg.to_dict())
        store.write_json("clients.json", fed.stats)
        if threat.enabled:
            store.write_json(
                "threat.json",
                {"malicious_clients": threat.malicious.tolist(), "attack": cfg.to_dict()["attack"]},
            )

    for h in spying:
        h.run_dir = store.run_dir  # type: ignore[attr-defined]
    history = store.read_metrics()
    num_samples = fed.num_samples
    rounds = cfg.server.rounds
    progress = _progress(cfg.output.progress)
    task = None
    if progress is not None:
        progress.start()
        task = progress.add_task("", total=rounds, completed=start_round)
    last_eval: dict[str, Any] = {}
    stopped: str | None = None
    try:
        for r in range(start_round, rounds):
            t_round = time.perf_counter()
            sampled, reporting = sample_clients(cfg, r, threat.always())
            lr = lr_at(cfg.train, r, rounds)
            ctx = RoundContext(
                round=r,
                num_rounds=rounds,
                config=cfg,
                layout=layout,
                global_params=params,
                sampled=sampled,
                reporting=reporting,
                lr=lr,
                generator=torch_generator(cfg.seed, Stream.HOOKS, r),
            )
            try:
                for h in hooks:
                    h.on_round_start(ctx)
            except StopRun as stop:
                stopped = str(stop)
                break
            record: dict[str, Any] = {
                "round": r + 1,
                "lr": lr,
                "num_sampled": len(sampled),
                "num_reporting": len(reporting),
            }
            rejected: list[dict[str, Any]] = []
            t_train = 0.0
            aggregated = False
            if len(reporting) > 0:
                ids = reporting.tolist()
                plan = make_batch_plan(
                    [fed.clients[k] for k in ids],
                    batch_size=cfg.train.batch_size,
                    local_epochs=cfg.train.local_epochs,
                    local_steps=cfg.train.local_steps,
                    rngs=[numpy_rng(cfg.seed, Stream.BATCHES, r, k) for k in ids],
                )
                plan = threat.poison_plan(plan, reporting, r)
                begin = _local_start(hooks, ctx, len(ids), layout.numel)
                recipe = LocalRecipe(
                    lr=lr,
                    momentum=cfg.train.momentum,
                    weight_decay=cfg.train.weight_decay,
                    prox_mu=cfg.train.prox_mu,
                    round=r,
                    client_ids=tuple(ids),
                    trainable=begin.trainable if begin is not None else None,
                )
                t0 = time.perf_counter()
                start = begin.params if begin is not None else params
                local = trainer.train(start, plan, recipe)
                t_train = time.perf_counter() - t0
                n_k = num_samples[reporting]
                weights = (
                    n_k.to(torch.float32)
                    if cfg.server.weighting == "samples"
                    else torch.ones(len(ids))
                )
                updates = ClientUpdates(
                    client_ids=reporting,
                    updates=local.params.sub_(start),
                    weights=weights,
                    num_samples=n_k,
                    loss=local.loss,
                )
                record["train_loss"] = float((local.loss * n_k).sum() / n_k.sum())
                for h in hooks:
                    updates = h.after_local_training(ctx, updates)
                    _check_hook_output(h.name, "after_local_training", updates, layout.numel)
                updates, rejected = reject_nonfinite(updates)
                for h in hooks:
                    updates = h.before_aggregation(ctx, updates)
                    _check_hook_output(h.name, "before_aggregation", updates, layout.numel)
                if len(updates) > 0:
                    sizes = (
                        [len(g) for g in ctx.groups]
                        if ctx.groups is not None and len(ctx.groups) == len(updates)
                        else None
                    )
                    agg_ctx = AggregationContext(
                        num_byzantine=assumed_byzantine(cfg, len(updates), sizes),
                        defense=cfg.defense,
                        generator=torch_generator(cfg.seed, Stream.DEFENSE, r),
                        global_params=params,
                        client_ids=updates.client_ids,
                        previous=rule_state.get("previous"),
                        server_update=_root_update(trainer, params, plan, recipe, root, cfg, r),
                        state=rule_state,
                        layer_slices=list(layout.layers.values()),
                        psi_scores=(
                            functools.partial(psi_scorer(r), params)
                            if psi_scorer is not None
                            else None
                        ),
                        fedre=cfg.fedre,
                    )
                    try:
                        result = rule(updates.updates, updates.weights, agg_ctx)
                    except ValueError as exc:
                        raise ValueError(
                            f"round {r + 1}: aggregator {cfg.server.aggregator!r} failed: {exc}"
                        ) from exc
                    delta = result.aggregate
                    rule_state["previous"] = delta.detach().clone()
                    if threat.enabled:
                        bad = threat.mask(updates.client_ids)
                        if sizes is not None and ctx.groups is not None:
                            # a group row is malicious when any of its clients is
                            bad = torch.tensor([bool(threat.mask(g).any()) for g in ctx.groups])
                        record["detection"] = detection_counts(result, bad)
                    for h in hooks:
                        delta = h.after_aggregation(ctx, delta)
                    if delta.shape != (layout.numel,) or not bool(torch.isfinite(delta).all()):
                        raise ValueError(
                            f"round {r + 1}: aggregate has shape {tuple(delta.shape)} or "
                            "non-finite values; the global model was not updated"
                        )
                    params, server_state = server_step(params, delta, server_state, cfg.server)
                    aggregated = True
            if not aggregated and any(h.noise_on_empty for h in hooks):
                # nobody to aggregate (Poisson sampling, dropouts, rejections): central DP
                # still releases its noise, exactly as the accountant assumes
                delta = torch.zeros_like(params)
                for h in hooks:
                    if h.noise_on_empty:
                        delta = h.after_aggregation(ctx, delta)
                params, server_state = server_step(params, delta, server_state, cfg.server)
            record["num_aggregated"] = (
                record["num_reporting"] - len(rejected) if len(reporting) else 0
            )
            if cfg.secure.enabled:  # clients whose uploads are in a released sum
                record["num_aggregated"] = (
                    sum(len(g) for g in ctx.groups or []) if aggregated else 0
                )
            record["rejected"] = rejected
            record["time_train_s"] = t_train
            if (r + 1) % cfg.eval.every == 0 or r + 1 == rounds:
                t_eval = time.perf_counter()
                layout.load_into(net, params)
                last_eval = evaluate(
                    net,
                    fed,
                    batch_size=cfg.eval.batch_size,
                    per_client=cfg.eval.per_client,
                    extra=lambda m: threat.backdoor_metrics(m, cfg.eval.batch_size),
                )
                record.update(last_eval)
                record["time_eval_s"] = time.perf_counter() - t_eval
            record.update(ctx.metrics)
            ctx.new_params = params
            for h in hooks:
                h.on_round_end(ctx, record)
            record["time_round_s"] = time.perf_counter() - t_round
            store.append_metrics(record)
            history.append(record)
            if cfg.output.checkpoint:
                _save_checkpoint(
                    store,
                    round_done=r,
                    params=params,
                    server_state=server_state,
                    hooks=hooks,
                    rule_state=_rule_state(rule_state),
                    elapsed=elapsed_before + time.perf_counter() - t_start,
                )
            if progress is not None and task is not None:
                desc = f"loss {record.get('train_loss', float('nan')):.4f}"
                if "test_accuracy" in last_eval:
                    desc += f"  test acc {last_eval['test_accuracy']:.4f}"
                progress.update(task, advance=1, description=desc)
    except BaseException:
        if cfg.output.checkpoint:
            done = len(history)
            print(
                f"fedshield: stopped after round {done} of {rounds}; everything up to it is "
                f"saved. Continue with: fedshield run --resume {store.run_dir}",
                file=sys.stderr,
            )
        raise
    finally:
        if progress is not None:
            progress.stop()

    layout.load_into(net, params)
    previous = store.read_summary() if start_round >= rounds else None
    if previous is not None:
        # resuming a finished run: nothing to train, keep its results as they are
        final = previous
    else:
        if not last_eval:
            last_eval = evaluate(
                net,
                fed,
                batch_size=cfg.eval.batch_size,
                per_client=False,
                extra=lambda m: threat.backdoor_metrics(m, cfg.eval.batch_size),
            )
        elapsed = elapsed_before + time.perf_counter() - t_start
        final = _summary(cfg, history, last_eval, elapsed)
        if stopped is not None:
            final["stopped_early"] = stopped
        for h in privacy:
            summary = getattr(h, "summary", None)
            if callable(summary):
                final.setdefault("privacy", {}).update(summary())
        audit = next((h for h in privacy if hasattr(h, "result")), None)
        for h in qsn:
            final["fedqsn"] = h.summary()  # type: ignore[attr-defined]
        if audit is not None:
            try:
                res = to_plain(audit.result(cfg.privacy.delta))
            except ValueError as exc:  # too few trials to bound anything
                res = {"epsilon_lb": None, "error": str(exc)}
            final["audit"] = {**res, "accountant_epsilon": final["privacy"]["epsilon"]}
        if cfg.secure.enabled or cfg.secure.norm_bound > 0:
            final["secure"] = secure.summary()
        else:  # plaintext: the communication cost only, the baseline of secure runs
            cost = secure.summary()
            final["communication"] = {
                k: cost[k]
                for k in (
                    "bytes_per_client_per_round",
                    "bytes_per_client_total",
                    "bytes_server_total",
                )
            }
        if threat.enabled:
            final["malicious_clients"] = threat.malicious.tolist()
        for h in spying:
            final["privacy_attacks"] = h.summary()  # type: ignore[attr-defined]
    store.write_summary(final)
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, store.path("model.pt"))
    store.write_csv()
    if cfg.output.plot:
        store.plot()
    if cfg.output.progress:
        from rich.console import Console

        from fedshield.report.tables import summary_table

        Console().print(summary_table(final, title=f"{cfg.name}: {store.run_dir}"))
    return Result(
        config=cfg,
        history=history,
        final_metrics=final,
        run_dir=store.run_dir,
        params=params,
        layout=layout,
        model=net,
    )


def _summary(
    cfg: ExperimentConfig, history: list[dict[str, Any]], last: dict[str, Any], total: float
) -> dict[str, Any]:
    accs = [h["test_accuracy"] for h in history if "test_accuracy" in h]
    times = [h["time_round_s"] for h in history]
    out: dict[str, Any] = {
        "rounds": len(history),
        "final_test_accuracy": last.get("test_accuracy"),
        "final_test_loss": last.get("test_loss"),
        "best_test_accuracy": max(accs) if accs else None,
        "total_time_s": total,
        "mean_round_time_s": float(np.mean(times)) if times else None,
        "median_round_time_s": float(np.median(times)) if times else None,
        "rejected_updates": sum(len(h.get("rejected", [])) for h in history),
    }
    target = cfg.eval.target_accuracy
    if target > 0:
        hit = [h["round"] for h in history if h.get("test_accuracy", -1.0) >= target]
        out["target_accuracy"] = target
        out["rounds_to_target"] = hit[0] if hit else None
    if "client_accuracy" in last:
        out["final_client_accuracy"] = last["client_accuracy"]
    if "backdoor_success" in last:
        out["final_backdoor_success"] = last["backdoor_success"]
    for key in ("iou", "precision", "recall", "f1"):
        if f"test_{key}" in last:
            out[f"final_test_{key}"] = last[f"test_{key}"]
    ious = [h["test_iou"] for h in history if "test_iou" in h]
    if ious:
        out["best_test_iou"] = max(ious)
    detections = [h["detection"] for h in history if "detection" in h]
    if detections:
        out["detection"] = summarize_detection(detections)
    out["test_accuracy"] = last.get("test_accuracy")
    out["test_loss"] = last.get("test_loss")
    return out
