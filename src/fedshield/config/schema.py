"""Typed, frozen experiment configuration.

An experiment is described by an :class:`ExperimentConfig`, a tree of frozen dataclasses.
Every field carries its constraints in ``dataclasses.field(metadata=...)`` (allowed
choices, numeric bounds, a one-line help text); :mod:`fedshield.config.loader` uses them to
validate raw TOML/dict input and to report mistakes with the key, the value and what is
allowed. Library code only ever sees these dataclasses, never raw dicts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A configuration mistake; the message names the key, the value and what is allowed."""


def opt(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A dataclass field with validation metadata.

    Args:
        default: Default value.
        help: One-line description shown in error messages and docs.
        choices: Allowed values, if the field is an enumeration.
        ge: Inclusive lower bound.
        gt: Exclusive lower bound.
        le: Inclusive upper bound.
        lt: Exclusive upper bound.

    Returns:
        A ``dataclasses.field`` carrying the metadata.
    """
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt}
    return field(default=default, metadata=meta)


def show_value(value: Any) -> str:
    """A value as the user wrote it in TOML (true/false, not True/False)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def check_field(key: str, value: Any, meta: Mapping[str, Any]) -> None:
    """Check one value against its field's choices and bounds.

    Raises:
        ConfigError: Naming ``key``, the value and what is allowed.
    """
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            check_field(f"{key}[{i}]", item, meta)
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{key} = {value!r} is not allowed: choose one of {allowed}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} = {value!r} is not allowed: it must be a finite number")
    bounds = [
        ("ge", lambda v, b: v >= b, ">="),
        ("gt", lambda v, b: v > b, ">"),
        ("le", lambda v, b: v <= b, "<="),
        ("lt", lambda v, b: v < b, "<"),
    ]
    for name, test, sym in bounds:
        bound = meta.get(name)
        if bound is not None and not test(value, bound):
            raise ConfigError(
                f"{key} = {value!r} is out of range: it must be {sym} {bound}"
                + (f" ({meta['help']})" if meta.get("help") else "")
            )


class _Section:
    """Validates every field's choices and bounds on construction (also when a section is
    built directly in Python or via ``dataclasses.replace``)."""

    _prefix: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.metadata:
                key = f"{self._prefix}.{f.name}" if self._prefix else f.name
                check_field(key, getattr(self, f.name), f.metadata)


@dataclass(frozen=True)
class DataConfig(_Section):
    """Which data, and how it is split over clients."""

    _prefix: ClassVar[str] = "data"

    dataset: str = opt("mnist", "dataset name from fedshield.data.DATASETS (mnist, digits)")
    num_clients: int = opt(20, "number of clients in the federation", ge=1)
    partition: str = opt(
        "dirichlet", "how training data is split", choices=("iid", "dirichlet", "shards")
    )
    alpha: float = opt(0.5, "Dirichlet concentration (partition = 'dirichlet')", gt=0.0)
    shards_per_client: int = opt(2, "shards per client (partition = 'shards')", ge=1)
    min_client_size: int = opt(
        1, "minimum samples per client, Dirichlet draws are repeated until it holds", ge=1
    )


@dataclass(frozen=True)
class ModelConfig(_Section):
    """The global model."""

    _prefix: ClassVar[str] = "model"

    name: str = opt("mlp_2nn", "model name from fedshield.models.MODELS")


@dataclass(frozen=True)
class TrainConfig(_Section):
    """Local training on each client (SGD with momentum, weight decay and FedProx)."""

    _prefix: ClassVar[str] = "train"

    lr: float = opt(0.05, "client learning rate", gt=0.0)
    momentum: float = opt(0.0, "client SGD momentum (reset every round)", ge=0.0, lt=1.0)
    weight_decay: float = opt(0.0, "client L2 weight decay", ge=0.0)
    batch_size: int = opt(10, "client minibatch size", ge=1)
    local_epochs: int = opt(1, "local epochs per round (ignored if local_steps > 0)", ge=1)
    local_steps: int = opt(0, "fixed number of local steps per round; 0 = use local_epochs", ge=0)
    prox_mu: float = opt(0.0, "FedProx proximal coefficient mu (0 = FedAvg)", ge=0.0)
    class_weights: tuple[float, ...] = opt(
        (),
        "per-class loss weights, one per class (e.g. [1.0, 5.0] for a rare tamper class); "
        "empty = unweighted",
        gt=0.0,
    )
    lr_schedule: str = opt(
        "constant",
        "client learning-rate schedule over rounds",
        choices=("constant", "step", "exponential", "cosine"),
    )
    lr_decay: float = opt(0.1, "decay factor gamma for 'step' and 'exponential'", gt=0.0, le=1.0)
    lr_step_rounds: int = opt(10, "rounds between decays for 'step'", ge=1)
    lr_min: float = opt(0.0, "final learning rate for 'cosine'", ge=0.0)


