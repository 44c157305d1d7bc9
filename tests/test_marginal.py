"""The marginalized Bayesian growth model (``models.bayes.marginal``, ``bayes_marginal``).

The log-likelihood is checked against the dense multivariate normal on small data (nested,
partially nested, unbalanced, zero-padded); the estimator against data simulated from the
model itself, and compile-once re-use against a fresh build.
"""

import functools
import math

import numpy as np
import pandas as pd
import pytest

from models import get_estimator
from models.bayes.marginal import (
    DATA_NAMES,
    MarginalData,
    dense_loglik,
    marginal_data,
    marginal_loglik,
)
from simulate.conventions import scaled_time

MONTHS = (0.0, 1.0, 3.0, 6.0, 12.0)


def synth(rng, units=3, therapists=2, clients=4, partial=False, attrition=0.3, params=None):
    """Long table from the model itself: unit, therapist, client (intercept+slope) effects.

    ``clients`` is the maximum per therapist (1..clients drawn), attrition removes follow-ups
    at random, so clients have 1-5 occasions. ``partial``: usual-care clients (even
    therapist index) get ``therapist = -1`` and no therapist effect.
    """
    p = params or {}
    beta = np.asarray(p.get("beta", [18.0, 4.0, 0.0, 1.5]))
    sd_u, sd_t = p.get("sd_unit", 1.0), p.get("sd_therapist", 1.5)
    sd_a, sd_b, rho = p.get("sd_int", 5.0), p.get("sd_slope", 3.0), p.get("rho", -0.3)
    sigma = p.get("sigma", 4.0)
    G = np.array([[sd_a**2, rho * sd_a * sd_b], [rho * sd_a * sd_b, sd_b**2]])
    rows, client, ther = [], 0, 0
    for u in range(units):
        uu = rng.normal(0, sd_u)
        for k in range(therapists):
            arm = k % 2
            tid = -1 if (partial and arm == 0) else ther
            vt = 0.0 if tid == -1 else rng.normal(0, sd_t)
            ther += 1
            for _ in range(rng.integers(1, clients + 1)):
                a, b = rng.multivariate_normal([0, 0], G)
                for m in MONTHS:
                    if m > 0 and rng.random() < attrition:
                        continue
                    t = math.log1p(m) / math.log1p(12.0)
                    mu = beta[0] + beta[1] * t + arm * (beta[2] + beta[3] * t)
                    rows.append(dict(unit=u, therapist=tid, client=client, arm=arm,
                                     exposure=arm, month=m,
                                     outcome=mu + uu + vt + a + b * t + rng.normal(0, sigma)))
                client += 1
    df = pd.DataFrame(rows)
    # the plan's default model time, as Estimator.prepare adds it
    return df.assign(time=scaled_time(df["month"], 12.0))


def random_params(rng):
    return dict(beta=rng.normal([18, 3, 0.5, 1], 2), sigma=rng.uniform(1, 6),
                sd_unit=rng.uniform(0, 3), sd_therapist=rng.uniform(0, 3),
                sd_int=rng.uniform(0.1, 7), sd_slope=rng.uniform(0, 4),
                rho=rng.uniform(-0.95, 0.95))


@functools.cache
def _compiled_loglik():
    """One compiled PyTensor function (log-likelihood and gradient) for every test here."""
    import pytensor
    import pytensor.tensor as pt

    theta = pt.dvector("theta")
    data = {k: (pt.lvector(k) if k in ("slot", "slot_unit") else pt.dvector(k))
            for k in DATA_NAMES}
    ll = marginal_loglik(theta[:4], theta[4], theta[5], theta[6], theta[7], theta[8],
                         theta[9], data)
    return pytensor.function([theta, *data.values()], [ll, pytensor.grad(ll, theta)])


def as_theta(p) -> np.ndarray:
    return np.r_[p["beta"], p["sigma"], p["sd_unit"], p["sd_therapist"], p["sd_int"],
                 p["sd_slope"], p["rho"]]


def loglik(md: MarginalData | dict, p) -> float:
    arrays = md.arrays() if isinstance(md, MarginalData) else md
    x = as_theta(p) if isinstance(p, dict) else p
    return float(_compiled_loglik()(x, *(arrays[k] for k in DATA_NAMES))[0])


def test_symbolic_and_numeric_inputs_agree():
    """``marginal_loglik`` also takes plain numbers and arrays (kept as float64)."""
    rng = np.random.default_rng(1)
    df = synth(rng)
    md = marginal_data(df, standardize=False)
    p = random_params(rng)
    direct = float(marginal_loglik(p["beta"], p["sigma"], p["sd_unit"], p["sd_therapist"],
                                   p["sd_int"], p["sd_slope"], p["rho"], md.arrays()).eval())
    assert direct == pytest.approx(loglik(md, p), abs=1e-10, rel=0)


