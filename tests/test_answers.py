"""The design answers of report 04: size for 80% power and MDE from a grid's power curve.

A grid summary is written by hand from exact two-sample power curves, so the answers are
known: the size where power reaches 0.8 and the effect detectable at the planned size.
"""

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr

from fitlab.answers import answer_cell, answers_table, design_answers

C, Z80 = 1.959964, 0.841621
REPS = 20000  # near-exact counts: the fit's only error is their rounding


def _power(kappa, n):
    lam = kappa * np.sqrt(n)
    return ndtr(lam - C) + ndtr(-lam - C)


@pytest.fixture
def grid(tmp_path):
    rows = []
    for design, per_d in (("individual", 0.8), ("cluster", 0.3)):  # noncentrality per d
        for d in (0.15, 0.5):
            for n in (10, 20, 40, 80):
                rows.append({"scenario_id": f"{design}-{d}-{n}", "name": design,
                             "design": design, "estimator": "m", "clients_per_unit": n,
                             "effect_d": d, "attrition_rate": 0.25, "reps": REPS,
                             "power": _power(per_d * d, n), "power_mcse": 0.003,
                             "analytic_power": np.nan})
    pd.DataFrame(rows).to_csv(tmp_path / "summary.csv", index=False)
    return tmp_path


def test_size_and_mde_from_exact_curves(grid):
    a = design_answers(grid).set_index(["design", "effect_d"])
    for design, per_d in (("individual", 0.8), ("cluster", 0.3)):
        for d in (0.15, 0.5):
            want = ((C + Z80) / (per_d * d)) ** 2
            r = a.loc[(design, d)]
            assert r["size"] == pytest.approx(want, rel=0.02)
            assert r["size_lower"] < want < r["size_upper"]
            if want > 80:
                assert r["size_extrapolated"] == "above"
            else:
                assert pd.isna(r["size_extrapolated"])
    # no grid.json: the planned size is the simulated one nearest the middle
    assert (a["planned"] == 20.0).all()


def test_mde_at_planned_size(grid, monkeypatch):
    import fitlab.answers as answers

    monkeypatch.setattr(answers, "planned_sizes", lambda *a, **k: {"individual": 20.0,
                                                                   "cluster": 20.0})
    a = design_answers(grid).set_index(["design", "effect_d"])
    for design, per_d in (("individual", 0.8), ("cluster", 0.3)):
        want = (C + Z80) / (per_d * np.sqrt(20))
        r = a.loc[(design, 0.5)]
        assert r["mde"] == pytest.approx(want, rel=0.02)
        assert r["mde_lower"] < want < r["mde_upper"]
        assert r["power"] == pytest.approx(_power(per_d * 0.5, 20))
    table = answers_table(a.reset_index(), "individual")
    assert "clients/unit for 80% (sim [95% CI])" in table.columns
    assert table["MDE d at planned, 80% (sim [95% CI])"].str.match(r"^\d\.\d\d \[").all()


def test_answer_cell_marks_extrapolation():
    assert answer_cell({"size": 49.2, "lower": 41.0, "upper": 58.3}) == "49 [41, 58]"
    cell = answer_cell({"size": 140, "lower": 90, "upper": 200, "extrapolated": "above",
                        "bound": 80})
    assert cell == "> 80 (≈ 140, extrapolated)"
    assert "far beyond" in answer_cell({"size": 900, "lower": 1, "upper": 1e9,
                                        "extrapolated": "above", "bound": 80})
