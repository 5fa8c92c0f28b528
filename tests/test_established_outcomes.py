"""The well-established poisoning outcomes on MNIST (2NN, 20 clients, 20% malicious, IID),
run with the cells of ``examples/bench_mnist.toml`` (slow: about a minute on 2 cores).

- Gaussian noise (sigma = 100) and IPM (epsilon = 100) take the plain mean to <= 20%
  accuracy, while median, trimmed mean and Krum stay within 5 points of their own
  no-attack run.
- A BadNets backdoor with model-replacement scaling reaches >= 90% attack success against
  the mean, and FLAME cuts it below 20%.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fedshield.bench import Cell, load_bench
from fedshield.data import load_dataset
from fedshield.engine.loop import run_experiment

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bench_mnist.toml"


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Any:
    spec = load_bench(EXAMPLE)
    ds = load_dataset("mnist", seed=0)
    out = tmp_path_factory.mktemp("outcomes")
    cache: dict[tuple[str, str], dict[str, Any]] = {}

    def run(attack: str, defense: str) -> dict[str, Any]:
        if (attack, defense) not in cache:
            cfg = spec.config(Cell(attack, defense, "iid"), out)
            cache[attack, defense] = run_experiment(cfg, dataset=ds).final_metrics
        return cache[attack, defense]

    return run


@pytest.mark.parametrize("attack", ["gaussian", "ipm_large"])
def test_untargeted_attacks_break_the_mean(outcome: Any, attack: str) -> None:
    assert outcome("none", "mean")["final_test_accuracy"] > 0.9
    assert outcome(attack, "mean")["final_test_accuracy"] <= 0.20


@pytest.mark.parametrize("attack", ["gaussian", "ipm_large"])
@pytest.mark.parametrize("defense", ["median", "trimmed_mean", "krum"])
def test_robust_rules_hold_within_five_points(outcome: Any, attack: str, defense: str) -> None:
    clean = outcome("none", defense)["final_test_accuracy"]
    attacked = outcome(attack, defense)["final_test_accuracy"]
    assert attacked >= clean - 0.05


def test_backdoor_replacement_beats_mean_but_not_flame(outcome: Any) -> None:
    assert outcome("backdoor", "mean")["final_backdoor_success"] >= 0.90
    assert outcome("backdoor", "flame")["final_backdoor_success"] < 0.20
