"""Tests for fedshield.report.store: the run directory."""

from __future__ import annotations

import csv
import json
import math
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedshield.report.store import RunStore, flatten, to_plain, toml_dumps

NOW = datetime(2025, 1, 2, 3, 4, 5)

HISTORY: list[dict[str, Any]] = [
    {"round": 1, "time_round_s": 0.5, "train_loss": 2.0, "num_sampled": 10, "rejected": []},
    {
        "round": 2,
        "time_round_s": 0.25,
        "train_loss": 1.5,
        "test_accuracy": 0.75,
        "client_accuracy": {"mean": 0.7, "min": 0.5},
        "num_sampled": 10,
        "rejected": [3, 7],
    },
    {
        "round": 3,
        "time_round_s": 0.125,
        "train_loss": 1.0,
        "num_sampled": 10,
        "rejected": [],
        "extra": {"a": {"b": 1}},
    },
]


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore.create(tmp_path / "runs", "mnist mlp", now=NOW)
    s.write_config({"name": "mnist mlp", "seed": 0})
    return s


# ------------------------------------------------------------------ creation / opening


def test_create_makes_unique_dirs(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "runs"  # root is created
    a = RunStore.create(root, "exp", now=NOW)
    b = RunStore.create(root, "exp", now=NOW)
    c = RunStore.create(root, "exp", now=NOW)
    assert a.run_dir == root / "exp-20250102-030405"
    assert b.run_dir == root / "exp-20250102-030405-1"
    assert c.run_dir == root / "exp-20250102-030405-2"
    assert all(s.run_dir.is_dir() for s in (a, b, c))


def test_create_sanitises_name(tmp_path: Path) -> None:
    s = RunStore.create(tmp_path, "a/b c", now=NOW)
    assert s.run_dir.parent == tmp_path
    assert s.run_dir.name == "a_b_c-20250102-030405"
    assert RunStore.create(tmp_path, "//", now=NOW).run_dir.name == "run-20250102-030405"


def test_create_default_time_is_now(tmp_path: Path) -> None:
    s = RunStore.create(tmp_path, "x")
    stamp = datetime.strptime(s.run_dir.name[2:], "%Y%m%d-%H%M%S")
    assert abs((datetime.now() - stamp).total_seconds()) < 60


def test_open_requires_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        RunStore.open(tmp_path / "nope")
    s = RunStore.create(tmp_path, "x", now=NOW)
    with pytest.raises(FileNotFoundError, match=r"not a fedshield run directory \(no config"):
        RunStore.open(s.run_dir)
    s.write_config({"name": "x"})
    assert RunStore.open(str(s.run_dir)) == s


def test_checkpoint_path(store: RunStore) -> None:
    assert store.checkpoint_path == store.run_dir / "checkpoint.pt"


# ------------------------------------------------------------------ config / TOML

CONFIG: dict[str, Any] = {
    "name": 'exp "quoted" \\ back\tslash',
    "seed": 0,
    "notes": None,
    "data": {
        "dataset": "mnist",
        "num_clients": 20,
        "partition": "dirichlet",
        "alpha": 0.5,
        "tiny": 1e-05,
        "huge": 1e20,
        "neg": -3,
        "flag": True,
        "off": False,
        "root": None,
    },
    "model": {"name": "mlp_2nn", "hidden": [200, 200]},
    "server": {
        "rounds": 50,
        "aggregator": "mean",
        "milestones": [],
        "mixed": [1, "a", 2.5, [1, 2]],
        "attacks": [{"name": "flip", "frac": 0.1, "x": None}],
        "nested": {"deeper": {"k": "v"}},
        "empty": {},
    },
    "dotted.key": {"a b": 1, "ünï": "ß"},
    "limits": {"inf": math.inf, "ninf": -math.inf},
}


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj if v is not None]
    return obj


def test_toml_round_trip_equals_dict_minus_none() -> None:
    text = toml_dumps(CONFIG)
    assert tomllib.loads(text) == _drop_none(CONFIG)


