"""Datasets and federated partitioners.

* :mod:`fedshield.data.datasets` -- :class:`Dataset`, bundled loaders (``"mnist"``,
  ``"digits"``) in the :data:`DATASETS` registry, and :func:`from_arrays` for user data.
* :mod:`fedshield.data.partition` -- pure, seeded index partitioners (``"iid"``,
  ``"dirichlet"``, ``"shards"``) in the :data:`PARTITIONERS` registry, and
  :func:`client_stats`.
* :mod:`fedshield.data.documents` -- synthetic scanned documents with privacy-sensitive
  (PSI) boxes and tamper masks (FedRE's task), and a loader for user document folders.
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
from fedshield.data.documents import (
    DOCUMENT_FORMATS,
    DocumentSet,
    generate_documents,
    load_document_folder,
    psi_region_mask,
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
    "DOCUMENT_FORMATS",
    "MNIST_MEAN",
    "MNIST_STD",
    "PARTITIONERS",
    "Dataset",
    "DocumentSet",
    "Partitioner",
    "client_stats",
    "dirichlet",
    "from_arrays",
    "generate_documents",
    "iid",
    "load_dataset",
    "load_digits",
    "load_document_folder",
    "load_mnist",
    "partition",
    "psi_region_mask",
    "shards",
]
