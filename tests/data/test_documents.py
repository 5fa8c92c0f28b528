"""Tests for fedshield.data.documents: generator, PSI boxes, tamper masks, user folders."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedshield.data import documents as docs_module
from fedshield.data.documents import (
    DOCUMENT_FORMATS,
    DocumentSet,
    generate_documents,
    load_document_folder,
    psi_region_mask,
)

# Expected PSI run keys per format (ID form: the name and the ID number's last 4 digits).
PSI_KEYS = {
    "receipt": ("card_last4",),
    "invoice": ("name", "account"),
    "id_form": ("name", "id_last4"),
    "contract": ("name",),
}


@pytest.fixture(scope="module")
def docs() -> DocumentSet:
    return generate_documents(24, seed=3)


@pytest.fixture(scope="module")
def specs() -> list[docs_module._DocSpec]:
    return docs_module._document_specs(24, 3, (64, 128), DOCUMENT_FORMATS, 0.5, 0.02)


# --------------------------------------------------------------------------- generator


def test_shapes_dtypes_ranges(docs: DocumentSet) -> None:
    assert len(docs) == 24
    assert docs.images.shape == (24, 1, 64, 128) and docs.images.dtype == torch.float32
    assert docs.masks.shape == (24, 1, 64, 128)
    assert docs.images.min() >= 0.0 and docs.images.max() <= 1.0
    assert set(docs.masks.unique().tolist()) <= {0.0, 1.0}
    assert docs.tampered.dtype == torch.bool and docs.tampered.shape == (24,)
    assert int(docs.tampered.sum()) == 12
    assert docs.formats == tuple(DOCUMENT_FORMATS[i % 4] for i in range(24))
    assert len(docs.psi_boxes) == len(docs.fields) == 24
    for fmt, boxes in zip(docs.formats, docs.psi_boxes, strict=True):
        assert len(boxes) == len(PSI_KEYS[fmt])


def test_deterministic_and_seed_dependent(docs: DocumentSet) -> None:
    again = generate_documents(24, seed=3)
    assert torch.equal(again.images, docs.images)
    assert torch.equal(again.masks, docs.masks)
    assert torch.equal(again.tampered, docs.tampered)
    assert again.psi_boxes == docs.psi_boxes and again.fields == docs.fields
    other = generate_documents(24, seed=4)
    assert not torch.equal(other.images, docs.images)
    assert other.fields != docs.fields


def test_generator_leaves_global_random_state_alone() -> None:
    np.random.seed(123)
    torch.manual_seed(123)
    expected_np, expected_torch = np.random.rand(), torch.rand(1)
    np.random.seed(123)
    torch.manual_seed(123)
    generate_documents(4, seed=0)
    assert np.random.rand() == expected_np
    assert torch.equal(torch.rand(1), expected_torch)


def test_field_values_are_plausible(docs: DocumentSet) -> None:
    for fmt, f in zip(docs.formats, docs.fields, strict=True):
        if fmt == "id_form":
            assert f["id_number"].isdigit() and 9 <= len(f["id_number"]) <= 12
            assert f["id_number"].endswith(f["id_last4"]) and len(f["id_last4"]) == 4
            assert len(f["name"].split()) == 2
        elif fmt == "receipt":
            assert f["card_last4"].isdigit() and len(f["card_last4"]) == 4
            assert float(f["total"]) == pytest.approx(float(f["price1"]) + float(f["price2"]))
        elif fmt == "invoice":
            assert f["account"].isdigit() and f["invoice_no"].isdigit()
        else:
            assert f["paragraph1"] and len(f["name"].split()) == 2


def test_two_hundred_documents_are_fast() -> None:
    start = time.perf_counter()
    generate_documents(200, seed=0)
    assert time.perf_counter() - start < 10.0


@pytest.mark.parametrize("size", [(32, 64), (96, 160), (128, 256)])
def test_other_sizes(size: tuple[int, int]) -> None:
    ds = generate_documents(4, seed=1, size=size, tamper_fraction=1.0)
    assert ds.images.shape == (4, 1, *size)
    assert bool(ds.tampered.all())
    for boxes in ds.psi_boxes:
        psi_region_mask(boxes, size)  # raises if a box leaves the image


def test_format_subset_and_tamper_fraction_extremes() -> None:
    ds = generate_documents(5, seed=0, formats=("id_form",), tamper_fraction=0.0)
    assert ds.formats == ("id_form",) * 5
    assert not bool(ds.tampered.any()) and float(ds.masks.sum()) == 0.0


# --------------------------------------------------------------------------- PSI boxes


def test_psi_boxes_inside_image_and_inked(docs: DocumentSet) -> None:
    for i, boxes in enumerate(docs.psi_boxes):
        background = float(docs.images[i].median())
        for top, left, h, w in boxes:
            assert h > 0 and w > 0 and top >= 0 and left >= 0
            assert top + h <= 64 and left + w <= 128
            patch = docs.images[i, 0, top : top + h, left : left + w]
            # Ink present: clearly darker than the paper somewhere in the box.
            assert float(patch.min()) < background - 0.3


def test_psi_boxes_cover_exactly_the_intended_text(specs: list[docs_module._DocSpec]) -> None:
    for spec in specs:
        full, _, boxes = docs_module._render(spec, tamper=False, effects=False)
        paper = 1.0
        for key, (top, left, h, w) in zip(PSI_KEYS[spec.fmt], boxes, strict=True):
            assert spec.psi_keys == PSI_KEYS[spec.fmt]
            without, _, boxes2 = docs_module._render(spec, omit=(key,), tamper=False, effects=False)
            assert boxes2 == boxes
            inside = np.zeros(full.shape, dtype=bool)
            inside[top : top + h, left : left + w] = True
            diff = np.abs(full - without)
            # The field's ink lies entirely inside its box ...
            assert diff[inside].max() > 0.3
            assert diff[~inside].max() < 0.02, (spec.fmt, key)
            # ... and without the field the box is blank paper (no other text in it). The
            # last 4 ID digits directly follow the prefix digits, so the box's left column
            # may share an output pixel with the preceding digit's antialiased edge.
            first = left + 1 if key == "id_last4" else left
            assert without[top : top + h, first : left + w].min() > paper - 0.1, (spec.fmt, key)


def test_psi_boxes_follow_rotation(specs: list[docs_module._DocSpec]) -> None:
    rotated = [s for s in specs if s.angle != 0.0]
    assert rotated
    for spec in rotated[:4]:
        full, _, boxes = docs_module._render(spec, tamper=False, effects=False)
        for key, (top, left, h, w) in zip(spec.psi_keys, boxes, strict=True):
            without, _, _ = docs_module._render(spec, omit=(key,), tamper=False, effects=False)
            inside = np.zeros(full.shape, dtype=bool)
            inside[top : top + h, left : left + w] = True
            diff = np.abs(full - without)
            assert diff[~inside].sum() <= 0.02 * diff.sum()


def test_psi_region_mask_union_half_open() -> None:
    m = psi_region_mask([(1, 2, 3, 4), (2, 3, 1, 1), (0, 0, 1, 1)], (8, 10))
    assert m.dtype == torch.bool and m.shape == (8, 10)
    assert int(m.sum()) == 12 + 1
    assert bool(m[1, 2]) and bool(m[3, 5]) and not bool(m[4, 5]) and not bool(m[3, 6])
    assert int(psi_region_mask([], (4, 4)).sum()) == 0


@pytest.mark.parametrize(
    "box", [(0, 0, 5, 1), (0, 0, 1, 11), (-1, 0, 1, 1), (0, 0, 0, 2), (0, 0, 1), (0.5, 0, 1, 1)]
)
def test_psi_region_mask_rejects_bad_boxes(box: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="box"):
        psi_region_mask([box], (4, 10))  # type: ignore[list-item]


# --------------------------------------------------------------------------- tampering


def test_untampered_masks_are_zero_and_tampered_nonzero(docs: DocumentSet) -> None:
    areas = docs.masks.flatten(1).sum(1)
    assert bool((areas[~docs.tampered] == 0).all())
    assert bool((areas[docs.tampered] > 0).all())
    # A digit-sized region, far from the whole page.
    assert float(areas[docs.tampered].max()) < 0.05 * 64 * 128


def test_tamper_changes_pixels_where_the_mask_is(specs: list[docs_module._DocSpec]) -> None:
    tampered = [s for s in specs if s.tamper_ops]
    assert len(tampered) == 12
    kinds = {op["kind"] for s in tampered for op in s.tamper_ops}
    assert kinds == {"copy_move", "splice"}
    for spec in tampered:
        img, mask, _ = docs_module._render(spec)
        clean, clean_mask, _ = docs_module._render(spec, tamper=False)
        assert clean_mask.sum() == 0 and mask.sum() > 0
        m = mask > 0.5
        grown = m.copy()  # mask dilated by one pixel (feathered edge + scan blur)
        grown[1:] |= m[:-1]
        grown[:-1] |= m[1:]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        diff = np.abs(img - clean)
        assert diff[m].max() > 0.1, spec.tamper_ops
        assert diff[~grown].max() < 0.05
        assert diff[grown].sum() >= 0.9 * diff.sum()


# --------------------------------------------------------------------------- subset


def test_subset(docs: DocumentSet) -> None:
    sub = docs.subset([3, 0])
    assert len(sub) == 2 and sub.formats == (docs.formats[3], docs.formats[0])
    assert torch.equal(sub.images[0], docs.images[3]) and sub.fields[1] == docs.fields[0]
    by_mask = docs.subset(docs.tampered)
    assert len(by_mask) == 12 and bool(by_mask.tampered.all())
    assert len(docs.subset(slice(0, 5))) == 5
    assert len(docs.subset(torch.tensor([1, 2]))) == 2
    with pytest.raises(ValueError, match="out of range"):
        docs.subset([24])
    with pytest.raises(ValueError, match="boolean index"):
        docs.subset(torch.ones(3, dtype=torch.bool))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num": 0}, "num"),
        ({"num": 2.5}, "num"),
        ({"size": (16, 128)}, "size"),
        ({"size": (64,)}, "size"),
        ({"size": (64.5, 128)}, "size"),
        ({"formats": ("receipt", "passport")}, "passport"),
        ({"formats": ()}, "formats"),
        ({"tamper_fraction": 1.5}, "tamper_fraction"),
        ({"tamper_fraction": -0.1}, "tamper_fraction"),
        ({"noise": -1.0}, "noise"),
    ],
)
def test_generate_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"num": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate_documents(**args)  # type: ignore[arg-type]


def test_too_narrow_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="too small or too narrow"):
        generate_documents(1, size=(256, 32))


# --------------------------------------------------------------------------- user folders


def _write_folder(root: Path, n: int = 3, hw: tuple[int, int] = (40, 60)) -> tuple[Path, Path]:
    imgs, masks = root / "images", root / "masks"
    imgs.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = rng.integers(0, 256, hw, dtype=np.uint8)
        Image.fromarray(arr).convert("RGB").save(imgs / f"doc{i}.png")
        m = np.zeros(hw, dtype=np.uint8)
        if i == 1:
            m[4:14, 10:30] = 255
        Image.fromarray(m).save(masks / f"doc{i}.png")
    return imgs, masks


def test_load_document_folder(tmp_path: Path) -> None:
    imgs, masks = _write_folder(tmp_path)
    psi = tmp_path / "psi.json"
    psi.write_text(json.dumps({"doc0": [[0, 0, 10, 20], [30, 40, 10, 20]], "doc1": []}))
    ds = load_document_folder(imgs, masks, psi)
    assert len(ds) == 3 and ds.images.shape == (3, 1, 40, 60)
    assert ds.formats == ("user",) * 3 and ds.fields == ({}, {}, {})
    assert ds.psi_boxes == (((0, 0, 10, 20), (30, 40, 10, 20)), (), ())
    assert ds.tampered.tolist() == [False, True, False]
    assert float(ds.masks[1].sum()) == 200.0
    expected = np.asarray(Image.open(imgs / "doc2.png").convert("L"), dtype=np.float32) / 255
    assert np.allclose(ds.images[2, 0].numpy(), expected)

    small = load_document_folder(imgs, masks, psi, size=(20, 30))
    assert small.images.shape == (3, 1, 20, 30)
    assert small.psi_boxes[0] == ((0, 0, 5, 10), (15, 20, 5, 10))
    assert float(small.masks[1].sum()) == 50.0


def test_load_document_folder_errors(tmp_path: Path) -> None:
    imgs, masks = _write_folder(tmp_path)
    psi = tmp_path / "psi.json"
    psi.write_text(json.dumps({"doc0": [[35, 0, 10, 20]]}))
    with pytest.raises(ValueError, match="outside"):
        load_document_folder(imgs, masks, psi)
    psi.write_text(json.dumps({"nodoc": [[0, 0, 1, 1]]}))
    with pytest.raises(ValueError, match="nodoc"):
        load_document_folder(imgs, masks, psi)
    psi.write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_document_folder(imgs, masks, psi)
    psi.write_text("{}")
    with pytest.raises(ValueError, match="does not exist"):
        load_document_folder(tmp_path / "nope", masks, psi)
    (masks / "doc2.png").unlink()
    with pytest.raises(ValueError, match=r"missing mask.*doc2"):
        load_document_folder(imgs, masks, psi)
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(masks / "doc2.png")
    with pytest.raises(ValueError, match=r"mask doc2\.png"):
        load_document_folder(imgs, masks, psi)
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(imgs / "doc2.png")
    with pytest.raises(ValueError, match="different sizes"):
        load_document_folder(imgs, masks, psi)
    assert len(load_document_folder(imgs, masks, psi, size=(10, 10))) == 3
