"""The integrated logit mixed model (``bayes_binary``): its kernels against brute force,
its posterior against a NUTS run of the same model and priors, purity, and its own check.
"""

import math

import numpy as np
import pytest

from models import get_estimator
from models.base import EstimatorError
from models.bayes import logit_kernels as K
from models.bayes.logit_integrated import PRIORS, LogitData, _Laplace, integrate_binary
from simulate import Scenario, load_scenario, simulate_trial
from simulate.conventions import gauss_hermite

BINARY = Scenario().replace({"outcome": {"kind": "binary"}, "size.units": 4,
                             "size.clients_per_unit": 12.0})


def prepared(sc=BINARY, seed=3):
    est = get_estimator("bayes_binary", sc)
    return est, est.prepare(simulate_trial(sc, seed).data)


def laplace_of(df, nodes=9):
    d = LogitData(df, df.attrs["primary_month"])
    return d, _Laplace(d, PRIORS, nodes)


def args(d, lap):
    return (d.y, d.cptr, d.cols, d.base, d.kind, lap.t, lap.logw, lap.prec)


def test_client_quadrature_is_the_integral():
    """g(x) = sum of log client integrals - x'Px/2: each integral against a fine grid."""
    _, df = prepared()
    d, lap = laplace_of(df, nodes=15)
    rng = np.random.default_rng(1)
    x = 0.3 * rng.standard_normal(d.dim)
    theta = np.array([0.4, 0.5, 1.3])
    centre, spread = K.client_nodes(theta, x, *args(d, lap))
    g = K.objective(theta, x, *args(d, lap), centre, spread)
    # brute force: each row's linear predictor from the design, then a grid over w
    scale = np.array([1.0, theta[0], theta[1]])
    a = np.where(d.cols >= 0, d.base * scale[d.kind] * x[np.maximum(d.cols, 0)], 0.0).sum(1)
    w = np.linspace(-10, 10, 40001)
    log_phi = -0.5 * w**2 - 0.5 * math.log(2 * math.pi)
    total = -0.5 * float(lap.prec @ x**2)
    for i in range(d.n_client):
        rows = slice(d.cptr[i], d.cptr[i + 1])
        eta = a[rows, None] + theta[2] * w[None, :]
        ll = (d.y[rows, None] * eta - np.logaddexp(0, eta)).sum(0) + log_phi
        total += float(np.logaddexp.reduce(ll) + math.log(w[1] - w[0]))
    assert g == pytest.approx(total, abs=1e-6 * d.n_client)


def test_gradient_and_hessian_are_the_objectives():
    _, df = prepared()
    d, lap = laplace_of(df)
    rng = np.random.default_rng(2)
    x = 0.3 * rng.standard_normal(d.dim)
    theta = np.array([-0.4, 0.6, 1.1])  # a signed SD: the model depends on its square
    centre, spread = K.client_nodes(theta, x, *args(d, lap))
    grad, neg_h = np.empty(d.dim), np.empty((d.dim, d.dim))
    width = int(np.diff(d.cptr).max())
    nq = len(lap.t)
    K._pass(x, theta, *args(d, lap), grad, neg_h, np.empty((width, nq)),
            np.empty((width, nq)), np.empty(nq), centre, spread, False)

    def g(z):
        return K.objective(theta, z, *args(d, lap), centre, spread)

    h = 1e-5
    fd = np.array([(g(x + h * e) - g(x - h * e)) / (2 * h) for e in np.eye(d.dim)])
    np.testing.assert_allclose(grad, fd, atol=1e-6)
    k = 3  # a few columns of the Hessian by differences of the gradient

    def grad_at(z):
        gr = np.empty(d.dim)
        K._pass(z, theta, *args(d, lap), gr, np.empty((d.dim, d.dim)),
                np.empty((width, nq)), np.empty((width, nq)), np.empty(nq), centre,
                spread, False)
        return gr

    for j in (0, d.p, d.dim - 1)[:k]:
        e = np.zeros(d.dim)
        e[j] = h
        col = -(grad_at(x + e) - grad_at(x - e)) / (2 * h)
        np.testing.assert_allclose(neg_h[:, j], col, atol=1e-5)
    assert np.all(np.linalg.eigvalsh(neg_h) > 0)  # concave (Prekopa)


def test_one_node_laplace_converges_at_a_large_client_sd():
    """A client SD of 6, where a client's posterior has a cliff that few nodes cannot
    follow: one node at the client modes (the Laplace approximation, the fallback of
    :func:`laplace_batch`) is concave by construction and converges."""
    _, df = prepared()
    d, lap = laplace_of(df)
    x0 = np.zeros(d.dim)
    ones = np.zeros(d.n_client), np.ones(d.n_client)

    def value(theta, nodes):
        t, w = gauss_hermite(nodes)
        return K.laplace(theta, x0, d.y, d.cptr, d.cols, d.base, d.kind, np.asarray(t),
                         np.log(np.asarray(w)), lap.prec, 1e-8, 200, *ones, True)[0]

    assert np.isfinite(value(np.array([0.5, 0.5, 6.0]), 1))
    # where both work (a client SD of 1) they differ by the Laplace approximation's error
    # over the clients, a few hundredths per client of 4-5 binary observations
    one, many = value(np.array([0.5, 0.5, 1.0]), 1), value(np.array([0.5, 0.5, 1.0]), 25)
    assert 0 < abs(one - many) < 0.03 * d.n_client