@pytest.mark.parametrize("partial", [False, True], ids=["nested", "partially_nested"])
def test_loglik_matches_dense_mvn(partial):
    rng = np.random.default_rng(11 + partial)
    for _ in range(4):
        df = synth(rng, units=3, therapists=3, clients=4, partial=partial)
        md = marginal_data(df, standardize=False)
        p = random_params(rng)
        # rounding error of a ~60-row dense Cholesky and of the sums is ~1e-12
        assert loglik(md, p) == pytest.approx(dense_loglik(df, **p), abs=1e-8, rel=0)


def test_loglik_unbalanced_and_single_occasion_clients():
    rng = np.random.default_rng(3)
    # heavy attrition: many clients with one occasion, units of different sizes
    df = synth(rng, units=4, therapists=2, clients=5, attrition=0.7)
    assert df.groupby("client").size().min() == 1
    assert df.groupby("unit").size().nunique() > 1
    md = marginal_data(df, standardize=False)
    p = random_params(rng)
    assert loglik(md, p) == pytest.approx(dense_loglik(df, **p), abs=1e-8, rel=0)


def test_zero_padding_is_exact():
    """Empty clients, therapist slots and units (a fixed capacity) add exactly nothing."""
    rng = np.random.default_rng(5)
    df = synth(rng, partial=True)
    md = marginal_data(df, standardize=False)
    arr = md.arrays()
    pad_c, pad_s = 7, 3
    n_units = int(arr["slot_unit"].max()) + 1
    padded = {k: np.r_[v, np.zeros(pad_c, v.dtype)]
              for k, v in arr.items() if k not in ("slot_real", "slot_unit")}
    padded["slot"][-pad_c:] = len(arr["slot_real"])  # into an empty slot
    padded["slot_real"] = np.r_[arr["slot_real"], np.ones(pad_s)]
    padded["slot_unit"] = np.r_[arr["slot_unit"], np.full(pad_s, n_units + 1)]  # empty unit
    p = random_params(rng)
    assert loglik(padded, p) == pytest.approx(loglik(md, p), abs=1e-10, rel=0)
    assert loglik(md, p) == pytest.approx(dense_loglik(df, **p), abs=1e-8, rel=0)


def test_gradient_matches_finite_differences():
    """The sampler relies on PyTensor's gradient: compare with central differences."""
    rng = np.random.default_rng(8)
    md = marginal_data(synth(rng, partial=True), standardize=False)
    arrays = [md.arrays()[k] for k in DATA_NAMES]
    f = _compiled_loglik()
    x = np.array([18.0, 3.0, 0.5, 1.0, 4.0, 1.0, 1.5, 5.0, 3.0, -0.3])
    g = f(x, *arrays)[1]
    h = 1e-5
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = h
        fd = (f(x + e, *arrays)[0] - f(x - e, *arrays)[0]) / (2 * h)
        # central-difference error ~h^2 times the third derivative, plus rounding
        # ~1e-13/h: both well below 1e-5
        assert g[i] == pytest.approx(fd, rel=1e-6, abs=1e-5)


@pytest.fixture(scope="module")
def big_data():
    # 16 units x 4 therapists x up to 12 clients: about 1,900 rows, effect 1.5 points
    return synth(np.random.default_rng(2024), units=16, therapists=4, clients=12,
                 attrition=0.25)


@pytest.fixture(scope="module")
def reused(big_data):
    """Compiled on a small data set, then fitted to ``big_data`` through ``with_data``."""
    est = get_estimator("bayes_marginal", None, primary_month=12.0, draws=500, tune=300,
                        seed=1)
    est.fit(synth(np.random.default_rng(0), units=3))
    return est, est.fit(big_data)


@pytest.mark.bayes
def test_recovers_effect_and_checks_convergence(reused):
    _, e = reused
    assert e.estimator == "bayes_marginal" and e.estimand == "itt"
    assert e.lower < 1.5 < e.upper
    # the posterior SD of a 1,900-row trial is ~0.6 points; a wrong model would miss by more
    assert abs(e.estimate - 1.5) < 3 * e.se
    d = e.diagnostics
    for key in ("converged", "rhat_max", "ess_bulk_min", "divergences", "fit_seconds"):
        assert key in d
    assert d["converged"], d["warnings"]
    assert d["rhat_max"] < 1.01 and d["divergences"] == 0
    # variance components on the data's scale: truth 25 (client), 16 (residual); a 20%
    # band on the SD (as before) is 44% on the variance, 10% on the SD 21%
    assert math.sqrt(e.extra["var_client"]) == pytest.approx(5.0, rel=0.2)
    assert math.sqrt(e.extra["var_resid"]) == pytest.approx(4.0, rel=0.1)


@pytest.mark.bayes
def test_with_data_reuse_equals_fresh_build(reused, big_data):
    est, e = reused
    fresh = get_estimator("bayes_marginal", None, primary_month=12.0, draws=500, tune=300,
                          seed=1)
    f = fresh.fit(big_data)
    # the marginal model has no data-sized parameters: one compilation served both sizes
    assert est.n_compiles == 1 and fresh.n_compiles == 1
    # same data, same sampler seed, same compiled log-density: the same draws
    assert f.estimate == pytest.approx(e.estimate, rel=1e-9)
    assert f.se == pytest.approx(e.se, rel=1e-9)
