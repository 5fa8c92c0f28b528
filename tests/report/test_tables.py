"""Tests for fedshield.report.tables: listing and comparing runs."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from fedshield.report.store import RunStore
from fedshield.report.tables import (
    RunInfo,
    compare_table,
    format_seconds,
    format_value,
    list_runs,
    run_info,
    runs_table,
    summary_table,
)


def render(table: Table) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(table)
    return console.export_text()


def config(name: str, *, aggregator: str = "mean", lr: float = 0.1) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 0,
        "data": {"dataset": "mnist", "num_clients": 20, "partition": "dirichlet", "alpha": 0.5},
        "model": {"name": "mlp_2nn"},
        "train": {"lr": lr, "local_epochs": 1},
        "server": {"rounds": 4, "clients_per_round": 10, "aggregator": aggregator},
    }


def metrics(accs: list[float | None], losses: list[float | None]) -> list[dict[str, Any]]:
    out = []
    for i, (acc, loss) in enumerate(zip(accs, losses, strict=True), start=1):
        rec: dict[str, Any] = {"round": i, "time_round_s": 0.5 * i, "train_loss": 1.0 / i}
        if acc is not None:
            rec["test_accuracy"] = acc
        if loss is not None:
            rec["test_loss"] = loss
        out.append(rec)
    return out


def make_run(
    root: Path,
    name: str,
    when: datetime,
    records: list[dict[str, Any]],
    summary: dict[str, Any] | None = None,
    **cfg: Any,
) -> RunStore:
    store = RunStore.create(root, name, now=when)
    store.write_config(config(name, **cfg))
    for record in records:
        store.append_metrics(record)
    if summary is not None:
        store.write_summary(summary)
    return store


T1 = datetime(2025, 1, 1, 10, 0, 0)
T2 = datetime(2025, 1, 2, 9, 30, 0)
T3 = datetime(2025, 3, 1, 8, 0, 0)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_run(
        root,
        "fedavg",
        T1,
        metrics([None, 0.80, None, 0.91], [None, 0.6, None, 0.3]),
        {
            "final_test_accuracy": 0.9123,
            "best_test_accuracy": 0.9345,
            "final_test_loss": 0.2871,
            "rounds": 4,
            "total_time_s": 125.5,
            "mean_round_time_s": 31.375,
            "rejected_total": 0,
            "epsilon": 2.5,
            "same_everywhere": 7,
            "per_client": [1, 2],
        },
    )
    make_run(root, "krum", T2, metrics([0.5, 0.7], [1.2, 0.8]), aggregator="krum", lr=0.05)
    make_run(root, "krum", T2, metrics([0.6], [1.0]), aggregator="krum")  # same second: -1
    make_run(root, "newest", T3, [])
    (root / "not-a-run").mkdir()  # no config.json: ignored
    (root / "stray.txt").write_text("x")
    return root


# ------------------------------------------------------------------ list_runs


def test_list_runs_missing_root(tmp_path: Path) -> None:
    assert list_runs(tmp_path / "nothing") == []


def test_list_runs_order_and_status(root: Path) -> None:
    infos = list_runs(root)
    assert [i.run_dir.name for i in infos] == [
        "newest-20250301-080000",
        "krum-20250102-093000-1",
        "krum-20250102-093000",
        "fedavg-20250101-100000",
    ]
    assert [i.status for i in infos] == ["incomplete", "incomplete", "incomplete", "finished"]
    newest, krum1, krum, fedavg = infos
    assert newest == RunInfo(
        run_dir=root / "newest-20250301-080000",
        name="newest",
        created="2025-03-01 08:00:00",
        rounds_done=0,
        rounds_total=4,
        final_accuracy=None,
        best_accuracy=None,
        status="incomplete",
    )
    # unfinished: derived from the metrics
    assert (krum.rounds_done, krum.final_accuracy, krum.best_accuracy) == (2, 0.7, 0.7)
    assert (krum1.rounds_done, krum1.final_accuracy) == (1, 0.6)
    # finished: from the summary
    assert fedavg.name == "fedavg"
    assert fedavg.created == "2025-01-01 10:00:00"
    assert (fedavg.rounds_done, fedavg.rounds_total) == (4, 4)
    assert (fedavg.final_accuracy, fedavg.best_accuracy) == (0.9123, 0.9345)


def test_list_runs_dir_without_timestamp_uses_mtime(tmp_path: Path) -> None:
    run = tmp_path / "handmade"
    run.mkdir()
    RunStore(run).write_config({})
    old = time.mktime(datetime(2024, 5, 6, 7, 8, 9).timetuple())
    os.utime(run / "config.json", (old, old))
    make_run(tmp_path, "later", T1, [])
    infos = list_runs(tmp_path)
    assert [i.name for i in infos] == ["later", "handmade"]
    assert infos[1].created == "2024-05-06 07:08:09"
    assert infos[1].rounds_total is None


def test_list_runs_survives_corrupt_files(tmp_path: Path) -> None:
    store = make_run(tmp_path, "bad", T1, [])
    (store.run_dir / "config.json").write_text("{not json")
    store.metrics_path.write_text('{"round": 1}\ngarbage\n{"round": 2}\n')
    (info,) = list_runs(tmp_path)
    assert (info.name, info.rounds_done, info.status) == ("bad-20250101-100000", 0, "incomplete")


def test_runs_table(root: Path) -> None:
    text = render(runs_table(list_runs(root)))
    lines = text.splitlines()
    fedavg = next(line for line in lines if "fedavg-20250101-100000" in line)
    assert "2025-01-01 10:00:00" in fedavg
    assert "4/4" in fedavg
    assert "0.9123" in fedavg
    assert "0.9345" in fedavg
    assert "finished" in fedavg
    newest = next(line for line in lines if "newest" in line)
    assert "0/4" in newest
    assert "incomplete" in newest
    assert "—" in newest
    # newest first
    assert text.index("newest") < text.index("krum") < text.index("fedavg")


# ------------------------------------------------------------------ compare_table


def _row(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.lstrip("│ ").startswith(label))


def test_compare_table_contents(root: Path) -> None:
    fedavg = root / "fedavg-20250101-100000"
    krum = root / "krum-20250102-093000"
    text = render(compare_table([fedavg, str(krum)]))
    header = text.splitlines()[2]
    assert header.index("fedavg-20250101-100000") < header.index("krum-20250102-093000")

    assert "mnist" in _row(text, "dataset")
    assert "mlp_2nn" in _row(text, "model")
    assert "dirichlet (α=0.5)" in _row(text, "partition")
    assert "20 (10/round)" in _row(text, "clients")
    agg = _row(text, "aggregator")
    assert agg.index("mean") < agg.index("krum")
    rounds = _row(text, "rounds")
    assert "4/4" in rounds and "2/4" in rounds
    # fedavg from its summary; krum (unfinished) from its metrics
    final = _row(text, "final test accuracy")
    assert "0.9123" in final and "0.7000" in final
    best = _row(text, "best test accuracy")
    assert "0.9345" in best and "0.7000" in best
    loss = _row(text, "final test loss")
    assert "0.2871" in loss and "0.8000" in loss
    per_round = _row(text, "mean s/round")
    assert "31.38 s" in per_round and "0.75 s" in per_round  # krum: mean(0.5, 1.0)
    total = _row(text, "total time")
    assert "2m 05.5s" in total and "1.50 s" in total
    assert "finished" in _row(text, "status") and "incomplete" in _row(text, "status")

    # summary scalars that differ (krum has no summary), not lists, not shown ones twice
    assert "2.5000" in _row(text, "epsilon")
    assert "7" in _row(text, "same_everywhere")
    assert "per_client" not in text
    assert "total_time_s" not in text
    # config values that differ
    assert "0.1000" in _row(text, "config train.lr") and "0.0500" in _row(text, "config train.lr")
    assert "config data.dataset" not in text
    assert "config train.local_epochs" not in text


def test_compare_table_only_differing_summary_keys(tmp_path: Path) -> None:
    common = {"final_test_accuracy": 0.5, "same": 1, "eps": 1.0, "nested": {"x": 1, "y": 2}}
    a = make_run(tmp_path, "a", T1, [], common)
    b = make_run(tmp_path, "b", T2, [], common | {"eps": 3.0, "nested": {"x": 1, "y": 5}})
    text = render(compare_table([a.run_dir, b.run_dir]))
    assert "1.0000" in _row(text, "eps") and "3.0000" in _row(text, "eps")
    assert "5" in _row(text, "nested.y")
    assert "nested.x" not in text
    assert " same " not in text
    assert "config" not in text  # configs are equal apart from the name


def test_compare_table_single_run_lists_all_summary_scalars(root: Path) -> None:
    text = render(compare_table([root / "fedavg-20250101-100000"]))
    assert "7" in _row(text, "same_everywhere")
    assert "0" in _row(text, "rejected_total")
    assert "config" not in text


def test_compare_table_missing_dir(root: Path) -> None:
    missing = root / "ghost-20250101-000000"
    with pytest.raises(FileNotFoundError, match="ghost-20250101-000000"):
        compare_table([root / "fedavg-20250101-100000", missing])
    with pytest.raises(FileNotFoundError, match="not-a-run"):
        compare_table([root / "not-a-run"])


def test_compare_table_missing_keys_show_dash(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, "bare", now=T1)
    store.write_config({"name": "bare"})
    text = render(compare_table([store.run_dir]))
    for label in ("dataset", "model", "partition", "clients", "aggregator", "final test loss"):
        assert "—" in _row(text, label)
    assert _row(text, "rounds").rstrip(" │").endswith("0")


# ------------------------------------------------------------------ summary_table, format


def test_summary_table() -> None:
    summary = {
        "final_test_accuracy": 0.91234,
        "rounds": 50,
        "total_time_s": 3725.0,
        "mean_round_time_s": 0.41,
        "privacy": {"epsilon": 2.0, "delta": 1e-5},
        "rejected": [[3, "nan"]],
        "note": "[bold]not markup[/bold]",
        "missing": None,
    }
    text = render(summary_table(summary, title="Final"))
    assert "Final" in text
    assert "0.9123" in _row(text, "final_test_accuracy")
    assert "50" in _row(text, "rounds")
    assert "1h 02m 05s" in _row(text, "total_time_s")
    assert "0.41 s" in _row(text, "mean_round_time_s")
    assert "2.0000" in _row(text, "privacy.epsilon")
    assert "1.000e-05" in _row(text, "privacy.delta")
    assert '[[3,"nan"]]' in _row(text, "rejected")
    assert "[bold]not markup[/bold]" in _row(text, "note")
    assert "—" in _row(text, "missing")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (True, "yes"),
        (3, "3"),
        (0.5, "0.5000"),
        (0.0, "0.0000"),
        (1e-4, "1.000e-04"),
        (123456.0, "1.235e+05"),
        (float("nan"), "nan"),
        ("x", "x"),
        ([1, 2], "[1,2]"),
    ],
)
def test_format_value(value: Any, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.41, "0.41 s"),
        (59.999, "1m 00.0s"),
        (125.5, "2m 05.5s"),
        (3599.97, "1h 00m 00s"),
        (3725, "1h 02m 05s"),
        (None, "—"),
        ("x", "—"),
    ],
)
def test_format_seconds(value: Any, text: str) -> None:
    assert format_seconds(value) == text


def test_run_info(root: Path) -> None:
    info = run_info(root / "krum-20250102-093000")
    assert (info.name, info.rounds_done, info.final_accuracy) == ("krum", 2, 0.7)
