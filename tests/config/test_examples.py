"""Every experiment file shipped in ``examples/`` loads and validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedshield.config import load_toml

EXAMPLES = sorted(
    p
    for p in (Path(__file__).resolve().parents[2] / "examples").glob("*.toml")
    if not p.name.startswith("bench_")  # bench grids have their own schema (fedshield bench)
)


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads(path: Path) -> None:
    cfg = load_toml(path)
    assert cfg.name  # every example names its runs