@dataclass(frozen=True)
class ServerConfig(_Section):
    """Rounds, client sampling, aggregation and the server optimizer."""

    _prefix: ClassVar[str] = "server"

    rounds: int = opt(50, "number of communication rounds", ge=1)
    clients_per_round: int = opt(10, "clients sampled per round; 0 = use client_fraction", ge=0)
    client_fraction: float = opt(
        0.0, "fraction of clients sampled per round (used if clients_per_round = 0)", ge=0.0, le=1.0
    )
    sampling: str = opt(
        "fixed",
        "client sampling: a fixed-size uniform sample per round, or Poisson (each client "
        "independently with rate q = client_fraction, or clients_per_round / num_clients)",
        choices=("fixed", "poisson"),
    )
    dropout: float = opt(0.0, "probability that a sampled client fails to report", ge=0.0, lt=1.0)
    aggregator: str = opt("mean", "aggregation rule from fedshield.aggregators.AGGREGATORS")
    weighting: str = opt("samples", "client weights in aggregation", choices=("samples", "uniform"))
    optimizer: str = opt(
        "sgd",
        "server optimizer applied to the aggregated update",
        choices=("sgd", "fedavgm", "fedadam"),
    )
    lr: float = opt(1.0, "server learning rate", gt=0.0)
    momentum: float = opt(0.9, "server momentum (fedavgm)", ge=0.0, lt=1.0)
    beta1: float = opt(0.9, "first-moment decay (fedadam)", ge=0.0, lt=1.0)
    beta2: float = opt(0.99, "second-moment decay (fedadam)", ge=0.0, lt=1.0)
    tau: float = opt(1e-3, "adaptivity / epsilon (fedadam)", gt=0.0)


#: model-poisoning attacks (``attack.model``); see :mod:`fedshield.attacks`
MODEL_ATTACKS = (
    "none",
    "sign_flip",
    "gaussian",
    "scaling",
    "alie",
    "ipm",
    "min_max",
    "min_sum",
    "fang_krum",
    "fang_trmean",
    "free_rider",
    "sybil",
)


@dataclass(frozen=True)
class AttackConfig(_Section):
    """The threat model: who is malicious, when, what they know, and what they do.

    Malicious clients train like everyone else (on poisoned data if ``data`` is set), then
    rewrite their uploads with the model-poisoning attack ``model``.
    """

    _prefix: ClassVar[str] = "attack"

    num_malicious: int = opt(0, "number of malicious clients (or use malicious_fraction)", ge=0)
    malicious_fraction: float = opt(
        0.0,
        "fraction of all clients that are malicious (used if num_malicious = 0)",
        ge=0.0,
        le=1.0,
    )
    malicious_ids: tuple[int, ...] = opt(
        (), "explicit ids of the malicious clients (default: a seeded random choice)", ge=0
    )
    start_round: int = opt(1, "first round (1-based) in which the malicious clients attack", ge=1)
    end_round: int = opt(0, "last round in which they attack; 0 = until the end", ge=0)
    always_participate: bool = opt(
        False, "malicious clients take part in every round (else they are sampled like others)"
    )
    collude: bool = opt(
        True, "malicious clients share what they know and send the same crafted update"
    )
    knowledge: str = opt(
        "own",
        "what the attackers know: their own honest updates, or every benign update of the round",
        choices=("own", "omniscient"),
    )
    data: str = opt(
        "none", "data poisoning on malicious clients", choices=("none", "label_flip", "backdoor")
    )
    flip: str = opt(
        "reverse",
        "label flipping: y -> C-1-y (reverse), all -> flip_target (all_to_one), "
        "flip_source -> flip_target (source_target), uniform other label (random)",
        choices=("reverse", "all_to_one", "source_target", "random"),
    )
    flip_source: int = opt(1, "source label for flip = 'source_target'", ge=0)
    flip_target: int = opt(7, "target label for 'all_to_one' and 'source_target'", ge=0)
    trigger: str = opt(
        "badnets",
        "backdoor trigger: pixel patch (badnets), blended random pattern (blended), "
        "distributed pieces per attacker with the full trigger at test (dba)",
        choices=("badnets", "blended", "dba"),
    )
    target_label: int = opt(0, "backdoor target label", ge=0)
    poison_fraction: float = opt(
        0.0,
        "fraction of each malicious batch that is poisoned; 0 = 1.0 for label flipping, "
        "0.5 for backdoors",
        ge=0.0,
        le=1.0,
    )
    trigger_size: int = opt(4, "side of the BadNets square patch in pixels", ge=1)
    blend_alpha: float = opt(0.2, "opacity of the blended trigger", gt=0.0, le=1.0)
    model: str = opt("none", "model-poisoning attack on the uploads", choices=MODEL_ATTACKS)
    scale: float = opt(
        0.0,
        "factor for 'scaling' (0 = model replacement: total weight / malicious weight) and "
        "for 'sign_flip'",
        ge=0.0,
    )
    sigma: float = opt(100.0, "noise std for 'gaussian' (and 'free_rider' noise)", ge=0.0)
    epsilon: float = opt(0.5, "IPM epsilon: the attackers send -epsilon * mean(benign)", gt=0.0)
    perturbation: str = opt(
        "unit_vec", "min-max / min-sum perturbation", choices=("unit_vec", "std", "sign")
    )
    norm_bound: float = opt(
        0.0,
        "project malicious uploads onto this L2 ball (PGD / constrain-and-scale); 0 = off",
        ge=0.0,
    )
    free_rider: str = opt(
        "stale", "what a free-rider uploads", choices=("stale", "noise", "noisy_stale")
    )

    @property
    def enabled(self) -> bool:
        """True when any client is malicious and it does something."""
        has_clients = self.num_malicious > 0 or self.malicious_fraction > 0 or self.malicious_ids
        return bool(has_clients) and (self.data != "none" or self.model != "none")


