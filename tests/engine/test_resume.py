"""Kill-and-resume reproduces the uninterrupted run exactly (CPU, same seed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from fedshield.config import default_config, from_dict
from fedshield.engine import ClientUpdates, Hook, RoundContext, run_experiment
from fedshield.report.store import RunStore


class CrashError(RuntimeError):
    pass


class CountingHook(Hook):
    """A stateful hook: its state must survive a resume."""

    name = "counting"

    def __init__(self, crash_at: int | None = None) -> None:
        self.rows_seen = 0
        self.crash_at = crash_at

    def on_round_start(self, ctx: RoundContext) -> None:
        if self.crash_at is not None and ctx.round == self.crash_at:
            raise CrashError(f"simulated crash at round {ctx.round}")

    def after_local_training(self, ctx: RoundContext, updates: ClientUpdates) -> ClientUpdates:
        self.rows_seen += len(updates)
        return updates

    def on_round_end(self, ctx: RoundContext, record: dict[str, Any]) -> None:
        record["rows_seen"] = self.rows_seen

    def state_dict(self) -> dict[str, Any]:
        return {"rows_seen": self.rows_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows_seen = state["rows_seen"]


def _raw(tmp_path: Path, rounds: int = 6) -> dict:
    return {
        "name": "resume",
        "seed": 11,
        "data": {"dataset": "digits", "num_clients": 10, "partition": "dirichlet", "alpha": 0.5},
        "model": {"name": "mlp_2nn"},
        "train": {"lr": 0.05, "momentum": 0.9, "batch_size": 16},
        "server": {
            "rounds": rounds,
            "clients_per_round": 4,
            "dropout": 0.2,
            "optimizer": "fedadam",
            "lr": 0.01,
        },
        "eval": {"every": 2},
        "output": {"dir": str(tmp_path), "progress": False, "plot": False},
    }


def test_resume_after_crash_is_exact(tmp_path: Path) -> None:
    cfg = from_dict(_raw(tmp_path / "a"))
    full = run_experiment(cfg, hooks=[CountingHook()])

    cfg_b = from_dict(_raw(tmp_path / "b"))
    with pytest.raises(CrashError):
        run_experiment(cfg_b, hooks=[CountingHook(crash_at=3)])
    run_dirs = list((tmp_path / "b").iterdir())
    assert len(run_dirs) == 1
    assert len(RunStore.open(run_dirs[0]).read_metrics()) == 3  # rounds 1..3 were kept
    resumed = run_experiment(cfg_b, hooks=[CountingHook()], resume=run_dirs[0])

    assert torch.equal(resumed.params, full.params)
    assert [h["round"] for h in resumed.history] == list(range(1, 7))
    assert resumed.history[-1]["rows_seen"] == full.history[-1]["rows_seen"]
    for a, b in zip(full.history, resumed.history, strict=True):
        assert a.get("test_accuracy") == b.get("test_accuracy")
        assert a["train_loss"] == b["train_loss"]
    assert resumed.final_metrics["final_test_accuracy"] == full.final_metrics["final_test_accuracy"]


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    cfg = from_dict(_raw(tmp_path, rounds=1))
    res = run_experiment(cfg)
    other = from_dict({**_raw(tmp_path, rounds=1), "seed": 12})
    with pytest.raises(ValueError, match="saved config differs"):
        run_experiment(other, resume=res.run_dir)


def _wait_for_rounds(run_root: Path, n: int, proc: subprocess.Popen, timeout: float) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in run_root.glob("*/metrics.jsonl"):
            if len(d.read_text().splitlines()) >= n:
                return d.parent
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("the run did not reach the expected round in time")


def test_sigkill_then_cli_resume_matches_uninterrupted(tmp_path: Path) -> None:
    """A real kill (SIGKILL mid-run) then `fedshield run --resume` gives the same model."""
    sets = [
        "data.dataset=digits",
        "data.num_clients=10",
        "server.clients_per_round=5",
        "server.rounds=25",
        "train.batch_size=8",
        "train.local_epochs=2",
        "engine.backend=sequential",
        "output.progress=false",
        "output.plot=false",
        "eval.every=5",
        "seed=5",
    ]
    ref = run_experiment(default_config([*sets, f"output.dir={str(tmp_path / 'ref')!r}"]))

    kill_root = tmp_path / "killed"
    args = [a for s in sets for a in ("--set", s)]
    cmd = [sys.executable, "-m", "fedshield", "run", *args, "--out", str(kill_root)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        run_dir = _wait_for_rounds(kill_root, 2, proc, timeout=120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    done = len(RunStore.open(run_dir).read_metrics())
    assert done < 25, "the run finished before it could be killed"
    assert RunStore.open(run_dir).read_summary() is None

    subprocess.run(
        [sys.executable, "-m", "fedshield", "run", "--resume", str(run_dir)],
        check=True,
        env=env,
        timeout=300,
        capture_output=True,
    )
    got = torch.load(run_dir / "model.pt")
    want = ref.model.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    rounds = [json.loads(line)["round"] for line in (run_dir / "metrics.jsonl").open()]
    assert rounds == list(range(1, 26))


def test_resuming_a_finished_run_keeps_its_results(tmp_path: Path) -> None:
    cfg = from_dict(_raw(tmp_path, rounds=2))
    done = run_experiment(cfg)
    before = RunStore.open(done.run_dir).read_summary()
    again = run_experiment(cfg, resume=done.run_dir)
    assert RunStore.open(done.run_dir).read_summary() == before
    assert again.final_metrics == before
    assert torch.equal(again.params, done.params)


def test_hook_states_are_restored_by_name_when_the_builtin_hooks_change() -> None:
    """A checkpoint written with another set of built-in hooks restores the hooks it knows
    (matched by name, in order) and leaves new hooks at their initial state."""

    from fedshield.engine.hooks import Hook
    from fedshield.engine.loop import _load_hook_states

    class Named(Hook):
        def __init__(self, name: str) -> None:
            self.name = name
            self.state: dict[str, Any] = {}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.state = state

    threat, secure, user = Named("threat"), Named("secure_aggregation"), Named("user")
    _load_hook_states(
        [threat, secure, user],
        [{"t": 1}, {"u": 2}, {"x": 3}],
        ["threat", "user", "removed_hook"],
    )
    assert threat.state == {"t": 1} and user.state == {"u": 2} and secure.state == {}
    legacy = [Named("a"), Named("b")]
    _load_hook_states(legacy, [{"a": 1}, {"b": 2}], None)  # old checkpoints: positional
    assert [h.state for h in legacy] == [{"a": 1}, {"b": 2}]
