"""The integrated Bayesian mixed models (``bayes_trajectory``, ``bayes_stepped_wedge``).

Checked against independent computations: a dense-matrix quadrature of the same posterior
on a small data set, finite differences of the analytic gradient, the numpy reference of
the kernels, and a long NUTS run of the same model and priors (``*_nuts``).
"""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import special

from conftest import PARAMS
from models import get_estimator
from models.bayes.integrated import Coordinates, Priors, _mode, integrate
from models.bayes.lmm import _Design
from models.reml.engine import _NestedLMM
from simulate import Scenario, load_scenario, simulate_trial
from simulate.conventions import scaled_time


def cross_sectional(seed=0, units=5, per_unit=12, ther=2, effect=1.0):
    """One occasion per client: unit and therapist intercepts, arm randomized in units."""
    rng = np.random.default_rng(seed)
    rows = []
    u_eff, t_eff = rng.normal(0, 1.0, units), rng.normal(0, 1.5, units * ther)
    for u in range(units):
        for i in range(per_unit):
            arm, th = i % 2, u * ther + i % ther
            y = 20 + effect * arm + u_eff[u] + t_eff[th] + rng.normal(0, 4.0)
            rows.append((u, th, len(rows), arm, arm, 12.0, y))
    df = pd.DataFrame(rows, columns=["unit", "therapist", "client", "arm", "exposure", "month",
                                     "outcome"])
    return df.assign(time=scaled_time(df["month"], 12.0))


def dense_posterior(df, pr: Priors, grid=121, top=4.0):
    """Posterior mean and SD of the arm effect by quadrature on a grid of the two relative
    SDs, with beta and sigma^2 integrated as a multivariate t: y | theta ~ t(0,
    b0/a0 K, 2 a0) with K = H + g^2 X X' (dense matrices, none of the kernels' algebra)."""
    y = df["outcome"].to_numpy()
    n = len(y)
    X = np.column_stack([np.ones(n), df["arm"].to_numpy(float)])
    U = (df["unit"].to_numpy()[:, None] == df["unit"].to_numpy()[None, :]).astype(float)
    T = (df["therapist"].to_numpy()[:, None] == df["therapist"].to_numpy()[None, :]).astype(float)
    s = np.linspace(0.0, top, grid)
    a0, b0, g2 = pr.sigma2_shape, pr.sigma2_scale, pr.beta_sd**2
    logp, mean, var = [], [], []
    for st in s:
        for su in s:
            H = np.eye(n) + st**2 * T + su**2 * U
            K = H + g2 * X @ X.T
            L = np.linalg.cholesky(K)
            z = np.linalg.solve(L, y)
            q = z @ z
            # log p(y | theta) + log prior (half-normals on the two relative SDs)
            lp = (-np.log(np.diag(L)).sum() - (a0 + n / 2) * math.log(b0 + q / 2)
                  - st**2 / (2 * pr.therapist**2) - su**2 / (2 * pr.unit**2))
            # beta | theta, y: the Gaussian conditional of beta given y, scaled as a t
            Ki = np.linalg.inv(K)
            m = g2 * X[:, 1] @ Ki @ y
            v = g2 - g2**2 * X[:, 1] @ Ki @ X[:, 1]
            scale2 = (2 * b0 + q) / (2 * a0 + n) * v
            df_t = 2 * a0 + n
            logp.append(lp)
            mean.append(m)
            var.append(scale2 * df_t / (df_t - 2))
    w = np.exp(np.array(logp) - special.logsumexp(logp))
    mean, var = np.array(mean), np.array(var)
    mu = w @ mean
    return mu, math.sqrt(w @ (var + mean**2) - mu**2)


def test_matches_dense_quadrature():
    df = cross_sectional()
    pr = Priors()
    est = get_estimator("bayes_trajectory", primary_month=12.0)
    e = est.fit(df)
    mu, sd = dense_posterior(df, pr)
    # the quadrature's own error on a 121 x 121 grid is far below 1e-3 SD; the importance
    # sampler reports its Monte Carlo errors (<= 0.05 SD by its rule): a 3-sigma band
    d = e.diagnostics
    assert e.converged
    assert abs(e.estimate - mu) < 3 * max(d["mc_error_mean"], 0.005) * sd, (e.estimate, mu)
    assert abs(e.se - sd) < 3 * d["mc_error_sd"] * sd, (e.se, sd)


def _model(df, stepped, cov="unstructured"):
    d = _Design(df, stepped, unit_period=True)
    return d.model(cov), d


@pytest.mark.parametrize("stepped, cov", [(False, "unstructured"), (False, "diagonal"),
                                          (True, "unstructured")])
def test_gradient_of_the_log_posterior(stepped, cov):
    sc = load_scenario(PARAMS / "fit_stepped_wedge.yaml") if stepped else Scenario()
    sc = sc.replace({"size.units": 8, "size.clients_per_unit": 10})
    est = get_estimator("bayes_stepped_wedge" if stepped else "bayes_trajectory", sc)
    mdl, _ = _model(est.prepare(simulate_trial(sc, 3).data), stepped, cov)
    pr = Priors()
    mdl.set_prior(np.full(mdl.p, 1 / pr.beta_sd**2), pr.sigma2_shape, pr.sigma2_scale)
    coords = Coordinates(mdl.par_names, pr)

    def f(phi):
        return 0.5 * mdl.profile(coords.theta(phi)[0], "bayes")[0] - coords.log_prior(phi)[0]

    rng = np.random.default_rng(1)
    for _ in range(3):
        phi = coords.start() + rng.normal(0, 0.3, coords.k)
        out = mdl.profile(coords.theta(phi)[0], "bayes", grad=True)
        g = 0.5 * coords.jacobian(phi).T @ out[2] - coords.grad_log_prior(phi)
        h = 1e-5
        fd = np.array([(f(phi + h * e) - f(phi - h * e)) / (2 * h) for e in np.eye(coords.k)])
        # central differences: error ~ h^2 f''' + 1e-13 / h, far below 1e-5 here
        assert np.allclose(g, fd, rtol=1e-5, atol=1e-5), (g, fd)


