"""CACE: Bayesian principal stratification recovers the complier effect where per-protocol
is biased; IV/2SLS checked against its closed form; notebook 03 runs.

Scenario: uptake 0.6 and compliers progressing ``complier_shift`` SDs better. Per-protocol
compares compliers with all controls (60% compliers), so its expected bias is
``0.4 * shift * sd`` ORS points (3 points with shift 1.0, SD 7.5): more than twice its
standard error at this size. Fixed seeds make the checks deterministic.
"""

import os

import numpy as np
import pytest

from models import EstimatorError, get_estimator
from simulate import Scenario, simulate_trial

FULL = os.environ.get("FITLAB_FULL") == "1"
SIZE = {"size.units": 30, "size.clients_per_unit": 40} if FULL else {
    "size.units": 20, "size.clients_per_unit": 30}
SAMPLER = dict(draws=1000, tune=1000) if FULL else dict(draws=500, tune=500, chains=2)


def scenario(kind="ors", shift=1.0):
    changes = {"compliance.uptake": 0.6, "compliance.complier_shift": shift, **SIZE}
    if kind == "binary":
        changes["outcome"] = {"kind": "binary"}
    return Scenario().replace(changes)


@pytest.mark.slow
@pytest.mark.bayes
def test_cace_recovers_complier_effect_where_per_protocol_is_biased():
    sc = scenario()
    trial = simulate_trial(sc, 1)
    truth = trial.truth["cace"]
    e = get_estimator("bayes_cace", sc, **SAMPLER).fit(trial.data)
    assert e.lower <= truth <= e.upper, (truth, e.estimate, e.lower, e.upper)
    assert abs(e.estimate - truth) < 3 * e.se
    assert e.diagnostics["divergences"] == 0
    assert e.extra["pi"] == pytest.approx(trial.truth["uptake"], abs=0.1)  # ~3 posterior SDs
    for level in ("low", "medium", "high"):
        assert f"cace_fidelity_{level}" in e.extra
    pp = get_estimator("per_protocol", sc).fit(trial.data)
    # expected direction: compliers progress better, so per-protocol overstates the effect
    assert pp.estimate - truth > 2 * pp.se
    assert not (pp.lower <= truth <= pp.upper)


@pytest.mark.slow
@pytest.mark.bayes
def test_binary_cace_recovers_complier_risk_difference():
    sc = scenario("binary", shift=0.5)
    trial = simulate_trial(sc, 1)
    e = get_estimator("bayes_cace", sc, fidelity="dose", **SAMPLER).fit(trial.data)
    truth = trial.truth["cace"]
    assert e.lower <= truth <= e.upper, (truth, e.estimate, e.lower, e.upper)
    assert e.diagnostics["divergences"] == 0
    assert "dose_slope" in e.extra


def test_iv_equals_wald_ratio_and_covers_truth():
    sc = scenario()
    trial = simulate_trial(sc, 2)
    e = get_estimator("iv_cace", sc).fit(trial.data)
    d = trial.data[trial.data["observed"] & (trial.data["month"] == 12.0)]
    z, y, u = d["exposure"].to_numpy(), d["outcome"].to_numpy(), d["uptake"].to_numpy()
    wald = (y[z == 1].mean() - y[z == 0].mean()) / (u[z == 1].mean() - u[z == 0].mean())
    assert e.extra["wald"] == pytest.approx(wald, rel=1e-9)
    assert e.lower <= trial.truth["cace"] <= e.upper
    assert e.p_value is not None and 0 <= e.p_value <= 1


def test_robust_fit_is_statsmodels_cluster_ols():
    import statsmodels.api as sm

    from models.robust import robust_fit

    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(25), 8)
    X = np.column_stack([np.ones(200), rng.normal(size=200)])
    y = X @ [1.0, 2.0] + rng.normal(size=25)[g] + rng.normal(size=200)
    b, cov, dof = robust_fit(y, X, g)
    ref = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": g})
    assert dof == 24
    np.testing.assert_allclose(b, ref.params, rtol=1e-10)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), ref.bse, rtol=1e-10)


@pytest.mark.slow
def test_notebook_03_runs(tmp_path):
    import pandas as pd
    import papermill

    out = tmp_path / "out"
    papermill.execute_notebook(
        "notebooks/03_cace.ipynb", str(tmp_path / "03.ipynb"), kernel_name="python3",
        parameters=dict(fast=True, output_dir=str(out), workers=1),
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), progress_bar=False)
    res = pd.read_csv(out / "bias_coverage.csv")
    assert set(res["method"]) == {"ITT (reml_trajectory)", "per-protocol", "CACE (IV)"}
    assert (res["reps"] == 20).all() and res["bias_mcse"].gt(0).all()
    # 20 replicates of 2 settings (complier shift 0.5): per-protocol's bias shows (> 2 MCSE
    # in each; measured 3.8 and 3.1), the IV estimate of the CACE's does not
    pp, iv = (res[res["method"] == m] for m in ("per-protocol", "CACE (IV)"))
    assert (pp["bias"] > 2 * pp["bias_mcse"]).all()
    assert (iv["bias"].abs() < 3 * iv["bias_mcse"]).all()
    assert (out / "replicates").is_dir()


# -- the trajectory version: principal stratification on the growth model ---------------
#
# bayes_cace_trajectory fits every observed occasion (Yau & Little 2001), so its checks use
# the brief's scenario (uptake 0.6, complier_shift 0.5, d 0.6, 16 units x 30) for recovery
# and agreement with the client-level model. Per-protocol's bias is checked on a larger
# shift and trial (complier_shift 1.0, 20 x 30, the size of the tests above): at shift 0.5
# and 16 x 30 its expected bias is only ~1.2 of its SEs (1.1 points, SE 0.9; "> 2 SE" held
# on 17 of 100 seeds), at shift 1.0 and 20 x 30 it is ~3 SEs (87 of 100 seeds). A larger
# shift (1.5) is no cure: compliers offered FIT then reach the ORS ceiling of 40, which
# attenuates the observed effect and biases every model fitted to clipped scores.

