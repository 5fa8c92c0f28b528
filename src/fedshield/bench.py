"""``fedshield bench``: the attack x defense (x data heterogeneity) matrix from one TOML file.

A bench file has a base experiment and three named axes::

    [bench]
    name = "bench_mnist"
    attacks = ["gaussian", "ipm", "backdoor"]      # names of [attacks.*] tables
    defenses = ["mean", "krum", "median"]          # names of [defenses.*] tables
    heterogeneity = ["iid", "dir0.5"]              # names of [heterogeneity.*] tables

    [experiment]          # the base experiment: any run-file section
    [experiment.data]
    dataset = "mnist"

    [attacks.gaussian]    # keys of [attack] applied on top of the base
    model = "gaussian"
    sigma = 100.0

    [defenses.krum]       # aggregator = server.aggregator; other keys go to [defense]
    aggregator = "krum"

    [heterogeneity."dir0.5"]  # keys of [data]
    partition = "dirichlet"
    alpha = 0.5

A defense without a table is the aggregator of that name with default options; an
attack without a table is the model-poisoning attack of that name (``label_flip`` and
``backdoor`` the data attacks); heterogeneity ``iid`` needs no table. Every cell's
configuration is built and validated before the first run starts.

For every (defense, heterogeneity) the no-attack baseline runs once (attack ``none``) and
is reused for the accuracy drop of all attacks. Finished cells are appended to
``cells.jsonl`` in the bench directory as they complete; ``fedshield bench --resume DIR``
runs only the missing ones. The matrix is printed, written as ``results.csv`` and
``matrix.md``, and drawn as ``heatmap.png``.
"""

from __future__ import annotations

import json
import math
import time
import tomllib
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedshield.config.loader import from_dict
from fedshield.config.schema import MODEL_ATTACKS, ConfigError, ExperimentConfig

BENCH_JSON = "bench.json"
CELLS_JSONL = "cells.jsonl"
ERRORS_JSONL = "errors.jsonl"
NO_ATTACK = "none"


@dataclass(frozen=True)
class Cell:
    """One experiment of the grid."""

    attack: str
    defense: str
    heterogeneity: str

    @property
    def key(self) -> str:
        """Stable identifier of the cell."""
        return f"{self.attack}|{self.defense}|{self.heterogeneity}"


