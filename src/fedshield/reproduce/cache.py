"""The results cache of the reproductions: each finished run's result is persisted under
a key of its settings, so an interrupted reproduction resumes where it stopped."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ResultCache"]


class ResultCache:
    """Results of finished runs, persisted after each one (resume after a crash).

    Args:
        path: The JSON file.
        prefix: Key prefix (a hash of the study's settings).
        summaries: Keys whose value only sums other entries (not counted by
            :meth:`seconds`).
    """

    def __init__(self, path: Path, prefix: str, summaries: tuple[str, ...] = ()) -> None:
        self.path = path
        self.prefix = prefix
        self.summaries = {f"{prefix}/{k}" for k in summaries}
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        self.used: set[str] = set()

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        """The cached value of ``key``, computed (and persisted) on first use."""
        full = f"{self.prefix}/{key}"
        self.used.add(full)
        if full not in self.data:
            t0 = time.perf_counter()
            value = compute()
            self.data[full] = {"value": value, "seconds": time.perf_counter() - t0}
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1))
            tmp.replace(self.path)
        return self.data[full]["value"]

    def seconds(self) -> float:
        """Compute time of the results this invocation used, cached or not (what a run
        from scratch costs; summary entries are not counted twice)."""
        return float(
            sum(
                self.data[k]["seconds"]
                for k in self.used
                if k in self.data and k not in self.summaries
            )
        )
