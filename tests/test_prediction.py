"""ORS/SRS prediction: the reliable-change rules by hand, the AUC against a pairwise count,
calibration against a known truth, and the Bayesian model recovering MAR dropout.

The Bayesian test fits one compiled model (module fixture) with small draws on a trial of
12 units x 40 clients under the default MAR mechanism, where the simulator's dropout
depends on intake ORS with a known log odds ratio per SD (``-missingness.strength``).
"""

import itertools
import math
import os

import numpy as np
import pandas as pd
import pytest

from models.clinical_change import Instrument, change_categories, client_outcomes
from models.prediction_metrics import (
    auc,
    auc_draws,
    bootstrap_auc,
    calibration_curve,
    calibration_slope,
    signal_accuracy,
)
from simulate import Scenario, simulate_trial
from simulate.conventions import expit

ORS = Instrument(sd=7.5, reliability=0.87, cutoff=25.0)


def test_reliable_change_by_hand():
    s_diff = 7.5 * math.sqrt(2) * math.sqrt(1 - 0.87)  # Jacobson & Truax 1991
    assert ORS.s_diff == pytest.approx(s_diff)
    assert ORS.threshold == pytest.approx(1.96 * s_diff)
    pre = [15.0, 20.0, 15.0, 30.0, 26.0, 15.0]
    post = [24.0, 26.0, 26.0, 20.0, 36.0, np.nan]
    c = change_categories(pre, post, ORS)
    assert c["rci"].iloc[0] == pytest.approx(9 / s_diff)  # 2.35
    # reliable but below the cutoff; crosses but not reliable (6/3.82 = 1.57); both;
    # a reliable deterioration; reliable but already above the cutoff at intake
    assert c["reliable_improvement"].iloc[:5].tolist() == [True, False, True, False, True]
    assert c["clinically_significant"].iloc[:5].tolist() == [False, False, True, False, False]
    assert c["reliable_deterioration"].iloc[:5].tolist() == [False, False, False, True, False]
    assert c["below_cutoff"].tolist() == [True, True, True, False, False, True]
    assert pd.isna(c["reliable_improvement"].iloc[5])  # no post score: unknown, not False


def test_instrument_refuses_impossible_values():
    from simulate.errors import FitlabError

    with pytest.raises(FitlabError, match="reliability must be in"):
        Instrument(reliability=1.2)


def test_client_outcomes_takes_the_early_and_primary_scores():
    df = pd.DataFrame({
        "unit": 0, "therapist": 1, "client": [5, 5, 5, 5, 6, 6], "arm": 1, "exposure": 1,
        "month": [0.0, 1.0, 3.0, 12.0, 0.0, 12.0],
        "outcome": [14.0, 16.0, 19.0, 30.0, 20.0, 21.0], "srs": [30, 35, 36, 38, 33, 34],
        "dropout": [0, 0, 0, 0, 1, 1]})
    t = client_outcomes(df, 12.0, ORS).set_index("client")
    assert t.loc[5, "early_change"] == 2.0 and t.loc[5, "srs_early"] == 35
    assert t.loc[6, "early_missing"] == 1 and np.isnan(t.loc[6, "ors_early"])
    assert bool(t.loc[5, "clinically_significant"]) and not bool(t.loc[6, "reliable_improvement"])
    t3 = client_outcomes(df, 12.0, ORS, early_month=3.0).set_index("client")
    assert t3.loc[5, "early_change"] == 5.0  # the last follow-up up to month 3


def _pairwise_auc(y, s):
    pos = [a for a, t in zip(s, y) if t]
    neg = [b for b, t in zip(s, y) if not t]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_equals_the_brute_force_pairwise_count(rng):
    y = rng.random(150) < 0.3
    s = np.round(rng.normal(size=150) + y, 1)  # rounding makes ties
    assert auc(y, s) == pytest.approx(_pairwise_auc(y, s), abs=1e-12)
    draws = np.vstack([s, -s, np.round(rng.normal(size=150), 1)])
    assert auc_draws(y, draws) == pytest.approx([_pairwise_auc(y, d) for d in draws])
    b = bootstrap_auc(y, s, reps=200, seed=1)
    assert b["lower"] < b["auc"] < b["upper"]


def test_calibration_slope_is_one_when_the_model_is_the_truth(rng):
    n = 4000
    lp = rng.normal(-1.0, 1.2, n)
    y = rng.random(n) < expit(lp)
    cal = calibration_slope(y, expit(lp))
    # y drawn from p: the slope's MLE is 1 up to its sampling (Monte Carlo) error, whose
    # SD is the Fisher-information SE (about 0.05 here): 4 SE is a 1-in-15,000 miss
    assert abs(cal["slope"] - 1) < 4 * cal["slope_se"]
    assert abs(cal["intercept"]) < 4 * cal["intercept_se"]
    # predictions twice too extreme on the logit scale: the slope must find 1/2
    bad = calibration_slope(y, expit(2 * lp))
    assert abs(bad["slope"] - 0.5) < 4 * bad["slope_se"] and bad["slope_upper"] < 1
    curve = calibration_curve(y, expit(lp), bins=10)
    assert curve["n"].sum() == n
    inside = (curve["lower"] <= curve["predicted"]) & (curve["predicted"] <= curve["upper"])
    assert inside.mean() >= 0.7  # 95% Jeffreys intervals: all but a bin or two