@dataclass(frozen=True)
class BenchSpec:
    """A parsed bench file.

    Attributes:
        name: Bench name (prefix of the bench directory).
        experiment: The base experiment as a raw nested dict.
        attacks: Attack name -> ``[attack]`` overrides (``none`` = the baseline, first).
        defenses: Defense name -> ``{"aggregator": ..., **[defense] overrides}``.
        heterogeneity: Name -> ``[data]`` overrides.
    """

    name: str
    experiment: dict[str, Any]
    attacks: dict[str, dict[str, Any]]
    defenses: dict[str, dict[str, Any]]
    heterogeneity: dict[str, dict[str, Any]]

    def cells(self) -> list[Cell]:
        """Every cell, baselines first for each heterogeneity, in file order."""
        return [
            Cell(a, d, h) for h in self.heterogeneity for a in self.attacks for d in self.defenses
        ]

    def raw_config(self, cell: Cell) -> dict[str, Any]:
        """The cell's experiment as a raw dict (base + the three overrides)."""
        raw = json.loads(json.dumps(self.experiment))
        raw["name"] = f"{self.name}-{cell.attack}-{cell.defense}-{cell.heterogeneity}"
        attack = dict(self.attacks[cell.attack])
        if cell.attack == NO_ATTACK:
            raw.pop("attack", None)
        else:
            raw["attack"] = {**raw.get("attack", {}), **attack}
        defense = dict(self.defenses[cell.defense])
        server = raw.setdefault("server", {})
        server["aggregator"] = defense.pop("aggregator", cell.defense)
        raw["defense"] = {**raw.get("defense", {}), **defense}
        raw["data"] = {**raw.get("data", {}), **self.heterogeneity[cell.heterogeneity]}
        return raw

    def config(self, cell: Cell, output_dir: Path | None = None) -> ExperimentConfig:
        """The cell's validated configuration (runs write under ``output_dir``).

        Raises:
            ConfigError: Naming the cell and the mistake.
        """
        raw = self.raw_config(cell)
        out = raw.setdefault("output", {})
        out.update({"progress": False, "plot": False, "checkpoint": False})
        if output_dir is not None:
            out["dir"] = str(output_dir)
        from fedshield import aggregators
        from fedshield.engine.loop import check_defense

        try:
            cfg = from_dict(raw)
            try:
                aggregators.get(cfg.server.aggregator)
            except ValueError as exc:
                raise ConfigError(f"server.aggregator = {cfg.server.aggregator!r}: {exc}") from exc
            check_defense(cfg)
            return cfg
        except ConfigError as exc:
            raise ConfigError(
                f"bench cell attack={cell.attack!r} defense={cell.defense!r} "
                f"heterogeneity={cell.heterogeneity!r}: {exc}"
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (saved as ``bench.json``)."""
        return {
            "name": self.name,
            "experiment": self.experiment,
            "attacks": self.attacks,
            "defenses": self.defenses,
            "heterogeneity": self.heterogeneity,
        }


def _table(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{key}] must be a table of named tables, got {value!r}")
    return dict(value)


def _names(bench: Mapping[str, Any], key: str) -> list[str]:
    names = bench.get(key)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"bench.{key} must be a non-empty list of names, got {names!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"bench.{key} lists a name twice: {names}")
    return names


def _attack_preset(name: str) -> dict[str, Any]:
    if name in ("label_flip", "backdoor"):
        return {"data": name}
    if name in MODEL_ATTACKS and name != NO_ATTACK:
        return {"model": name}
    raise ConfigError(
        f"bench attack {name!r} has no [attacks.{name}] table and is not a built-in attack "
        f"name (label_flip, backdoor, {', '.join(a for a in MODEL_ATTACKS if a != NO_ATTACK)})"
    )


def parse_bench(raw: Mapping[str, Any]) -> BenchSpec:
    """Build a :class:`BenchSpec` from a parsed bench file and validate every cell.

    Raises:
        ConfigError: A missing or malformed table, an unknown name, or a cell whose
            experiment configuration is invalid.
    """
    unknown = set(raw) - {"bench", "experiment", "attacks", "defenses", "heterogeneity"}
    if unknown:
        raise ConfigError(
            f"unknown top-level table(s) {sorted(unknown)} in bench file: allowed are bench, "
            "experiment, attacks, defenses, heterogeneity"
        )
    bench = _table(raw, "bench")
    extra = set(bench) - {"name", "attacks", "defenses", "heterogeneity"}
    if extra:
        raise ConfigError(
            f"unknown key(s) {sorted(extra)} in [bench]: allowed are name, attacks, defenses, "
            "heterogeneity"
        )
    name = bench.get("name", "bench")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"bench.name must be a non-empty string, got {name!r}")
    attack_tables = _table(raw, "attacks")
    defense_tables = _table(raw, "defenses")
    het_tables = _table(raw, "heterogeneity")
    attacks: dict[str, dict[str, Any]] = {NO_ATTACK: {}}
    for a in _names(bench, "attacks"):
        if a == NO_ATTACK:
            continue  # the baseline is always there
        attacks[a] = dict(attack_tables[a]) if a in attack_tables else _attack_preset(a)
    defenses = {
        d: dict(defense_tables.get(d, {"aggregator": d})) for d in _names(bench, "defenses")
    }
    heterogeneity: dict[str, dict[str, Any]] = {}
    het_names = _names(bench, "heterogeneity") if "heterogeneity" in bench else ["iid"]
    for h in het_names:
        if h in het_tables:
            heterogeneity[h] = dict(het_tables[h])
        elif h == "iid":
            heterogeneity[h] = {"partition": "iid"}
        else:
            raise ConfigError(f"bench heterogeneity {h!r} has no [heterogeneity.{h}] table")
    for section, names in (
        ("attacks", attack_tables),
        ("defenses", defense_tables),
        ("heterogeneity", het_tables),
    ):
        listed = bench.get(section, [])
        unused = [n for n in names if n not in listed]
        if unused:
            raise ConfigError(
                f"[{section}.{unused[0]}] is defined but not listed in bench.{section}: list it "
                "or remove the table"
            )
    experiment = _table(raw, "experiment")
    spec = BenchSpec(name, experiment, attacks, defenses, heterogeneity)
    for cell in spec.cells():  # fail before anything runs
        spec.config(cell)
    return spec


def load_bench(path: str | Path) -> BenchSpec:
    """Read and validate a bench TOML file.

    Raises:
        ConfigError: The file is missing, not TOML, or describes a bad grid.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"bench file {str(p)!r} does not exist")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"bench file {str(p)!r} is not valid TOML: {exc}") from exc
    return parse_bench(raw)


