"""Datasets and federated partitioners.

* :mod:`fedshield.data.datasets` -- :class:`Dataset`, bundled loaders (``"mnist"``,
  ``"digits"``) in the :data:`DATASETS` registry, and :func:`from_arrays` for user data.
* :mod:`fedshield.data.partition` -- pure, seeded index partitioners (``"iid"``,
  ``"dirichlet"``, ``"shards"``) in the :data:`PARTITIONERS` registry, and
  :func:`client_stats`.
* :mod:`fedshield.data.documents` -- synthetic scanned documents with privacy-sensitive
  (PSI) boxes and tamper masks (FedRE's task), a loader for user document folders, and
  :class:`DocumentDataset` (the ``"documents"`` segmentation dataset).
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
    DocumentDataset,
    DocumentSet,
    document_dataset,
    generate_documents,
    load_document_folder,
    load_documents,
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
    "DocumentDataset",
    "DocumentSet",
    "Partitioner",
    "client_stats",
    "dirichlet",
    "document_dataset",
    "from_arrays",
    "generate_documents",
    "iid",
    "load_dataset",
    "load_digits",
    "load_document_folder",
    "load_documents",
    "load_mnist",
    "partition",
    "psi_region_mask",
    "shards",
]
