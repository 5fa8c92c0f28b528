"""`fedshield reproduce fedre`: the report, the paper-ordering checks, a tiny real study."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fedshield.reproduce.fedre import FedREStudy, orderings, reproduce_fedre, write_report


def _row(iou: float) -> dict[str, float]:
    return {"iou": iou, "precision": iou + 0.1, "recall": iou + 0.2, "f1": 2 * iou / (1 + iou)}


def _attack(ssim: float, psnr: float) -> dict[str, dict[str, float]]:
    part = {"mse": 0.1, "ssim": ssim, "psnr": psnr}
    return {"inside": part, "outside": part, "whole": part}


def _results() -> dict[str, Any]:
    study = FedREStudy(epsilons=(50.0, 10.0), clips=(0.2, 0.01))
    import dataclasses

    t1 = {
        "inf/Central": _row(0.5),
        "inf/LocalSet": _row(0.2),
        "50/Uniform LDP": _row(0.30),
        "50/FedRE": {**_row(0.31), "claimed_epsilon": 50.0, "rdp_epsilon": 812.5},
        "10/Uniform LDP": _row(0.20),
        "10/FedRE": _row(0.15),
    }
    t2 = {
        "No protection": _attack(0.9, 30.0),
        "50/Uniform LDP": _attack(0.5, 12.0),
        "50/FedRE": _attack(0.4, 11.0),  # holds: lower SSIM and PSNR
        "10/Uniform LDP": _attack(0.3, 9.0),
        "10/FedRE": _attack(0.2, 9.5),  # does not hold: PSNR higher
    }
    return {
        "study": dataclasses.asdict(study),
        "pretrained": _row(0.16),
        "table1": t1,
        "table2": t2,
        "table34": {"0.2": _row(0.31), "0.01": _row(0.12)},
        "figure6": {"50": {"2": 0.01, "10": 0.03}, "10": {"2": -0.02, "10": 0.05}},
        "seconds": 120.0,
        "compute_seconds": 100.0,
    }


def test_orderings_are_computed_from_the_numbers() -> None:
    verdicts = {claim: holds for claim, holds, _ in orderings(_results())}
    iou = [v for c, v in verdicts.items() if "on IoU" in c]
    inv = [v for c, v in verdicts.items() if "reconstructions" in c]
    assert iou == [True, False]  # 0.31 >= 0.30 at 50; 0.15 < 0.20 at 10
    assert inv == [True, False]
    clip = [v for c, v in verdicts.items() if "clipping" in c]
    assert clip == [True]  # C = 0.01: 0.12 <= pretrained 0.16 + 0.01 and < 0.31


def test_report_has_every_table_and_the_paper_side_by_side(tmp_path: Path) -> None:
    path = tmp_path / "fedre.md"
    write_report(_results(), path)
    text = path.read_text()
    for heading in ("Table 1 analogue", "Table 2 analogue", "Tables 3/4 analogue", "Figure 6"):
        assert heading in text
    assert "| 50 | FedRE | 0.310 |" in text
    assert "0.601 / 0.673" in text  # the paper's T-SROIE FedRE row at epsilon 50
    assert "| 50/FedRE | 50.0 | 812.5 |" in text
    assert "| 10 | +0.050 | -0.020 |" not in text  # columns are per epsilon, rows per n
    assert "| 10 | +0.030 | +0.050 |" in text
    assert "**holds**" in text and "**does not hold**" in text
    # an attack that recovers nothing even unprotected makes the defense check inconclusive
    res = _results()
    res["table2"]["No protection"] = _attack(0.02, 5.0)
    inv = [h for c, h, _ in orderings(res) if "reconstructions" in c]
    assert inv == [None, None]


def test_quick_study_runs_end_to_end_and_resumes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    report = tmp_path / "fedre.md"
    study = FedREStudy.quick()
    results = reproduce_fedre(study, runs_dir=runs, report=report, log=lambda m: None)
    assert report.exists() and (runs / "fedre.json").exists()
    t1 = results["table1"]
    assert {"inf/Central", "inf/LocalSet", "inf/FedAvg", "50/FedRE", "10/LDP-Fed"} <= set(t1)
    for row in t1.values():
        assert 0.0 <= row["iou"] <= 1.0
    assert set(results["table2"]) >= {"No protection", "50/FedRE", "10/Uniform LDP"}
    # FedRE's rows record the privacy they spent
    assert t1["50/FedRE"]["rdp_epsilon"] > 0
    # a second call reuses every cached run (resume after an interruption)
    t0 = time.perf_counter()
    again = reproduce_fedre(study, runs_dir=runs, report=report, log=lambda m: None)
    assert time.perf_counter() - t0 < 10
    assert json.dumps(again["table1"], sort_keys=True) == json.dumps(t1, sort_keys=True)