def read_cells(bench_dir: Path) -> dict[str, dict[str, Any]]:
    """Finished cells of a bench directory by cell key (a torn last line is ignored)."""
    path = bench_dir / CELLS_JSONL
    out: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[rec["key"]] = rec
    return out


def _append(path: Path, record: Mapping[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()


def cell_record(cell: Cell, summary: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """The numbers of one finished cell."""
    det = summary.get("detection") or {}
    return {
        "key": cell.key,
        "attack": cell.attack,
        "defense": cell.defense,
        "heterogeneity": cell.heterogeneity,
        "accuracy": summary.get("final_test_accuracy"),
        "best_accuracy": summary.get("best_test_accuracy"),
        "backdoor_success": summary.get("final_backdoor_success"),
        "detection_tpr": det.get("tpr"),
        "detection_fpr": det.get("fpr"),
        "rejected_updates": summary.get("rejected_updates"),
        "time_s": summary.get("total_time_s"),
        "run_dir": str(run_dir),
    }


def run_bench(
    spec: BenchSpec,
    bench_dir: Path,
    *,
    on_cell: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every cell of ``spec`` not yet in ``bench_dir/cells.jsonl``.

    A cell that fails (e.g. a rule's assumption does not hold) is written to
    ``errors.jsonl`` and the grid goes on; it is retried on ``--resume``.

    Args:
        spec: The grid.
        bench_dir: The bench directory (holds ``bench.json``).
        on_cell: Called as ``on_cell(done, total, record)`` after each cell.

    Returns:
        All finished cell records, in grid order.
    """
    from fedshield.data import load_dataset
    from fedshield.engine.loop import run_experiment

    done = read_cells(bench_dir)
    cells = spec.cells()
    datasets: dict[str, Any] = {}
    for i, cell in enumerate(cells):
        if cell.key in done:
            continue
        cfg = spec.config(cell, bench_dir / "runs")
        ds_key = f"{cfg.data.dataset}:{cfg.seed}"
        if ds_key not in datasets:
            datasets[ds_key] = load_dataset(cfg.data.dataset, seed=cfg.seed)
        t0 = time.perf_counter()
        try:
            result = run_experiment(cfg, dataset=datasets[ds_key])
        except (ValueError, RuntimeError) as exc:
            failed: dict[str, Any] = {"key": cell.key, "error": f"{type(exc).__name__}: {exc}"}
            _append(bench_dir / ERRORS_JSONL, {**failed, "traceback": traceback.format_exc()})
            if on_cell is not None:
                on_cell(i + 1, len(cells), failed)
            continue
        rec = cell_record(cell, result.final_metrics, result.run_dir)
        rec["wall_s"] = time.perf_counter() - t0
        _append(bench_dir / CELLS_JSONL, rec)
        done[cell.key] = rec
        if on_cell is not None:
            on_cell(i + 1, len(cells), rec)
    return [done[c.key] for c in cells if c.key in done]


def with_drops(spec: BenchSpec, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records with ``accuracy_drop`` = baseline accuracy (same defense and heterogeneity,
    no attack) minus the cell's accuracy, and ``baseline_accuracy``."""
    base = {
        (r["defense"], r["heterogeneity"]): r["accuracy"]
        for r in records
        if r["attack"] == NO_ATTACK
    }
    out = []
    for r in records:
        b = base.get((r["defense"], r["heterogeneity"]))
        drop = b - r["accuracy"] if b is not None and r["accuracy"] is not None else None
        out.append({**r, "baseline_accuracy": b, "accuracy_drop": drop})
    return out


CSV_COLUMNS = (
    "attack",
    "defense",
    "heterogeneity",
    "accuracy",
    "baseline_accuracy",
    "accuracy_drop",
    "best_accuracy",
    "backdoor_success",
    "detection_tpr",
    "detection_fpr",
    "rejected_updates",
    "time_s",
    "run_dir",
)


def write_csv(records: list[dict[str, Any]], path: Path) -> Path:
    """One row per cell with :data:`CSV_COLUMNS`."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for r in records:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in CSV_COLUMNS])
    return path


def _fmt(value: Any, pct: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}" if pct else f"{value:.2f}"


def matrix(spec: BenchSpec, records: list[dict[str, Any]], heterogeneity: str) -> list[list[str]]:
    """The attack x defense matrix of one heterogeneity as text rows (header first).

    A cell shows the final test accuracy in %; backdoor cells add the attack success
    rate (``acc / ASR``); a cell not run yet shows ``.``.
    """
    by = {(r["attack"], r["defense"]): r for r in records if r["heterogeneity"] == heterogeneity}
    rows = [["attack \\ defense", *spec.defenses]]
    for a in spec.attacks:
        row = [a]
        for d in spec.defenses:
            r = by.get((a, d))
            if r is None:
                row.append(".")
            elif r.get("backdoor_success") is not None:
                row.append(f"{_fmt(r['accuracy'])} / {_fmt(r['backdoor_success'])}")
            else:
                row.append(_fmt(r["accuracy"]))
        rows.append(row)
    return rows


def matrix_markdown(spec: BenchSpec, records: list[dict[str, Any]]) -> str:
    """All matrices as markdown tables, one per heterogeneity."""
    parts = []
    for h in spec.heterogeneity:
        rows = matrix(spec, records, h)
        parts.append(f"### {h}\n")
        parts.append("| " + " | ".join(rows[0]) + " |")
        parts.append("|" + "---|" * len(rows[0]))
        parts.extend("| " + " | ".join(r) + " |" for r in rows[1:])
        parts.append("")
    return "\n".join(parts)


def plot_heatmap(spec: BenchSpec, records: list[dict[str, Any]], path: Path) -> Path:
    """Accuracy heatmaps (attack x defense), one panel per heterogeneity; below them the
    backdoor attack success rates of the backdoor attacks, when the grid has any."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    attacks, defenses, hets = list(spec.attacks), list(spec.defenses), list(spec.heterogeneity)
    backdoors = [
        a
        for a in attacks
        if any(r.get("backdoor_success") is not None and r["attack"] == a for r in records)
    ]
    panels = [("accuracy", "test accuracy %", "RdYlGn", attacks)]
    if backdoors:
        panels.append(("backdoor_success", "backdoor ASR %", "RdYlGn_r", backdoors))
    heights = [len(rows) for _, _, _, rows in panels]
    fig = Figure(figsize=(1.0 + 0.75 * len(defenses) * len(hets), 1.6 + 0.4 * sum(heights)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(
        len(panels), len(hets), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    for j, h in enumerate(hets):
        by = {(r["attack"], r["defense"]): r for r in records if r["heterogeneity"] == h}
        for i, (key, title, cmap, rows) in enumerate(panels):
            m = np.full((len(rows), len(defenses)), np.nan)
            for a_i, a in enumerate(rows):
                for d_i, d in enumerate(defenses):
                    v = by.get((a, d), {}).get(key)
                    if v is not None:
                        m[a_i, d_i] = 100 * v
            ax = axes[i][j]
            ax.imshow(m, cmap=cmap, vmin=0, vmax=100, aspect="auto")
            for (a_i, d_i), v in np.ndenumerate(m):
                if not np.isnan(v):
                    ax.text(d_i, a_i, f"{v:.0f}", ha="center", va="center", fontsize=7)
            ax.set_xticks(range(len(defenses)), defenses, rotation=45, ha="right", fontsize=7)
            ax.set_yticks(range(len(rows)), rows, fontsize=7)
            ax.set_title(f"{title}: {h}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def write_outputs(spec: BenchSpec, bench_dir: Path) -> list[dict[str, Any]]:
    """Write ``results.csv``, ``matrix.md`` and ``heatmap.png`` from the finished cells."""
    done = read_cells(bench_dir)
    records = with_drops(spec, [done[c.key] for c in spec.cells() if c.key in done])
    write_csv(records, bench_dir / "results.csv")
    (bench_dir / "matrix.md").write_text(matrix_markdown(spec, records), encoding="utf-8")
    if records:
        plot_heatmap(spec, records, bench_dir / "heatmap.png")
    return records


def create_bench_dir(spec: BenchSpec, root: Path) -> Path:
    """A new bench directory ``root/<name>-<time>`` holding ``bench.json``."""
    from fedshield.report.store import RunStore

    store = RunStore.create(root, spec.name)
    (store.run_dir / BENCH_JSON).write_text(json.dumps(spec.to_dict(), indent=2), encoding="utf-8")
    return store.run_dir


def open_bench_dir(bench_dir: Path) -> BenchSpec:
    """The spec saved in an existing bench directory.

    Raises:
        FileNotFoundError: Not a bench directory.
    """
    path = bench_dir / BENCH_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{bench_dir} is not a fedshield bench directory (no {BENCH_JSON})")
    raw = json.loads(path.read_text(encoding="utf-8"))
    spec = BenchSpec(
        raw["name"], raw["experiment"], raw["attacks"], raw["defenses"], raw["heterogeneity"]
    )
    for cell in spec.cells():
        spec.config(cell)
    return spec
