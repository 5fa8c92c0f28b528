"""`fedshield reproduce fedre`: the report, the paper-ordering checks, a tiny real study."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from fedshield.reproduce.fedre import (
    FedREStudy,
    _psi_neighbour,
    orderings,
    reproduce_fedre,
    write_report,
)


def _row(iou: float) -> dict[str, float]:
    return {"iou": iou, "precision": iou + 0.1, "recall": iou + 0.2, "f1": 2 * iou / (1 + iou)}


def _attack(ssim: float, psnr: float, mse: float = 0.1) -> dict[str, dict[str, float]]:
    part = {"mse": mse, "ssim": ssim, "psnr": psnr}
    return {"inside": part, "outside": part, "whole": part}


def _dist(mu: float, acc: float) -> dict[str, float]:
    return {"accuracy": acc, "mu": mu, "analytic_accuracy": acc}


def _results() -> dict[str, Any]:
    study = FedREStudy(epsilons=(50.0, 10.0), clips=(0.2, 0.01))
    t1 = {
        "inf/Central": _row(0.5),
        "inf/LocalSet": _row(0.2),
        "50/Uniform LDP": _row(0.30),
        "50/FedRE": {**_row(0.31), "claimed_epsilon": 50.0, "rdp_epsilon": 812.5},
        "10/Uniform LDP": _row(0.20),
        "10/FedRE": _row(0.15),
    }
    t2 = {
        "Prior only (no gradient)": _attack(0.05, 12.0, mse=0.06),
        "No protection": _attack(0.9, 30.0, mse=0.01),
        "50/Uniform LDP": _attack(0.5, 12.0),
        "50/FedRE": _attack(0.4, 11.0),  # holds: lower SSIM and PSNR
        "10/Uniform LDP": _attack(0.3, 9.0),
        "10/FedRE": _attack(0.2, 9.5),  # does not hold: PSNR higher
    }
    t2d = {
        "No protection": {"accuracy": 1.0},
        "50/Uniform LDP": _dist(2.0, 0.84),
        "50/FedRE": _dist(1.1, 0.71),  # holds: lower mu
        "10/Uniform LDP": _dist(0.4, 0.58),
        "10/FedRE": _dist(0.5, 0.60),  # does not hold
    }
    return {
        "study": dataclasses.asdict(study),
        "pretrained": _row(0.16),
        "table1": t1,
        "table2": t2,
        "table2_distinguish": t2d,
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
    hide = [v for c, v in verdicts.items() if "hides the PSI content" in c]
    assert hide == [True, False]  # mu 1.1 < 2.0 at 50; 0.5 > 0.4 at 10
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
    assert "| 50 | FedRE | 0.710 | 0.710 | 1.100 |" in text  # Table 2b
    assert "| - | No protection | 1.000 | - | inf |" in text
    # an attack that does not beat the attacker's prior even unprotected (inside the
    # boxes) makes the reconstruction check inconclusive
    res = _results()
    res["table2"]["No protection"] = _attack(0.9, 30.0, mse=0.07)
    inv = [h for c, h, _ in orderings(res) if "reconstructions" in c]
    assert inv == [None, None]
    res["table2"]["No protection"] = _attack(0.04, 30.0, mse=0.01)
    assert [h for c, h, _ in orderings(res) if "reconstructions" in c] == [None, None]
    # older results without the prior row fall back to the whole-image SSIM bar
    del res["table2"]["Prior only (no gradient)"]
    res["table2"]["No protection"] = _attack(0.02, 5.0)
    assert [h for c, h, _ in orderings(res) if "reconstructions" in c] == [None, None]


def test_quick_study_runs_end_to_end_and_resumes(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    report = tmp_path / "fedre.md"
    # enough distinguishing trials for a statistical check of the likelihood-ratio test
    study = dataclasses.replace(FedREStudy.quick(), distinguish_trials=400)
    results = reproduce_fedre(study, runs_dir=runs, report=report, log=lambda m: None)
    assert report.exists() and (runs / "fedre.json").exists()
    t1 = results["table1"]
    assert {"inf/Central", "inf/LocalSet", "inf/FedAvg", "50/FedRE", "10/LDP-Fed"} <= set(t1)
    for row in t1.values():
        assert 0.0 <= row["iou"] <= 1.0
    assert set(results["table2"]) >= {"No protection", "50/FedRE", "10/Uniform LDP"}
    d2 = results["table2_distinguish"]
    assert d2["No protection"]["accuracy"] == 1.0  # the candidates' uploads differ
    for m in ("50/Uniform LDP", "10/FedRE"):
        assert 0.0 <= d2[m]["accuracy"] <= 1.0 and d2[m]["mu"] >= 0
    for m, v in d2.items():
        if "mu" in v:  # Gaussian: the optimal test's accuracy is Phi(mu / 2); 400 trials
            # give a binomial std <= 0.025, the tolerance is 4 of them
            assert abs(v["accuracy"] - v["analytic_accuracy"]) < 0.1, (m, v)
    # FedRE's rows record the privacy they spent
    assert t1["50/FedRE"]["rdp_epsilon"] > 0
    # a second call reuses every cached run (resume after an interruption)
    t0 = time.perf_counter()
    again = reproduce_fedre(study, runs_dir=runs, report=report, log=lambda m: None)
    assert time.perf_counter() - t0 < 10
    assert json.dumps(again["table1"], sort_keys=True) == json.dumps(t1, sort_keys=True)


def test_psi_neighbour_changes_only_the_boxes_and_keeps_their_ink() -> None:
    x = torch.rand(1, 1, 16, 24)
    boxes = ((2, 3, 4, 8), (10, 12, 3, 6))
    x0 = _psi_neighbour(x, boxes)
    inside = torch.zeros(16, 24, dtype=torch.bool)
    for top, left, h, w in boxes:
        inside[top : top + h, left : left + w] = True
        a = x[0, 0, top : top + h, left : left + w]
        b = x0[0, 0, top : top + h, left : left + w]
        assert torch.equal(b[:, : w - w // 2], a[:, w // 2 :])  # rolled by half the width
        assert torch.equal(torch.sort(a.flatten()).values, torch.sort(b.flatten()).values)
    assert torch.equal(x0[0, 0][~inside], x[0, 0][~inside])
    assert not torch.equal(x0, x)