def test_toml_nan_and_control_chars() -> None:
    back = tomllib.loads(toml_dumps({"x": math.nan, "s": "a\x01b\nc\x7f"}))
    assert math.isnan(back["x"])
    assert back["s"] == "a\x01b\nc\x7f"


def test_toml_layout_is_readable() -> None:
    text = toml_dumps({"seed": 1, "data": {"dataset": "mnist"}, "a": {"b": {"c": 1}}})
    assert text == 'seed = 1\n\n[data]\ndataset = "mnist"\n\n[a.b]\nc = 1\n'


def test_toml_rejects_unknown_types() -> None:
    with pytest.raises(TypeError, match="object"):
        toml_dumps({"x": object()})


def test_write_config_writes_json_and_toml(store: RunStore) -> None:
    store.write_config(CONFIG)
    assert store.read_config() == CONFIG
    text = (store.run_dir / "config.json").read_text()
    assert text.startswith('{\n  "name"')  # indent 2
    toml_back = tomllib.loads((store.run_dir / "config.toml").read_text())
    assert toml_back == _drop_none(CONFIG)


def test_write_config_converts_paths_tuples_numpy(store: RunStore) -> None:
    store.write_config({"root": Path("/data/x"), "shape": (1, 2), "lr": np.float32(0.5)})
    expected = {"root": "/data/x", "shape": [1, 2], "lr": 0.5}
    assert store.read_config() == expected
    assert tomllib.loads((store.run_dir / "config.toml").read_text()) == expected


# ------------------------------------------------------------------ generic JSON


def test_write_read_json_atomic(store: RunStore) -> None:
    obj = {"clients": [{"id": 0, "n": 30}, {"id": 1, "n": 12}], "t": torch.tensor([1.5, 2.0])}
    store.write_json("clients.json", obj)
    assert store.read_json("clients.json") == {
        "clients": [{"id": 0, "n": 30}, {"id": 1, "n": 12}],
        "t": [1.5, 2.0],
    }
    store.write_json("clients.json", [1])
    assert store.read_json("clients.json") == [1]
    store.write_json("sub/x.json", {"a": 1})
    assert store.read_json("sub/x.json") == {"a": 1}
    leftovers = [p.name for p in store.run_dir.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_json_name_must_stay_inside(store: RunStore) -> None:
    for bad in ("../x.json", "/tmp/x.json", ""):
        with pytest.raises(ValueError, match="inside the run directory"):
            store.write_json(bad, {})


def test_summary(store: RunStore) -> None:
    assert store.read_summary() is None
    store.write_summary({"final_test_accuracy": 0.9, "rounds": 3})
    assert store.read_summary() == {"final_test_accuracy": 0.9, "rounds": 3}


# ------------------------------------------------------------------ metrics


def test_append_and_read_metrics(store: RunStore) -> None:
    assert store.read_metrics() == []
    for record in HISTORY:
        store.append_metrics(record)
    assert store.read_metrics() == HISTORY
    lines = store.metrics_path.read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[1])["client_accuracy"] == {"mean": 0.7, "min": 0.5}


def test_append_metrics_converts_numpy_and_tensors(store: RunStore) -> None:
    store.append_metrics({"round": 1, "loss": np.float64(0.25), "acc": torch.tensor(0.5)})
    assert store.read_metrics() == [{"round": 1, "loss": 0.25, "acc": 0.5}]


def test_append_metrics_requires_round(store: RunStore) -> None:
    for bad in ({}, {"round": "1"}, {"round": True}, {"round": 1.0}):
        with pytest.raises(ValueError, match="integer 'round'"):
            store.append_metrics(bad)


def test_truncated_last_line_is_skipped(store: RunStore) -> None:
    for record in HISTORY[:2]:
        store.append_metrics(record)
    with store.metrics_path.open("a") as fh:
        fh.write('{"round": 3, "train_lo')  # a write torn by a kill
    assert store.read_metrics() == HISTORY[:2]


