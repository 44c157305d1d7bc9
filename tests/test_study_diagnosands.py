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


# -- Bayesian decision diagnosands and assurance ------------------------------------------
@pytest.fixture
def bayes_table():
    # a Bayesian estimator "b" (p_positive) and a frequentist one "f" (none), on three roles
    pp = [0.99, 0.97, np.nan, 0.98, 0.5, 0.2, 0.999, 0.1, 0.996]
    return pd.DataFrame({
        "role": ["effect"] * 4 + ["null"] * 2 + ["assurance"] * 3,
        "estimator": "b",
        "estimand": "itt",
        "estimate": [1.0, 2.0, np.nan, 1.5, 0.0, -1.0, 2.0, -1.0, 1.0],
        "truth": [1.0] * 4 + [0.0] * 2 + [2.0, -1.0, 0.5],
        "lower": [0.1, -0.5, np.nan, 0.2, -1.0, -2.0, 0.5, -2.0, 0.2],
        "upper": [1.9, 4.5, np.nan, 2.8, 1.0, 0.0, 3.5, 0.0, 1.8],
        "p_positive": pp,
        "significant": [True, False, False, True, False, False, True, False, True],
        "converged": True,
        "error": [None, None, "fit: boom", None, None, None, None, None, None],
        "decision_threshold": 0.975,
        "target_width": 2.0,
    })


def test_bayes_decisions_by_hand(bayes_table):
    d = diagnose(bayes_table).set_index(["role", "diagnosand"])
    v, s, n = d["value"], d["mcse"], d["n"]
    # effect: P(>0) above 0.975 in rows 1 and 4 (0.97 is not; the failed fit is "no")
    assert v["effect", "bayes_power"] == pytest.approx(2 / 4)
    assert s["effect", "bayes_power"] == pytest.approx(math.sqrt(0.25 / 4))
    assert n["effect", "bayes_power"] == 4
    # widths 1.8, 5.0, (failed), 2.6: one below 2.0 of 4 replicates
    assert v["effect", "width_below_target"] == pytest.approx(1 / 4)
    assert s["effect", "width_below_target"] == pytest.approx(math.sqrt(3 / 16 / 4))
    assert v["effect", "interval_width"] == pytest.approx((1.8 + 5.0 + 2.6) / 3)
    assert s["effect", "interval_width"] == pytest.approx(
        np.std([1.8, 5.0, 2.6], ddof=1) / math.sqrt(3))
    # renamed on the other roles
    assert v["null", "bayes_type_i_error"] == 0.0
    assert v["assurance", "bayes_assurance"] == pytest.approx(2 / 3)
    assert v["assurance", "assurance"] == pytest.approx(2 / 3)
    assert ("assurance", "power") not in d.index
    # another rule on the same fits: 0.95 also counts 0.97
    d95 = diagnose(bayes_table, decision_threshold=0.95, target_width=3.0).set_index(
        ["role", "diagnosand"])["value"]
    assert d95["effect", "bayes_power"] == pytest.approx(3 / 4)
    assert d95["effect", "width_below_target"] == pytest.approx(2 / 4)


def test_bayes_decisions_not_applicable(bayes_table):
    freq = bayes_table.assign(estimator="f", p_positive=np.nan, target_width=np.nan)
    d = diagnose(freq).set_index(["role", "diagnosand"])
    # not reported where they do not apply: a frequentist fit, no target width
    assert ("effect", "bayes_power") not in d.index
    assert ("effect", "width_below_target") not in d.index
    assert ("effect", "interval_width") in d.index
    w = wide(diagnose(pd.concat([bayes_table, freq]))).set_index("estimator")
    assert w.loc["b", "bayes_assurance"] == pytest.approx(2 / 3)
    assert w.loc["b", "assurance_reps"] == 3 and w.loc["b", "null_reps"] == 2
    assert w.loc["b", "power"] == pytest.approx(0.5)  # the effect role's
    assert math.isnan(w.loc["f", "bayes_power"])