def test_bayes_variant_numba_matches_numpy():
    df = cross_sectional(seed=2)
    sc = Scenario().replace({"size.units": 6, "size.clients_per_unit": 10})
    est = get_estimator("bayes_trajectory", sc)
    data = est.prepare(simulate_trial(sc, 1).data)
    for frame in (est.prepare(df), data):
        d = _Design(frame, False, False)
        a = _NestedLMM(d.y, d.X, d.unit, d.therapist, d.client, d.t, d.client_re, False, None,
                       "unstructured", engine="numba")
        b = _NestedLMM(d.y, d.X, d.unit, d.therapist, d.client, d.t, d.client_re, False, None,
                       "unstructured", engine="numpy")
        for m in (a, b):
            m.set_prior(np.full(m.p, 0.01), 2.0, 25.0)
        theta = np.random.default_rng(0).uniform(0.2, 0.9, len(a.par_names))
        fa, (ba, Ba, _), ga = a.profile(theta, "bayes", grad=True)
        fb, (bb, Bb, _), gb = b.profile(theta, "bayes", grad=True)
        assert fa == pytest.approx(fb, rel=1e-10)
        assert np.allclose(ga, gb, rtol=1e-9, atol=1e-9)
        assert np.allclose(ba, bb, rtol=1e-9) and np.allclose(Ba, Bb, rtol=1e-10)


def test_symmetric_coordinates_fold():
    coords = Coordinates(["l11", "l21", "l22", "s_ther", "s_unit"], Priors())
    phi = np.array([0.1, 0.4, -0.7, -0.3, 0.2])
    folded = coords.fold(phi)
    # the slope SD and the correlation flip together; the therapist SD alone
    assert folded.tolist() == pytest.approx([0.1, -0.4, 0.7, 0.3, 0.2])
    th, th_f = coords.theta(phi)[0], coords.theta(folded)[0]
    L = np.array([[th[0], 0], [th[1], th[2]]])
    Lf = np.array([[th_f[0], 0], [th_f[1], th_f[2]]])
    assert np.allclose(L @ L.T, Lf @ Lf.T)  # the same client covariance
    assert coords.log_prior(phi)[0] == pytest.approx(coords.log_prior(folded)[0])
    assert len(coords.sign_patterns()) == 2**3


def test_integration_error_rule_and_determinism():
    sc = Scenario().replace({"size.units": 8, "size.clients_per_unit": 12})
    data = simulate_trial(sc, 5).data
    est = get_estimator("bayes_trajectory", sc)
    a = est.fit(data)
    d = a.diagnostics
    assert d["converged"] and d["k_hat"] < 0.7
    assert max(d["mc_error_mean"], d["mc_error_sd"], d["mc_error_lower"],
               d["mc_error_upper"]) <= 0.05
    est.fit(simulate_trial(sc, 6).data)
    b = est.fit(data)
    assert (a.estimate, a.se, a.lower, a.upper) == (b.estimate, b.se, b.lower, b.upper)
    # a fit allowed too few draws to meet the rule is flagged, not dropped
    tight = get_estimator("bayes_trajectory", sc, first_draws=8, max_draws=8, max_error=1e-4)
    t = tight.fit(data)
    assert not t.converged and t.diagnostics["warnings"]


def test_mode_is_found_from_the_fixed_start():
    df = cross_sectional(seed=4)
    mdl, d = _model(get_estimator("bayes_trajectory", primary_month=12.0).prepare(df), False)
    pr = Priors()
    mdl.set_prior(np.full(mdl.p, 1 / pr.beta_sd**2), pr.sigma2_shape, pr.sigma2_scale)
    res, cov = _mode(mdl, Coordinates(mdl.par_names, pr))
    assert res.success and np.all(np.linalg.eigvalsh(cov) > 0)
    full = integrate(mdl, d.target, pr)
    assert full.diagnostics["integration_ok"]


@pytest.mark.bayes
def test_agrees_with_a_long_nuts_run():
    # the same model and priors by NUTS with explicit random effects; the agreement
    # targets: mean within 0.1 posterior SD, SD within 10%, interval ends within 0.15 SD.
    # NUTS's own Monte Carlo error at ESS > 1000 is below 0.03 SD for the mean and about
    # 0.05 SD for the 2.5% and 97.5% quantiles.
    sc = Scenario().replace({"size.units": 6, "size.clients_per_unit": 12})
    data = simulate_trial(sc, 101).data
    fast = get_estimator("bayes_trajectory", sc).fit(data)
    nuts = get_estimator("bayes_trajectory_nuts", sc, draws=1500, tune=1000, chains=2,
                         cores=2).fit(data)
    assert nuts.diagnostics["ess_bulk_estimand"] > 1000
    sd = nuts.se
    assert abs(fast.estimate - nuts.estimate) < 0.1 * sd
    assert fast.se == pytest.approx(sd, rel=0.10)
    assert abs(fast.lower - nuts.lower) < 0.15 * sd and abs(fast.upper - nuts.upper) < 0.15 * sd
