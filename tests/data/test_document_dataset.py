"""DocumentDataset: the documents as an engine dataset (segmentation task, PSI regions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedshield.data import (
    DocumentDataset,
    document_dataset,
    generate_documents,
    load_dataset,
    load_documents,
    psi_region_mask,
)


@pytest.fixture(scope="module")
def small() -> DocumentDataset:
    return load_documents(num_train=12, num_test=4, num_public=3, size=(32, 64))


def test_fields_match_the_document_sets(small: DocumentDataset) -> None:
    assert small.task == "segmentation"
    assert small.num_classes == 2
    assert small.x_train.shape == (12, 1, 32, 64) and small.x_train.dtype == torch.float32
    assert small.y_train.shape == (12, 32, 64) and small.y_train.dtype == torch.int64
    assert torch.equal(small.y_train, (small.train_docs.masks[:, 0] > 0.5).long())
    assert small.public is not None and len(small.public) == 3
    for i in range(12):
        expect = psi_region_mask(small.train_docs.psi_boxes[i], (32, 64))
        assert torch.equal(small.psi_train[i], expect)
    # strata: the format code of each document, used by label-aware partitioners
    assert small.num_strata == len(small.format_names) == 4
    codes = [small.format_names[int(c)] for c in small.strata]
    assert codes == list(small.formats_train)


def test_sets_are_disjoint_and_deterministic(small: DocumentDataset) -> None:
    again = load_documents(num_train=12, num_test=4, num_public=3, size=(32, 64))
    assert again is small  # cached per argument tuple
    fresh = load_documents(num_train=12, num_test=4, num_public=3, size=[32, 64], seed=0)
    assert torch.equal(fresh.x_train, small.x_train)
    other = load_documents(num_train=12, num_test=4, num_public=3, size=(32, 64), seed=1)
    assert not torch.equal(other.x_train, small.x_train)
    train = {tuple(f.items()) for f in small.train_docs.fields}
    test = {tuple(f.items()) for f in small.test_docs.fields}
    assert not train & test


def test_registered_dataset_and_errors() -> None:
    ds = load_dataset("documents")
    assert isinstance(ds, DocumentDataset) and ds.num_train == 400 and ds.num_test == 100
    assert float(ds.y_train.float().mean()) > 0.005  # tamper_span 3: learnable positives
    with pytest.raises(ValueError, match="num_train"):
        load_documents(num_train=0)
    with pytest.raises(ValueError, match="num_public"):
        load_documents(num_public=-1)
    with pytest.raises(ValueError, match="size"):
        load_documents(size=(8, 8))
    a = generate_documents(2, seed=0, size=(32, 64))
    b = generate_documents(2, seed=0, size=(64, 128))
    with pytest.raises(ValueError, match="different image shapes"):
        document_dataset(a, b)
    with pytest.raises(ValueError, match="empty"):
        document_dataset(a.subset([]), a)


def test_tamper_span_extends_edits_to_neighbouring_digits() -> None:
    one = generate_documents(30, seed=4, tamper_fraction=1.0)
    three = generate_documents(30, seed=4, tamper_fraction=1.0, tamper_span=3)
    assert float(three.masks.sum()) > 1.8 * float(one.masks.sum())
    # the untampered content is the same document
    assert [f for f in one.fields] == [f for f in three.fields]
    with pytest.raises(ValueError, match="tamper_span"):
        generate_documents(2, tamper_span=0)


def test_trace_marks_only_tampered_pixels() -> None:
    plain = generate_documents(6, seed=2, tamper_fraction=1.0, trace=0.0)
    traced = generate_documents(6, seed=2, tamper_fraction=1.0, trace=1.0)
    diff = (plain.images - traced.images).abs()[:, 0]
    inside = plain.masks[:, 0] > 0.5
    far = torch.nn.functional.max_pool2d(plain.masks, 9, stride=1, padding=4)[:, 0] == 0
    assert float(diff[inside].mean()) > 0.03  # darker and noisier where pasted
    assert float(diff[far].max()) == 0.0  # untouched away from the edits
    assert torch.equal(plain.masks, traced.masks)
    with pytest.raises(ValueError, match="trace"):
        generate_documents(2, trace=1.5)


def test_partition_by_format(small: DocumentDataset) -> None:
    from fedshield.config import from_dict
    from fedshield.engine.loop import build_federation

    cfg = from_dict(
        {
            "data": {
                "dataset": "documents",
                "num_clients": 3,
                "partition": "dirichlet",
                "alpha": 0.1,
            },
            "server": {"clients_per_round": 3},
        }
    )
    fed = build_federation(cfg, small)
    assert sorted(np.concatenate(fed.clients).tolist()) == list(range(12))
    assert len(fed.stats["label_histograms"][0]) == 4  # histograms over formats
