"""Membership-inference attack scores and their evaluation metrics.

Every score follows one convention: **higher = more likely a member** (a training example).

Loss threshold. Yeom, Giacomelli, Fredrikson, Jha. "Privacy Risk in Machine Learning:
Analyzing the Connection to Overfitting." CSF 2018.

    score(x, y) = -CE(f(x), y) = log p_y                  (member if score >= -tau)

LiRA. Carlini, Chien, Nasr, Song, Terzis, Tramèr. "Membership Inference Attacks From
First Principles." IEEE S&P 2022. The statistic is the logit-scaled confidence of the true
class, computed stably from logits z:

    phi = log(p_y / (1 - p_y)) = log p_y - log sum_{y' != y} p_{y'}
        = z_y - logsumexp_{y' != y} z_{y'}

Shadow models trained with (IN) and without (OUT) each example give per-example samples of
phi; Gaussians are fitted to them per example: mu = per-example mean (the reference code
``tensorflow/privacy research/mi_lira_2021`` uses the median), sigma = per-example standard
deviation (population, ddof=0), or with ``fix_variance=True`` one global sigma per side, the
pooled within-example std sqrt(mean_i var_i) (the paper's "fixed variance" variant, better
with few shadow models; the reference code instead takes ``np.std`` over all values and, for
online, std(IN) for both sides). sigma is floored at 1e-30 as in the reference code.

    online(x)  = log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2)
    offline(x) = -log Pr[Z >= phi],  Z ~ N(mu_out, s_out^2)
               = -log Phi(-(phi - mu_out) / s_out)         (one-sided test, >= 0)

The offline score is a monotone transform of the paper's Lambda = 1 - Pr[Z > phi]; the
-log survival form keeps resolution when phi is far above the OUT distribution.

Metrics (Carlini et al. recommend TPR at low FPR, e.g. 0.1%, on a log-log ROC):
``roc_auc``, ``tpr_at_fpr`` (largest TPR with FPR <= the target, from
``sklearn.metrics.roc_curve`` with all thresholds) and ``balanced_accuracy``
(max over thresholds of (TPR + 1 - FPR) / 2 = (1 + max advantage) / 2).
"""

from __future__ import annotations

import math
from typing import TypeAlias

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score, roc_curve
from torch import Tensor

ScoresLike: TypeAlias = Tensor | np.ndarray | list[float]

_SIGMA_FLOOR = 1e-30
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _scores(x: ScoresLike, name: str) -> np.ndarray:
    arr = x.detach().cpu().to(torch.float64).numpy() if isinstance(x, Tensor) else np.asarray(x)
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite values")
    return arr


def _labelled(
    scores_members: ScoresLike, scores_nonmembers: ScoresLike
) -> tuple[np.ndarray, np.ndarray]:
    m = _scores(scores_members, "scores_members")
    n = _scores(scores_nonmembers, "scores_nonmembers")
    y = np.concatenate([np.ones(m.size), np.zeros(n.size)])
    return y, np.concatenate([m, n])


def _roc(scores_members: ScoresLike, scores_nonmembers: ScoresLike) -> tuple[np.ndarray, ...]:
    y, s = _labelled(scores_members, scores_nonmembers)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr


def roc_auc(scores_members: ScoresLike, scores_nonmembers: ScoresLike) -> float:
    """Area under the ROC curve of an attack score (higher score = member).

    Args:
        scores_members: ``[n_in]`` scores of true members.
        scores_nonmembers: ``[n_out]`` scores of true non-members.

    Returns:
        AUC in ``[0, 1]`` (``sklearn.metrics.roc_auc_score``); 0.5 = chance.

    Raises:
        ValueError: Either input empty, not 1-D or non-finite.
    """
    y, s = _labelled(scores_members, scores_nonmembers)
    return float(roc_auc_score(y, s))


def tpr_at_fpr(scores_members: ScoresLike, scores_nonmembers: ScoresLike, fpr: float) -> float:
    """Largest true-positive rate over thresholds whose false-positive rate is <= ``fpr``.

    Args:
        scores_members: ``[n_in]`` scores of true members.
        scores_nonmembers: ``[n_out]`` scores of true non-members.
        fpr: Target false-positive rate in ``[0, 1]`` (e.g. 0.001); resolvable only down to
            ``1 / n_out``.

    Returns:
        ``max{TPR(t) : FPR(t) <= fpr}`` over all thresholds t of ``roc_curve``.

    Raises:
        ValueError: Bad scores (as :func:`roc_auc`) or ``fpr`` outside ``[0, 1]``.
    """
    if not (0.0 <= fpr <= 1.0):
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    f, t = _roc(scores_members, scores_nonmembers)
    # roc_curve starts at (0, 0) (threshold +inf), so the set is never empty
    return float(t[f <= fpr].max())


def balanced_accuracy(scores_members: ScoresLike, scores_nonmembers: ScoresLike) -> float:
    """Best balanced attack accuracy over thresholds: ``max_t (TPR + 1 - FPR) / 2``.

    Args:
        scores_members: ``[n_in]`` scores of true members.
        scores_nonmembers: ``[n_out]`` scores of true non-members.

    Returns:
        Value in ``[0.5, 1]``; equals ``(1 + max advantage) / 2`` with advantage = TPR - FPR.

    Raises:
        ValueError: Bad scores (as :func:`roc_auc`).
    """
    f, t = _roc(scores_members, scores_nonmembers)
    return float(np.max((t + 1.0 - f) / 2.0))


