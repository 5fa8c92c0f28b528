"""Plots of a run's metrics, drawn off-screen.

The figures are built with :class:`matplotlib.figure.Figure` and rendered by the Agg
canvas directly, never through ``pyplot``: importing or calling this module does not
choose or change matplotlib's global backend, and no window ever opens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["metric_series", "plot_comparison", "plot_history", "plot_privacy"]

_DPI = 120


def _lookup(record: Mapping[str, Any], key: str) -> Any:
    """Get ``key`` from a record; ``"a.b"`` finds ``record["a"]["b"]`` or a flat ``"a.b"``."""
    if key in record:
        return record[key]
    value: Any = record
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    out = float(value)
    return out if math.isfinite(out) else math.nan


def metric_series(
    records: Sequence[Mapping[str, Any]], key: str
) -> tuple[list[float], list[float]]:
    """Extract ``(rounds, values)`` for one metric from a run's records.

    Records without the metric (e.g. non-evaluation rounds for ``test_accuracy``) are
    skipped. The x value is the record's ``"round"``, or its 1-based position when it has
    none. Non-finite values become NaN (a gap in the line).

    Args:
        records: Metric records, as :meth:`RunStore.read_metrics` returns them.
        key: The metric; dotted keys reach into nested dicts (``"client_accuracy.p10"``).

    Returns:
        Two lists of the same length.
    """
    xs: list[float] = []
    ys: list[float] = []
    for i, record in enumerate(records):
        y = _number(_lookup(record, key))
        if y is None:
            continue
        x = _number(record.get("round"))
        xs.append(float(i + 1) if x is None or math.isnan(x) else x)
        ys.append(y)
    return xs, ys


def _client_band(
    records: Sequence[Mapping[str, Any]], prefix: str
) -> tuple[list[float], list[float], list[float], str] | None:
    """The per-client spread to shade: p10–p90, p10–max, min–max or mean±std."""
    for low_key, high_key, label in (
        ("p10", "p90", "clients p10–p90"),
        ("p10", "max", "clients p10–max"),
        ("min", "max", "clients min–max"),
    ):
        xs_lo, lo = metric_series(records, f"{prefix}.{low_key}")
        xs_hi, hi = metric_series(records, f"{prefix}.{high_key}")
        if lo and xs_lo == xs_hi:
            return xs_lo, lo, hi, label
    xs_m, mean = metric_series(records, f"{prefix}.mean")
    xs_s, std = metric_series(records, f"{prefix}.std")
    if mean and xs_m == xs_s:
        return (
            xs_m,
            [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)],
            "clients mean±std",
        )
    return None


def _empty_note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.5")


def _decorate(ax: Axes, title: str, ylabel: str) -> None:
    """Title, axis labels and grid of a per-round panel."""
    ax.set_title(title)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _maybe_log(ax: Axes, values: list[float]) -> None:
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 100:
        ax.set_yscale("log")


def _marker(n: int) -> str | None:
    return "o" if n <= 30 else None


def _save(fig: Figure, path: Path | str) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, format="png", dpi=_DPI)
    return out


def plot_history(
    records: Sequence[Mapping[str, Any]], path: Path | str, *, title: str | None = None
) -> Path:
    """Draw a run's history as a two-panel PNG.

    Left: ``test_accuracy`` over rounds, with the spread of per-client accuracy
    (``client_accuracy``: p10–p90, else p10–max, else min–max, else mean±std) shaded and
    the client median (or mean) dashed. Right: ``train_loss`` and ``test_loss`` over rounds
    (log scale when they span more than two decades). Series absent from the records are
    left out; a panel with nothing to draw says so.

    Args:
        records: Metric records, as :meth:`RunStore.read_metrics` returns them.
        path: Where to write the PNG (folders are created).
        title: A title over both panels.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_acc, ax_loss = fig.subplots(1, 2)

    drawn = False
    band = _client_band(records, "client_accuracy")
    if band is not None:
        xs, lo, hi, label = band
        ax_acc.fill_between(xs, lo, hi, alpha=0.2, color="tab:blue", linewidth=0, label=label)
        drawn = True
    xs, ys = metric_series(records, "client_accuracy.median")
    label = "clients median"
    if not ys:
        xs, ys = metric_series(records, "client_accuracy.mean")
        label = "clients mean"
    if ys:
        ax_acc.plot(xs, ys, linestyle="--", color="tab:blue", alpha=0.7, label=label)
        drawn = True
    xs, ys = metric_series(records, "test_accuracy")
    if ys:
        ax_acc.plot(xs, ys, color="tab:blue", marker=_marker(len(ys)), label="test accuracy")
        drawn = True
    if drawn:
        ax_acc.legend(loc="lower right", fontsize="small")
    else:
        _empty_note(ax_acc, "no accuracy recorded")
    _decorate(ax_acc, "Accuracy", "accuracy")

    loss_values: list[float] = []
    for key, label, color in (
        ("train_loss", "train loss", "tab:orange"),
        ("test_loss", "test loss", "tab:green"),
    ):
        xs, ys = metric_series(records, key)
        if ys:
            ax_loss.plot(xs, ys, color=color, marker=_marker(len(ys)), label=label)
            loss_values.extend(ys)
    if loss_values:
        ax_loss.legend(loc="upper right", fontsize="small")
        _maybe_log(ax_loss, loss_values)
    else:
        _empty_note(ax_loss, "no loss recorded")
    _decorate(ax_loss, "Loss", "loss")

    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_comparison(
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    path: Path | str,
    *,
    metric: str = "test_accuracy",
    title: str | None = None,
) -> Path:
    """Overlay one metric of several runs in a single PNG.

    Args:
        runs: Label -> that run's metric records (legend order follows the mapping).
        path: Where to write the PNG (folders are created).
        metric: The metric to draw; dotted keys reach into nested dicts
            (``"client_accuracy.p10"``). Runs without it are left out.
        title: The plot title (default: the metric's name).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    values: list[float] = []
    for label, records in runs.items():
        xs, ys = metric_series(records, metric)
        if ys:
            ax.plot(xs, ys, marker=_marker(len(ys)), markersize=3, label=label)
            values.extend(ys)
    if values:
        ax.legend(fontsize="small")
        if "loss" in metric:
            _maybe_log(ax, values)
    else:
        _empty_note(ax, f"no run recorded {metric}")
    ax.set_xlabel("round")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title or metric.replace("_", " "))
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_privacy(
    records: Sequence[Mapping[str, Any]], path: Path | str, *, title: str | None = None
) -> Path | None:
    """Draw epsilon over rounds and test accuracy against epsilon (``privacy.png``).

    Args:
        records: Metric records with an ``epsilon`` key (central DP runs).
        path: Where to write the PNG.
        title: A title over both panels.

    Returns:
        ``path``, or None when no record has an ``epsilon``.
    """
    xs, eps = metric_series(records, "epsilon")
    if not eps:
        return None
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_eps, ax_acc = fig.subplots(1, 2)
    ax_eps.plot(xs, eps, color="tab:red", marker=_marker(len(eps)))
    _decorate(ax_eps, "privacy spent", "epsilon")
    ax_eps.set_xlabel("round")
    by_round = dict(zip(xs, eps, strict=True))
    acc_x, acc = metric_series(records, "test_accuracy")
    pairs = [(by_round[r], a) for r, a in zip(acc_x, acc, strict=True) if r in by_round]
    if pairs:
        ax_acc.plot(
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            color="tab:blue",
            marker=_marker(len(pairs)),
        )
        _decorate(ax_acc, "accuracy vs privacy", "test accuracy")
        ax_acc.set_xlabel("epsilon")
    else:
        _empty_note(ax_acc, "no test accuracy recorded")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
