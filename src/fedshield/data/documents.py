"""Synthetic scanned documents with privacy-sensitive regions and a text-tamper task.

FedRE (Xiao et al., "FedRE ...", ICMR 2025; see ``methods.md`` section 1) trains a
text-tamper *segmentation* model on document images whose privacy-sensitive
information (PSI) is marked by boxes, and uses the boxes to measure how much each
layer's update depends on those pixels. The paper's datasets
(T-SROIE and DocTamper) cannot be downloaded here, so this module provides:

* :func:`generate_documents` -- a deterministic generator of grey-scale "scanned"
  documents in four formats (:data:`DOCUMENT_FORMATS`): ``"receipt"``, ``"invoice"``,
  ``"id_form"`` and ``"contract"``. Text is drawn with Pillow's bundled scalable font
  (``ImageFont.load_default(size=...)``; no system fonts, nothing is downloaded) at
  4x the requested resolution and area-averaged down to ``size``. Field values (names,
  dates, amounts, 9-12-digit ID numbers, invoice and account numbers) are drawn from
  small built-in lists with an explicit ``numpy.random.Generator``; no global random
  state is touched, so the same seed always gives identical tensors.
* :func:`load_document_folder` -- real documents supplied by a user (an image folder, a
  mask folder with the same file stems, and PSI boxes as JSON) in the same
  :class:`DocumentSet` container.
* :func:`psi_region_mask` -- the union of a document's PSI boxes as a boolean mask.

**PSI boxes.** A box is ``(top, left, height, width)`` in output pixels and is
half-open: it covers rows ``top .. top + height - 1`` and columns
``left .. left + width - 1`` (methods.md, FedRE pitfalls: eq. 4's inclusive range is
replaced by a half-open one). Several boxes in one image are combined by union. Boxes
are computed from the rendered text extent (``ImageDraw.textbbox`` at render scale),
carried through the scan rotation, scaled to ``size`` and rounded outward, so they
cover the intended text. Per format: receipt -- the card number's last 4 digits;
invoice -- the customer name and the account number; id_form -- the holder's name and
the ID number's last 4 digits; contract -- the signatory's name.

**Tamper model** (after DocTamper, Qu et al., "Towards Robust Tampered Text Detection
in Document Image: New Dataset and New Solution", CVPR 2023). In a tampered document
1-2 digits are replaced, at render scale, by either a *copy-move* (a digit-sized patch
of another digit of the same document) or a *splice* (a freshly rendered different
digit with slightly different size, ink and position). The patch is intensity-matched
(paper level kept, ink slightly changed) and blended through a feathered
(Gaussian-blurred) alpha mask. The target mask is the blended alpha after the same
rotation and area-downsampling as the image, thresholded at 0.5. Untampered documents
have an all-zero mask.

**Scan effects** (applied after tampering): a rotation below one degree (or none), a
paper tint, a small Gaussian blur and additive Gaussian noise of standard deviation
``noise``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from torch import Tensor

from fedshield.data.datasets import Dataset

__all__ = [
    "DOCUMENT_FORMATS",
    "DocumentDataset",
    "DocumentSet",
    "document_dataset",
    "generate_documents",
    "load_document_folder",
    "load_documents",
    "psi_region_mask",
]

DOCUMENT_FORMATS: tuple[str, ...] = ("receipt", "invoice", "id_form", "contract")
"""Document layouts :func:`generate_documents` can render."""

Box = tuple[int, int, int, int]

_SCALE = 4
"""Render scale: documents are drawn at ``_SCALE`` times the output size."""

_MIN_SIDE = 32
_MAX_SIDE = 2048
_MIN_FONT_PX = 3 * _SCALE  # text at least 3 output pixels high
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_FIRST_NAMES = (
    "ANNA", "JAMES", "MARIA", "WEI", "OMAR", "SOFIA", "LUCAS", "AMINA", "IVAN", "PRIYA",
    "DAVID", "ELENA", "KENJI", "FATIMA", "NOAH", "CHLOE", "MATEO", "ZARA", "LIAM", "YUKI",
)  # fmt: skip
_LAST_NAMES = (
    "SMITH", "GARCIA", "CHEN", "MULLER", "ROSSI", "KOWALSKI", "NGUYEN", "SILVA", "KHAN",
    "JOHNSON", "TANAKA", "MARTIN", "DUBOIS", "OKAFOR", "PETROV", "LARSEN", "COHEN", "PATEL",
)  # fmt: skip
_STORES = ("CORNER MART", "FRESH FOODS", "CITY PHARMACY", "BOOK NOOK", "TECH DEPOT", "CAFE LUNA")
_ITEMS = ("MILK", "BREAD", "COFFEE", "APPLES", "SOAP", "PASTA", "RICE", "TEA", "EGGS", "JUICE")
_WORDS = (
    "THE", "PARTY", "AGREES", "TO", "PROVIDE", "SERVICES", "UNDER", "THIS", "CONTRACT",
    "AND", "SHALL", "PAY", "ALL", "FEES", "WITHIN", "THIRTY", "DAYS", "OF", "NOTICE",
    "TERMS", "APPLY", "EACH", "MONTH", "UNTIL", "END", "DATE", "SIGNED", "BELOW",
)  # fmt: skip
_HEADERS = {
    "invoice": ("INVOICE", "TAX INVOICE", "BILL"),
    "id_form": ("IDENTITY CARD", "RESIDENT ID", "NATIONAL ID"),
    "contract": ("SERVICE AGREEMENT", "LEASE CONTRACT", "EMPLOYMENT TERMS"),
}


# --------------------------------------------------------------------------- container


@dataclass(frozen=True, eq=False)
class DocumentSet:
    """Document images, tamper masks and PSI boxes.

    Instances are compared by identity (``eq=False``): element-wise tensor equality has
    no single truth value.

    Attributes:
        images: ``float32 [N, 1, H, W]`` grey-scale scans in ``[0, 1]`` (1 = paper).
        masks: ``float32 [N, 1, H, W]`` tamper masks (1 = tampered pixel).
        psi_boxes: Per image, its PSI boxes ``(top, left, height, width)``, half-open.
        formats: Per image, its layout (one of :data:`DOCUMENT_FORMATS`, or ``"user"``).
        tampered: ``bool [N]``, whether the image has any tampered pixel.
        fields: Per image, the rendered field texts (empty for user data).
    """

    images: Tensor
    masks: Tensor
    psi_boxes: tuple[tuple[Box, ...], ...]
    formats: tuple[str, ...]
    tampered: Tensor
    fields: tuple[dict[str, str], ...] = field(default=())

    def __len__(self) -> int:
        """Number of documents."""
        return int(self.images.shape[0])

    def subset(self, idx: Any) -> DocumentSet:
        """Select documents.

        Args:
            idx: Integer indices (sequence, array or tensor), a boolean mask of length
                ``N``, or a slice.

        Returns:
            A new :class:`DocumentSet` with the selected documents, in the given order.

        Raises:
            ValueError: If a boolean mask has the wrong length or an index is out of range.
        """
        n = len(self)
        if isinstance(idx, slice):
            index = list(range(n))[idx]
        else:
            t = torch.as_tensor(np.asarray(idx) if not isinstance(idx, Tensor) else idx)
            if t.dtype == torch.bool:
                if t.shape != (n,):
                    raise ValueError(f"boolean index has shape {tuple(t.shape)}, expected ({n},)")
                index = torch.nonzero(t).flatten().tolist()
            else:
                index = [int(i) for i in t.flatten().tolist()]
        for i in index:
            if not -n <= i < n:
                raise ValueError(f"index {i} out of range for {n} documents")
        index = [i % n for i in index]
        sel = torch.tensor(index, dtype=torch.long)
        fields = tuple(self.fields[i] for i in index) if self.fields else ()
        return DocumentSet(
            images=self.images[sel],
            masks=self.masks[sel],
            psi_boxes=tuple(self.psi_boxes[i] for i in index),
            formats=tuple(self.formats[i] for i in index),
            tampered=self.tampered[sel],
            fields=fields,
        )


# --------------------------------------------------------------------------- boxes


def _check_box(box: Sequence[int], size: tuple[int, int], what: str) -> Box:
    if len(box) != 4:
        raise ValueError(f"{what}: a PSI box needs 4 numbers (top, left, height, width), got {box}")
    top, left, h, w = (int(v) for v in box)
    if any(float(v) != int(v) for v in box):
        raise ValueError(f"{what}: PSI box {list(box)} must hold integers")
    H, W = size
    if h <= 0 or w <= 0:
        raise ValueError(f"{what}: PSI box {list(box)} has non-positive height or width")
    if top < 0 or left < 0 or top + h > H or left + w > W:
        raise ValueError(f"{what}: PSI box {list(box)} lies outside the {H}x{W} image")
    return (top, left, h, w)


def psi_region_mask(boxes: Sequence[Sequence[int]], size: tuple[int, int]) -> Tensor:
    """Union of PSI boxes as a boolean mask.

    Args:
        boxes: Boxes ``(top, left, height, width)``; half-open, so a box covers rows
            ``top .. top + height - 1`` and columns ``left .. left + width - 1``.
        size: Image size ``(H, W)``.

    Returns:
        ``bool [H, W]``, True inside any box (all False for no boxes).

    Raises:
        ValueError: If the size is not positive or a box is malformed or outside the image.
    """
    H, W = _check_size(size)
    out = torch.zeros((H, W), dtype=torch.bool)
    for k, box in enumerate(boxes):
        top, left, h, w = _check_box(box, (H, W), f"box {k}")
        out[top : top + h, left : left + w] = True
    return out


def _check_size(size: Any, minimum: int = 1) -> tuple[int, int]:
    try:
        H, W = (int(v) for v in size)
        ok = all(float(v) == int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be a pair (H, W) of integers, got {size!r}") from None
    if not ok or min(H, W) < minimum or max(H, W) > _MAX_SIDE:
        raise ValueError(
            f"size must be a pair (H, W) of integers in [{minimum}, {_MAX_SIDE}], got {size!r}"
        )
    return H, W


# --------------------------------------------------------------------------- layout spec


@dataclass(frozen=True)
class _Run:
    """A piece of text drawn in one call. ``key`` names a field part (or None)."""

    text: str
    key: str | None = None


@dataclass(frozen=True)
class _Segment:
    """Runs drawn one after another from a horizontal anchor on a row.

    ``x`` is a fraction of the width: the left edge (``align="l"``), the centre
    (``"c"``) or the right edge (``"r"``) of the segment.
    """

    row: int
    x: float
    runs: tuple[_Run, ...]
    align: str = "l"
    max_x: float = 0.96


@dataclass
class _DocSpec:
    """Every random choice of one document, so it can be re-rendered exactly."""

    fmt: str
    size: tuple[int, int]
    n_rows: int
    segments: list[_Segment]
    rules: list[float]  # row boundaries (fractions of a row index) with a horizontal rule
    rects: list[tuple[float, float, float, float]]  # (top, left, bottom, right) fractions
    ellipses: list[tuple[float, float, float, float]]
    psi_keys: tuple[str, ...]
    fields: dict[str, str]
    font_px: int
    ink: float
    angle: float
    paper: float
    blur: float
    noise: float
    noise_seed: int
    tamper_ops: list[dict[str, Any]]


def _name(rng: np.random.Generator) -> str:
    first = _FIRST_NAMES[rng.integers(len(_FIRST_NAMES))]
    return f"{first} {_LAST_NAMES[rng.integers(len(_LAST_NAMES))]}"


def _date(rng: np.random.Generator, lo: int = 1950, hi: int = 2024) -> str:
    return f"{rng.integers(1, 29):02d}/{rng.integers(1, 13):02d}/{rng.integers(lo, hi + 1)}"


def _digits(rng: np.random.Generator, n: int) -> str:
    return str(rng.integers(1, 10)) + "".join(str(d) for d in rng.integers(0, 10, n - 1))


def _amount(rng: np.random.Generator, lo: float, hi: float) -> str:
    return f"{rng.uniform(lo, hi):.2f}"


def _layout(fmt: str, rng: np.random.Generator) -> tuple[_DocSpec, list[int]]:
    """Sample field values and the format's layout (font size still unset).

    Returns the partial spec and the rows of paragraph filler to fill later.
    """
    segs: list[_Segment] = []
    rules: list[float] = []
    rects: list[tuple[float, float, float, float]] = []
    ellipses: list[tuple[float, float, float, float]] = []
    fields: dict[str, str] = {}
    fill_rows: list[int] = []
    psi: tuple[str, ...]
    L = 0.05
    if fmt == "receipt":
        store = _STORES[rng.integers(len(_STORES))]
        date = _date(rng, 2015, 2024)
        time = f"{rng.integers(7, 23):02d}:{rng.integers(0, 60):02d}"
        items = [_ITEMS[i] for i in rng.choice(len(_ITEMS), size=2, replace=False)]
        prices = [_amount(rng, 0.5, 30.0) for _ in items]
        total = f"{sum(float(p) for p in prices):.2f}"
        card = _digits(rng, 4)
        fields = {"store": store, "date": date, "time": time, "item1": items[0],
                  "price1": prices[0], "item2": items[1], "price2": prices[1],
                  "total": total, "card_last4": card}  # fmt: skip
        segs = [
            _Segment(0, 0.5, (_Run(store),), "c"),
            _Segment(1, L, (_Run("DATE "), _Run(date, "date"))),
            _Segment(1, 0.95, (_Run(time, "time"),), "r"),
            _Segment(2, L, (_Run(items[0]),)),
            _Segment(2, 0.95, (_Run(prices[0], "price1"),), "r"),
            _Segment(3, L, (_Run(items[1]),)),
            _Segment(3, 0.95, (_Run(prices[1], "price2"),), "r"),
            _Segment(4, L, (_Run("TOTAL"),)),
            _Segment(4, 0.95, (_Run(total, "total"),), "r"),
            _Segment(5, L, (_Run("CARD **** "), _Run(card, "card_last4"))),
        ]
        rules = [4.0]
        n_rows, psi = 6, ("card_last4",)
    elif fmt == "invoice":
        header = _HEADERS["invoice"][rng.integers(3)]
        number = _digits(rng, 5)
        date = _date(rng, 2015, 2024)
        name = _name(rng)
        account = _digits(rng, int(rng.integers(8, 11)))
        amount = _amount(rng, 20.0, 9999.0)
        fields = {"header": header, "invoice_no": number, "date": date, "name": name,
                  "account": account, "amount": amount}  # fmt: skip
        segs = [
            _Segment(0, L, (_Run(header),)),
            _Segment(0, 0.95, (_Run("NO. "), _Run(number, "invoice_no")), "r"),
            _Segment(1, L, (_Run("DATE "), _Run(date, "date"))),
            _Segment(2, L, (_Run("BILL TO "), _Run(name, "name"))),
            _Segment(3, L, (_Run("ACCOUNT "), _Run(account, "account"))),
            _Segment(4, L, (_Run("AMOUNT DUE"),)),
            _Segment(4, 0.95, (_Run(amount, "amount"),), "r"),
        ]
        rules = [1.0, 4.0]
        n_rows, psi = 5, ("name", "account")
    elif fmt == "id_form":
        header = _HEADERS["id_form"][rng.integers(3)]
        name = _name(rng)
        born = _date(rng, 1940, 2005)
        idn = _digits(rng, int(rng.integers(9, 13)))
        issued = _date(rng, 2010, 2024)
        fields = {"header": header, "name": name, "born": born, "id_number": idn,
                  "id_prefix": idn[:-4], "id_last4": idn[-4:], "issued": issued}  # fmt: skip
        m = 0.68
        segs = [
            _Segment(0, L, (_Run(header),)),
            _Segment(1, L, (_Run("NAME "), _Run(name, "name")), max_x=m),
            _Segment(2, L, (_Run("BORN "), _Run(born, "born")), max_x=m),
            _Segment(
                3,
                L,
                (_Run("ID NO "), _Run(idn[:-4], "id_prefix"), _Run(idn[-4:], "id_last4")),
                max_x=m,
            ),
            _Segment(4, L, (_Run("ISSUED "), _Run(issued, "issued")), max_x=m),
        ]
        rects = [(1.1 / 5, 0.74, 4.9 / 5, 0.95)]  # photo box
        ellipses = [(2.8 / 5, 0.78, 4.6 / 5, 0.93)]  # stamp inside the photo box
        rules = [1.0]
        n_rows, psi = 5, ("name", "id_last4")
    elif fmt == "contract":
        header = _HEADERS["contract"][rng.integers(3)]
        date = _date(rng, 2015, 2024)
        name = _name(rng)
        fields = {"header": header, "date": date, "name": name}
        segs = [
            _Segment(0, 0.5, (_Run(header),), "c"),
            _Segment(4, L, (_Run("DATE "), _Run(date, "date"))),
            _Segment(5, L, (_Run("SIGNED "), _Run(name, "name"))),
        ]
        fill_rows = [1, 2, 3]
        rules = [6.0]
        n_rows, psi = 6, ("name",)
    else:  # pragma: no cover - validated by the caller
        raise ValueError(f"unknown document format {fmt!r}")
    spec = _DocSpec(
        fmt=fmt, size=(0, 0), n_rows=n_rows, segments=segs, rules=rules, rects=rects,
        ellipses=ellipses, psi_keys=psi, fields=fields, font_px=0, ink=0.0, angle=0.0,
        paper=1.0, blur=0.0, noise=0.0, noise_seed=0, tamper_ops=[],
    )  # fmt: skip
    return spec, fill_rows


@functools.lru_cache(maxsize=256)
def _font(px: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=px)
    if not isinstance(font, ImageFont.FreeTypeFont):  # pragma: no cover - needs FreeType
        raise RuntimeError(
            "Pillow was built without FreeType; the scalable bundled font is unavailable"
        )
    return font


def _geometry(size: tuple[int, int], n_rows: int) -> tuple[float, float, float]:
    """Top margin, row height and bottom margin at render scale."""
    Hr = size[0] * _SCALE
    margin = 0.06 * Hr
    return margin, (Hr - 2 * margin) / n_rows, margin


def _segment_width(seg: _Segment, font: ImageFont.FreeTypeFont) -> float:
    return float(font.getlength("".join(r.text for r in seg.runs)))


def _fit_font(spec: _DocSpec) -> int:
    """Largest font size (render px) such that rows fit vertically and horizontally."""
    Wr = spec.size[1] * _SCALE
    _, row_h, _ = _geometry(spec.size, spec.n_rows)
    px = int(row_h * 0.78)
    ref = _font(40)
    for seg in spec.segments:
        if seg.align == "l":
            avail = (seg.max_x - seg.x) * Wr
        elif seg.align == "c":
            avail = 0.9 * Wr
        else:
            avail = (seg.x - 0.04) * Wr
        width40 = _segment_width(seg, ref)
        if width40 > 0:
            px = min(px, int(40 * avail / width40))
    # Two segments on one row must not collide: left part + right part + a gap.
    by_row: dict[int, float] = {}
    for seg in spec.segments:
        by_row[seg.row] = by_row.get(seg.row, 0.0) + _segment_width(seg, ref)
    for width40 in by_row.values():
        px = min(px, int(40 * 0.9 * Wr / (width40 + 40)))
    if px < _MIN_FONT_PX:
        raise ValueError(
            f"size {spec.size} is too small or too narrow for a {spec.fmt!r} layout; "
            f"use at least {_MIN_SIDE}x{_MIN_SIDE} with a width of about twice the height"
        )
    return px


def _fill_paragraphs(spec: _DocSpec, rows: list[int], rng: np.random.Generator) -> None:
    font = _font(spec.font_px)
    limit = 0.9 * spec.size[1] * _SCALE
    for k, row in enumerate(rows):
        words: list[str] = []
        while True:
            word = _WORDS[rng.integers(len(_WORDS))]
            if font.getlength(" ".join([*words, word])) > limit:
                break
            words.append(word)
        text = " ".join(words) if words else _WORDS[0]
        spec.fields[f"paragraph{k + 1}"] = text
        spec.segments.append(_Segment(row, 0.05, (_Run(text),)))


def _place(spec: _DocSpec) -> list[tuple[float, float, _Run]]:
    """Absolute (x, y) render-scale positions of every run."""
    font = _font(spec.font_px)
    Wr = spec.size[1] * _SCALE
    top, row_h, _ = _geometry(spec.size, spec.n_rows)
    out: list[tuple[float, float, _Run]] = []
    ascent_top = font.getbbox("A")[1]
    ink_h = font.getbbox("A0")[3] - ascent_top
    for seg in spec.segments:
        width = _segment_width(seg, font)
        if seg.align == "l":
            x = seg.x * Wr
        elif seg.align == "c":
            x = seg.x * Wr - width / 2
        else:
            x = seg.x * Wr - width
        # Vertically centre the cap height in the row.
        y = top + seg.row * row_h + (row_h - ink_h) / 2 - ascent_top
        for run in seg.runs:
            out.append((round(x), round(y), run))
            x += float(font.getlength(run.text))
    return out


def _digit_cells(spec: _DocSpec) -> list[tuple[int, int, int, int, str]]:
    """Render-scale cells ``(top, left, bottom, right, char)`` of every digit."""
    font = _font(spec.font_px)
    t0, b0 = font.getbbox("0123456789")[1], font.getbbox("0123456789")[3]
    cells = []
    for x, y, run in _place(spec):
        for i, ch in enumerate(run.text):
            if ch.isdigit():
                left = x + font.getlength(run.text[:i])
                right = x + font.getlength(run.text[: i + 1])
                cells.append((int(y + t0), math.floor(left), int(y + b0), math.ceil(right), ch))
    return cells


# --------------------------------------------------------------------------- sampling


def _sample_spec(
    fmt: str,
    size: tuple[int, int],
    rng: np.random.Generator,
    tamper: bool,
    noise: float,
    span: int = 1,
) -> _DocSpec:
    spec, fill_rows = _layout(fmt, rng)
    spec.size = size
    spec.font_px = _fit_font(spec)
    _fill_paragraphs(spec, fill_rows, rng)
    spec.ink = float(rng.uniform(0.0, 0.25))
    spec.angle = 0.0 if rng.random() < 0.4 else float(rng.uniform(-0.9, 0.9))
    spec.paper = float(rng.uniform(0.86, 1.0))
    spec.blur = float(rng.uniform(0.0, 0.6))
    spec.noise = noise
    spec.noise_seed = int(rng.integers(2**31))
    if tamper:
        spec.tamper_ops = _sample_tamper(spec, rng, span)
    return spec


def _tamper_op(
    cells: list[tuple[int, int, int, int, str]], t: int, rng: np.random.Generator
) -> dict[str, Any]:
    top, left, bottom, right, ch = cells[t]
    sources = [k for k, c in enumerate(cells) if c[4] != ch]
    common = {
        "cell": (top, left, bottom, right),
        "gain": float(rng.uniform(0.9, 1.05)),
        "feather": float(rng.uniform(1.0, 2.0)),
    }
    if sources and rng.random() < 0.5:
        s = cells[sources[int(rng.integers(len(sources)))]]
        return {"kind": "copy_move", "source": (s[0], s[1]), "char": s[4], **common}
    new = str((int(ch) + int(rng.integers(1, 10))) % 10)
    return {
        "kind": "splice",
        "char": new,
        "scale": float(rng.uniform(0.92, 1.08)),
        "shift": (int(rng.integers(-1, 2)), int(rng.integers(-1, 2))),
        **common,
    }


def _sample_tamper(spec: _DocSpec, rng: np.random.Generator, span: int = 1) -> list[dict[str, Any]]:
    cells = _digit_cells(spec)
    n_ops = 1 + int(rng.random() < 0.4)
    targets = rng.choice(len(cells), size=min(n_ops, len(cells)), replace=False)
    ops = [_tamper_op(cells, int(t), rng) for t in targets]
    if span > 1:  # extend every edit to the following digits of the same number
        done = {int(t) for t in targets}
        for t in targets:
            j = int(t)
            for _ in range(span - 1):
                a, b = cells[j], cells[j + 1] if j + 1 < len(cells) else None
                if b is None or b[0] != a[0] or not 0 <= b[1] - a[3] <= 2 or j + 1 in done:
                    break
                j += 1
                done.add(j)
                ops.append(_tamper_op(cells, j, rng))
    return ops


# --------------------------------------------------------------------------- rendering


def _draw_clean(spec: _DocSpec, omit: frozenset[str]) -> tuple[np.ndarray, dict[str, Box]]:
    """Render at ``_SCALE`` without scan effects.

    Returns the float canvas in ``[0, 1]`` and each keyed run's ``textbbox``
    ``(top, left, bottom, right)`` at render scale.
    """
    H, W = spec.size
    Hr, Wr = H * _SCALE, W * _SCALE
    img = Image.new("L", (Wr, Hr), 255)
    draw = ImageDraw.Draw(img)
    ink = round(spec.ink * 255)
    font = _font(spec.font_px)
    extents: dict[str, Box] = {}
    for x, y, run in _place(spec):
        if run.key is not None:
            x0, y0, x1, y1 = draw.textbbox((x, y), run.text, font=font)
            extents[run.key] = (int(y0), int(x0), int(y1), int(x1))
        if run.key is not None and run.key in omit:
            continue
        draw.text((x, y), run.text, fill=ink, font=font)
    top, row_h, _ = _geometry(spec.size, spec.n_rows)
    line_w = max(1, spec.font_px // 12)
    for r in spec.rules:
        y = round(top + r * row_h - 0.04 * row_h)
        draw.line([(round(0.04 * Wr), y), (round(0.96 * Wr), y)], fill=ink, width=line_w)
    span = Hr - 2 * top
    for t, lf, b, r in spec.rects:
        draw.rectangle([lf * Wr, top + t * span, r * Wr, top + b * span], outline=ink, width=line_w)
    for t, lf, b, r in spec.ellipses:
        draw.ellipse([lf * Wr, top + t * span, r * Wr, top + b * span], outline=ink, width=line_w)
    return np.asarray(img, dtype=np.float32) / 255.0, extents


def _apply_tamper(spec: _DocSpec, canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blend the spec's tamper operations into ``canvas``; return it and the alpha map."""
    out = canvas.copy()
    alpha_all = np.zeros_like(canvas)
    Hr, Wr = canvas.shape
    for op in spec.tamper_ops:
        top, left, bottom, right = op["cell"]
        pad = 2
        t0, l0 = max(0, top - pad), max(0, left - pad)
        t1, l1 = min(Hr, bottom + pad), min(Wr, right + pad)
        h, w = t1 - t0, l1 - l0
        if op["kind"] == "copy_move":
            st, sl = op["source"]
            st, sl = max(0, st - pad), max(0, sl - pad)
            patch = np.ones((h, w), dtype=np.float32)
            src = canvas[st : st + h, sl : sl + w]
            patch[: src.shape[0], : src.shape[1]] = src
        else:
            font = _font(max(_MIN_FONT_PX, round(spec.font_px * op["scale"])))
            tile = Image.new("L", (w, h), 255)
            bb = font.getbbox(op["char"])
            dy, dx = op["shift"]
            x = pad + dx - bb[0] + (w - 2 * pad - (bb[2] - bb[0])) / 2
            y = pad + dy - bb[1] + (h - 2 * pad - (bb[3] - bb[1])) / 2
            ink = round(min(1.0, spec.ink + 0.05) * 255)
            ImageDraw.Draw(tile).text((x, y), op["char"], fill=ink, font=font)
            patch = np.asarray(tile, dtype=np.float32) / 255.0
        # Intensity matching: paper stays at its level, ink shifts slightly.
        patch = np.clip(1.0 - (1.0 - patch) * op["gain"], 0.0, 1.0)
        hard = Image.new("L", (Wr, Hr), 0)
        ImageDraw.Draw(hard).rectangle([l0, t0, l1 - 1, t1 - 1], fill=255)
        soft = hard.filter(ImageFilter.GaussianBlur(op["feather"]))
        alpha = np.asarray(soft, dtype=np.float32) / 255.0
        full = out.copy()
        full[t0:t1, l0:l1] = patch
        out = alpha * full + (1.0 - alpha) * out
        alpha_all = np.maximum(alpha_all, alpha)
    return out, alpha_all


