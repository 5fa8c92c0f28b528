"""The results store: one run directory on disk.

A run directory holds everything a run produced, in plain formats a person can read::

    runs/<name>-<YYYYmmdd-HHMMSS>[-N]/
        config.json      the resolved experiment config (what the run used)
        config.toml      the same config as TOML (copy it to re-run the experiment)
        metrics.jsonl    one JSON object per finished round, appended and fsync'd
        metrics.csv      the same records flattened to one row per round (write_csv)
        metrics.png      accuracy and loss curves (plot)
        summary.json     written once, when the run finishes
        checkpoint.pt    the latest checkpoint (written by the engine)
        *.json           anything else a component stores with write_json

Every whole-file write goes through a temporary file and :func:`os.replace`, so a reader
(or a crash) never sees half a file; metrics are appended line by line and synced, so a
killed run keeps every round it finished.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_JSON",
    "CONFIG_TOML",
    "METRICS_CSV",
    "METRICS_JSONL",
    "METRICS_PNG",
    "SUMMARY_JSON",
    "RunStore",
    "flatten",
    "parse_run_dir_time",
    "to_plain",
    "toml_dumps",
]

CONFIG_JSON = "config.json"
CONFIG_TOML = "config.toml"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
METRICS_PNG = "metrics.png"
SUMMARY_JSON = "summary.json"
CHECKPOINT = "checkpoint.pt"

_TIME_FORMAT = "%Y%m%d-%H%M%S"
_RUN_DIR_RE = re.compile(r"-(\d{8}-\d{6})(?:-(\d+))?$")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")
_BARE_TOML_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


# --------------------------------------------------------------------------------------
# plain-data conversion
# --------------------------------------------------------------------------------------


def to_plain(obj: Any) -> Any:
    """Convert a value to plain JSON-compatible Python data.

    Mappings become ``dict`` with ``str`` keys, tuples/lists/sets become lists (sets
    sorted), :class:`pathlib.Path` becomes ``str``, enums their value, dataclass instances
    their fields, and numpy/torch scalars and arrays (anything with ``tolist``/``item``)
    plain numbers or nested lists. ``None``, ``bool``, ``int``, ``float`` and ``str`` pass
    through unchanged.

    Args:
        obj: The value to convert.

    Returns:
        The converted value.

    Raises:
        TypeError: If a value of an unsupported type is found; the message names it.
    """
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((to_plain(v) for v in obj), key=repr)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, enum.Enum):
        return to_plain(obj.value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_plain(obj.tolist())
    if hasattr(obj, "item"):
        return to_plain(obj.item())
    raise TypeError(f"cannot store a value of type {type(obj).__name__}: {obj!r}")


def _dumps(obj: Any, *, indent: int | None = None) -> str:
    return json.dumps(to_plain(obj), indent=indent, ensure_ascii=False)


def flatten(record: Mapping[str, Any], *, sep: str = ".") -> dict[str, Any]:
    """Flatten nested mappings into one level with joined keys.

    ``{"a": {"b": 1, "c": {"d": 2}}, "e": 3}`` becomes ``{"a.b": 1, "a.c.d": 2, "e": 3}``.
    Lists and other values are left as they are; an empty nested mapping disappears.

    Args:
        record: The mapping to flatten.
        sep: The separator placed between joined keys.

    Returns:
        A new flat dict, in the order the keys are met.
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Mapping[str, Any]) -> None:
        for key, item in value.items():
            name = f"{prefix}{sep}{key}" if prefix else str(key)
            if isinstance(item, Mapping):
                walk(name, item)
            else:
                out[name] = item

    walk("", record)
    return out


# --------------------------------------------------------------------------------------
# TOML writer (the standard library only reads TOML)
# --------------------------------------------------------------------------------------


def _toml_key(key: str) -> str:
    return key if _BARE_TOML_KEY.match(key) else _toml_str(key)