def test_append_after_torn_write_starts_clean(store: RunStore) -> None:
    store.append_metrics(HISTORY[0])
    with store.metrics_path.open("a") as fh:
        fh.write('{"round": 2, "tra')
    store.append_metrics(HISTORY[1])
    assert store.read_metrics() == HISTORY[:2]
    assert store.metrics_path.read_text().count("\n") == 2


def test_append_after_torn_first_line(store: RunStore) -> None:
    store.metrics_path.write_text('{"round": 1, "x"' + "y" * 10000)
    store.append_metrics(HISTORY[0])
    assert store.read_metrics() == [HISTORY[0]]


def test_corrupt_middle_line_is_an_error(store: RunStore) -> None:
    store.metrics_path.write_text('{"round": 1}\nnot json\n{"round": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        store.read_metrics()


def test_truncate_metrics_keeps_rounds_up_to_k(store: RunStore) -> None:
    for record in HISTORY:
        store.append_metrics(record)
    store.append_metrics({"round": 5, "train_loss": 0.5})
    store.append_metrics({"round": 4, "train_loss": 0.6})
    store.truncate_metrics(2)
    assert [r["round"] for r in store.read_metrics()] == [1, 2]
    assert store.read_metrics() == HISTORY[:2]
    store.append_metrics(HISTORY[2])  # the resumed run goes on
    assert store.read_metrics() == HISTORY
    store.truncate_metrics(0)
    assert store.read_metrics() == []


def test_truncate_metrics_drops_torn_line_and_missing_file(store: RunStore) -> None:
    store.truncate_metrics(3)  # no file: nothing happens
    assert not store.metrics_path.exists()
    store.append_metrics(HISTORY[0])
    with store.metrics_path.open("a") as fh:
        fh.write('{"round": 2')
    store.truncate_metrics(10)
    assert store.metrics_path.read_text() == json.dumps(HISTORY[0]) + "\n"


# ------------------------------------------------------------------ CSV


def test_write_csv_hand_checked(store: RunStore) -> None:
    for record in HISTORY:
        store.append_metrics(record)
    path = store.write_csv()
    assert path == store.run_dir / "metrics.csv"
    expected = (
        "round,time_round_s,train_loss,num_sampled,rejected,test_accuracy,"
        "client_accuracy.mean,client_accuracy.min,extra.a.b\n"
        "1,0.5,2.0,10,[],,,,\n"
        '2,0.25,1.5,10,"[3, 7]",0.75,0.7,0.5,\n'
        "3,0.125,1.0,10,[],,,,1\n"
    )
    assert path.read_text() == expected
    rows = list(csv.DictReader(path.open()))
    assert rows[1]["rejected"] == "[3, 7]"
    assert json.loads(rows[1]["rejected"]) == [3, 7]
    assert rows[1]["client_accuracy.mean"] == "0.7"


def test_write_csv_full_precision_and_none(store: RunStore) -> None:
    store.append_metrics({"round": 1, "x": 0.1 + 0.2, "y": None, "s": "a,b"})
    rows = list(csv.DictReader(store.write_csv().open()))
    assert rows == [{"round": "1", "x": "0.30000000000000004", "y": "", "s": "a,b"}]


def test_write_csv_without_metrics(store: RunStore) -> None:
    assert store.write_csv().read_text() == ""


# ------------------------------------------------------------------ helpers and plot


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [2]}}, "e": 3, "f": {}}) == {
        "a.b": 1,
        "a.c.d": [2],
        "e": 3,
    }


def test_to_plain_rejects_unknown() -> None:
    with pytest.raises(TypeError, match="cannot store"):
        to_plain({"x": object()})


def test_plot_writes_png(store: RunStore) -> None:
    assert store.plot() is None  # no metrics yet
    for record in HISTORY:
        store.append_metrics(record)
    path = store.plot()
    assert path == store.run_dir / "metrics.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
