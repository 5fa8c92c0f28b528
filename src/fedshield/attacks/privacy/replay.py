"""Attack a saved run: replay it deterministically up to the attacked round.

A run directory holds the configuration, the metrics and the final model, not every
round's uploads (that would be ``rounds x clients x P`` floats). Every random draw of the
engine derives from the configuration's seed, so re-running the saved configuration
reproduces the run bit for bit; :func:`attack_saved_run` replays it with one
``[[privacy_attack]]`` entry added, stops after the entry's last round, checks the replay
against the saved metrics (same training loss in every replayed round), and returns the
attack's results. The replay is written under ``<run>/attacks/``; the original run is
never modified.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedshield.config import from_dict
from fedshield.config.schema import ConfigError, PrivacyAttackConfig
from fedshield.engine.hooks import Hook, RoundContext, StopRun
from fedshield.report.store import RunStore

__all__ = ["AttackReplay", "attack_saved_run"]


@dataclass(frozen=True)
class AttackReplay:
    """What :func:`attack_saved_run` returns.

    Attributes:
        results: One record per attack (as in the run's ``privacy_attacks`` metrics).
        summary: The per-entry summary (means over targets and rounds).
        replay_dir: The replay's run directory (image grids under ``privacy_attacks/``).
        consistent: Whether every replayed round's training loss equals the saved one.
        mismatches: Rounds whose training loss differs (empty when consistent).
    """

    results: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    replay_dir: Path
    consistent: bool
    mismatches: list[int]


class _StopAfter(Hook):
    """Ends the replay once the attacked rounds are done."""

    name = "stop_after"

    def __init__(self, last_round: int) -> None:
        self.last_round = last_round

    def on_round_start(self, ctx: RoundContext) -> None:
        if ctx.round + 1 > self.last_round:
            raise StopRun(f"replay for the privacy attack ends after round {self.last_round}")


def attack_saved_run(
    run_dir: str | Path,
    attack: PrivacyAttackConfig | Mapping[str, Any],
    *,
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> AttackReplay:
    """Runs one privacy attack on a saved run by replaying it up to the attacked round.

    Args:
        run_dir: A run directory written by ``fedshield run``.
        attack: The attack: a :class:`PrivacyAttackConfig` or its ``[[privacy_attack]]``
            table as a mapping (e.g. ``{"kind": "ig", "rounds": [3], "targets": [0]}``).
        out_dir: Root for the replay's run directory (default ``<run_dir>/attacks``).
        progress: Show the progress bar of the replay.

    Returns:
        The :class:`AttackReplay`.

    Raises:
        FileNotFoundError: ``run_dir`` is not a run directory.
        ConfigError: The attack does not fit the run (unknown key, round after the run's
            last round, unknown client).
    """
    from fedshield.engine.loop import run_experiment

    store = RunStore.open(run_dir)
    raw = store.read_config()
    entry = dataclasses.asdict(attack) if isinstance(attack, PrivacyAttackConfig) else dict(attack)
    raw["privacy_attack"] = [entry]
    raw["output"] = {
        **raw.get("output", {}),
        "dir": str(Path(out_dir) if out_dir is not None else store.run_dir / "attacks"),
        "checkpoint": False,
        "plot": False,
        "progress": progress,
    }
    raw["name"] = f"{raw.get('name', 'run')}-attack"
    try:
        cfg = from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"attack on {store.run_dir}: {exc}") from exc
    last = max(cfg.privacy_attack[0].rounds)
    result = run_experiment(cfg, hooks=[_StopAfter(last)])
    saved = {int(h["round"]): h for h in store.read_metrics()}
    mismatches = []
    for h in result.history:
        old = saved.get(int(h["round"]))
        a, b = h.get("train_loss"), None if old is None else old.get("train_loss")
        if old is None or not _same(a, b):
            mismatches.append(int(h["round"]))
    records = [r for h in result.history for r in h.get("privacy_attacks", [])]
    return AttackReplay(
        results=records,
        summary=list(result.final_metrics.get("privacy_attacks", [])),
        replay_dir=result.run_dir,
        consistent=not mismatches,
        mismatches=mismatches,
    )


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b))))