def _toml_str(text: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n"}
    escapes |= {"\f": "\\f", "\r": "\\r"}
    parts = ['"']
    for ch in text:
        if ch in escapes:
            parts.append(escapes[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            parts.append(f"\\u{ord(ch):04x}")
        else:
            parts.append(ch)
    parts.append('"')
    return "".join(parts)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)  # 'inf', '-inf', '0.1', '1e-05' are all valid TOML floats
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list):
        items = [_toml_value(v, f"{where}[{i}]") for i, v in enumerate(value) if v is not None]
        return "[" + ", ".join(items) + "]"
    if isinstance(value, dict):
        pairs = [
            f"{_toml_key(k)} = {_toml_value(v, f'{where}.{k}')}"
            for k, v in value.items()
            if v is not None
        ]
        return "{ " + ", ".join(pairs) + " }" if pairs else "{}"
    raise TypeError(f"cannot write {where} = {value!r} ({type(value).__name__}) as TOML")


def toml_dumps(data: Mapping[str, Any]) -> str:
    """Write nested mappings as a TOML document.

    Supports what a resolved experiment config holds: nested mappings (written as
    ``[tables]``), ``str``, ``int``, ``float`` (including ``inf``/``nan``), ``bool`` and
    lists of those (mappings inside lists become inline tables). TOML has no null, so
    ``None`` values are left out, in tables and in lists alike. Anything else is first
    converted with :func:`to_plain`. :func:`tomllib.loads` reads the result back to the
    same data, less the ``None`` values.

    Args:
        data: The top-level table.

    Returns:
        The TOML text, ending with a newline.

    Raises:
        TypeError: If a value cannot be represented.
    """
    plain = to_plain(data)
    lines: list[str] = []

    def table(path: list[str], body: dict[str, Any]) -> None:
        scalars = [(k, v) for k, v in body.items() if v is not None and not isinstance(v, dict)]
        tables = [(k, v) for k, v in body.items() if isinstance(v, dict)]
        if path and (scalars or not tables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
        for key, value in scalars:
            lines.append(f"{_toml_key(key)} = {_toml_value(value, '.'.join([*path, key]))}")
        for key, value in tables:
            table([*path, key], value)

    table([], plain)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# file helpers
# --------------------------------------------------------------------------------------


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a synced temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_run_dir_time(run_dir: Path | str) -> tuple[datetime, int] | None:
    """Read the creation time and the ``-N`` suffix from a run directory's name.

    Args:
        run_dir: A directory named ``<name>-<YYYYmmdd-HHMMSS>[-N]``.

    Returns:
        ``(time, N)`` with ``N = 0`` when there is no suffix, or ``None`` when the name does
        not follow the pattern.
    """
    match = _RUN_DIR_RE.search(Path(run_dir).name)
    if match is None:
        return None
    try:
        when = datetime.strptime(match.group(1), _TIME_FORMAT)
    except ValueError:
        return None
    return when, int(match.group(2) or 0)


# --------------------------------------------------------------------------------------
# RunStore
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStore:
    """One run directory: ``runs/<name>-<YYYYmmdd-HHMMSS>[-N]/``.

    Build it with :meth:`create` (a new run) or :meth:`open` (an existing one, e.g. to
    resume or report). The store holds no state besides the directory; every method
    reads or writes the files directly.

    Attributes:
        run_dir: The run directory.
    """

    run_dir: Path

    # ---------------------------------------------------------------- construction

    @classmethod
    def create(cls, root: Path | str, name: str, *, now: datetime | None = None) -> RunStore:
        """Make a new, unique run directory under ``root``.

        The directory is ``<root>/<name>-<YYYYmmdd-HHMMSS>``; if that exists, ``-1``,
        ``-2``, ... is appended. Creation uses ``mkdir`` without ``exist_ok``, so two
        processes starting at the same second still get different directories. ``root``
        is created if missing. Characters of ``name`` other than letters, digits and
        ``._+-`` are replaced with ``_``.

        Args:
            root: The folder that holds run directories (e.g. ``runs``).
            name: The experiment name.
            now: The timestamp to use (default: the current local time).

        Returns:
            The store for the new, empty directory. Call :meth:`write_config` next: until
            ``config.json`` exists, :meth:`open` and :func:`~fedshield.report.list_runs`
            do not treat the directory as a run.
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        safe = _UNSAFE_NAME_CHARS.sub("_", name).strip("._") or "run"
        stamp = (now or datetime.now()).strftime(_TIME_FORMAT)
        base = f"{safe}-{stamp}"
        for n in range(100_000):
            candidate = root / (base if n == 0 else f"{base}-{n}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return cls(candidate)
        raise FileExistsError(f"could not find a free run directory name for {root / base}")

    @classmethod
    def open(cls, run_dir: Path | str) -> RunStore:
        """Open an existing run directory.

        Args:
            run_dir: A directory written by a run (it holds ``config.json``).

        Returns:
            The store.

        Raises:
            FileNotFoundError: If the directory does not exist or holds no ``config.json``.
        """
        path = Path(run_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"run directory not found: {path}")
        if not (path / CONFIG_JSON).is_file():
            raise FileNotFoundError(f"{path} is not a fedshield run directory (no {CONFIG_JSON})")
        return cls(path)

    # ---------------------------------------------------------------- paths

    @property
    def checkpoint_path(self) -> Path:
        """``run_dir / "checkpoint.pt"``, where the engine keeps its latest checkpoint."""
        return self.run_dir / CHECKPOINT

    @property
    def metrics_path(self) -> Path:
        """``run_dir / "metrics.jsonl"``."""
        return self.run_dir / METRICS_JSONL

    def path(self, name: str) -> Path:
        """Return the path of a file inside the run directory.

        Args:
            name: A relative path such as ``"clients.json"`` or ``"attacks/mia.json"``.

        Returns:
            ``run_dir / name``.

        Raises:
            ValueError: If ``name`` is absolute or climbs out of the run directory.
        """
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"not a file name inside the run directory: {name!r}")
        return self.run_dir / rel

    # ---------------------------------------------------------------- config / json

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Write the resolved config as ``config.json`` (indent 2) and ``config.toml``.

        Args:
            config: The resolved config as nested mappings (e.g. ``dataclasses.asdict``
                of the typed config). ``None`` values are kept in the JSON and left out of
                the TOML, which has no null.
        """
        plain = to_plain(config)
        _atomic_write_text(self.run_dir / CONFIG_JSON, json.dumps(plain, indent=2) + "\n")
        _atomic_write_text(self.run_dir / CONFIG_TOML, toml_dumps(plain))

    def read_config(self) -> dict[str, Any]:
        """Read ``config.json``.

        Returns:
            The config as written by :meth:`write_config`.
        """
        config = self.read_json(CONFIG_JSON)
        if not isinstance(config, dict):
            raise ValueError(f"{self.run_dir / CONFIG_JSON} does not hold a JSON object")
        return config

    def write_json(self, name: str, obj: Any) -> None:
        """Write any JSON-compatible value to ``run_dir / name``, atomically.

        Args:
            name: A relative file name, e.g. ``"clients.json"``; folders are created.
            obj: The value (converted with :func:`to_plain`, so numpy/torch scalars,
                paths, enums and dataclasses are fine).
        """
        _atomic_write_text(self.path(name), _dumps(obj, indent=2) + "\n")

    def read_json(self, name: str) -> Any:
        """Read ``run_dir / name`` as JSON.

        Args:
            name: A relative file name.

        Returns:
            The decoded value.

        Raises:
            FileNotFoundError: If the file does not exist.
        """
        with self.path(name).open(encoding="utf-8") as fh:
            return json.load(fh)

    # ---------------------------------------------------------------- metrics

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """Append one round's record to ``metrics.jsonl``, flushed and fsync'd.

        If the file ends with a partial line (a write torn by a crash), that fragment is
        cut off first, so the new record always starts on its own line.

        Args:
            record: The round's metrics. It must have an integer ``"round"``; any other
                keys (numbers, strings, nested mappings, lists) are kept as they are.

        Raises:
            ValueError: If ``record`` has no integer ``"round"``.
        """
        rnd = record.get("round")
        if isinstance(rnd, bool) or not isinstance(rnd, int):
            raise ValueError(f"a metrics record needs an integer 'round', got {rnd!r}")
        line = json.dumps(to_plain(record), ensure_ascii=False) + "\n"
        path = self.metrics_path
        with path.open("ab+") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size > 0:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    self._cut_partial_tail(fh, size)
            fh.seek(0, os.SEEK_END)
            fh.write(line.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _cut_partial_tail(fh: Any, size: int) -> None:
        """Truncate an open binary file to just after its last newline."""
        block = 4096
        end = size
        while end > 0:
            start = max(0, end - block)
            fh.seek(start)
            chunk = fh.read(end - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                fh.truncate(start + idx + 1)
                return
            end = start
        fh.truncate(0)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Read every record of ``metrics.jsonl``, in file order.

        A last line that does not decode (a write torn by a crash) is skipped; an
        undecodable line anywhere else is an error.

        Returns:
            The records, or ``[]`` when there is no metrics file.

        Raises:
            ValueError: If a line other than the last is not a JSON object.
        """
        path = self.metrics_path
        if not path.exists():
            return []
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
        records: list[dict[str, Any]] = []
        for i, (number, text) in enumerate(lines):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                if i == len(lines) - 1:
                    break
                raise ValueError(f"{self.metrics_path}:{number}: not valid JSON ({err})") from err
            if not isinstance(value, dict):
                raise ValueError(f"{self.metrics_path}:{number}: not a JSON object")
            records.append(value)
        return records

    def truncate_metrics(self, last_round: int) -> None:
        """Keep only the records with ``record["round"] <= last_round`` (atomic rewrite).

        Used on resume from a checkpoint taken after ``last_round``: the rounds after it
        are run again and must not appear twice. A torn last line is dropped too.

        Args:
            last_round: The last round to keep.
        """
        if not self.metrics_path.exists():
            return
        kept = [
            r
            for r in self.read_metrics()
            if isinstance(r.get("round"), int) and r["round"] <= last_round
        ]
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
        _atomic_write_text(self.metrics_path, text)

    # ---------------------------------------------------------------- summary

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Write ``summary.json`` (its presence marks the run as finished).

        Args:
            summary: The final numbers, e.g. ``final_test_accuracy``, ``total_time_s``.
        """
        self.write_json(SUMMARY_JSON, summary)

    def read_summary(self) -> dict[str, Any] | None:
        """Read ``summary.json``.

        Returns:
            The summary, or ``None`` if the run has not finished (no file).
        """
        if not (self.run_dir / SUMMARY_JSON).is_file():
            return None
        summary = self.read_json(SUMMARY_JSON)
        if not isinstance(summary, dict):
            raise ValueError(f"{self.run_dir / SUMMARY_JSON} does not hold a JSON object")
        return summary

    # ---------------------------------------------------------------- exports

    def write_csv(self) -> Path:
        """Write ``metrics.csv`` from ``metrics.jsonl``.

        One row per record. The columns are the union of the records' flattened keys in
        the order first seen (nested mappings are joined with ``"."``, e.g.
        ``client_accuracy.mean``). Lists are written as JSON text, ``None`` and absent
        values as empty cells, floats with full precision.

        Returns:
            The path of the CSV file (written even when there are no records: then it is
            empty).
        """
        rows = [flatten(r) for r in self.read_metrics()]
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        out: list[list[str]] = [list(columns)] if columns else []
        for row in rows:
            out.append([_csv_cell(row[c]) if c in row else "" for c in columns])
        path = self.run_dir / METRICS_CSV
        _atomic_write_text(path, _csv_text(out))
        return path

    def plot(self) -> Path | None:
        """Draw ``metrics.png`` from the metrics with :func:`~fedshield.report.plot_history`
        (and ``privacy.png``, epsilon over rounds and accuracy vs epsilon, for DP runs).

        Returns:
            The PNG's path, or ``None`` when there are no metrics yet.
        """
        from fedshield.report.plots import plot_history, plot_privacy

        records = self.read_metrics()
        if not records:
            return None
        title: str | None = None
        try:
            name = self.read_config().get("name")
            title = str(name) if name else None
        except (OSError, ValueError):
            title = None
        out = plot_history(records, self.run_dir / METRICS_PNG, title=title or self.run_dir.name)
        plot_privacy(records, self.run_dir / "privacy.png", title=title or self.run_dir.name)
        return out


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return json.dumps(to_plain(value), ensure_ascii=False)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue()