def test_fit_is_a_pure_function_of_its_data():
    est, df = prepared()
    data_a = simulate_trial(BINARY, 3).data
    data_b = simulate_trial(BINARY, 4).data
    first = est.fit(data_a)
    est.fit(data_b)
    again = get_estimator("bayes_binary", BINARY).fit(data_a)
    after = est.fit(data_a)
    for e in (again, after):
        assert (e.estimate, e.se, e.lower, e.upper) == (first.estimate, first.se,
                                                         first.lower, first.upper)
        assert e.extra == first.extra
    other = est.fit(data_b)
    assert other.estimate != first.estimate
    assert first.converged and first.lower < first.estimate < first.upper
    assert 0 < first.extra["risk_control"] < 1 and first.extra["var_client"] > 0


def test_own_check_flags_a_fit_it_cannot_vouch_for():
    _, df = prepared()
    est = get_estimator("bayes_binary", BINARY, first_draws=8, max_draws=8)
    e = est.fit(simulate_trial(BINARY, 3).data)
    assert not e.converged and "integration error" in e.diagnostics["warnings"][0]
    assert np.isfinite(e.estimate)  # flagged, never dropped


@pytest.mark.parametrize("options, message", [
    ({"nodes": 2}, "nodes"), ({"inner": True}, "inner"), ({"max_error": 0}, "max_error"),
    ({"priors": {"sigma_unit": -1}}, "priors.sigma_unit"),
    ({"priors": {"tau": 1.0}}, "unknown prior"), ({"draws": 100}, "unknown option"),
])
def test_bad_options_refused(options, message):
    with pytest.raises(EstimatorError, match=message):
        get_estimator("bayes_binary", BINARY, **options)


def test_posterior_draws_follow_the_estimate():
    est, _ = prepared()
    data = simulate_trial(BINARY, 3).data
    post = est.posterior(data, draws=4000)
    e = post.estimate
    d = post.effect_draws
    # 4,000 resampled draws: mean within 4 Monte Carlo SEs of the posterior mean
    assert abs(d.mean() - e.estimate) < 4 * e.se / math.sqrt(4000)
    assert d.std() == pytest.approx(e.se, rel=0.1)
    draws = est.posterior_draws(post, 99, seed=1)
    assert set(draws) == {"effect", "var_unit", "var_therapist", "var_client"}
    assert all(len(v) == 99 for v in draws.values())


@pytest.mark.bayes
@pytest.mark.slow
@pytest.mark.parametrize("which", ["small", "ips"])
def test_agrees_with_nuts(which):
    """The same model and priors by NUTS (4 x 2,000 draws): targets (mean 0.1 posterior
    SD, SD 10%, ends 0.15 SD) plus three of NUTS's own Monte Carlo errors at its ESS."""
    import arviz as az

    sc = BINARY if which == "small" else load_scenario(
        __import__("pathlib").Path(__file__).parents[1] / "params" / "ips_2to1.yaml")
    data = simulate_trial(sc, 5).data
    fast = get_estimator("bayes_binary", sc).fit(data)
    nuts_est = get_estimator("bayes_binary_nuts", sc, chains=4, draws=2000, tune=1000)
    post = nuts_est.posterior(data)
    ref = post.estimate
    assert fast.converged and ref.converged
    draws = np.asarray(post.effect_draws).reshape(4, -1)
    def mcse(**kw):
        return float(np.squeeze(np.asarray(az.mcse(draws, **kw)))) / ref.se

    mc_mean = mcse(method="mean")
    mc_end = max(mcse(method="quantile", prob=p) for p in (0.025, 0.975))
    print(f"{which}: mean {(fast.estimate - ref.estimate) / ref.se:+.3f}, sd "
          f"{fast.se / ref.se - 1:+.3f}, ends {(fast.lower - ref.lower) / ref.se:+.3f} "
          f"{(fast.upper - ref.upper) / ref.se:+.3f}; NUTS MC errors {mc_mean:.3f} {mc_end:.3f}")
    assert abs(fast.estimate - ref.estimate) / ref.se < 0.10 + 3 * mc_mean
    assert abs(fast.se / ref.se - 1) < 0.10 + 3 * mc_mean
    assert abs(fast.lower - ref.lower) / ref.se < 0.15 + 3 * mc_end
    assert abs(fast.upper - ref.upper) / ref.se < 0.15 + 3 * mc_end


def test_integration_draws_double_until_the_check_passes():
    _, df = prepared()
    d = LogitData(df, df.attrs["primary_month"])
    res = integrate_binary(d, first_draws=16, max_draws=4096)
    g = res.diagnostics
    assert g["integration_ok"] and g["draws"] in (16 * 2**k for k in range(9))
    assert max(g[k] for k in g if k.startswith("mc_error")) <= 0.03
    assert abs(res.weights.sum() - 1) < 1e-12 and res.p0.shape == (g["draws"], 256)


def test_same_estimate_whatever_the_number_of_threads():
    """The importance draws are evaluated in parallel threads; each evaluation is
    independent of the others, so one thread or two give bit-identical fits."""
    import numba

    est, _ = prepared()
    data = simulate_trial(BINARY, 6).data
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = est.fit(data)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = est.fit(data)
    finally:
        numba.set_num_threads(before)
    assert (one.estimate, one.se, one.lower, one.upper, one.extra) == \
        (two.estimate, two.se, two.lower, two.upper, two.extra)
