"""Tables of runs for the terminal (rich).

Everything here reads run directories defensively: a key missing from a config or a
summary shows as ``—``, and an unfinished run is listed with what it has so far.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from fedshield.report.store import CONFIG_JSON, RunStore, flatten, parse_run_dir_time

__all__ = [
    "MISSING",
    "RunInfo",
    "compare_table",
    "format_seconds",
    "format_value",
    "list_runs",
    "run_info",
    "runs_table",
    "summary_table",
]

MISSING = "—"
_CREATED_FORMAT = "%Y-%m-%d %H:%M:%S"


# --------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """Format a value for a table cell.

    ``None`` -> ``—``; floats with 4 decimals (scientific notation below 1e-3 or from
    1e5 up); bools as ``yes``/``no``; lists and dicts as compact JSON (cut at 80
    characters); anything else with ``str``.

    Args:
        value: The value.

    Returns:
        The cell text.
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4f}"
    if isinstance(value, list | tuple | dict):
        text = json.dumps(value, separators=(",", ":"), default=str)
        return text if len(text) <= 80 else text[:79] + "…"
    return str(value)


def format_seconds(value: Any) -> str:
    """Format a duration in seconds: ``0.41 s``, ``2m 03.5s``, ``1h 02m 03s``.

    Args:
        value: Seconds (anything that is not a finite number gives ``—``).

    Returns:
        The cell text.
    """
    seconds = _as_float(value)
    if seconds is None or not math.isfinite(seconds):
        return MISSING
    if seconds < 59.995:
        return f"{seconds:.2f} s"
    if seconds < 3599.95:
        minutes, rest = divmod(round(seconds, 1), 60)
        return f"{int(minutes)}m {rest:04.1f}s"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s"


def _format_keyed(key: str, value: Any) -> str:
    """Format a value, as a duration when its key ends in ``_s`` and it is a number."""
    if key.endswith("_s") and _as_float(value) is not None:
        return format_seconds(value)
    return format_value(value)


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _get(mapping: Any, *keys: str) -> Any:
    """``mapping[k1][k2]...`` or ``None`` if any level is missing or not a mapping."""
    for key in keys:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _cell(text: str) -> Text:
    return Text(text)  # Text, not str: values such as "[1, 2]" must not be read as markup


# --------------------------------------------------------------------------------------
# reading a run
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """What :func:`list_runs` knows about one run directory.

    Attributes:
        run_dir: The run directory.
        name: The experiment name from the config (the directory name if absent).
        created: When the run started, ``YYYY-mm-dd HH:MM:SS`` (from the directory name,
            else the time ``config.json`` was written).
        rounds_done: The highest ``round`` in ``metrics.jsonl`` (0 when none).
        rounds_total: ``server.rounds`` from the config, if present.
        final_accuracy: ``final_test_accuracy`` from the summary, else the last
            ``test_accuracy`` in the metrics.
        best_accuracy: ``best_test_accuracy`` from the summary, else the highest
            ``test_accuracy`` in the metrics.
        status: ``"finished"`` if ``summary.json`` exists, else ``"incomplete"``.
    """

    run_dir: Path
    name: str
    created: str
    rounds_done: int
    rounds_total: int | None
    final_accuracy: float | None
    best_accuracy: float | None
    status: str


@dataclass(frozen=True)
class _Run:
    """A run directory's contents, read defensively."""

    run_dir: Path
    config: dict[str, Any]
    summary: dict[str, Any] | None
    metrics: list[dict[str, Any]]
    created: datetime
    suffix: int

    def series(self, key: str) -> list[float]:
        values = (_as_float(r.get(key)) for r in self.metrics)
        return [v for v in values if v is not None]

    def summary_or(
        self, key: str, fallback: Callable[[list[float]], float | None], metric: str
    ) -> Any:
        """The summary's ``key``, else ``fallback`` over the metric's values, else None."""
        value = _get(self.summary, key)
        if value is not None:
            return value
        values = self.series(metric)
        return fallback(values) if values else None

    @property
    def rounds_done(self) -> int:
        rounds = [r["round"] for r in self.metrics if isinstance(r.get("round"), int)]
        if rounds:
            return max(rounds)
        from_summary = _get(self.summary, "rounds")
        return from_summary if isinstance(from_summary, int) else 0


