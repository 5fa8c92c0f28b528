"""Partitioners: split a labelled dataset's indices over federated clients.

Every partitioner is a pure function of the labels, the number of clients and an explicit
``numpy.random.Generator``. It returns one sorted int64 index array per client; the arrays
are disjoint and (for the three bundled schemes) together cover every index exactly once.

* :func:`iid` -- uniform random split, sizes differ by at most one.
* :func:`dirichlet` -- label skew drawn from a Dirichlet distribution (Yurochkin et al.
  2019; Hsu et al. 2019), as implemented in NIID-Bench (Li et al. 2022) and FedLab.
* :func:`shards` -- the pathological non-IID split of McMahan et al. (2017).

:func:`partition` dispatches by name through :data:`PARTITIONERS` from an integer seed,
and :func:`client_stats` summarises a split in JSON-serialisable form.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = [
    "PARTITIONERS",
    "Partitioner",
    "client_stats",
    "dirichlet",
    "iid",
    "partition",
    "shards",
]

Partitioner = Callable[..., list[np.ndarray]]
"""``(labels, num_clients, *, rng, **options) -> list of index arrays``."""

_MAX_DIRICHLET_ATTEMPTS = 1000


# --------------------------------------------------------------------------- validation


def _as_labels(labels: Any) -> np.ndarray:
    """Returns ``labels`` as a validated 1-D non-negative integer numpy array."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D with shape [N], got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"labels must hold integer class labels, got dtype {y.dtype}")
    if y.size == 0:
        raise ValueError("labels is empty; need at least 1 sample to partition")
    if int(y.min()) < 0:
        raise ValueError(f"labels must be >= 0, found {int(y.min())}")
    return y


