"""Bayesian hierarchical models: parameter recovery, compile-once re-sampling, notebook 02.

Recovery checks compare with the simulation's truth: the true effect must lie inside the
95% posterior interval and the error must be under 3 posterior SDs (a 95% interval misses
by chance 5% of the time; the seeds are fixed, so the tests are deterministic). By default
they run at the default scenario size; ``FITLAB_FULL=1`` runs them on a large trial.
Each model is compiled once per module (fixtures) and sampled with small draws.
"""

import os

import numpy as np
import pytest

from models import get_estimator
from simulate import Scenario, simulate_trial

pytestmark = pytest.mark.bayes
FULL = os.environ.get("FITLAB_FULL") == "1"
LARGE = {"size.units": 30, "size.clients_per_unit": 40} if FULL else {}
SAMPLER = dict(draws=1000, tune=1000) if FULL else dict(draws=500, tune=500, chains=2)


def check_recovery(e, truth):
    """Truth inside the 95% interval; bias small in posterior-SD units; no divergences."""
    assert e.lower <= truth <= e.upper, (truth, e.estimate, e.lower, e.upper)
    assert abs(e.estimate - truth) < 3 * e.se
    assert e.diagnostics["divergences"] == 0
    for key in ("rhat_max", "ess_bulk_min", "fit_seconds", "converged", "warnings"):
        assert key in e.diagnostics


@pytest.fixture(scope="module")
def trajectory():
    sc = Scenario().replace(LARGE) if LARGE else Scenario()
    return sc, get_estimator("bayes_occasion", sc, **SAMPLER)


@pytest.mark.slow
def test_trajectory_recovers_itt_and_variances(trajectory, tmp_path):
    sc, est = trajectory
    trial = simulate_trial(sc, 1)
    e = est.fit(trial.data)
    check_recovery(e, trial.truth["itt"])
    # well-identified components: client and residual variance. SE of a variance from
    # n clients is about var * sqrt(2/n) (< 10% here); 30% allows about 3 SE.
    for k in ("var_client", "var_resid"):
        assert e.extra[k] == pytest.approx(trial.truth[k], rel=0.30), k
    assert 0 <= e.p_positive <= 1


def test_fit_is_a_function_of_the_data(trajectory):
    """Replicate B fitted first, or after A, gives the same Estimate; no recompilation
    for a data set of the same capacity."""
    sc, est = trajectory
    a, b = simulate_trial(sc, 1).data, simulate_trial(sc, 2).data
    first = est.fit(b)
    compiles = est.n_compiles
    est.fit(a)
    again = est.fit(b)
    assert _same(again, first)
    assert est.n_compiles <= compiles + 1  # at most one more capacity for replicate A


def _same(x, y):
    keys = ("estimate", "se", "lower", "upper", "p_positive")
    return all(getattr(x, k) == getattr(y, k) for k in keys)


def test_capacity_comes_from_the_data_alone(trajectory):
    from models.bayes.base import capacity

    sc, est = trajectory
    assert [capacity(n) for n in (1, 2, 3, 5, 7, 13, 200, 257)] == [1, 2, 3, 6, 8, 16, 256, 384]
    df = est.prepare(simulate_trial(sc, 3).data)
    _, sizes, _ = est._arrays(df, 12.0)
    cap = est._capacity(sizes)
    assert cap["occ"] == sizes["occ"]  # occasion effects are built exactly
    assert all(sizes[k] <= cap[k] < 1.5 * sizes[k] + 1 for k in ("unit", "client"))
    big = get_estimator("bayes_occasion", sc, capacity={"client": 1000})
    assert big._capacity(sizes)["client"] == 1000


@pytest.mark.slow
def test_stepped_wedge_recovers_itt():
    sc = Scenario().replace({"design.kind": "stepped_wedge", **LARGE})
    est = get_estimator("bayes_occasion_stepped_wedge", sc, unit_period=True, **SAMPLER)
    trial = simulate_trial(sc, 1)
    e = est.fit(trial.data)
    check_recovery(e, trial.truth["itt"])
    assert "var_unit_period" in e.extra


@pytest.mark.slow
def test_binary_recovers_risk_difference():
    size = LARGE or {"size.units": 12}
    sc = Scenario().replace({"outcome": {"kind": "binary"}, **size})
    est = get_estimator("bayes_binary", sc)  # the integrated route: its own check
    trial = simulate_trial(sc, 1)
    e = est.fit(trial.data)
    truth = trial.truth["risk_difference"]
    assert e.converged and e.lower <= truth <= e.upper, (truth, e.estimate, e.lower, e.upper)
    assert abs(e.estimate - truth) < 3 * e.se
    rr = trial.truth["risk_ratio"]
    assert e.extra["risk_ratio_lower"] <= rr <= e.extra["risk_ratio_upper"]


def test_glm_binary_matches_statsmodels():
    """The cluster-robust risk difference equals statsmodels' OLS with cluster SEs."""
    import statsmodels.api as sm

    from models.clients import client_table

    sc = Scenario().replace({"outcome": {"kind": "binary"}})
    trial = simulate_trial(sc, 4)
    est = get_estimator("glm_binary", sc)
    e = est.fit(trial.data)
    ct = client_table(est.prepare(trial.data), 12.0)
    X = sm.add_constant(np.column_stack([ct["z"], ct["baseline"]]).astype(float))
    ref = sm.OLS(ct["y"].to_numpy(float), X).fit(
        cov_type="cluster", cov_kwds={"groups": ct["therapist"].to_numpy()})
    assert e.estimate == pytest.approx(ref.params[1], rel=1e-9)
    assert e.se == pytest.approx(ref.bse[1], rel=1e-9)


@pytest.mark.slow
def test_notebook_02_runs(tmp_path):
    import papermill

    out = tmp_path / "out"
    papermill.execute_notebook(
        "notebooks/02_fit_hierarchical.ipynb", str(tmp_path / "02.ipynb"),
        kernel_name="python3", parameters=dict(fast=True, output_dir=str(out)),
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), progress_bar=False)
    assert (out / "posterior.nc").is_file() and (out / "estimate.csv").is_file()