def _read_run(run_dir: Path) -> _Run:
    store = RunStore.open(run_dir)
    try:
        config: Any = store.read_config()
    except (OSError, ValueError):
        config = {}
    try:
        summary = store.read_summary()
    except (OSError, ValueError):
        summary = {}  # present but unreadable: the run did finish
    try:
        metrics = store.read_metrics()
    except (OSError, ValueError):
        metrics = []
    parsed = parse_run_dir_time(run_dir)
    if parsed is None:
        created = datetime.fromtimestamp((run_dir / CONFIG_JSON).stat().st_mtime)
        suffix = 0
    else:
        created, suffix = parsed
    return _Run(run_dir, config, summary, metrics, created, suffix)


def _info(run: _Run) -> RunInfo:
    name = _get(run.config, "name")
    total = _get(run.config, "server", "rounds")
    final = run.summary_or("final_test_accuracy", lambda v: v[-1], "test_accuracy")
    best = run.summary_or("best_test_accuracy", max, "test_accuracy")
    return RunInfo(
        run_dir=run.run_dir,
        name=str(name) if name else run.run_dir.name,
        created=run.created.strftime(_CREATED_FORMAT),
        rounds_done=run.rounds_done,
        rounds_total=total if isinstance(total, int) and not isinstance(total, bool) else None,
        final_accuracy=_as_float(final),
        best_accuracy=_as_float(best),
        status="finished" if run.summary is not None else "incomplete",
    )


def run_info(run_dir: Path | str) -> RunInfo:
    """Summarise one run directory.

    Args:
        run_dir: The run directory.

    Returns:
        Its :class:`RunInfo`.

    Raises:
        FileNotFoundError: If ``run_dir`` is not a run directory.
    """
    return _info(_read_run(Path(run_dir)))