def test_assurance_replicates(default_scenario):
    """Reproducible; a point-mass design prior gives the scenario itself, so assurance
    estimates power."""
    from fitlab.replicates import assurance_scenario, replicate_seed, run_task

    sc = default_scenario.replace({"effect.d": 0.5,
                                   "effect.design_prior": {"mean": 0.5, "sd": 0.0}})
    drawn, value, _ = assurance_scenario(sc, replicate_seed(sc.seed, "assurance", 3))
    assert value == 0.5 and drawn.hash() == sc.hash()
    wide_prior = sc.replace({"effect.design_prior.sd": 0.3})
    a = assurance_scenario(wide_prior, replicate_seed(sc.seed, "assurance", 3))
    b = assurance_scenario(wide_prior, replicate_seed(sc.seed, "assurance", 3))
    assert a[1] == b[1] != 0.5 and a[0].effect.d == a[1]
    # the not-on-track effect keeps its ratio to d
    assert a[0].effect.not_on_track_d == pytest.approx(a[1] * 0.30 / 0.5)
    binary = load_binary(sc)
    rr = assurance_scenario(binary, replicate_seed(sc.seed, "assurance", 0))
    assert rr[0].effect.risk_ratio == pytest.approx(math.exp(rr[1]))

    n = 300
    task = {"scenario": sc.to_dict(), "items": [[r, ["diff_means"]] for r in range(n)]}
    rows = {role: pd.DataFrame(run_task({**task, "role": role}))
            for role in ("effect", "assurance")}
    again = run_task({**task, "role": "assurance", "items": task["items"][:5]})
    assert [r["estimate"] for r in again] == rows["assurance"]["estimate"][:5].tolist()
    assert (rows["assurance"]["design_effect"] == 0.5).all()
    assert rows["assurance"]["stream"].eq(2).all()
    # two independent estimates of one power: their difference has SD
    # sqrt(2 p (1 - p) / n); 4 SDs make a false alarm a 1-in-15,000 event
    p = rows["effect"]["significant"].mean()
    q = rows["assurance"]["significant"].mean()
    assert abs(p - q) < 4 * math.sqrt(2 * p * (1 - p) / n)
    assert not rows["assurance"]["estimate"].equals(rows["effect"]["estimate"])


def load_binary(sc):
    return sc.replace({"outcome": {"kind": "binary"},
                       "effect.design_prior": {"mean": math.log(1.8), "sd": 2.0}})


def test_decision_table_and_plot(bayes_table):
    """The report helpers read a summary with and without the Bayesian columns."""
    import matplotlib

    matplotlib.use("Agg")
    from fitlab.plots import decision_table, plot_bayes_vs_freq

    freq = bayes_table.assign(estimator="f", p_positive=np.nan)
    w = wide(diagnose(pd.concat([bayes_table, freq])))
    summary = w.assign(scenario_id="s1", name="x", design="individual",
                       decision_threshold=0.975, target_width=2.0)
    t = decision_table(summary).set_index("estimator")
    assert t.loc["b", "power (P(effect>0) > threshold)"] == "0.500 ± 0.250"
    assert t.loc["f", "power (P(effect>0) > threshold)"] == ""
    assert t.loc["b", "assurance (Bayes rule)"].startswith("0.667")
    fig = plot_bayes_vs_freq(summary)
    # one Bayesian estimator paired with the frequentist one on every panel
    assert [len(ax.lines) + len(ax.collections) > 1 for ax in fig.axes] == [True] * 3
    assert "b vs f" in fig.axes[0].get_legend_handles_labels()[1][0]


def test_assurance_in_grids_and_batches(tmp_path):
    from fitlab.batch import run_jobs
    from fitlab.grid import GridError, expand_grid, scenario_job
    from simulate import Scenario

    prior = {"effect.design_prior": {"mean": 0.3, "sd": 0.1}}
    spec = {"name": "g", "base": "default", "reps": 6, "estimators": ["diff_means"],
            "assurance": True, "type_i_error": False,
            "factors": {"size.units": [6, 8]}}
    with pytest.raises(GridError, match="design_prior"):
        expand_grid(spec)
    with pytest.raises(GridError, match="assurance: must be true or false"):
        expand_grid({**spec, "assurance": "yes"})
    jobs = expand_grid({**spec, "factors": {**spec["factors"],
                                            "effect.design_prior.sd": [0.1]}}
                       | {"base": {"effect": {"design_prior": {"mean": 0.3, "sd": 0.2}}}})
    assert all(j.plan == {"effect": {"diff_means": 6}, "assurance": {"diff_means": 6}}
               for j in jobs)
    sc = Scenario().replace({**prior, "size.units": 6, "analysis.target_width": 8.0})
    res = run_jobs([scenario_job(sc, 6, ["diff_means"], null=False, assurance=True)],
                   tmp_path, progress=False)
    row = res.summary.iloc[0]
    assert row["assurance_reps"] == 6 and 0 <= row["assurance"] <= 1
    assert row["design_prior_mean"] == 0.3 and row["target_width"] == 8.0
    assert 0 <= row["width_below_target"] <= 1 and "bayes_power" not in res.summary
