"""Tests for fedshield.metrics.membership (attack metrics, loss threshold, LiRA)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedshield.metrics import (
    balanced_accuracy,
    lira_offline_scores,
    lira_online_scores,
    logit_confidence,
    loss_threshold_scores,
    roc_auc,
    tpr_at_fpr,
)

# Thresholds t: 0.8 -> TPR 2/3, FPR 0; 0.7 -> 2/3, 1/4; 0.4 -> 1, 1/4; 0.3 -> 1, 2/4 ...
MEMBERS = [0.9, 0.8, 0.4]
NONMEMBERS = [0.7, 0.3, 0.2, 0.1]


def _brute_force_tpr_at_fpr(m: np.ndarray, n: np.ndarray, fpr: float) -> float:
    best = 0.0  # threshold +inf: TPR = FPR = 0
    for t in np.unique(np.concatenate([m, n])):
        if np.mean(n >= t) <= fpr:
            best = max(best, float(np.mean(m >= t)))
    return best


def test_metrics_hand_computed() -> None:
    # Execute / Assert: AUC = (4 + 4 + 3) / 12 pairs won; best balanced acc at t = 0.4
    assert roc_auc(MEMBERS, NONMEMBERS) == pytest.approx(11 / 12, abs=1e-12)
    assert tpr_at_fpr(MEMBERS, NONMEMBERS, 0.0) == pytest.approx(2 / 3, abs=1e-12)
    assert tpr_at_fpr(MEMBERS, NONMEMBERS, 0.2) == pytest.approx(2 / 3, abs=1e-12)
    assert tpr_at_fpr(MEMBERS, NONMEMBERS, 0.25) == pytest.approx(1.0, abs=1e-12)
    assert balanced_accuracy(MEMBERS, NONMEMBERS) == pytest.approx((1 + 0.75) / 2, abs=1e-12)


def test_perfectly_separated_scores() -> None:
    # Prepare
    m, n = torch.tensor([2.0, 3.0, 4.0]), np.array([-1.0, 0.0, 1.0])

    # Execute / Assert
    assert roc_auc(m, n) == 1.0
    assert tpr_at_fpr(m, n, 0.0) == 1.0
    assert balanced_accuracy(m, n) == 1.0


def test_identical_distributions_near_chance() -> None:
    # Prepare: 20k vs 20k draws of N(0, 1); AUC std ~ sqrt(1/(3*20000)) ~ 0.004
    rng = np.random.default_rng(0)
    m, n = rng.normal(size=20_000), rng.normal(size=20_000)

    # Execute
    auc = roc_auc(m, n)

    # Assert: 0.02 = 5 standard errors
    assert auc == pytest.approx(0.5, abs=0.02)
    assert balanced_accuracy(m, n) < 0.53


@given(
    m=st.lists(st.integers(0, 8), min_size=1, max_size=15),
    n=st.lists(st.integers(0, 8), min_size=1, max_size=15),
    fpr=st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.5, 0.9, 1.0]),
)
@settings(max_examples=60, deadline=None)
def test_tpr_at_fpr_matches_brute_force(m: list[int], n: list[int], fpr: float) -> None:
    # Prepare: small integer scores -> many ties
    ma, na = np.array(m, dtype=float), np.array(n, dtype=float)

    # Execute
    ours = tpr_at_fpr(ma, na, fpr)

    # Assert
    assert ours == pytest.approx(_brute_force_tpr_at_fpr(ma, na, fpr), abs=1e-12)


def test_metric_bad_input() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="scores_members is empty"):
        roc_auc([], [0.1])
    with pytest.raises(ValueError, match="scores_nonmembers must be 1-D"):
        balanced_accuracy([0.1], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        roc_auc([np.nan], [0.1])
    with pytest.raises(ValueError, match=r"fpr must be in \[0, 1\]"):
        tpr_at_fpr(MEMBERS, NONMEMBERS, 1.5)


def test_loss_threshold_is_minus_cross_entropy() -> None:
    # Prepare: logits [0, ln 3] -> p = [1/4, 3/4]
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    labels = torch.tensor([1, 0])

    # Execute
    scores = loss_threshold_scores(logits, labels)

    # Assert: log p_y
    torch.testing.assert_close(scores, torch.tensor([math.log(0.75), math.log(0.25)]))


def test_logit_confidence_matches_naive_formula() -> None:
    # Prepare
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 10, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 10, (50,), generator=g)
    p = logits.softmax(dim=1).gather(1, labels[:, None]).squeeze(1)

    # Execute
    phi = logit_confidence(logits, labels)

    # Assert
    torch.testing.assert_close(phi, torch.log(p / (1 - p)), rtol=1e-10, atol=1e-10)


def test_logit_confidence_finite_when_p_is_one() -> None:
    # Prepare: float32 p_y rounds to exactly 1 (and to 0 for the second row)
    logits = torch.tensor([[60.0, 0.0, 0.0], [-60.0, 0.0, 0.0]])
    labels = torch.tensor([0, 0])
    p = logits.softmax(dim=1)[:, 0]
    assert p[0] == 1.0  # naive log(p / (1 - p)) = inf

    # Execute
    phi = logit_confidence(logits, labels)

    # Assert: z_y - log(e^0 + e^0)
    torch.testing.assert_close(phi, torch.tensor([60.0 - math.log(2), -60.0 - math.log(2)]))


def test_logit_input_rejected() -> None:
    # Prepare
    logits = torch.zeros(3, 4)

    # Execute / Assert
    with pytest.raises(ValueError, match="labels must lie in"):
        logit_confidence(logits, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="integer class indices"):
        loss_threshold_scores(logits, torch.zeros(3))
    with pytest.raises(ValueError, match=r"labels must have shape \[3\]"):
        logit_confidence(logits, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="logits must have shape"):
        logit_confidence(torch.zeros(3), torch.tensor([0, 1, 2]))


def test_lira_hand_computed() -> None:
    # Prepare: IN shadows [1, 3] -> N(2, 1); OUT shadows [-1, 1] -> N(0, 1) (population std)
    ins = torch.tensor([[1.0, 3.0], [1.0, 3.0]])
    outs = torch.tensor([[-1.0, 1.0], [-1.0, 1.0]])
    phi = torch.tensor([1.0, 2.0])

    # Execute
    online = lira_online_scores(phi, ins, outs)
    offline = lira_offline_scores(torch.tensor([0.0, 1.0]), outs)

    # Assert: online = -(phi-2)^2/2 + phi^2/2; offline = -log Pr[Z >= phi]
    torch.testing.assert_close(online, torch.tensor([0.0, 2.0], dtype=torch.float64))
    sf1 = 0.5 * math.erfc(1 / math.sqrt(2))
    torch.testing.assert_close(
        offline, torch.tensor([math.log(2.0), -math.log(sf1)], dtype=torch.float64)
    )


def test_lira_fix_variance_uses_pooled_sigma() -> None:
    # Prepare: per-example variances 1 and 4 -> pooled sigma sqrt(2.5); means 2 and 2
    outs = np.array([[1.0, 3.0], [0.0, 4.0]])
    phi = np.array([2.0 + math.sqrt(2.5), 2.0 + math.sqrt(2.5)])

    # Execute
    fixed = lira_offline_scores(phi, outs, fix_variance=True)
    per_example = lira_offline_scores(phi, outs)

    # Assert: both one sigma above the mean under the pooled sigma
    sf1 = 0.5 * math.erfc(1 / math.sqrt(2))
    torch.testing.assert_close(fixed, torch.full((2,), -math.log(sf1), dtype=torch.float64))
    assert per_example[0] > per_example[1]


def _synthetic_lira(
    spread: float, seed: int = 0, n: int = 2000, k: int = 16
) -> tuple[torch.Tensor, ...]:
    """Members' phi ~ N(d_i + 2, 1), non-members' ~ N(d_i, 1); d_i ~ N(0, spread^2)."""
    g = torch.Generator().manual_seed(seed)
    d = spread * torch.randn(2 * n, generator=g, dtype=torch.float64)
    member = torch.arange(2 * n) < n
    phi = d + 2.0 * member + torch.randn(2 * n, generator=g, dtype=torch.float64)
    ins = d[:, None] + 2.0 + torch.randn(2 * n, k, generator=g, dtype=torch.float64)
    outs = d[:, None] + torch.randn(2 * n, k, generator=g, dtype=torch.float64)
    return phi, ins, outs, member


def test_lira_separates_gaussian_members() -> None:
    # Prepare: no per-example difficulty; ideal AUC = Phi(2 / sqrt(2)) = 0.92
    phi, ins, outs, member = _synthetic_lira(spread=0.0)

    # Execute
    online = lira_online_scores(phi, ins, outs)
    offline = lira_offline_scores(phi, outs)

    # Assert
    assert roc_auc(online[member], online[~member]) > 0.85
    assert roc_auc(offline[member], offline[~member]) > 0.85


def test_lira_online_beats_loss_threshold_at_low_fpr() -> None:
    # Prepare: per-example difficulty d_i ~ N(0, 3^2) hides membership from a global
    # threshold (ideal AUC Phi(2 / sqrt(20)) = 0.67) but not from per-example Gaussians.
    phi, ins, outs, member = _synthetic_lira(spread=3.0, seed=1)
    # two-class logits [0, phi] with label 1 have exactly this logit-scaled confidence
    logits = torch.stack([torch.zeros_like(phi), phi], dim=1)
    labels = torch.ones(phi.shape[0], dtype=torch.long)
    torch.testing.assert_close(logit_confidence(logits, labels), phi)

    # Execute
    loss = loss_threshold_scores(logits, labels)
    online = lira_online_scores(phi, ins, outs)
    offline = lira_offline_scores(phi, outs, fix_variance=True)

    # Assert
    auc_loss = roc_auc(loss[member], loss[~member])
    auc_online = roc_auc(online[member], online[~member])
    tpr_loss = tpr_at_fpr(loss[member], loss[~member], 0.01)
    tpr_online = tpr_at_fpr(online[member], online[~member], 0.01)
    assert auc_loss < 0.72
    assert auc_online > 0.85
    assert roc_auc(offline[member], offline[~member]) > 0.85
    assert tpr_online > 2.5 * tpr_loss
    assert tpr_online > 0.15


def test_lira_bad_input() -> None:
    # Prepare
    phi, shadows = torch.zeros(3), torch.zeros(3, 4)

    # Execute / Assert
    with pytest.raises(ValueError, match=r"out_confs must have shape \[n_examples=3"):
        lira_offline_scores(phi, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="at least 2 shadow models"):
        lira_online_scores(phi, torch.zeros(3, 1), shadows)
    with pytest.raises(ValueError, match="target_conf must be 1-D"):
        lira_online_scores(shadows, shadows, shadows)
    with pytest.raises(ValueError, match="in_confs has non-finite"):
        lira_online_scores(phi, torch.full((3, 4), math.inf), shadows)