def test_signal_accuracy_counts():
    sig = [1, 1, 0, 0, 1, 0, None]
    ref = [1, 0, 1, 0, 1, 0, 1]
    a = signal_accuracy(pd.array(sig, dtype="boolean"), pd.array(ref, dtype="boolean"))
    assert (a["tp"], a["fp"], a["fn"], a["tn"], a["n"]) == (2, 1, 1, 2, 6)
    assert a["sensitivity"] == pytest.approx(2 / 3) and a["specificity"] == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def mar_report():
    from models.prediction import predict_scenario

    sc = Scenario().replace({"size.clients_per_unit": 40.0, "missingness.mechanism": "mar"})
    return predict_scenario(sc, seed=3, targets=("dropout",), folds=2, boot_reps=200,
                            sampler={"draws": 300, "tune": 300, "chains": 2})


@pytest.mark.bayes
def test_bayesian_model_recovers_that_intake_ors_predicts_mar_dropout(mar_report):
    r = mar_report.results["dropout"]
    coef = r.coefficients.set_index("name")
    ors0 = coef.loc["ors0"]
    assert ors0["truth"] == -0.5
    # the 95% interval covers the data-generating -0.5 and excludes 0 (-0.5 is about 4
    # posterior SDs from 0 with 480 clients)
    assert ors0["lower"] <= -0.5 <= ors0["upper"]
    assert ors0["upper"] < 0
    assert r.estimate.estimate == pytest.approx(ors0["mean"])
    # held-out discrimination is near the truth's: within both bootstrap intervals' reach
    a = r.auc
    assert abs(a["cv"]["auc"] - a["truth"]["auc"]) < 2 * (a["cv"]["se"] + a["truth"]["se"])
    assert r.clients["p_cv"].notna().all() and set(r.clients["fold"]) == {0, 1}
    assert mar_report.settings["compiles"] == 1
    assert set(mar_report.signal_accuracy) == {"latent_not_on_track", "no_reliable_improvement"}


def test_dropout_truth_is_the_simulators_probability():
    """The data-generating dropout probabilities average to the scenario's rate."""
    from models.prediction import simulation_truth

    sc = Scenario().replace({"missingness.mechanism": "mar"})
    truth = simulation_truth(simulate_trial(sc, 5, complete=True))
    # calibrated as if nobody took FIT up; uptake lowers the odds by 1.19: mean a bit below
    assert 0.17 < truth["p_dropout"].mean() < 0.20
    assert {"true_reliable_improvement", "true_clinically_significant"} <= set(truth.columns)
    mnar = simulation_truth(simulate_trial(sc.replace({"missingness.mechanism": "mnar"}), 5))
    assert mnar["p_dropout"].isna().all()


def test_cli_predict_refuses_an_unknown_target(tmp_path, capsys):
    from fitlab.cli import main

    code = main(["predict", "default", "--targets", "relapse", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "targets must be among" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(os.environ.get("FITLAB_FULL") != "1",
                    reason="notebook 05 compiles its own model (~40 s); FITLAB_FULL=1 runs it "
                           "(make demo runs it too)")
def test_notebook_05_runs(tmp_path):
    from pathlib import Path

    from fitlab.runner import run_notebook

    nb = Path(__file__).resolve().parents[1] / "notebooks" / "05_prediction.ipynb"
    rec = run_notebook(nb, tmp_path,
                       {"fast": True, "output_dir": str(tmp_path)})
    assert rec["status"] == "ok", rec
    assert (tmp_path / "prediction.json").is_file()


def test_predictors_without_srs_are_left_out_and_padded():
    from models.prediction_model import BayesPrediction

    est = BayesPrediction(Scenario())
    df = est.prepare(simulate_trial(Scenario(), 2).data.drop(columns="srs"))
    rows = est.clients(df, 12.0)
    X, names, center, scale = est._design(rows)
    assert names == ["ors0", "early_change", "exposure", "early_missing"]
    assert X.shape == (len(rows), 6) and not X[:, 4:].any()  # padded: one compiled model
    assert np.allclose(X[:, 0].mean(), 0) and np.allclose(X[:, 0].std(), 1)


def test_predict_draws_integrates_an_unknown_therapist_out():
    """A held-out client of a known therapist gets that therapist's effect; one of a
    therapist the fit never saw gets E[expit(eta + sigma Z)] (Gauss-Hermite)."""
    import arviz as az

    from models.bayes.base import Posterior
    from models.prediction_model import BayesPrediction

    est = BayesPrediction(Scenario())
    df = est.prepare(simulate_trial(Scenario(), 2).data)
    rows = est.clients(df, 12.0)
    n_unit, n_ther = rows["unit"].nunique(), rows["therapist"].nunique()
    draws = {"alpha": np.ones((1, 4)), "beta": np.zeros((1, 4, 6)),
             "sigma_unit": np.full((1, 4), 0.5), "z_unit": np.zeros((1, 4, n_unit)),
             "sigma_therapist": np.full((1, 4), 1.5),
             "z_therapist": np.full((1, 4, n_ther), 0.4)}
    fit = Posterior(None, az.from_dict(posterior=draws), None, df)
    new = rows.head(2).assign(therapist=[rows["therapist"].iloc[0], 10_000])
    p = est.predict_draws(fit, new)
    assert p[:, 0] == pytest.approx(expit(1 + 1.5 * 0.4))  # its own therapist's effect
    z = np.random.default_rng(0).standard_normal(400_000)
    # Monte Carlo error of the mean of expit over 400,000 normals: < 0.001
    assert p[:, 1] == pytest.approx(expit(1 + 1.5 * z).mean(), abs=0.002)


def test_cli_predict_needs_a_dropout_column_for_dropout(tmp_path, capsys):
    from fitlab.cli import main

    data = simulate_trial(Scenario(), 4).data.drop(columns="dropout")
    path = tmp_path / "trial.csv"
    data.to_csv(path, index=False)
    code = main(["predict", str(path), "--targets", "dropout", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "needs a 'dropout' column" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