@dataclass(frozen=True)
class DefenseConfig(_Section):
    """Options of the robust aggregation rule chosen by ``server.aggregator``."""

    _prefix: ClassVar[str] = "defense"

    num_byzantine: int = opt(
        -1,
        "number of Byzantine updates the rule assumes per round; -1 = the expected number "
        "of malicious clients among those reporting (rounded up)",
        ge=-1,
    )
    num_selected: int = opt(0, "rows Multi-Krum averages; 0 = n - f", ge=0)
    trim_fraction: float = opt(
        0.0, "trimmed mean: fraction trimmed at each end; 0 = f / n", ge=0.0, lt=0.5
    )
    tau: float = opt(0.0, "centered clipping radius; 0 = median update norm", ge=0.0)
    iterations: int = opt(1, "centered clipping iterations", ge=1)
    max_norm: float = opt(0.0, "norm bounding radius; 0 = median update norm", ge=0.0)
    root_size: int = opt(100, "FLTrust: clean root examples held by the server", ge=1)
    noise_lambda: float = opt(0.001, "FLAME: noise level lambda (0.001 images, 0.01 NLP)", ge=0.0)
    cluster_on: str = opt(
        "models",
        "FLAME clusters the local models G + u_i (the paper) or the updates u_i",
        choices=("models", "updates"),
    )
    kappa: float = opt(1.0, "FoolsGold logit confidence kappa", gt=0.0)
    sub_dim: int = opt(10000, "DnC: coordinates sampled per iteration", ge=1)
    dnc_iters: int = opt(5, "DnC: iterations", ge=1)
    filter_frac: float = opt(1.0, "DnC: removes filter_frac * f rows per iteration", gt=0.0)


@dataclass(frozen=True)
class PrivacyConfig(_Section):
    """Differential privacy: client-level central DP-FedAvg, local DP, DP-SGD, auditing."""

    _prefix: ClassVar[str] = "privacy"

    mode: str = opt(
        "none",
        "client-level DP: central (DP-FedAvg: clip, sum, Gaussian noise at the server), "
        "local (each client perturbs its own update) or distributed (each client adds its "
        "share of the Gaussian noise before secure aggregation; needs [secure])",
        choices=("none", "central", "local", "distributed", "fedre", "ldp_fed"),
    )
    clip_norm: float = opt(1.0, "L2 clip norm C of a client update", gt=0.0)
    noise_multiplier: float = opt(
        0.0, "central DP: noise std = noise_multiplier * C (ignored if target_epsilon > 0)", ge=0.0
    )
    target_epsilon: float = opt(
        0.0, "central DP: calibrate the noise so that the whole run spends this epsilon", ge=0.0
    )
    delta: float = opt(1e-5, "delta of (epsilon, delta)-DP", gt=0.0, lt=1.0)
    accountant: str = opt("rdp", "privacy accountant of dp-accounting", choices=("rdp", "pld"))
    budget_epsilon: float = opt(
        0.0, "stop the run before a round would exceed this epsilon (0 = no budget)", ge=0.0
    )
    adaptive_clipping: bool = opt(
        False, "central DP: adapt C to a quantile of update norms (Andrew et al. 2021)"
    )
    target_quantile: float = opt(0.5, "adaptive clipping: target quantile gamma", gt=0.0, lt=1.0)
    clip_lr: float = opt(0.2, "adaptive clipping: learning rate eta_C of log C", gt=0.0)
    count_noise_multiplier: float = opt(
        0.0,
        "adaptive clipping: noise std sigma_b of the clipped count; 0 = expected clients / 20",
        ge=0.0,
    )
    local_mechanism: str = opt(
        "gaussian",
        "local DP: analytic Gaussian (epsilon, delta) or Laplace (pure epsilon, L1 clipping)",
        choices=("gaussian", "laplace"),
    )
    local_epsilon: float = opt(1.0, "local DP: epsilon of one round's perturbation", gt=0.0)
    dp_sgd: bool = opt(False, "sample-level DP-SGD in local training (per-sample clipping)")
    sample_clip_norm: float = opt(1.0, "DP-SGD: per-sample gradient clip norm", gt=0.0)
    sample_noise_multiplier: float = opt(1.0, "DP-SGD: noise multiplier of each step", ge=0.0)
    audit_canaries: int = opt(
        0, "empirical audit: canary clients with random update directions (0 = off)", ge=0
    )
    audit_insert_prob: float = opt(
        0.5, "empirical audit: probability a canary is inserted in a round", gt=0.0, lt=1.0
    )