TRAJ_SAMPLER = dict(draws=1000, tune=1000, chains=2)  # sigma_unit and
# sigma_slope need it for bulk ESS ~ 100 (tau's own ESS is several hundred at 500)


def traj_scenario(shift, units, per_unit):
    return Scenario().replace({
        "compliance.uptake": 0.6, "compliance.complier_shift": shift, "effect.d": 0.6,
        "effect.not_on_track_d": None, "size.units": units, "size.clients_per_unit": per_unit})


@pytest.fixture(scope="module")
def traj_est():
    """Compiled once for the module: a minimum capacity of 768 clients holds both trials
    below (480 and 600 clients), so later fits only swap data in."""
    return get_estimator("bayes_cace_trajectory", traj_scenario(0.5, 16, 30),
                         capacity={"client": 768, "therapist": 96, "unit": 24},
                         **TRAJ_SAMPLER)


def test_trajectory_cace_likelihood_is_the_per_client_mixture():
    """The Potential equals the Imbens-Rubin mixture summed per client, written in numpy."""
    from scipy.special import logsumexp
    from scipy.stats import norm

    sc = traj_scenario(0.5, 4, 10)
    trial = simulate_trial(sc, 3)
    est = get_estimator("bayes_cace_trajectory", sc)
    df = est.prepare(trial.data)
    data, _, _ = est._arrays(df, 12.0)
    model = est.build_model(trial.data)
    rng = np.random.default_rng(0)
    point = {k: rng.normal(0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    point.update(alpha=20.0, beta=3.0, eta=2.0, tau=np.array([0.5, 1.5, 3.0]),
                 pi_logodds__=0.4, sigma_log__=np.log(5.0))
    lik = model.compile_logp(vars=[model["lik"]], jacobian=False)(point)

    def re(name, idx):
        v = np.append(np.exp(point[f"sigma_{name}_log__"]) * point[f"z_{name}"], 0.0)
        return v[idx]

    t, c = data["t"], data["client"]
    mu0 = (20.0 + 3.0 * t + re("unit", data["unit"]) + re("therapist", data["therapist"])
           + re("client", c) + re("slope", c) * t)
    z, d = data["zc"], data["dc"]
    mu1 = mu0 + (2.0 + z[c] * np.array([0.5, 1.5, 3.0])[data["fidc"]][c]) * t
    ll0 = np.bincount(c, norm.logpdf(data["y"], mu0, 5.0), minlength=len(z))
    ll1 = np.bincount(c, norm.logpdf(data["y"], mu1, 5.0), minlength=len(z))
    pi = 1 / (1 + np.exp(-0.4))
    fit = np.where(d == 1, np.log(pi) + ll1, np.log1p(-pi) + ll0)
    ctrl = logsumexp([np.log(pi) + ll1, np.log1p(-pi) + ll0], axis=0)
    assert z.sum() > 0 and (1 - z).sum() > 0 and d.sum() > 0
    assert float(lik) == pytest.approx(np.sum(np.where(z == 1, fit, ctrl)), rel=1e-9)


def test_trajectory_cace_options_are_checked():
    with pytest.raises(EstimatorError, match="fidelity"):
        get_estimator("bayes_cace_trajectory", Scenario(), fidelity="dose")
    with pytest.raises(EstimatorError, match="unknown option"):
        get_estimator("bayes_cace_trajectory", Scenario(), time_shape="occasion")


@pytest.mark.slow
@pytest.mark.bayes
def test_trajectory_cace_covers_truth_where_per_protocol_is_biased(traj_est):
    sc = traj_scenario(1.0, 20, 30)
    trial = simulate_trial(sc, 1)
    truth = trial.truth["cace"]
    e = traj_est.fit(trial.data)
    assert e.lower <= truth <= e.upper, (truth, e.estimate, e.lower, e.upper)
    assert e.diagnostics["divergences"] == 0
    assert e.diagnostics["rhat_max"] < 1.05
    assert e.extra["pi"] == pytest.approx(trial.truth["uptake"], abs=0.1)
    assert {f"cace_fidelity_{lev}" for lev in ("low", "medium", "high")} <= set(e.extra)
    pp = get_estimator("per_protocol", sc).fit(trial.data)
    assert pp.estimate - truth > 2 * pp.se, (truth, pp.estimate, pp.se)
    assert not (pp.lower <= truth <= pp.upper)


@pytest.mark.slow
@pytest.mark.bayes
def test_trajectory_cace_recovers_truth_and_agrees_with_client_level(traj_est):
    sc = traj_scenario(0.5, 16, 30)
    trial = simulate_trial(sc, 1)
    truth = trial.truth["cace"]
    e = traj_est.fit(trial.data)
    assert traj_est.n_compiles == 1  # re-sampled with with_data, never recompiled
    assert e.lower <= truth <= e.upper, (truth, e.estimate, e.lower, e.upper)
    assert e.diagnostics["divergences"] == 0
    assert e.diagnostics["rhat_max"] < 1.05
    # every observed occasion: clients who miss the primary month still count
    assert e.extra["n_clients"] > (trial.data.query("observed and month == 12")
                                   ["client"].nunique())
    c = get_estimator("bayes_cace", sc, **SAMPLER).fit(trial.data)
    assert np.sign(e.estimate) == np.sign(c.estimate)
    assert abs(e.estimate - c.estimate) < np.hypot(e.se, c.se), (e.estimate, c.estimate)
