"""Datasets and federated partitioners.

* :mod:`fedshield.data.datasets` -- :class:`Dataset`, bundled loaders (``"mnist"``,
  ``"digits"``) in the :data:`DATASETS` registry, and :func:`from_arrays` for user data.
* :mod:`fedshield.data.partition` -- pure, seeded index partitioners (``"iid"``,
  ``"dirichlet"``, ``"shards"``) in the :data:`PARTITIONERS` registry, and
  :func:`client_stats`.
"""

from fedshield.data.datasets import (
    DATASETS,
    MNIST_MEAN,
    MNIST_STD,
    Dataset,
    from_arrays,
    load_dataset,
    load_digits,
    load_mnist,
)
from fedshield.data.partition import (
    PARTITIONERS,
    Partitioner,
    client_stats,
    dirichlet,
    iid,
    partition,
    shards,
)

__all__ = [
    "DATASETS",
    "MNIST_MEAN",
    "MNIST_STD",
    "PARTITIONERS",
    "Dataset",
    "Partitioner",
    "client_stats",
    "dirichlet",
    "from_arrays",
    "iid",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "partition",
    "shards",
]