@dataclass(frozen=True)
class FedREConfig(_Section):
    """FedRE (Xiao et al., ICMR 2025): PSI-aware layer-wise local DP and PDA-PAM, with the
    paper's baselines (uniform layer-wise LDP, LDP-Fed's alpha-CLDP).

    ``privacy.mode = "fedre"`` runs the layer-wise mechanism (``budget`` chooses FedRE's
    eq. 6 or the uniform split); ``privacy.mode = "ldp_fed"`` runs alpha-CLDP with
    ``epsilon``, ``clip``, ``cldp_levels`` and ``cldp_fraction``;
    ``server.aggregator = "pda_pam"`` uses the ``pda_*`` options. Needs a dataset with PSI
    regions (``data.dataset = "documents"`` or a ``DocumentDataset``).
    """

    _prefix: ClassVar[str] = "fedre"

    epsilon: float = opt(50.0, "total LDP budget epsilon of a client's update (eq. 6)", gt=0.0)
    delta: float = opt(1e-5, "total delta, split evenly over the layers", gt=0.0, lt=1.0)
    clip: float = opt(0.2, "per-layer clip bound C_l (eq. 7), the same for every layer", gt=0.0)
    clip_mode: str = opt(
        "update",
        "clip each layer of the whole update once (Algorithm 1) or each sample's per-layer "
        "gradient in every local step, DP-SGD style (the paper's text)",
        choices=("update", "sample"),
    )
    budget: str = opt(
        "psi",
        "psi: epsilon_l proportional to 1/S_l (eq. 6, FedRE); uniform: epsilon/L "
        "(the uniform layer-wise LDP baseline)",
        choices=("psi", "uniform"),
    )
    sigma: float = opt(
        0.0, "override: noise multiplier of every layer (0 = eq. 9 from epsilon_l)", ge=0.0
    )
    sigma_scale: float = opt(
        1.0, "multiply eq. 9's sigma_l by this (the value used is recorded)", gt=0.0
    )
    noise_rounds: int = opt(0, "T in eq. 9 (0 = server.rounds)", ge=0)
    psi_method: str = opt(
        "hutchinson",
        "PSI score: exact (forward-over-reverse JVPs) or hutchinson (random projections)",
        choices=("exact", "hutchinson"),
    )
    psi_samples: int = opt(10, "documents per format averaged for the PSI score", ge=1)
    psi_probes: int = opt(16, "Hutchinson probes per layer", ge=1)
    psi_refresh: int = opt(
        0, "recompute the PSI scores with the global model every k rounds (0 = once)", ge=0
    )
    pda_mode: str = opt(
        "normalized",
        "PDA-PAM: normalized (softmin weights, sum to 1) or literal (eq. 11 as written)",
        choices=("normalized", "literal"),
    )
    pda_temperature: float = opt(1.0, "PDA-PAM softmax temperature", gt=0.0)
    pda_standardize: bool = opt(False, "PDA-PAM: z-score each layer's scores over clients")
    pda_public: int = opt(
        4, "PDA-PAM: public documents each client model is scored on (0 = all)", ge=0
    )
    cldp_levels: int = opt(16, "LDP-Fed: levels of the discretised value domain", ge=2)
    cldp_fraction: float = opt(
        0.01, "LDP-Fed: fraction of the coordinates each client uploads", gt=0.0, le=1.0
    )


@dataclass(frozen=True)
class FedQSNConfig(_Section):
    """FedQSN (Xu et al., arXiv 2508.18911): each round every client receives only a proxy
    of the global model, with a random subnetwork of hidden units removed (a server mask
    fixed for the run, ratio ``p1``, and a fresh client mask, ratio ``p2``) and the hidden
    layers' weights quantized; the server merges the updates into its full-precision
    master. ``enabled = true`` with ``p1 = p2 = 0`` and ``quantizer = "none"`` is FedAvg.
    """

    _prefix: ClassVar[str] = "fedqsn"

    enabled: bool = opt(False, "send FedQSN proxies instead of the global model")
    p1: float = opt(
        0.0, "server mask: fraction of hidden units removed for the whole run", ge=0.0, lt=1.0
    )
    p2: float = opt(
        0.0,
        "client mask: fraction of the remaining units removed per client and round",
        ge=0.0,
        lt=1.0,
    )
    quantizer: str = opt(
        "nf",
        "codebook of the weights sent: nf (normal quantiles), uniform, none (float32)",
        choices=("nf", "uniform", "none"),
    )
    bits: int = opt(4, "bits of the codebook (nf has 2^b + 1 levels)", ge=1, le=8)
    block_size: int = opt(64, "quantization block size (absmax per block)", ge=1)
    scale: bool = opt(False, "inverted-dropout scaling of the kept units' outgoing weights")
    merge: str = opt(
        "coordinate",
        "coordinate: average each coordinate over the clients that received it (the "
        "paper); whole_state: mean of the uploaded proxies (the reference code)",
        choices=("coordinate", "whole_state"),
    )
    trainable: tuple[str, ...] = opt(
        (),
        "names (or name prefixes, e.g. '7.' or 'blocks.1.') of the parameters clients train "
        "on their proxy; empty = all they received",
    )


