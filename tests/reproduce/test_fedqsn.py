"""`fedshield reproduce fedqsn`: a tiny real sweep, the claims, the report."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fedshield.reproduce.fedqsn import FedQSNStudy, claims, reproduce_fedqsn


def test_quick_study_measures_utility_and_protection_and_resumes(tmp_path: Path) -> None:
    runs, report = tmp_path / "runs", tmp_path / "fedqsn.md"
    study = FedQSNStudy.quick()
    res = reproduce_fedqsn(study, runs_dir=runs, report=report, log=lambda m: None)
    (task,) = res["tasks"].values()
    rows = task["runs"]
    fedavg = rows["fedavg"]
    # FedAvg sends the model itself: the client's proxy is the full model
    assert fedavg["proxy_accuracy"] == fedavg["model_accuracy"]
    assert "revealed_mean" not in fedavg
    qsn = rows["p1=0.25,p2=0.25,nf4,coordinate"]
    # masks at 0.25 / 0.25 keep 0.75 * 0.75 of the units of each layer; a hidden-to-hidden
    # weight needs both its units: the mean fraction sent lies well below 1
    assert 0.3 < qsn["sent_fraction"] < 0.8
    assert qsn["revealed_mean"] <= qsn["revealed_max"] < 1.0
    # 4-bit codes (5 bits for the 17 NF levels) of the kept weights vs float32 everything
    assert qsn["bytes_per_client"] < 0.25 * qsn["bytes_fedavg_per_client"]
    assert 0 < qsn["relative_l2_error"] < 0.3
    for r in rows.values():
        for k in ("model_accuracy", "server_accuracy", "proxy_accuracy", "stolen_accuracy"):
            assert 0.0 <= r[k] <= 1.0
    assert 0.0 <= task["scratch"]["accuracy"] <= 1.0
    text = report.read_text()
    assert "| FedQSN | 0.25 | 0.25 | nf 4-bit | coordinate |" in text
    assert "## Reading" in text
    t0 = time.perf_counter()
    again = reproduce_fedqsn(study, runs_dir=runs, report=report, log=lambda m: None)
    assert time.perf_counter() - t0 < 10  # every run cached
    assert json.dumps(again["tasks"], sort_keys=True) == json.dumps(res["tasks"], sort_keys=True)


def _row(enabled: bool, model: float, server: float, proxy: float, stolen: float) -> dict:
    return {
        "setting": {"name": "x", "enabled": enabled, "p1": 0.5, "p2": 0.5, "merge": "coordinate"},
        "model_accuracy": model,
        "server_accuracy": server,
        "proxy_accuracy": proxy,
        "stolen_accuracy": stolen,
    }


def test_claim_needs_utility_and_a_gap_of_ten_points(tmp_path: Path) -> None:
    res = {
        "tasks": {
            "T": {
                "runs": {
                    "fedavg": _row(False, 0.90, 0.90, 0.90, 0.90),
                    "a": _row(True, 0.80, 0.86, 0.20, 0.75),  # 0.86 >= 0.855, gap 0.11
                    "b": _row(True, 0.84, 0.84, 0.20, 0.60),  # 0.84 < 0.855
                }
            }
        }
    }
    (_, utility, count), (_, holds, detail) = claims(res)
    assert not utility and count == "1 of 2 settings do"  # b: 0.84 < 0.95 * 0.90
    assert holds and "a (0.8600" in detail and "b (" not in detail
    res["tasks"]["T"]["runs"]["a"]["stolen_accuracy"] = 0.77  # gap 0.09
    (_, _, _), (_, holds, _) = claims(res)
    assert not holds
