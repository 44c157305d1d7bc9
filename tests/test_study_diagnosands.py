"""Diagnosands against values computed by hand on a small replicate table."""

import math

import numpy as np
import pandas as pd
import pytest

from fitlab.diagnosands import diagnose, read_diagnosands, suggest_reps, wide


@pytest.fixture
def table():
    # four effect replicates (one failed fit, one not converged) and two null replicates
    return pd.DataFrame({
        "role": ["effect"] * 4 + ["null"] * 2,
        "estimator": "m",
        "estimand": ["itt", "itt", None, "itt", "itt", "itt"],
        "estimate": [1.0, 3.0, np.nan, 2.0, 0.5, -0.5],
        "truth": [2.0, 2.0, np.nan, 1.0, 0.0, 0.0],
        "lower": [0.0, 1.0, np.nan, 1.5, -1.0, -0.9],
        "upper": [2.5, 4.0, np.nan, 3.0, 1.0, -0.1],
        "significant": [False, True, False, True, False, True],
        "converged": [True, True, False, False, True, True],
        "error": [None, None, "fit: boom", None, None, None],
    })


def test_diagnosands_by_hand(table):
    d = diagnose(table).set_index(["role", "diagnosand"])
    v, s = d["value"], d["mcse"]
    # power counts the failed fit as a non-rejection: 2 of 4
    assert v["effect", "power"] == pytest.approx(0.5)
    assert s["effect", "power"] == pytest.approx(math.sqrt(0.25 / 4))
    # errors over the 3 fits with an estimate: -1, 1, 1
    err = np.array([-1.0, 1.0, 1.0])
    assert v["effect", "bias"] == pytest.approx(1 / 3)
    assert s["effect", "bias"] == pytest.approx(err.std(ddof=1) / math.sqrt(3))
    assert v["effect", "rmse"] == pytest.approx(1.0)
    # every squared error is 1, so the RMSE has no Monte Carlo spread
    assert s["effect", "rmse"] == pytest.approx(0.0)
    assert v["effect", "relative_bias"] == pytest.approx((1 / 3) / (5 / 3))
    # covered: 2 in [0, 2.5] yes, 2 in [1, 4] yes, 1 in [1.5, 3] no
    assert v["effect", "coverage"] == pytest.approx(2 / 3)
    assert s["effect", "coverage"] == pytest.approx(math.sqrt(2 / 9 / 3))
    assert v["effect", "interval_width"] == pytest.approx((2.5 + 3.0 + 1.5) / 3)
    assert v["effect", "failed"] == pytest.approx(0.25)
    # the non-converged row that failed counts as failed, not as not_converged
    assert v["effect", "not_converged"] == pytest.approx(0.25)
    assert v["effect", "empirical_se"] == pytest.approx(1.0)
    assert d.loc[("effect", "power"), "n"] == 4
    assert d.loc[("effect", "bias"), "n"] == 3
    # the null role reports type I error, and relative bias is undefined at truth 0
    assert v["null", "type_i_error"] == pytest.approx(0.5)
    assert math.isnan(v["null", "relative_bias"])
    # null: 0 in [-1, 1] yes, 0 in [-0.9, -0.1] no
    assert v["null", "coverage"] == pytest.approx(0.5)


def test_relative_bias_mcse_delta_method():
    rng = np.random.default_rng(1)
    truth = rng.normal(2.0, 0.3, 50)
    est = truth + rng.normal(0.2, 1.0, 50)
    t = pd.DataFrame({"role": "effect", "estimator": "m", "estimand": "itt", "estimate": est,
                      "truth": truth, "lower": est - 1, "upper": est + 1,
                      "significant": True, "converged": True, "error": None})
    d = diagnose(t).set_index("diagnosand")
    a, b = est - truth, truth
    r = a.mean() / b.mean()
    c = np.cov(a, b)
    expect = math.sqrt((c[0, 0] - 2 * r * c[0, 1] + r * r * c[1, 1]) / (50 * b.mean() ** 2))
    assert d.loc["relative_bias", "value"] == pytest.approx(r)
    assert d.loc["relative_bias", "mcse"] == pytest.approx(expect)


def test_wide_and_csv_roundtrip(table, tmp_path):
    d = diagnose(table)
    d.to_csv(tmp_path / "d.csv", index=False)
    back = read_diagnosands(tmp_path / "d.csv")
    # pandas would read the role "null" as NaN without read_diagnosands
    assert set(back["role"]) == {"effect", "null"}
    w = wide(back).iloc[0]
    assert w["power"] == pytest.approx(0.5)
    assert w["type_i_error"] == pytest.approx(0.5)
    assert w["bias"] == pytest.approx(1 / 3)  # the effect role's, not the null's
    assert w["null_reps"] == 2


def test_suggest_reps():
    assert suggest_reps(0.01, proportion=0.8) == 1600
    assert suggest_reps(0.01) == 2500
    assert suggest_reps(0.05, sd=1.0) == 400
    # the suggested n does reach the target MCSE
    n = suggest_reps(0.013, proportion=0.3)
    assert math.sqrt(0.3 * 0.7 / n) <= 0.013 < math.sqrt(0.3 * 0.7 / (n - 1))
    with pytest.raises(ValueError, match="target_mcse"):
        suggest_reps(0)
    with pytest.raises(ValueError, match="proportion"):
        suggest_reps(0.1, proportion=1.5)
