"""Real data as users bring them: column roles, no therapist level, no arm, time scales,
and a Bambi formula checked against the fast REML estimator."""

import json

import numpy as np
import pytest

from fitlab.cli import main
from models import AnalysisPlan, LongFormatError, get_estimator
from simulate import Scenario, simulate_trial


@pytest.fixture(scope="module")
def data():
    return simulate_trial(Scenario(), 2).data


def _fit(tmp_path, df, *flags, capsys):
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    code = main(["fit", str(path), "--json", *flags])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else out.err)


def test_one_column_in_two_roles(tmp_path, data, capsys):
    flags = ["--estimator", "reml_trajectory", "--primary-month", "12"]
    code, want = _fit(tmp_path, data, *flags, capsys=capsys)
    mine = data.drop(columns=["arm", "exposure"]).assign(group=data["arm"])
    code2, got = _fit(tmp_path, mine, *flags, "--columns", "arm=group,exposure=group",
                      capsys=capsys)
    assert code == code2 == 0
    assert got["estimate"] == pytest.approx(want["estimate"], rel=1e-9)


def test_no_therapist_level(tmp_path, data, capsys):
    est = get_estimator("diff_means", AnalysisPlan(primary_month=12.0))
    df = est.prepare(data.drop(columns=["therapist"]))
    assert (df["therapist"] == -1).all()
    code, got = _fit(tmp_path, data.drop(columns=["therapist"]), "--estimator",
                     "reml_trajectory", capsys=capsys)
    # no therapist level: the therapist variance is not identified, so it is not reported
    assert code == 0 and got["extra"]["var_therapist"] is None and np.isfinite(got["se"])
    assert "var_therapist" in got["diagnostics"]["unidentified"]


@pytest.mark.parametrize("change, message", [
    (lambda d: d.drop(columns=["arm", "exposure"]), "no randomized arm"),
    (lambda d: d.assign(arm=1, exposure=1), "one arm only"),
    (lambda d: d.assign(arm=d["arm"].map({0: "TAU", 1: "FIT"})), "must be coded 0 (usual care) / 1 (FIT)"),
])
def test_data_without_a_randomized_arm_refused(tmp_path, data, change, message, capsys):
    code, err = _fit(tmp_path, change(data), capsys=capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_time_scale_reaches_the_estimator(tmp_path, data, capsys):
    got = {}
    for scale in ("log", "linear"):
        code, got[scale] = _fit(tmp_path, data, "--estimator", "reml_trajectory", "--time",
                                scale, capsys=capsys)
        assert code == 0
        want = get_estimator("reml_trajectory", AnalysisPlan(time_scale=scale)).fit(data)
        assert got[scale]["estimate"] == pytest.approx(want.estimate, rel=1e-9)
    assert got["log"]["estimate"] != pytest.approx(got["linear"]["estimate"], rel=1e-3)


@pytest.mark.parametrize("flags, message", [
    (["--formula", "outcome ~ arm *"], "cannot read the formula"),
    (["--formula", "ors ~ arm * time + (1|client)"], "response must be 'outcome'"),
    (["--formula", "outcome ~ arm * time + age + (1|client)"], "['age'] not in the data"),
    (["--formula", "outcome ~ time + (1|client)"], "no term 'arm:time' or 'arm'"),
    (["--formula", "outcome ~ arm + (1|client)", "--estimator", "diff_means"],
     "fitted by the estimator 'bambi'"),
])
def test_formula_errors(tmp_path, data, flags, message, capsys):
    code, err = _fit(tmp_path, data, *flags, capsys=capsys)
    assert code == 2 and message in err and "Traceback" not in err


# -- Bambi against REML on the same model ----------------------------------------------
# Gaussian, weak default priors, 240 clients x 5 occasions: the posterior mean of arm:time
# and the REML estimate agree to O(1/n); measured 0.01-0.04 posterior SDs apart on three
# trials. 4 chains x 600 draws give a bulk ESS of about 1000 for arm:time, an MCSE of
# about 0.03 SD, so the 0.1 SD tolerance is > 3 MCSE. Bambi's (time|client) has
# uncorrelated client intercepts and slopes: REML with client_cov="diagonal".
# The control arm has no therapist (-1, partially nested), which Bambi would otherwise
# read as one shared pseudo-therapist.
BAMBI = dict(formula="outcome ~ arm * time + (1|unit) + (1|therapist) + (time|client)",
             chains=4, draws=600, tune=500, seed=1)


def _partially_nested(sc, seed):
    d = simulate_trial(sc, seed).data
    return d.assign(therapist=d["therapist"].where(d["arm"] == 1, -1))


@pytest.fixture(scope="module")
def bambi_est():
    return get_estimator("bambi", Scenario(), **BAMBI)


@pytest.mark.bayes
@pytest.mark.parametrize("units, seed", [(12, 1), (10, 2)])
def test_bambi_agrees_with_reml_and_compiles_once(bambi_est, units, seed):
    sc = Scenario().replace({"size.units": units})
    d = _partially_nested(sc, seed)
    e = bambi_est.fit(d)
    r = get_estimator("reml_trajectory", sc, client_cov="diagonal").fit(d)
    assert e.extra["route"] == "compiled" and e.extra["target"] == "arm:time"
    assert abs(e.estimate - r.estimate) < 0.1 * e.se, (e.estimate, r.estimate, e.se)
    assert e.se == pytest.approx(r.se, rel=0.15)
    # 12 and 10 units (240 and 200 clients, 24 and 20 FIT therapists) share capacities:
    # the second data set, of another size, reuses the first one's compiled model
    assert bambi_est.n_compiles == 1
    assert abs(e.extra["var_resid"] - r.extra["var_resid"]) < 0.1 * r.extra["var_resid"]


def test_bambi_refuses_a_structural_mistake():
    with pytest.raises(LongFormatError, match="not in the data"):
        get_estimator("bambi", Scenario(), formula="outcome ~ arm * time + x + (1|client)"
                      ).prepare(simulate_trial(Scenario(), 1).data)
