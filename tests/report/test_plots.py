"""Tests for fedshield.report.plots: PNG output without touching pyplot's backend."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fedshield.report.plots import metric_series, plot_comparison, plot_history

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (and check the file is a PNG)."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data[-8:-4] == b"IEND"
    return width, height


def history(n: int = 12, *, band: str = "p10max") -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for r in range(1, n + 1):
        rec: dict[str, Any] = {
            "round": r,
            "time_round_s": 0.4,
            "train_loss": 2.0 / r,
            "num_sampled": 10,
            "rejected": [],
            "extra": {"nested": {"deep": r}},
        }
        if r % 2 == 0:  # evaluation rounds
            acc = 1 - 1 / (r + 1)
            rec["test_accuracy"] = acc
            rec["test_loss"] = 1.5 / r
            stats = {"mean": acc - 0.05, "std": 0.04, "min": acc - 0.2, "p10": acc - 0.1}
            stats |= {"median": acc - 0.03, "max": acc + 0.02}
            if band == "p90":
                stats["p90"] = acc + 0.01
            if band == "meanstd":
                stats = {"mean": acc - 0.05, "std": 0.04}
            rec["client_accuracy"] = stats
        records.append(rec)
    return records


@pytest.mark.parametrize("band", ["p10max", "p90", "meanstd"])
def test_plot_history_writes_valid_png(tmp_path: Path, band: str) -> None:
    path = plot_history(history(band=band), tmp_path / "sub" / "m.png", title="run")
    assert path == tmp_path / "sub" / "m.png"
    width, height = png_size(path)
    assert (width, height) == (1320, 504)  # 11 x 4.2 inches at 120 dpi
    assert path.stat().st_size > 10_000  # two panels with lines, not a blank image


def test_plot_history_missing_series(tmp_path: Path) -> None:
    only_train = [{"round": r, "train_loss": 1.0 / r} for r in range(1, 5)]
    png_size(plot_history(only_train, tmp_path / "a.png"))
    png_size(plot_history([], tmp_path / "empty.png"))
    odd = [{"train_loss": math.inf, "test_accuracy": math.nan, "x": [1]}, {"round": "?"}]
    png_size(plot_history(odd, str(tmp_path / "odd.png")))


def test_plotting_never_imports_pyplot(tmp_path: Path) -> None:
    """A user's backend choice is untouched: the module renders with Agg, not pyplot."""
    code = (
        "import sys\n"
        "from fedshield.report import plot_history, plot_comparison\n"
        "recs = [{'round': 1, 'train_loss': 1.0, 'test_accuracy': 0.5}]\n"
        f"plot_history(recs, {str(tmp_path / 'a.png')!r})\n"
        f"plot_comparison({{'x': recs}}, {str(tmp_path / 'b.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    png_size(tmp_path / "a.png")


def test_plot_comparison(tmp_path: Path) -> None:
    runs = {"a": history(10), "b": history(6), "none": [{"round": 1, "train_loss": 1.0}]}
    path = plot_comparison(runs, tmp_path / "cmp.png")
    assert png_size(path) == (900, 540)
    assert path.stat().st_size > 5_000
    loss = plot_comparison(runs, tmp_path / "loss.png", metric="train_loss", title="loss")
    png_size(loss)
    nested = plot_comparison(runs, tmp_path / "p10.png", metric="client_accuracy.p10")
    png_size(nested)
    png_size(plot_comparison({}, tmp_path / "nothing.png"))


def test_metric_series() -> None:
    records = history(4)
    assert metric_series(records, "test_accuracy") == ([2.0, 4.0], [1 - 1 / 3, 1 - 1 / 5])
    assert metric_series(records, "extra.nested.deep") == ([1.0, 2.0, 3.0, 4.0], [1, 2, 3, 4])
    assert metric_series([{"client_accuracy.p10": 0.5}], "client_accuracy.p10") == ([1.0], [0.5])
    xs, ys = metric_series([{"round": 1, "a": math.inf}, {"round": 2, "a": True}], "a")
    assert xs == [1.0] and math.isnan(ys[0])
