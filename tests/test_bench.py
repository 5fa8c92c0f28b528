"""Tests for fedshield.bench: parsing and validating grids, running, resuming, outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fedshield.bench import (
    create_bench_dir,
    load_bench,
    matrix,
    open_bench_dir,
    parse_bench,
    read_cells,
    run_bench,
    write_outputs,
)
from fedshield.cli.main import app
from fedshield.config.schema import ConfigError

TINY = """
[bench]
name = "tiny"
attacks = ["gaussian", "flip"]
defenses = ["mean", "median"]
heterogeneity = ["iid"]

[experiment.data]
dataset = "digits"
num_clients = 6

[experiment.model]
name = "logreg"

[experiment.train]
lr = 0.1
batch_size = 32

[experiment.server]
rounds = 3
clients_per_round = 6

[experiment.eval]
per_client = false

[experiment.attack]
num_malicious = 1

[attacks.gaussian]
model = "gaussian"
sigma = 100.0

[attacks.flip]
data = "label_flip"
"""


def _raw(text: str = TINY) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(text)


def test_cells_baseline_first_and_overrides_applied() -> None:
    spec = parse_bench(_raw())
    keys = [c.key for c in spec.cells()]
    assert keys == [
        "none|mean|iid",
        "none|median|iid",
        "gaussian|mean|iid",
        "gaussian|median|iid",
        "flip|mean|iid",
        "flip|median|iid",
    ]
    cfg = spec.config(spec.cells()[3])
    assert cfg.server.aggregator == "median"
    assert cfg.attack.model == "gaussian" and cfg.attack.sigma == 100.0
    assert cfg.data.partition == "iid"
    base = spec.config(spec.cells()[0])
    assert not base.attack.enabled  # the baseline has no attack


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda r: r.update(extra={}), "unknown top-level table"),
        (lambda r: r["bench"].update(attacks=[]), "bench.attacks must be a non-empty list"),
        (lambda r: r["bench"].update(attacks=["nope"]), "bench attack 'nope' has no"),
        (lambda r: r["bench"].update(heterogeneity=["dir"]), "no \\[heterogeneity.dir\\] table"),
        (
            lambda r: r["bench"].update(attacks=["gaussian"]),
            "\\[attacks.flip\\] is defined but not",
        ),
        (lambda r: r["bench"].update(defenses=["mean", "medain"]), "defense='medain'"),
        (
            lambda r: r["attacks"]["gaussian"].update(sigma=-1.0),
            "attack='gaussian'.*attack.sigma = -1.0 is out of range",
        ),
    ],
)
def test_bad_bench_files_fail_before_running(edit: Any, match: str) -> None:
    raw = _raw()
    edit(raw)
    with pytest.raises(ConfigError, match=match):
        parse_bench(raw)


def test_grid_runs_writes_outputs_and_resumes(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    spec = load_bench(path)
    bench_dir = create_bench_dir(spec, tmp_path / "out")
    seen: list[str] = []

    # Execute: run 2 cells, "crash", then resume
    cells = spec.cells()
    partial = type(spec)(
        spec.name, spec.experiment, {"none": {}}, spec.defenses, spec.heterogeneity
    )
    run_bench(partial, bench_dir)
    assert set(read_cells(bench_dir)) == {cells[0].key, cells[1].key}
    resumed = open_bench_dir(bench_dir)
    records = run_bench(resumed, bench_dir, on_cell=lambda i, n, rec: seen.append(rec["key"]))
    out = write_outputs(resumed, bench_dir)

    # Assert: only the 4 missing cells ran, everything is written, drops use the baseline
    assert seen == [c.key for c in cells[2:]]
    assert len(records) == 6
    by = {r["key"]: r for r in out}
    g = by["gaussian|mean|iid"]
    assert g["accuracy_drop"] == pytest.approx(by["none|mean|iid"]["accuracy"] - g["accuracy"])
    assert g["accuracy_drop"] > 0.3  # noise std 100 breaks the mean
    with (bench_dir / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and rows[0]["attack"] == "none"
    assert (bench_dir / "heatmap.png").stat().st_size > 1000
    assert "| gaussian |" in (bench_dir / "matrix.md").read_text()
    table = matrix(resumed, out, "iid")
    assert table[0] == ["attack \\ defense", "mean", "median"] and len(table) == 4
    assert json.loads((bench_dir / "bench.json").read_text())["name"] == "tiny"


def test_cli_bench_needs_file_or_resume(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["bench"])
    assert res.exit_code == 2 and "give a bench file" in res.output
    res = runner.invoke(app, ["bench", "--resume", str(tmp_path)])
    assert res.exit_code == 2 and "not a fedshield bench directory" in res.output
    bad = tmp_path / "bad.toml"
    bad.write_text(
        TINY.replace('"median"]', '"median", "krum"]').replace(
            "num_malicious = 1", "num_malicious = 3"
        )
    )
    res = runner.invoke(app, ["bench", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "krum" in res.output