def list_runs(root: Path | str) -> list[RunInfo]:
    """List the runs under ``root``, newest first.

    Every direct subdirectory holding a ``config.json`` is a run. Unreadable files inside
    a run do not stop the listing; the run shows what could be read.

    Args:
        root: The folder of run directories (e.g. ``runs``).

    Returns:
        One :class:`RunInfo` per run, newest first (``[]`` if ``root`` does not exist).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [_read_run(d) for d in root.iterdir() if d.is_dir() and (d / CONFIG_JSON).is_file()]
    runs.sort(key=lambda r: (r.created, r.suffix, r.run_dir.name), reverse=True)
    return [_info(r) for r in runs]


# --------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------


def _accuracy(value: float | None) -> str:
    return MISSING if value is None else format_value(float(value))


def runs_table(infos: Sequence[RunInfo]) -> Table:
    """A table of runs, one row each (as :func:`list_runs` returns them).

    Args:
        infos: The runs.

    Returns:
        A rich table with the run directory, name, start time, rounds done/total, final
        and best test accuracy and status.
    """
    table = Table(title="Runs", show_lines=False)
    table.add_column("run")
    table.add_column("name")
    table.add_column("created")
    table.add_column("rounds", justify="right")
    table.add_column("final acc", justify="right")
    table.add_column("best acc", justify="right")
    table.add_column("status")
    for info in infos:
        total = MISSING if info.rounds_total is None else str(info.rounds_total)
        status = Text(info.status, style="green" if info.status == "finished" else "yellow")
        table.add_row(
            _cell(info.run_dir.name),
            _cell(info.name),
            _cell(info.created),
            _cell(f"{info.rounds_done}/{total}"),
            _cell(_accuracy(info.final_accuracy)),
            _cell(_accuracy(info.best_accuracy)),
            status,
        )
    return table


# Rows of compare_table drawn from fixed places, and the summary/config keys they show
# (left out of the "differs" rows below them).
_SHOWN_SUMMARY_KEYS = {
    "final_test_accuracy",
    "best_test_accuracy",
    "final_test_loss",
    "rounds",
    "total_time_s",
    "mean_round_time_s",
}
_SHOWN_CONFIG_KEYS = {
    "name",
    "seed",
    "data.dataset",
    "data.num_clients",
    "data.partition",
    "data.alpha",
    "model.name",
    "server.rounds",
    "server.clients_per_round",
    "server.aggregator",
}


def _partition(config: Mapping[str, Any]) -> str:
    partition = _get(config, "data", "partition")
    if partition is None:
        return MISSING
    alpha = _get(config, "data", "alpha")
    if str(partition) == "dirichlet" and alpha is not None:
        shown = f"{alpha:g}" if isinstance(alpha, int | float) else str(alpha)
        return f"{partition} (α={shown})"
    return str(partition)


def _clients(config: Mapping[str, Any]) -> str:
    total = _get(config, "data", "num_clients")
    per_round = _get(config, "server", "clients_per_round")
    if total is None and per_round is None:
        return MISSING
    text = format_value(total)
    return f"{text} ({per_round}/round)" if per_round is not None else text


def _rounds(run: _Run) -> str:
    total = _get(run.config, "server", "rounds")
    done = run.rounds_done
    return f"{done}/{total}" if total is not None else str(done)


def _fixed_rows(run: _Run) -> dict[str, str]:
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    final = run.summary_or("final_test_accuracy", lambda v: v[-1], "test_accuracy")
    best = run.summary_or("best_test_accuracy", max, "test_accuracy")
    loss = run.summary_or("final_test_loss", lambda v: v[-1], "test_loss")
    per_round = run.summary_or("mean_round_time_s", mean, "time_round_s")
    total = run.summary_or("total_time_s", sum, "time_round_s")
    return {
        "name": format_value(_get(run.config, "name")),
        "status": "finished" if run.summary is not None else "incomplete",
        "seed": format_value(_get(run.config, "seed")),
        "dataset": format_value(_get(run.config, "data", "dataset")),
        "model": format_value(_get(run.config, "model", "name")),
        "partition": _partition(run.config),
        "clients": _clients(run.config),
        "aggregator": format_value(_get(run.config, "server", "aggregator")),
        "rounds": _rounds(run),
        "final test accuracy": format_value(_as_float(final)),
        "best test accuracy": format_value(_as_float(best)),
        "final test loss": format_value(_as_float(loss)),
        "mean s/round": format_seconds(per_round),
        "total time": format_seconds(total),
    }


def _differing(flats: list[dict[str, Any]], skip: set[str], *, scalars_only: bool) -> list[str]:
    """Keys (in first-seen order) whose values are not the same in every mapping."""
    keys: dict[str, None] = {}
    for flat in flats:
        for key, value in flat.items():
            if key in skip or (scalars_only and isinstance(value, list | tuple)):
                continue
            keys[key] = None
    if len(flats) == 1:
        return list(keys)
    sentinel = object()
    return [
        key
        for key in keys
        if len({json.dumps(f.get(key, sentinel), default=repr) for f in flats}) > 1
    ]


def compare_table(run_dirs: Sequence[Path | str]) -> Table:
    """Compare runs side by side: one column per run.

    Rows: name, status, seed, dataset, model, partition, clients, aggregator, rounds
    (done/total), final and best test accuracy, final test loss, mean s/round and total
    time (from ``summary.json``, or worked out from the metrics of an unfinished run);
    then every scalar key of ``summary.json`` whose value differs between the runs; then
    every config setting that differs. With a single run, all the summary's scalar keys
    and none of the config's are listed.

    Args:
        run_dirs: The run directories, in column order.

    Returns:
        A rich table.

    Raises:
        FileNotFoundError: If a path is not a run directory (the message names it).
    """
    runs = [_read_run(Path(d)) for d in run_dirs]
    table = Table(title="Comparison", show_lines=False)
    table.add_column("", style="bold")
    for run in runs:
        table.add_column(run.run_dir.name, justify="right", overflow="fold")

    fixed = [_fixed_rows(run) for run in runs]
    for label in fixed[0] if fixed else []:
        table.add_row(_cell(label), *(_cell(rows[label]) for rows in fixed))

    summaries = [flatten(run.summary or {}) for run in runs]
    summary_keys = _differing(summaries, _SHOWN_SUMMARY_KEYS, scalars_only=True)
    if summary_keys and table.rows:
        table.rows[-1].end_section = True
    for key in summary_keys:
        table.add_row(_cell(key), *(_cell(_format_keyed(key, s.get(key))) for s in summaries))

    if len(runs) > 1:
        configs = [flatten(run.config) for run in runs]
        config_keys = _differing(configs, _SHOWN_CONFIG_KEYS, scalars_only=False)
        if config_keys and table.rows:
            table.rows[-1].end_section = True
        for key in config_keys:
            table.add_row(
                _cell(f"config {key}"), *(_cell(format_value(c.get(key))) for c in configs)
            )
    return table


def summary_table(summary: Mapping[str, Any], *, title: str = "Summary") -> Table:
    """A two-column key/value table, e.g. for the summary printed at the end of a run.

    Nested mappings are flattened to dotted keys; keys ending in ``_s`` are shown as
    durations.

    Args:
        summary: The values to show.
        title: The table title.

    Returns:
        A rich table.
    """
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", justify="right")
    for key, value in flatten(summary).items():
        table.add_row(_cell(key), _cell(_format_keyed(key, value)))
    return table
