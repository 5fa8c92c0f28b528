"""Results: the run directory store, terminal tables and plots.

A run writes its directory through :class:`RunStore`; ``fedshield report`` and friends
read it back with :func:`list_runs`, :func:`runs_table`, :func:`compare_table`,
:func:`summary_table`, :func:`plot_history` and :func:`plot_comparison`.
"""

from fedshield.report.plots import metric_series, plot_comparison, plot_history
from fedshield.report.store import RunStore, flatten, to_plain, toml_dumps
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

__all__ = [
    "RunInfo",
    "RunStore",
    "compare_table",
    "flatten",
    "format_seconds",
    "format_value",
    "list_runs",
    "metric_series",
    "plot_comparison",
    "plot_history",
    "run_info",
    "runs_table",
    "summary_table",
    "to_plain",
    "toml_dumps",
]
