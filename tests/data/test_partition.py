"""Tests for fedshield.data.partition: hand-made splits, statistics, determinism, errors."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
import torch

from fedshield.data import PARTITIONERS, client_stats, dirichlet, iid, partition, shards


def _balanced_labels(num_classes: int, per_class: int) -> np.ndarray:
    return np.repeat(np.arange(num_classes), per_class).astype(np.int64)


def _assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    """Every part is sorted int64; parts are disjoint and cover range(n)."""
    for p in parts:
        assert p.dtype == np.int64
        assert np.all(np.diff(p) > 0), "indices must be strictly increasing (sorted, unique)"
    allidx = np.concatenate(parts)
    assert allidx.size == n, "parts overlap or miss indices"
    np.testing.assert_array_equal(np.sort(allidx), np.arange(n))


# --------------------------------------------------------------------------- iid


def test_iid_sizes_mnist_like() -> None:
    labels = np.zeros(60000, dtype=np.int64)
    parts = iid(labels, 100, rng=np.random.default_rng(0))
    assert [p.size for p in parts] == [600] * 100
    _assert_exact_cover(parts, 60000)


def test_iid_uneven_sizes_differ_by_at_most_one() -> None:
    parts = iid(np.zeros(10, dtype=np.int64), 3, rng=np.random.default_rng(1))
    assert sorted(p.size for p in parts) == [3, 3, 4]
    _assert_exact_cover(parts, 10)


def test_iid_one_sample_per_client() -> None:
    parts = iid(np.arange(5), 5, rng=np.random.default_rng(2))
    assert sorted(int(p[0]) for p in parts) == [0, 1, 2, 3, 4]
    assert all(p.size == 1 for p in parts)


def test_iid_accepts_torch_labels() -> None:
    labels = torch.arange(20) % 4
    a = iid(labels, 4, rng=np.random.default_rng(3))
    b = iid(labels.numpy(), 4, rng=np.random.default_rng(3))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- shards


def test_shards_hand_computed_one_shard_per_client() -> None:
    # Sorted by label, 3 shards of 2: {0,1} (label 0), {2,3} (label 1), {4,5} (label 2).
    labels = np.array([0, 0, 1, 1, 2, 2])
    parts = shards(labels, 3, shards_per_client=1, rng=np.random.default_rng(0))
    got = sorted(tuple(p.tolist()) for p in parts)
    assert got == [(0, 1), (2, 3), (4, 5)]


def test_shards_hand_computed_unsorted_labels() -> None:
    # Label 1 sits at indices {0, 3}, label 0 at {1, 4}, label 2 at {2, 5}; one pure shard each.
    labels = np.array([1, 0, 2, 1, 0, 2])
    parts = shards(labels, 3, shards_per_client=1, rng=np.random.default_rng(5))
    got = sorted(tuple(p.tolist()) for p in parts)
    assert got == [(0, 3), (1, 4), (2, 5)]


def test_shards_at_most_shards_per_client_labels() -> None:
    # 10 classes x 20 samples, 10 clients x 2 shards of 10: every shard has a single label.
    labels = _balanced_labels(10, 20)
    parts = shards(labels, 10, shards_per_client=2, rng=np.random.default_rng(0))
    _assert_exact_cover(parts, labels.size)
    for p in parts:
        assert p.size == 20
        assert np.unique(labels[p]).size <= 2


def test_shards_mnist_like_sizes_and_cover() -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 10, size=60000)
    parts = shards(labels, 100, shards_per_client=2, rng=np.random.default_rng(0))
    assert [p.size for p in parts] == [600] * 100
    _assert_exact_cover(parts, 60000)
    # Two shards of 300 consecutive sorted labels span at most 2 + 2 labels.
    assert max(np.unique(labels[p]).size for p in parts) <= 4


def test_shards_uneven_count_still_covers_everything() -> None:
    labels = _balanced_labels(3, 7)  # 21 samples, 4 shards -> sizes 6,5,5,5
    parts = shards(labels, 2, shards_per_client=2, rng=np.random.default_rng(0))
    _assert_exact_cover(parts, 21)
    assert sorted(p.size for p in parts) == [10, 11]


# --------------------------------------------------------------------------- dirichlet


def test_dirichlet_single_client_gets_everything() -> None:
    labels = _balanced_labels(3, 5)
    (part,) = dirichlet(labels, 1, alpha=0.1, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(part, np.arange(15))


def test_dirichlet_tiny_alpha_two_classes_hand_computed() -> None:
    # alpha=1e-6: a class goes whole to one client (a split has probability ~1e-5). The
    # first class fills one client up to the cap N/K = 50, which then gets share 0 for the
    # second class, so the only result with no empty client is one class per client.
    labels = _balanced_labels(2, 50)
    parts = dirichlet(labels, 2, alpha=1e-6, rng=np.random.default_rng(0))
    got = sorted(tuple(p.tolist()) for p in parts)
    assert got == [tuple(range(50)), tuple(range(50, 100))]


def test_dirichlet_tiny_alpha_is_skewed() -> None:
    labels = _balanced_labels(10, 200)
    parts = dirichlet(labels, 10, alpha=0.01, rng=np.random.default_rng(0))
    _assert_exact_cover(parts, labels.size)
    hist = np.array(client_stats(labels, parts, 10)["label_histograms"])  # [client, class]
    # Share of each class held by its largest holder: IID gives ~0.1, alpha=0.01 near 1
    # (the bound 0.75 held for each of seeds 0..199; the lowest was 0.80).
    max_share = hist.max(axis=0) / hist.sum(axis=0)
    assert max_share.mean() >= 0.75
    # Most clients hold few classes (IID: all 10).
    assert np.median((hist > 0).sum(axis=1)) <= 3


def test_dirichlet_huge_alpha_is_near_uniform() -> None:
    labels = _balanced_labels(10, 1000)
    parts = dirichlet(labels, 5, alpha=1e5, rng=np.random.default_rng(0))
    _assert_exact_cover(parts, labels.size)
    hist = np.array(client_stats(labels, parts, 10)["label_histograms"])
    # Expected 200 per (client, class); Dirichlet std ~0.6 sample, plus 1 for rounding.
    assert np.abs(hist - 200).max() <= 5


def test_dirichlet_respects_min_size() -> None:
    labels = _balanced_labels(10, 100)
    parts = dirichlet(labels, 20, alpha=0.3, rng=np.random.default_rng(4), min_size=10)
    _assert_exact_cover(parts, labels.size)
    assert min(p.size for p in parts) >= 10


def test_dirichlet_impossible_min_size_raises() -> None:
    # One class and alpha tiny: nearly all samples go to one client in every draw.
    labels = np.zeros(100, dtype=np.int64)
    with pytest.raises(ValueError, match=r"no draw in 1000 attempts.*alpha=1e-06"):
        dirichlet(labels, 10, alpha=1e-6, rng=np.random.default_rng(0), min_size=5)


# --------------------------------------------------------------------------- dispatch


@pytest.mark.parametrize("method", ["iid", "dirichlet", "shards"])
def test_partition_deterministic_and_seed_sensitive(method: str) -> None:
    labels = np.random.default_rng(0).integers(0, 10, size=3000)
    a = partition(labels, 30, method=method, seed=11)
    b = partition(labels, 30, method=method, seed=11)
    c = partition(labels, 30, method=method, seed=12)
    assert len(a) == 30
    _assert_exact_cover(a, 3000)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c, strict=True))


def test_partition_matches_direct_call() -> None:
    labels = _balanced_labels(5, 40)
    via = partition(labels, 4, method="dirichlet", seed=3, alpha=0.2, min_size=2)
    direct = dirichlet(labels, 4, alpha=0.2, rng=np.random.default_rng(3), min_size=2)
    for x, y in zip(via, direct, strict=True):
        np.testing.assert_array_equal(x, y)
    via = partition(labels, 4, method="shards", seed=3, shards_per_client=5)
    direct = shards(labels, 4, shards_per_client=5, rng=np.random.default_rng(3))
    for x, y in zip(via, direct, strict=True):
        np.testing.assert_array_equal(x, y)


def test_partition_passes_only_named_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def halves(
        labels: np.ndarray, num_clients: int, *, rng: np.random.Generator, alpha: float
    ) -> list[np.ndarray]:
        seen["alpha"] = alpha
        return np.array_split(np.arange(len(labels), dtype=np.int64), num_clients)

    monkeypatch.setitem(PARTITIONERS, "halves", halves)
    parts = partition(np.zeros(4, dtype=np.int64), 2, method="halves", seed=0, alpha=0.7)
    assert [p.tolist() for p in parts] == [[0, 1], [2, 3]]
    assert seen == {"alpha": 0.7}


def test_partition_unknown_method_lists_known() -> None:
    with pytest.raises(ValueError, match=r"unknown partition method 'pathological'.*dirichlet"):
        partition(np.zeros(4, dtype=np.int64), 2, method="pathological", seed=0)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda r: iid(np.zeros(5, np.int64), 0, rng=r), r"num_clients must be in \[1, 5\].*got 0"),
        (lambda r: iid(np.zeros(5, np.int64), 6, rng=r), r"num_clients must be in \[1, 5\].*got 6"),
        (lambda r: iid(np.zeros(5, np.int64), 2.0, rng=r), r"num_clients must be an int"),  # type: ignore[arg-type]
        (lambda r: iid(np.zeros((2, 2), np.int64), 1, rng=r), r"labels must be 1-D"),
        (lambda r: iid(np.zeros(3), 1, rng=r), r"labels must hold integer.*float64"),
        (lambda r: iid(np.array([], np.int64), 1, rng=r), r"labels is empty"),
        (lambda r: iid(np.array([0, -1]), 1, rng=r), r"labels must be >= 0, found -1"),
        (
            lambda r: dirichlet(np.zeros(5, np.int64), 2, alpha=0.0, rng=r),
            r"alpha must be a finite number > 0, got 0.0",
        ),
        (
            lambda r: dirichlet(np.zeros(5, np.int64), 2, alpha=float("inf"), rng=r),
            r"alpha must be a finite number > 0",
        ),
        (
            lambda r: dirichlet(np.zeros(5, np.int64), 2, alpha=1.0, rng=r, min_size=3),
            r"min_size must be in \[0, 2\].*got 3",
        ),
        (
            lambda r: shards(np.zeros(10, np.int64), 3, shards_per_client=0, rng=r),
            r"shards_per_client must be in \[1, 3\].*got 0",
        ),
        (
            lambda r: shards(np.zeros(10, np.int64), 3, shards_per_client=4, rng=r),
            r"shards_per_client must be in \[1, 3\].*num_clients \* shards_per_client <= 10",
        ),
    ],
)
def test_validation_errors(call: Callable[[np.random.Generator], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(np.random.default_rng(0))


# --------------------------------------------------------------------------- client_stats


def test_client_stats_hand_computed_and_json() -> None:
    labels = np.array([0, 1, 1, 2, 2, 3])
    parts = [np.array([0, 1]), np.array([2, 3, 4, 5])]
    stats = client_stats(labels, parts, 4)
    assert stats == {
        "num_clients": 2,
        "sizes": [2, 4],
        "label_histograms": [[1, 1, 0, 0], [0, 1, 2, 1]],
        "size_mean": 3.0,
        "size_std": 1.0,
        "size_min": 2,
        "size_max": 4,
    }
    assert json.loads(json.dumps(stats)) == stats
    assert all(type(v) is int for v in stats["sizes"])
    assert type(stats["size_mean"]) is float


def test_client_stats_errors() -> None:
    labels = np.array([0, 1, 2])
    with pytest.raises(ValueError, match=r"label 2 but num_classes=2"):
        client_stats(labels, [np.array([0])], 2)
    with pytest.raises(ValueError, match=r"parts\[1\] must hold integer indices in \[0, 3\)"):
        client_stats(labels, [np.array([0]), np.array([3])], 3)
    with pytest.raises(ValueError, match=r"parts is empty"):
        client_stats(labels, [], 3)