#: aggregation rules that work on a single row (one secure sum per round, group_size = 0)
SUM_RULES = ("mean", "norm_bound", "centered_clipping")


@dataclass(frozen=True)
class SecureConfig(_Section):
    """Secure aggregation in the round loop: SecAgg+ or HE, optionally group-wise.

    The server receives only sums: one per group of clients (``group_size`` >= 2, groups
    drawn at random each round) or one for all reporting clients (``group_size = 0``).
    The aggregation rule then runs over the group *means* (weighted sum / total weight).
    See ``docs/secure-aggregation.md``.
    """

    _prefix: ClassVar[str] = "secure"

    mode: str = opt(
        "none",
        "how uploads are summed: in the clear (none), SecAgg+ masking (secagg), or "
        "homomorphic encryption (ckks, paillier)",
        choices=("none", "secagg", "ckks", "paillier"),
    )
    group_size: int = opt(
        0,
        "0 = one sum over every reporting client; g >= 2 = random groups of about g clients "
        "per round (sizes g..2g-1, never smaller than g unless fewer than g clients report)",
        ge=0,
    )
    num_neighbours: int = opt(
        0, "SecAgg+ neighbours per client; 0 = 2 ceil(log2 n) for a group of n", ge=0
    )
    threshold: int = opt(
        0, "SecAgg+ Shamir threshold; 0 = a majority of the neighbours (k // 2 + 1)", ge=0
    )
    clip: float = opt(
        1.0,
        "SecAgg+ fixed-point range: each coordinate of a (weight-scaled) upload is clipped to "
        "[-clip, clip] before encoding (the fraction clipped is recorded)",
        gt=0.0,
    )
    bits: int = opt(32, "SecAgg+ ring Z_{2^bits}", choices=(32, 64))
    norm_bound: float = opt(
        0.0,
        "clients scale their upload to L2 norm <= norm_bound before masking (0 = off)",
        ge=0.0,
    )
    stage_dropout: float = opt(
        0.0,
        "SecAgg+: probability that a client drops at each protocol stage (seeded; exercises "
        "the dropout recovery)",
        ge=0.0,
        lt=1.0,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group_size == 1:
            raise ConfigError(
                "secure.group_size = 1 would hand the server each client's upload: use 0 (one "
                "sum over all reporting clients) or g >= 2"
            )
        if self.num_neighbours and self.threshold > self.num_neighbours:
            raise ConfigError(
                f"secure.threshold = {self.threshold} is more than secure.num_neighbours = "
                f"{self.num_neighbours}: a secret is shared among the neighbours, so at most "
                "num_neighbours shares exist"
            )
        if self.mode in ("ckks", "paillier") and self.stage_dropout > 0:
            raise ConfigError(
                f"secure.stage_dropout = {self.stage_dropout} with secure.mode = "
                f"{self.mode!r}: stage dropouts belong to the SecAgg+ protocol; HE sums "
                "whatever ciphertexts arrive (use server.dropout for clients that never report)"
            )
        if self.mode == "none" and (self.group_size or self.stage_dropout > 0):
            raise ConfigError(
                "secure.group_size / secure.stage_dropout are set but secure.mode = 'none': "
                "choose secure.mode = 'secagg', 'ckks' or 'paillier'"
            )

    @property
    def enabled(self) -> bool:
        """True when the server receives only (group) sums."""
        return self.mode != "none"


@dataclass(frozen=True)
class EvalConfig(_Section):
    """When and how the global model is evaluated."""

    _prefix: ClassVar[str] = "eval"

    every: int = opt(1, "evaluate every k rounds (the last round is always evaluated)", ge=1)
    per_client: bool = opt(
        True, "also report the distribution of per-client accuracy on each client's own data"
    )
    batch_size: int = opt(4096, "evaluation batch size", ge=1)
    target_accuracy: float = opt(
        0.0, "record the first round whose test accuracy reaches this (0 = off)", ge=0.0, le=1.0
    )


@dataclass(frozen=True)
class EngineConfig(_Section):
    """How local training is executed."""

    _prefix: ClassVar[str] = "engine"

    backend: str = opt(
        "auto",
        "local-training path: sequential (one client after another), vmap (torch.func over "
        "clients), fused (hand-fused batched kernels for MLPs), auto (fused when the model "
        "allows, else vmap)",
        choices=("auto", "sequential", "vmap", "fused"),
    )
    client_chunk: int = opt(
        0, "train at most this many clients at once in vectorised paths; 0 = all", ge=0
    )
    threads: int = opt(0, "torch intra-op threads; 0 = leave torch's default", ge=0)


@dataclass(frozen=True)
class OutputConfig(_Section):
    """Where and what a run writes."""

    _prefix: ClassVar[str] = "output"

    dir: str = opt("runs", "root folder for run directories")
    checkpoint: bool = opt(True, "write a checkpoint after every round (enables --resume)")
    plot: bool = opt(True, "write metrics.png at the end")
    progress: bool = opt(True, "show a progress bar and the final summary table")


@dataclass(frozen=True)
class PrivacyAttackConfig(_Section):
    """One ``[[privacy_attack]]`` entry: a privacy attack run on the live training.

    Gradient inversion (``idlg``, ``dlg``, ``ig``, ``fedavg_ig``) attacks what a curious
    server received; membership inference (``loss_threshold``, ``lira_online``,
    ``lira_offline``) attacks a client's upload (view ``server``) or the global model
    after a round (view ``client``). Uploads are attacked after every client-side
    protection (local DP, clipping) exactly as they reached the server.
    """

    _prefix: ClassVar[str] = "privacy_attack"

    kind: str = opt(
        "ig",
        "the attack",
        choices=(
            "idlg",
            "dlg",
            "ig",
            "fedavg_ig",
            "loss_threshold",
            "lira_online",
            "lira_offline",
        ),
    )
    view: str = opt(
        "server",
        "who attacks: server (one client's upload), server_sum (only the sum of the "
        "round's uploads, as under secure aggregation), client (the global model)",
        choices=("server", "server_sum", "client"),
    )
    rounds: tuple[int, ...] = opt((1,), "1-based rounds at which to attack", ge=1)
    targets: tuple[int, ...] = opt(
        (), "client ids to attack (server view); empty = the first reporting client", ge=0
    )
    iterations: int = opt(0, "attack optimiser steps; 0 = the kind's default", ge=0)
    restarts: int = opt(1, "random restarts of the inversion (vectorised)", ge=1)
    lr: float = opt(0.0, "attack step size; 0 = the method's default", ge=0.0)
    tv_weight: float = opt(1e-4, "total-variation weight (IG kinds)", ge=0.0)
    known_labels: bool = opt(False, "give the inversion the true labels (else recovered)")
    max_images: int = opt(
        16, "skip (and record why) a client that trained on more images than this", ge=1
    )
    num_members: int = opt(
        1000, "membership inference (client view): members drawn from the clients' data", ge=1
    )
    num_nonmembers: int = opt(
        1000, "membership inference: non-members drawn from the test split", ge=1
    )
    num_shadow: int = opt(16, "LiRA: shadow models (even)", ge=2)
    fix_variance: bool = opt(
        True, "LiRA: one global variance (Carlini et al.: better with fewer than ~64 shadows)"
    )
    seed: int = opt(0, "seed of the attack's own random draws", ge=0)
    grid: bool = opt(True, "write an image grid PNG (originals above, reconstructions below)")

    def __post_init__(self) -> None:
        super().__post_init__()
        inversion = self.kind in ("idlg", "dlg", "ig", "fedavg_ig")
        if inversion and self.view == "client":
            raise ConfigError(
                f"privacy_attack.kind = {self.kind!r} with view = 'client': gradient inversion "
                "needs an upload (view 'server' or 'server_sum'); a client sees only models"
            )
        if not inversion and self.view == "server_sum":
            raise ConfigError(
                f"privacy_attack.kind = {self.kind!r} with view = 'server_sum': membership "
                "inference attacks a model (view 'server': a client's local model; 'client': "
                "the global model)"
            )
        if self.kind == "fedavg_ig" and self.view != "server":
            raise ConfigError(
                "privacy_attack.kind = 'fedavg_ig' inverts one client's multi-step update: "
                "use view = 'server'"
            )
        if self.kind.startswith("lira") and self.num_shadow % 2:
            raise ConfigError(
                f"privacy_attack.num_shadow = {self.num_shadow} must be even: every candidate "
                "is in exactly half of the shadow models"
            )
        if not self.rounds:
            raise ConfigError("privacy_attack.rounds is empty: give at least one 1-based round")


@dataclass(frozen=True)
class ExperimentConfig(_Section):
    """A whole experiment: federation, training recipe, engine and outputs."""

    name: str = opt("quickstart", "experiment name (prefix of the run directory)")
    seed: int = opt(0, "master seed: every random draw derives from it", ge=0)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    secure: SecureConfig = field(default_factory=SecureConfig)
    fedre: FedREConfig = field(default_factory=FedREConfig)
    fedqsn: FedQSNConfig = field(default_factory=FedQSNConfig)
    privacy_attack: tuple[PrivacyAttackConfig, ...] = opt(
        (), "privacy attacks on the live run ([[privacy_attack]] entries)"
    )

    def __post_init__(self) -> None:
        """Field checks, then cross-field checks that no single field can make."""
        super().__post_init__()
        s, d = self.server, self.data
        if s.clients_per_round > d.num_clients:
            raise ConfigError(
                f"server.clients_per_round = {s.clients_per_round} is more than "
                f"data.num_clients = {d.num_clients}: allowed is 1..{d.num_clients} "
                "(or 0 with server.client_fraction)"
            )
        if s.clients_per_round == 0 and s.client_fraction == 0.0:
            raise ConfigError(
                "server.clients_per_round = 0 and server.client_fraction = 0.0: no client "
                "would ever be sampled; set clients_per_round >= 1 or client_fraction in (0, 1]"
            )
        if s.clients_per_round > 0 and s.client_fraction > 0.0:
            raise ConfigError(
                f"server.clients_per_round = {s.clients_per_round} and server.client_fraction "
                f"= {s.client_fraction} are both set: set only one (the other to 0)"
            )
        if self.train.lr_schedule == "cosine" and self.train.lr_min > self.train.lr:
            raise ConfigError(
                f"train.lr_min = {self.train.lr_min} is larger than train.lr = "
                f"{self.train.lr}: a cosine schedule decays from lr to lr_min <= lr"
            )

        a = self.attack
        if a.num_malicious > 0 and a.malicious_fraction > 0.0:
            raise ConfigError(
                f"attack.num_malicious = {a.num_malicious} and attack.malicious_fraction = "
                f"{a.malicious_fraction} are both set: set only one (the other to 0)"
            )
        if a.malicious_ids and (a.num_malicious > 0 or a.malicious_fraction > 0.0):
            raise ConfigError(
                "attack.malicious_ids is set together with attack.num_malicious or "
                "attack.malicious_fraction: give the ids or a count, not both"
            )
        bad = [i for i in a.malicious_ids if i >= d.num_clients]
        if bad or len(set(a.malicious_ids)) != len(a.malicious_ids):
            raise ConfigError(
                f"attack.malicious_ids = {list(a.malicious_ids)} must be distinct client ids in "
                f"0..{d.num_clients - 1}"
            )
        if a.num_malicious > d.num_clients:
            raise ConfigError(
                f"attack.num_malicious = {a.num_malicious} is more than data.num_clients = "
                f"{d.num_clients}"
            )
        if a.always_participate and self.num_malicious > self.sampled_per_round:
            raise ConfigError(
                f"attack.always_participate = true with {self.num_malicious} malicious clients "
                f"but only {self.sampled_per_round} clients sampled per round: sample at least "
                "as many clients per round as there are malicious clients"
            )
        if a.end_round and a.end_round < a.start_round:
            raise ConfigError(
                f"attack.end_round = {a.end_round} is before attack.start_round = {a.start_round}"
            )

        for i, pa in enumerate(self.privacy_attack):
            late = [r for r in pa.rounds if r > s.rounds]
            if late:
                raise ConfigError(
                    f"privacy_attack[{i}].rounds = {list(pa.rounds)}: round(s) {late} are after "
                    f"the last round ({s.rounds})"
                )
            bad_ids = [k for k in pa.targets if k >= d.num_clients]
            if bad_ids:
                raise ConfigError(
                    f"privacy_attack[{i}].targets = {list(pa.targets)}: ids {bad_ids} are not "
                    f"clients (0..{d.num_clients - 1})"
                )

        q = self.fedqsn
        if q.enabled:
            if s.aggregator != "mean":
                raise ConfigError(
                    f"fedqsn.enabled with server.aggregator = {s.aggregator!r}: FedQSN merges "
                    "the proxies' updates per coordinate, which needs server.aggregator = 'mean'"
                )
            if self.engine.backend == "fused" or self.privacy.dp_sgd:
                raise ConfigError(
                    "fedqsn.enabled trains every client from its own proxy: use "
                    "engine.backend = 'vmap', 'sequential' or 'auto' (and no privacy.dp_sgd)"
                )
            if self.secure.enabled:
                raise ConfigError(
                    "fedqsn.enabled with secure aggregation: the per-coordinate merge needs "
                    "each client's mask, which a secure sum hides; use secure.mode = 'none'"
                )

        p = self.privacy
        if p.mode == "central":
            if s.aggregator not in ("mean", "norm_bound"):
                raise ConfigError(
                    f"privacy.mode = 'central' with server.aggregator = {s.aggregator!r}: the "
                    "Gaussian noise is calibrated to one client's influence on the aggregate, "
                    "which only a clipped (norm-bounded) sum bounds; rules such as median, "
                    "Krum or FLAME select or reweight rows by their values, so one client can "
                    "move them by more than C. Use 'mean' or 'norm_bound'"
                )
            if s.weighting != "uniform":
                raise ConfigError(
                    "privacy.mode = 'central' needs server.weighting = 'uniform': sample-count "
                    "weights would let one client's weight, and so its sensitivity, exceed C"
                )
        if p.mode in ("central", "distributed") and p.accountant == "pld" and s.sampling == "fixed":
            raise ConfigError(
                "privacy.accountant = 'pld' cannot account server.sampling = 'fixed' "
                "(sampling without replacement is only supported by the RDP accountant of "
                "dp-accounting): use privacy.accountant = 'rdp' or server.sampling = 'poisson'"
            )
        if p.budget_epsilon > 0 and p.mode == "none" and not p.dp_sgd:
            raise ConfigError(
                "privacy.budget_epsilon is set but no DP is on: set privacy.mode or privacy.dp_sgd"
            )
        if p.audit_canaries > 0 and p.adaptive_clipping:
            raise ConfigError(
                "privacy.audit_canaries with privacy.adaptive_clipping: the canaries are "
                "inserted at the initial clip norm, so once C adapts the audit no longer tests "
                "the mechanism that ran; audit with a fixed clip norm"
            )
        if p.mode in ("fedre", "ldp_fed") and p.dp_sgd:
            raise ConfigError(
                f"privacy.mode = {p.mode!r} with privacy.dp_sgd = true: FedRE's per-sample "
                "clipping is fedre.clip_mode = 'sample'; switch dp_sgd off"
            )
        if p.audit_canaries > 0 and p.mode != "central":
            raise ConfigError(
                "privacy.audit_canaries needs privacy.mode = 'central': the audit tests the "
                "noised aggregate the server releases"
            )

        self._check_secure()

    def _check_secure(self) -> None:
        """Cross-field checks of ``[secure]`` and distributed DP."""
        sec, s, p = self.secure, self.server, self.privacy
        if sec.enabled:
            for i, pa in enumerate(self.privacy_attack):
                if pa.view == "server":
                    raise ConfigError(
                        f"privacy_attack[{i}].view = 'server' with secure.mode = {sec.mode!r}: "
                        "under secure aggregation the server never holds a client's upload, "
                        "only sums; use view = 'server_sum' (or 'client')"
                    )
            if sec.group_size == 0 and s.aggregator not in SUM_RULES:
                raise ConfigError(
                    f"server.aggregator = {s.aggregator!r} with secure.group_size = 0: the "
                    "server receives a single sum per round, and a robust rule needs several "
                    "rows to compare; set secure.group_size = g >= 2 (the rule then runs over "
                    f"the group sums) or use one of {', '.join(SUM_RULES)}"
                )
            few = self.sampled_per_round < 2 * sec.group_size
            if sec.group_size > 0 and s.aggregator not in SUM_RULES and few:
                raise ConfigError(
                    f"server.aggregator = {s.aggregator!r} with secure.group_size = "
                    f"{sec.group_size} and {self.sampled_per_round} clients per round: "
                    "fewer than 2 groups, so the robust rule would see one row; lower "
                    "group_size or sample more clients"
                )
            if s.aggregator == "foolsgold" and sec.enabled:
                raise ConfigError(
                    "server.aggregator = 'foolsgold' keeps a history per client; under secure "
                    "aggregation the rows are sums over fresh random groups every round, so "
                    "there is no client to keep a history of: use median, trimmed_mean, "
                    "multi_krum, krum, bulyan, geometric_median, flame, dnc or signguard"
                )
            if p.mode == "central" and sec.stage_dropout > 0:
                raise ConfigError(
                    "privacy.mode = 'central' with secure.stage_dropout > 0: central DP "
                    "divides the sum by the clients that uploaded, which SecAgg+ dropouts "
                    "change after the fact; use privacy.mode = 'distributed'"
                )
        if p.mode == "distributed":
            if not sec.enabled:
                raise ConfigError(
                    "privacy.mode = 'distributed' needs secure aggregation (secure.mode = "
                    "'secagg', 'ckks' or 'paillier'): each client adds only a share of the "
                    "noise, so without it the server would see every less-noisy upload"
                )
            if s.weighting != "uniform":
                raise ConfigError(
                    "privacy.mode = 'distributed' needs server.weighting = 'uniform': weights "
                    "would scale one client's influence on a sum beyond privacy.clip_norm"
                )
            if sec.norm_bound > 0:
                raise ConfigError(
                    "secure.norm_bound with privacy.mode = 'distributed': the DP clip already "
                    "bounds every upload's norm (privacy.clip_norm), and rescaling a noised "
                    "share afterwards would shrink the noise; set secure.norm_bound = 0"
                )
            if p.adaptive_clipping:
                raise ConfigError(
                    "privacy.adaptive_clipping is not supported with privacy.mode = "
                    "'distributed' (the clipped-count release would need its own secure sum)"
                )

    @property
    def sample_rate(self) -> float:
        """Client sampling rate q of a round (the fraction, or clients per round / clients)."""
        if self.server.clients_per_round > 0:
            return self.server.clients_per_round / self.data.num_clients
        return self.server.client_fraction

    @property
    def num_malicious(self) -> int:
        """Number of malicious clients in the federation."""
        a = self.attack
        if a.malicious_ids:
            return len(a.malicious_ids)
        if a.num_malicious > 0:
            return a.num_malicious
        return round(a.malicious_fraction * self.data.num_clients)

    @property
    def sampled_per_round(self) -> int:
        """Number of clients sampled each round."""
        if self.server.clients_per_round > 0:
            return self.server.clients_per_round
        return max(1, round(self.server.client_fraction * self.data.num_clients))

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain nested dicts (JSON/TOML serialisable)."""
        return _lists(dataclasses.asdict(self))


def _lists(node: Any) -> Any:
    """Tuples as lists, recursively, so that the dict equals its JSON round trip."""
    if isinstance(node, dict):
        return {k: _lists(v) for k, v in node.items()}
    if isinstance(node, tuple | list):
        return [_lists(v) for v in node]
    return node