def _check_int(value: Any, arg: str, low: int, high: int | None, what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{arg} must be an int, got {value!r}")
    v = int(value)
    if v < low or (high is not None and v > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{arg} must be {allowed}{what}, got {v}")
    return v


def _check_num_clients(num_clients: Any, n: int) -> int:
    return _check_int(num_clients, "num_clients", 1, n, f" (the number of samples is {n})")


def _finish(parts: list[np.ndarray]) -> list[np.ndarray]:
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


# --------------------------------------------------------------------------- schemes


def iid(labels: Any, num_clients: int, *, rng: np.random.Generator) -> list[np.ndarray]:
    """Splits indices uniformly at random into ``num_clients`` near-equal parts.

    The indices are shuffled and cut with ``np.array_split``, so client sizes differ by at
    most one (60,000 samples over 100 clients gives exactly 600 each). This is the IID
    setting of McMahan et al., "Communication-Efficient Learning of Deep Networks from
    Decentralized Data", AISTATS 2017.

    Args:
        labels: Integer labels ``[N]`` (only their number is used).
        num_clients: Number of clients, ``1 <= num_clients <= N``.
        rng: Source of randomness.

    Returns:
        One sorted int64 index array per client; disjoint, covering ``range(N)``.

    Raises:
        ValueError: On invalid labels or ``num_clients``.
    """
    y = _as_labels(labels)
    k = _check_num_clients(num_clients, y.size)
    return _finish(np.array_split(rng.permutation(y.size), k))


def dirichlet(
    labels: Any,
    num_clients: int,
    *,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 1,
) -> list[np.ndarray]:
    """Label-skewed split with per-class client shares drawn from ``Dir(alpha)``.

    For every class ``c`` the class's indices are shuffled, client shares
    ``p ~ Dir(alpha * 1_K)`` are drawn, and the indices are cut at the cumulative shares.
    As in the NIID-Bench / FedLab implementation, a client that already holds at least
    ``N / K`` samples gets share 0 for the classes that follow (the shares are
    renormalised; if every remaining share is exactly 0 the unmasked draw is used). The
    whole draw is repeated until every client holds at least ``min_size`` samples.
    Small ``alpha`` gives strong label skew; ``alpha -> inf`` approaches IID.

    References:
        M. Yurochkin et al., "Bayesian Nonparametric Federated Learning of Neural
        Networks", ICML 2019. T.-M. H. Hsu, H. Qi, M. Brown, "Measuring the Effects of
        Non-Identical Data Distribution for Federated Visual Classification",
        arXiv:1909.06335, 2019. Q. Li, Y. Diao, Q. Chen, B. He, "Federated Learning on
        Non-IID Data Silos: An Experimental Study" (NIID-Bench), ICDE 2022.

    Args:
        labels: Integer labels ``[N]``.
        num_clients: Number of clients ``K``, ``1 <= K <= N``.
        alpha: Dirichlet concentration, ``> 0``.
        rng: Source of randomness.
        min_size: Smallest number of samples every client must receive, ``>= 0`` and
            ``K * min_size <= N``.

    Returns:
        One sorted int64 index array per client; disjoint, covering ``range(N)``.

    Raises:
        ValueError: On invalid arguments, or if no draw in 1,000 attempts gives every
            client ``min_size`` samples (``alpha`` too small for that many clients).
    """
    y = _as_labels(labels)
    n = y.size
    k = _check_num_clients(num_clients, n)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.integer | np.floating):
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    a = float(alpha)
    if not (np.isfinite(a) and a > 0):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha}")
    m = _check_int(min_size, "min_size", 0, n // k, f" (num_clients={k}, samples={n})")

    class_indices = [np.flatnonzero(y == c) for c in np.unique(y)]
    cap = n / k
    for _ in range(_MAX_DIRICHLET_ATTEMPTS):
        buckets: list[list[np.ndarray]] = [[] for _ in range(k)]
        sizes = np.zeros(k, dtype=np.int64)
        for members in class_indices:
            idx_c = rng.permutation(members)
            p = rng.dirichlet(np.full(k, a))
            masked = p * (sizes < cap)
            total = masked.sum()
            p = masked / total if total > 0 else p / p.sum()
            cuts = (np.cumsum(p) * idx_c.size).astype(np.int64)[:-1]
            for j, chunk in enumerate(np.split(idx_c, cuts)):
                buckets[j].append(chunk)
                sizes[j] += chunk.size
        if int(sizes.min()) >= m:
            return _finish([np.concatenate(b) for b in buckets])
    raise ValueError(
        f"dirichlet partition: no draw in {_MAX_DIRICHLET_ATTEMPTS} attempts gave every one "
        f"of the {k} clients at least min_size={m} samples with alpha={a} over {n} samples "
        f"and {len(class_indices)} classes; raise alpha, lower min_size or use fewer clients"
    )


def shards(
    labels: Any,
    num_clients: int,
    *,
    shards_per_client: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Pathological non-IID split: each client gets a few label-sorted shards.

    The indices are shuffled, stably sorted by label (so ties are in random order), cut
    into ``num_clients * shards_per_client`` contiguous shards with ``np.array_split``
    (equal when the count divides ``N``, otherwise sizes differ by one), and each client
    receives ``shards_per_client`` shards chosen at random without replacement. With
    MNIST, 100 clients and 2 shards per client this is the 200 shards of 300 of the paper.

    Reference:
        B. McMahan, E. Moore, D. Ramage, S. Hampson, B. Agüera y Arcas,
        "Communication-Efficient Learning of Deep Networks from Decentralized Data",
        AISTATS 2017, Section 3.

    Args:
        labels: Integer labels ``[N]``.
        num_clients: Number of clients ``K``, ``>= 1``.
        shards_per_client: Shards per client ``S``, ``>= 1`` and ``K * S <= N``.
        rng: Source of randomness.

    Returns:
        One sorted int64 index array per client; disjoint, covering ``range(N)``.

    Raises:
        ValueError: On invalid arguments.
    """
    y = _as_labels(labels)
    n = y.size
    k = _check_num_clients(num_clients, n)
    s = _check_int(
        shards_per_client,
        "shards_per_client",
        1,
        n // k,
        f" so that num_clients * shards_per_client <= {n} samples (num_clients={k})",
    )
    perm = rng.permutation(n)
    order = perm[np.argsort(y[perm], kind="stable")]
    pieces = np.array_split(order, k * s)
    assignment = rng.permutation(k * s).reshape(k, s)
    return _finish([np.concatenate([pieces[i] for i in row]) for row in assignment])


# --------------------------------------------------------------------------- registry

PARTITIONERS: dict[str, Partitioner] = {
    "iid": iid,
    "dirichlet": dirichlet,
    "shards": shards,
}
"""Registry: name -> partitioner ``(labels, num_clients, *, rng, **options)``.

:func:`partition` passes each partitioner only the options (``alpha``,
``shards_per_client``, ``min_size``) its signature names, so a registered function may
accept any subset of them.
"""


def partition(
    labels: Any,
    num_clients: int,
    *,
    method: str,
    seed: int,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    min_size: int = 1,
) -> list[np.ndarray]:
    """Partitions sample indices over clients with a registered scheme.

    Args:
        labels: Integer labels ``[N]`` (numpy array, torch tensor or sequence).
        num_clients: Number of clients.
        method: A key of :data:`PARTITIONERS` (``"iid"``, ``"dirichlet"``, ``"shards"``).
        seed: Seed of the ``numpy.random.default_rng`` the partitioner draws from; the
            same seed gives the same partition.
        alpha: Dirichlet concentration (``"dirichlet"`` only).
        shards_per_client: Shards per client (``"shards"`` only).
        min_size: Minimum client size (``"dirichlet"`` only).

    Returns:
        One sorted int64 index array per client.

    Raises:
        ValueError: If ``method`` is unknown (the message lists the known names) or an
            argument is invalid.
    """
    try:
        fn = PARTITIONERS[method]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown partition method {method!r}; known methods: {', '.join(sorted(PARTITIONERS))}"
        ) from None
    options: dict[str, Any] = {
        "alpha": alpha,
        "shards_per_client": shards_per_client,
        "min_size": min_size,
    }
    params = inspect.signature(fn).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {key: v for key, v in options.items() if accepts_any or key in params}
    return fn(labels, num_clients, rng=np.random.default_rng(seed), **kwargs)


def client_stats(labels: Any, parts: list[np.ndarray], num_classes: int) -> dict[str, Any]:
    """Summarises a partition: client sizes and per-client label histograms.

    Args:
        labels: Integer labels ``[N]`` the partition indexes into.
        parts: One index array per client.
        num_classes: Number of classes; every label must lie in ``[0, num_classes)``.

    Returns:
        A JSON-serialisable dict (plain Python ints and floats) with keys
        ``num_clients``, ``sizes``, ``label_histograms`` (one list of ``num_classes``
        counts per client), ``size_mean``, ``size_std`` (population, ``ddof=0``),
        ``size_min`` and ``size_max``.

    Raises:
        ValueError: On invalid labels, an empty ``parts``, indices out of range or a
            label ``>= num_classes``.
    """
    y = _as_labels(labels)
    c = _check_int(num_classes, "num_classes", 1, None)
    if int(y.max()) >= c:
        raise ValueError(
            f"labels hold label {int(y.max())} but num_classes={c}; labels must lie in [0, {c})"
        )
    if len(parts) == 0:
        raise ValueError("parts is empty; need at least one client")
    sizes: list[int] = []
    hists: list[list[int]] = []
    for i, p in enumerate(parts):
        idx = np.asarray(p)
        if idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= y.size):
            raise ValueError(
                f"parts[{i}] must hold integer indices in [0, {y.size}), "
                f"got dtype {idx.dtype}, range [{idx.min()}, {idx.max()}]"
            )
        idx = idx.astype(np.int64, copy=False)
        sizes.append(int(idx.size))
        hists.append([int(v) for v in np.bincount(y[idx], minlength=c)])
    arr = np.asarray(sizes, dtype=np.float64)
    return {
        "num_clients": len(parts),
        "sizes": sizes,
        "label_histograms": hists,
        "size_mean": float(arr.mean()),
        "size_std": float(arr.std()),
        "size_min": int(arr.min()),
        "size_max": int(arr.max()),
    }
