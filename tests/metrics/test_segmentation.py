"""Tests for fedshield.metrics.segmentation (IoU / precision / recall / F1 of a mask)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import jaccard_score, precision_recall_fscore_support

from fedshield.metrics.segmentation import confusion_counts, segmentation_scores


def _sklearn(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Micro scores of the positive class on flattened masks, with our 0/0 convention."""
    p, t = pred.reshape(-1).astype(int), target.reshape(-1).astype(int)
    zero_div = 1.0 if not (p.any() or t.any()) else 0.0
    prec, rec, f1, _ = precision_recall_fscore_support(
        t, p, average="binary", pos_label=1, zero_division=zero_div
    )
    iou = jaccard_score(t, p, average="binary", pos_label=1, zero_division=zero_div)
    return {
        "precision": prec,
        "recall": rec,
        "f1": f1,
        "iou": iou,
        "pixel_accuracy": (p == t).mean(),
    }


def test_hand_case() -> None:
    # Prepare: one 2x3 image
    #   target 1 1 0    pred 1 0 1     -> TP 2 (0,0),(1,1); FP 2 (0,2),(1,0); FN 1 (0,1); TN 1
    #          0 1 0         1 1 0
    target = torch.tensor([[[1, 1, 0], [0, 1, 0]]])
    pred = torch.tensor([[[1, 0, 1], [1, 1, 0]]])

    # Execute
    counts = confusion_counts(pred, target)
    scores = segmentation_scores(pred, target)

    # Assert: IoU 2/5, P 2/4, R 2/3, F1 = 2 * 2 / (4 + 2 + 1) = 4/7, accuracy 3/6
    assert counts == {"tp": 2, "fp": 2, "fn": 1, "tn": 1}
    assert math.isclose(scores["iou"], 0.4)
    assert math.isclose(scores["precision"], 0.5)
    assert math.isclose(scores["recall"], 2 / 3)
    assert math.isclose(scores["f1"], 4 / 7)
    assert math.isclose(scores["pixel_accuracy"], 0.5)
    assert math.isclose(scores["iou_per_image_mean"], 0.4)


def test_empty_cases() -> None:
    zeros = torch.zeros(2, 4, 4, dtype=torch.int64)
    some = zeros.clone()
    some[0, 1, 1] = 1
    # all empty: perfect by convention
    s = segmentation_scores(zeros, zeros)
    assert s == {
        "iou": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "pixel_accuracy": 1.0,
        "iou_per_image_mean": 1.0,
    }
    # nothing predicted, one positive in target: precision 0 (0/0), recall 0, iou/f1 0
    s = segmentation_scores(zeros, some)
    assert (s["iou"], s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0, 0.0)
    assert math.isclose(s["pixel_accuracy"], 31 / 32)
    # one predicted, target empty: recall 0 (0/0), everything else 0
    s = segmentation_scores(some, zeros)
    assert (s["iou"], s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0, 0.0)
    # both agree on the single positive: perfect; the empty image 1 is left out of the mean
    s = segmentation_scores(some, some)
    assert s["iou"] == s["f1"] == s["iou_per_image_mean"] == 1.0
    for pred, target in ((zeros, zeros), (zeros, some), (some, zeros), (some, some)):
        ref = _sklearn(pred.numpy(), target.numpy())
        got = segmentation_scores(pred, target)
        for key, value in ref.items():
            assert math.isclose(got[key], value), key


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_on_random_masks(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(4, 16, 12, generator=gen) < 0.3
    pred = torch.rand(4, 16, 12, generator=gen) < 0.4
    got = segmentation_scores(pred, target)
    ref = _sklearn(pred.numpy(), target.numpy())
    for key, value in ref.items():
        assert math.isclose(got[key], value, rel_tol=1e-12), key
    # per-image mean: every image has positives here
    per = [
        jaccard_score(t.reshape(-1), p.reshape(-1))
        for p, t in zip(pred.numpy(), target.numpy(), strict=True)
    ]
    assert math.isclose(got["iou_per_image_mean"], float(np.mean(per)), rel_tol=1e-12)


def test_logits_and_mask_formats() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 2, 8, 8, generator=gen)
    labels = logits.argmax(dim=1)
    target = (torch.rand(3, 8, 8, generator=gen) < 0.5).to(torch.int64)
    expected = segmentation_scores(labels, target)
    # logits [N, K, H, W]; float [N, 1, H, W] target mask; bool target
    assert segmentation_scores(logits, target) == expected
    assert segmentation_scores(logits, target.float().unsqueeze(1)) == expected
    assert segmentation_scores(labels.bool(), target.bool()) == expected
    # multi-class label map, positive label 2
    multi = torch.tensor([[[0, 2, 2], [1, 2, 0]]])
    truth = torch.tensor([[[2, 2, 0], [1, 1, 0]]])
    assert confusion_counts(multi, truth, positive=2) == {"tp": 1, "fp": 2, "fn": 1, "tn": 2}


def test_per_image_mean_skips_empty_images() -> None:
    # image 0: IoU 1/2; image 1: empty in both (skipped); image 2: IoU 1
    target = torch.zeros(3, 2, 2, dtype=torch.int64)
    pred = torch.zeros_like(target)
    target[0, 0, 0] = pred[0, 0, 0] = pred[0, 0, 1] = 1
    target[2, 1, 1] = pred[2, 1, 1] = 1
    s = segmentation_scores(pred, target)
    assert math.isclose(s["iou_per_image_mean"], 0.75)
    assert math.isclose(s["iou"], 2 / 3)


def test_validation() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        segmentation_scores(torch.full((1, 2, 2), 0.7), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="same"):
        segmentation_scores(torch.zeros(1, 2, 2), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="positive"):
        segmentation_scores(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), positive=True)
    with pytest.raises(ValueError, match="target"):
        segmentation_scores(torch.zeros(1, 2, 2), torch.zeros(1, 3, 2, 2))