def _check_logits(logits: Tensor, labels: Tensor) -> None:
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must have shape [n, n_classes >= 2], got {tuple(logits.shape)}")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must have shape [{logits.shape[0]}] to match logits, got {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[1] - 1}]")
    if not torch.isfinite(logits).all():
        raise ValueError("logits have non-finite values")


def loss_threshold_scores(logits: Tensor, labels: Tensor) -> Tensor:
    """Yeom et al. (2018) loss-threshold score: minus the per-sample cross-entropy.

    Args:
        logits: ``[n, n_classes]`` model outputs (pre-softmax).
        labels: ``[n]`` integer true classes.

    Returns:
        ``[n]`` scores ``-CE = log p_y``; higher = more likely a member.

    Raises:
        ValueError: Bad shapes, non-integer or out-of-range labels, non-finite logits.
    """
    _check_logits(logits, labels)
    return -F.cross_entropy(logits, labels.long(), reduction="none")


def logit_confidence(logits: Tensor, labels: Tensor) -> Tensor:
    """LiRA's logit-scaled true-class confidence ``phi = log(p_y / (1 - p_y))``, stably.

    Computed as ``z_y - logsumexp_{y' != y} z_{y'}`` (the shared log-partition cancels), so
    it stays finite when ``p_y`` rounds to 1 or 0.

    Args:
        logits: ``[n, n_classes]`` model outputs (pre-softmax).
        labels: ``[n]`` integer true classes.

    Returns:
        ``[n]`` phi, in the logits' dtype.

    Raises:
        ValueError: As :func:`loss_threshold_scores`.
    """
    _check_logits(logits, labels)
    idx = labels.long().unsqueeze(1)
    z_y = logits.gather(1, idx).squeeze(1)
    others = logits.scatter(1, idx, -math.inf)
    return z_y - torch.logsumexp(others, dim=1)


def _as_tensor(x: Tensor | np.ndarray, name: str, ndim: int) -> Tensor:
    t = (
        x.detach().to(torch.float64)
        if isinstance(x, Tensor)
        else torch.as_tensor(np.asarray(x, dtype=np.float64))
    )
    if t.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} has non-finite values")
    return t


def _gaussian(shadow: Tensor, n: int, name: str, fix_variance: bool) -> tuple[Tensor, Tensor]:
    if shadow.shape[0] != n:
        raise ValueError(
            f"{name} must have shape [n_examples={n}, n_shadow], got {tuple(shadow.shape)}"
        )
    if shadow.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 shadow models per example to fit a std")
    mu = shadow.mean(dim=1)
    var = shadow.var(dim=1, unbiased=False)
    sigma = var.mean().sqrt().expand(n) if fix_variance else var.sqrt()
    return mu, sigma.clamp_min(_SIGMA_FLOOR)


def _log_normal_pdf(x: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    return -0.5 * ((x - mu) / sigma) ** 2 - sigma.log() - _LOG_SQRT_2PI


def lira_online_scores(
    target_conf: Tensor | np.ndarray,
    in_confs: Tensor | np.ndarray,
    out_confs: Tensor | np.ndarray,
    *,
    fix_variance: bool = False,
) -> Tensor:
    """Online LiRA (Carlini et al. 2022): Gaussian likelihood ratio of IN vs OUT shadows.

    Args:
        target_conf: ``[n]`` phi of the target model on each example (see
            :func:`logit_confidence`).
        in_confs: ``[n, k_in]`` phi of shadow models trained WITH each example.
        out_confs: ``[n, k_out]`` phi of shadow models trained WITHOUT each example.
        fix_variance: One pooled sigma per side instead of per-example sigmas.

    Returns:
        ``[n]`` float64 scores ``log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)``;
        higher = member.

    Raises:
        ValueError: Wrong ranks, mismatched n, fewer than 2 shadows per side, non-finite.
    """
    phi = _as_tensor(target_conf, "target_conf", 1)
    n = phi.shape[0]
    mu_in, s_in = _gaussian(_as_tensor(in_confs, "in_confs", 2), n, "in_confs", fix_variance)
    mu_out, s_out = _gaussian(_as_tensor(out_confs, "out_confs", 2), n, "out_confs", fix_variance)
    return _log_normal_pdf(phi, mu_in, s_in) - _log_normal_pdf(phi, mu_out, s_out)


def lira_offline_scores(
    target_conf: Tensor | np.ndarray,
    out_confs: Tensor | np.ndarray,
    *,
    fix_variance: bool = False,
) -> Tensor:
    """Offline LiRA (Carlini et al. 2022): one-sided test of phi against the OUT Gaussian.

    Args:
        target_conf: ``[n]`` phi of the target model on each example.
        out_confs: ``[n, k_out]`` phi of shadow models trained WITHOUT each example.
        fix_variance: One pooled sigma instead of per-example sigmas.

    Returns:
        ``[n]`` float64 scores ``-log Pr[Z >= phi] = -log_ndtr(-(phi - mu_out) / s_out)``,
        Z ~ N(mu_out, s_out^2); >= 0, higher = member.

    Raises:
        ValueError: Wrong ranks, mismatched n, fewer than 2 shadows, non-finite.
    """
    phi = _as_tensor(target_conf, "target_conf", 1)
    n = phi.shape[0]
    mu_out, s_out = _gaussian(_as_tensor(out_confs, "out_confs", 2), n, "out_confs", fix_variance)
    return -torch.special.log_ndtr(-(phi - mu_out) / s_out)