def _gauss_blur(a: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.05:
        return a
    r = max(1, math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    p = np.pad(a, r, mode="edge")
    p = sum(k[i] * p[i : i + a.shape[0], :] for i in range(2 * r + 1))
    p = sum(k[j] * p[:, j : j + a.shape[1]] for j in range(2 * r + 1))
    return np.asarray(p, dtype=np.float32)


def _rotate_box(box: Box, angle: float, Hr: int, Wr: int) -> tuple[float, float, float, float]:
    """Bounding box of a render-scale ``(top, left, bottom, right)`` box after rotation."""
    t, lf, b, r = box
    if angle == 0.0:
        return float(t), float(lf), float(b), float(r)
    t, lf, b, r = t - 1, lf - 1, b + 1, r + 1  # bilinear resampling spreads by one pixel
    cx, cy = Wr / 2, Hr / 2
    th = math.radians(angle)
    c, s = math.cos(th), math.sin(th)
    xs, ys = [], []
    for x, y in ((lf, t), (r, t), (lf, b), (r, b)):
        dx, dy = x - cx, y - cy
        # PIL rotates counter-clockwise on screen (y pointing down).
        xs.append(cx + dx * c + dy * s)
        ys.append(cy - dx * s + dy * c)
    return min(ys), min(xs), max(ys), max(xs)


def _render(
    spec: _DocSpec,
    *,
    omit: Sequence[str] = (),
    tamper: bool = True,
    effects: bool = True,
    trace: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, tuple[Box, ...]]:
    """Render a spec to an ``[H, W]`` image, tamper mask and PSI boxes.

    Args:
        spec: The document.
        omit: Field parts (run keys) to leave out, for checking box coverage.
        tamper: Apply the spec's tamper operations.
        effects: Apply paper tint, blur and noise (rotation is geometry and always kept).
        trace: Strength of the pasted patches' tint and noise inconsistency (see
            :func:`generate_documents`).
    """
    H, W = spec.size
    Hr, Wr = H * _SCALE, W * _SCALE
    canvas, extents = _draw_clean(spec, frozenset(omit))
    alpha = np.zeros_like(canvas)
    if tamper and spec.tamper_ops:
        canvas, alpha = _apply_tamper(spec, canvas)
    img = Image.fromarray(canvas, mode="F")
    amap = Image.fromarray(alpha, mode="F")
    if spec.angle != 0.0:
        img = img.rotate(spec.angle, resample=Image.Resampling.BILINEAR, fillcolor=1.0)
        amap = amap.rotate(spec.angle, resample=Image.Resampling.BILINEAR, fillcolor=0.0)
    small = np.asarray(img.resize((W, H), Image.Resampling.BOX), dtype=np.float32)
    soft = np.asarray(amap.resize((W, H), Image.Resampling.BOX), dtype=np.float32)
    mask = (soft > 0.5).astype(np.float32)
    if effects:
        small = small * spec.paper
        small = _gauss_blur(small, spec.blur)
        if trace > 0 and spec.tamper_ops and tamper:
            trng = np.random.default_rng([spec.noise_seed, 1])
            extra = trng.normal(0.0, 0.08 * trace, small.shape).astype(np.float32)
            small = small - soft * (0.15 * trace * small - extra)
        if spec.noise > 0:
            nrng = np.random.default_rng(spec.noise_seed)
            small = small + nrng.normal(0.0, spec.noise, small.shape).astype(np.float32)
    small = np.clip(small, 0.0, 1.0)
    boxes: list[Box] = []
    for key in spec.psi_keys:
        t, lf, b, r = _rotate_box(extents[key], spec.angle, Hr, Wr)
        t0 = max(0, math.floor(t / _SCALE))
        l0 = max(0, math.floor(lf / _SCALE))
        b0 = min(H, math.ceil(b / _SCALE))
        r0 = min(W, math.ceil(r / _SCALE))
        boxes.append((t0, l0, b0 - t0, r0 - l0))
    return small, mask, tuple(boxes)


# --------------------------------------------------------------------------- public API


def _document_specs(
    num: int,
    seed: int,
    size: tuple[int, int],
    formats: Sequence[str],
    tamper_fraction: float,
    noise: float,
    span: int = 1,
) -> list[_DocSpec]:
    if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    H, W = _check_size(size, _MIN_SIDE)
    if isinstance(formats, str):
        formats = (formats,)
    formats = tuple(formats)
    if not formats:
        raise ValueError("formats must name at least one document format")
    unknown = [f for f in formats if f not in DOCUMENT_FORMATS]
    if unknown:
        raise ValueError(f"unknown document format(s) {unknown}; choose from {DOCUMENT_FORMATS}")
    if not 0.0 <= float(tamper_fraction) <= 1.0:
        raise ValueError(f"tamper_fraction must lie in [0, 1], got {tamper_fraction}")
    if not 0.0 <= float(noise) <= 0.5:
        raise ValueError(f"noise must lie in [0, 0.5], got {noise}")
    root = np.random.SeedSequence(int(seed))
    main = np.random.default_rng(root)
    n_tamper = round(float(tamper_fraction) * num)
    tampered = np.zeros(num, dtype=bool)
    tampered[main.permutation(num)[:n_tamper]] = True
    children = root.spawn(num)
    return [
        _sample_spec(
            formats[i % len(formats)],
            (H, W),
            np.random.default_rng(children[i]),
            bool(tampered[i]),
            float(noise),
            span,
        )
        for i in range(num)
    ]


def generate_documents(
    num: int,
    *,
    seed: int = 0,
    size: tuple[int, int] = (64, 128),
    formats: Sequence[str] = DOCUMENT_FORMATS,
    tamper_fraction: float = 0.5,
    noise: float = 0.02,
    trace: float = 0.0,
    tamper_span: int = 1,
) -> DocumentSet:
    """Generate synthetic scanned documents with PSI boxes and tamper masks.

    Document ``i`` has format ``formats[i % len(formats)]``; exactly
    ``round(tamper_fraction * num)`` documents, chosen by the seed, are tampered.

    Args:
        num: Number of documents (at least 1).
        seed: Seed; the same arguments always give identical tensors.
        size: Output size ``(H, W)``, each side in ``[32, 2048]``; layouts are designed
            for a width of about twice the height (the default ``(64, 128)``).
        formats: Formats to cycle through, from :data:`DOCUMENT_FORMATS`.
        tamper_fraction: Fraction of tampered documents, in ``[0, 1]``.
        noise: Standard deviation of the additive scan noise, in ``[0, 0.5]``.
        trace: Strength in ``[0, 1]`` of the forensic trace a pasted patch leaves: the
            patch comes from another scan, so inside the (soft) tamper alpha the paper is
            darker by ``0.15 * trace`` and carries extra noise of std ``0.08 * trace``
            (noise-level and tint inconsistency, the cues tamper detectors learn; 0 = the
            blend is intensity-matched only, which a small network rarely learns).
        tamper_span: Digits per edit, in ``[1, 8]``: an edit replaces up to this many
            consecutive digits of one number (each by its own copy-move or splice).

    Returns:
        A :class:`DocumentSet`.

    Raises:
        ValueError: On a bad ``num``, ``size``, format, ``tamper_fraction`` or ``noise``.
    """
    if not 0.0 <= float(trace) <= 1.0:
        raise ValueError(f"trace must lie in [0, 1], got {trace}")
    if (
        isinstance(tamper_span, bool)
        or not isinstance(tamper_span, int)
        or not 1 <= tamper_span <= 8
    ):
        raise ValueError(f"tamper_span must be an integer in [1, 8], got {tamper_span!r}")
    specs = _document_specs(num, seed, size, formats, tamper_fraction, noise, tamper_span)
    images, masks, boxes = [], [], []
    for spec in specs:
        img, mask, bx = _render(spec, trace=float(trace))
        images.append(img)
        masks.append(mask)
        boxes.append(bx)
    masks_t = torch.from_numpy(np.stack(masks)[:, None])
    return DocumentSet(
        images=torch.from_numpy(np.stack(images)[:, None]),
        masks=masks_t,
        psi_boxes=tuple(boxes),
        formats=tuple(s.fmt for s in specs),
        tampered=masks_t.flatten(1).any(dim=1),
        fields=tuple(dict(s.fields) for s in specs),
    )


def _find_images(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in _IMAGE_EXTS:
            if p.stem in files:
                raise ValueError(f"two images share the stem {p.stem!r} in {folder}")
            files[p.stem] = p
    return files


def load_document_folder(
    images_dir: str | Path,
    masks_dir: str | Path,
    psi_json: str | Path,
    *,
    size: tuple[int, int] | None = None,
) -> DocumentSet:
    """Load user-supplied document images, tamper masks and PSI boxes.

    Every image in ``images_dir`` (png, jpg, jpeg, bmp, tif) needs a mask in
    ``masks_dir`` with the same file stem (any of those extensions; a pixel is tampered
    where the grey-scale mask exceeds half its range). ``psi_json`` maps stems to lists
    of boxes ``[top, left, height, width]`` in the original image's pixels (half-open);
    an image whose stem is absent has no PSI boxes.

    Args:
        images_dir: Folder of document images (converted to grey scale).
        masks_dir: Folder of tamper masks.
        psi_json: Path to the JSON file of PSI boxes.
        size: Resize images, masks and boxes to ``(H, W)``; boxes are rounded outward.
            Without it, all images must share one size.

    Returns:
        A :class:`DocumentSet` with ``formats`` all ``"user"`` and empty ``fields``,
        images sorted by stem.

    Raises:
        ValueError: On a missing folder or mask, no images, a mask of another size, a
            malformed JSON file, a JSON stem without an image, a box outside its image,
            or images of different sizes without ``size``.
    """
    images_dir, masks_dir, psi_json = Path(images_dir), Path(masks_dir), Path(psi_json)
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise ValueError(f"folder {d} does not exist")
    if not psi_json.is_file():
        raise ValueError(f"PSI box file {psi_json} does not exist")
    target = None if size is None else _check_size(size)
    imgs = _find_images(images_dir)
    if not imgs:
        raise ValueError(f"no images ({', '.join(_IMAGE_EXTS)}) found in {images_dir}")
    mask_files = _find_images(masks_dir)
    missing = [s for s in imgs if s not in mask_files]
    if missing:
        raise ValueError(f"missing mask files in {masks_dir} for: {missing}")
    try:
        raw = json.loads(psi_json.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"PSI box file {psi_json} is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"PSI box file {psi_json} must hold an object {{stem: [[t, l, h, w]]}}")
    extra = [s for s in raw if s not in imgs]
    if extra:
        raise ValueError(f"PSI boxes given for stems without an image: {extra}")
    images, masks, all_boxes = [], [], []
    for stem, path in imgs.items():
        with Image.open(path) as im:
            gray = im.convert("L")
        with Image.open(mask_files[stem]) as mk:
            mgray = mk.convert("L")
        if mgray.size != gray.size:
            raise ValueError(
                f"mask {mask_files[stem].name} is {mgray.size[1]}x{mgray.size[0]}, "
                f"image {path.name} is {gray.size[1]}x{gray.size[0]}"
            )
        H0, W0 = gray.size[1], gray.size[0]
        entry = raw.get(stem, [])
        if not isinstance(entry, list):
            raise ValueError(f"PSI boxes for {stem!r} must be a list of [top, left, h, w]")
        boxes = [_check_box(b, (H0, W0), f"image {stem!r}") for b in entry]
        if target is not None and target != (H0, W0):
            H, W = target
            gray = gray.resize((W, H), Image.Resampling.BOX)
            mgray = mgray.resize((W, H), Image.Resampling.BOX)
            sy, sx = H / H0, W / W0
            scaled = []
            for t, lf, h, w in boxes:
                t1, l1 = math.floor(t * sy), math.floor(lf * sx)
                b1, r1 = min(H, math.ceil((t + h) * sy)), min(W, math.ceil((lf + w) * sx))
                scaled.append((t1, l1, max(1, b1 - t1), max(1, r1 - l1)))
            boxes = scaled
        images.append(np.asarray(gray, dtype=np.float32) / 255.0)
        masks.append((np.asarray(mgray, dtype=np.float32) / 255.0 > 0.5).astype(np.float32))
        all_boxes.append(tuple(boxes))
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise ValueError(f"images have different sizes {sorted(shapes)}; pass size=(H, W)")
    masks_t = torch.from_numpy(np.stack(masks)[:, None])
    return DocumentSet(
        images=torch.from_numpy(np.stack(images)[:, None]),
        masks=masks_t,
        psi_boxes=tuple(all_boxes),
        formats=tuple("user" for _ in imgs),
        tampered=masks_t.flatten(1).any(dim=1),
        fields=tuple({} for _ in imgs),
    )


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True, eq=False)
class DocumentDataset(Dataset):
    """A text-tamper segmentation dataset with PSI regions, ready for the engine.

    ``x_*`` are the grey-scale scans ``float32 [N, 1, H, W]`` in ``[0, 1]``; ``y_*`` the
    tamper masks as ``int64 [N, H, W]`` class maps (0 = genuine, 1 = tampered),
    ``num_classes = 2``. The engine trains with pixel-wise cross-entropy and reports
    IoU / precision / recall / F1 of the tampered class.

    Attributes:
        psi_train: ``bool [N, H, W]`` union of each training document's PSI boxes.
        psi_test: ``bool [M, H, W]`` the same for the test documents.
        formats_train: Format of each training document (partitioning and per-format
            PSI scores use it).
        formats_test: Format of each test document.
        format_names: The distinct formats, in the order of :attr:`strata`'s codes.
        train_docs: The training :class:`DocumentSet` (boxes, fields).
        test_docs: The test :class:`DocumentSet`.
        public: The server's public documents with PSI boxes (FedRE's PDA-PAM scores the
            clients' models on them), disjoint from train and test; None if absent.
    """

    psi_train: Tensor
    psi_test: Tensor
    formats_train: tuple[str, ...]
    formats_test: tuple[str, ...]
    format_names: tuple[str, ...]
    train_docs: DocumentSet
    test_docs: DocumentSet
    public: DocumentSet | None

    @property
    def task(self) -> str:
        """``"segmentation"``."""
        return "segmentation"

    @property
    def strata(self) -> Tensor:
        """Format code of each training document (label-aware partitioners split by format)."""
        code = {f: i for i, f in enumerate(self.format_names)}
        return torch.tensor([code[f] for f in self.formats_train], dtype=torch.int64)

    @property
    def num_strata(self) -> int:
        """Number of formats."""
        return len(self.format_names)

    def __repr__(self) -> str:
        return (
            f"DocumentDataset(name={self.name!r}, train={self.num_train}, "
            f"test={self.num_test}, public={0 if self.public is None else len(self.public)}, "
            f"input_shape={self.input_shape}, formats={list(self.format_names)})"
        )


def _region_masks(docs: DocumentSet) -> Tensor:
    size = (int(docs.images.shape[2]), int(docs.images.shape[3]))
    if len(docs) == 0:
        return torch.zeros((0, *size), dtype=torch.bool)
    return torch.stack([psi_region_mask(b, size) for b in docs.psi_boxes])


def document_dataset(
    train: DocumentSet,
    test: DocumentSet,
    *,
    public: DocumentSet | None = None,
    name: str = "documents",
) -> DocumentDataset:
    """Wrap document sets (generated or :func:`load_document_folder`) as a dataset.

    Args:
        train: Training documents (split over clients by the engine).
        test: Test documents.
        public: The server's public documents with PSI boxes (for PDA-PAM).
        name: Dataset name recorded with runs.

    Returns:
        The :class:`DocumentDataset`.

    Raises:
        ValueError: If a set is empty or the sets' image sizes or channels differ.
    """
    sets = {"train": train, "test": test}
    if public is not None:
        sets["public"] = public
    for what, d in sets.items():
        if len(d) == 0:
            raise ValueError(f"the {what} document set is empty")
    shapes = {what: tuple(d.images.shape[1:]) for what, d in sets.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"document sets have different image shapes: {shapes}")
    names = tuple(dict.fromkeys([*train.formats, *test.formats]))
    return DocumentDataset(
        name=name,
        x_train=train.images.float().contiguous(),
        y_train=(train.masks[:, 0] > 0.5).long(),
        x_test=test.images.float().contiguous(),
        y_test=(test.masks[:, 0] > 0.5).long(),
        num_classes=2,
        psi_train=_region_masks(train),
        psi_test=_region_masks(test),
        formats_train=tuple(train.formats),
        formats_test=tuple(test.formats),
        format_names=names,
        train_docs=train,
        test_docs=test,
        public=public,
    )


def _sub_seed(seed: int, part: int) -> int:
    return int(np.random.SeedSequence([int(seed), part]).generate_state(1)[0])


def load_documents(
    *,
    seed: int = 0,
    num_train: int = 400,
    num_test: int = 100,
    num_public: int = 16,
    size: tuple[int, int] = (64, 128),
    tamper_fraction: float = 0.75,
    trace: float = 1.0,
    tamper_span: int = 3,
) -> DocumentDataset:
    """The bundled ``"documents"`` dataset: generated train, test and public documents.

    The three sets come from :func:`generate_documents` with seeds derived from ``seed``
    (so they never share a document) and all four formats. Results are cached per
    argument tuple within a process (generation takes ~35 ms per document).

    Args:
        seed: Seed of the generator.
        num_train: Training documents.
        num_test: Test documents.
        num_public: Public documents held by the server (0 for none).
        size: Image size ``(H, W)``.
        tamper_fraction: Fraction of tampered documents in every set.
        trace: Forensic trace strength of tampered patches (see :func:`generate_documents`).
        tamper_span: Consecutive digits per edit (see :func:`generate_documents`).

    Returns:
        The :class:`DocumentDataset`.

    Raises:
        ValueError: On invalid counts (train and test need at least one document) or any
            argument :func:`generate_documents` rejects.
    """
    for what, n, lo in (("num_train", num_train, 1), ("num_test", num_test, 1)):
        if not isinstance(n, int) or n < lo:
            raise ValueError(f"{what} must be an integer >= {lo}, got {n!r}")
    if not isinstance(num_public, int) or num_public < 0:
        raise ValueError(f"num_public must be an integer >= 0, got {num_public!r}")
    return _cached_documents(
        int(seed),
        num_train,
        num_test,
        num_public,
        _check_size(size, _MIN_SIDE),
        float(tamper_fraction),
        float(trace),
        tamper_span,
    )


@functools.lru_cache(maxsize=4)
def _cached_documents(
    seed: int,
    num_train: int,
    num_test: int,
    num_public: int,
    size: tuple[int, int],
    tamper_fraction: float,
    trace: float,
    tamper_span: int,
) -> DocumentDataset:
    kw: dict[str, Any] = {
        "size": size,
        "tamper_fraction": tamper_fraction,
        "trace": trace,
        "tamper_span": tamper_span,
    }
    train = generate_documents(num_train, seed=_sub_seed(seed, 0), **kw)
    test = generate_documents(num_test, seed=_sub_seed(seed, 1), **kw)
    public = generate_documents(num_public, seed=_sub_seed(seed, 2), **kw) if num_public else None
    return document_dataset(train, test, public=public)
