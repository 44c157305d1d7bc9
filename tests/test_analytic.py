"""Closed-form power and variance (simulate.power) against independent computations.

Every formula is compared with a brute-force simulation written here from the model
itself (numpy, fixed seeds), or with an exact identity. Tolerances are 4 Monte Carlo
standard errors (MCSE): for a rejection rate ``sqrt(p (1 - p) / R)``; for an empirical
variance of normal estimates ``var * sqrt(2 / (R - 1))``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from simulate import Scenario
from simulate import power as an


def rate_tol(p: float, reps: int) -> float:
    """4 MCSE of a simulated rejection rate (binomial)."""
    return 4 * math.sqrt(p * (1 - p) / reps)


def var_tol(var: float, reps: int) -> float:
    """4 MCSE of an empirical variance of normal draws."""
    return 4 * var * math.sqrt(2 / (reps - 1))


# -- two independent samples ------------------------------------------------------------------
@pytest.mark.parametrize("sides", [1, 2])
def test_two_sample_t_power_matches_simulated_t_test(sides):
    rng = np.random.default_rng(11)
    reps, n_t, n_c, delta, sd = 4000, 6, 8, 4.5, 3.0  # small: t and z differ by ~0.07
    y_t = rng.normal(delta, sd, (reps, n_t))
    y_c = rng.normal(0.0, sd, (reps, n_c))
    alt = "greater" if sides == 1 else "two-sided"
    p = stats.ttest_ind(y_t, y_c, axis=1, alternative=alt).pvalue
    simulated = np.mean(p < 0.05)
    expected = an.power_two_sample(delta, sd, n_t, n_c, sides=sides, dist="t")
    assert abs(simulated - expected) < rate_tol(expected, reps)


def test_two_sample_normal_close_to_t_for_large_samples():
    # the z approximation converges to the t power; at n = 500 per arm they differ < 0.002
    z = an.power_two_sample(0.2, 1.0, 500, 500)
    t = an.power_two_sample(0.2, 1.0, 500, 500, dist="t")
    assert abs(z - t) < 0.002
    assert z > t  # z ignores the uncertainty in the SD


def test_n_for_power_matches_cohen_table():
    # Cohen (1988) table 2.4.1: d = 0.5, two-sided alpha .05, power .80 -> n = 64 per group
    assert an.n_for_power(0.5, 1.0, 0.8, dist="t") == (64, 64)


@pytest.mark.parametrize("ratio", [1.0, 2.0])
def test_n_for_power_is_the_smallest_that_reaches_power(ratio):
    n_t, n_c = an.n_for_power(3.0, 10.0, 0.9, ratio=ratio, design_effect=1.3)
    assert n_t == math.ceil(ratio * n_c)
    var = lambda nt, nc: 1.3 * 100 * (1 / nt + 1 / nc)  # noqa: E731
    assert an.power_from_variance(3.0, var(n_t, n_c)) >= 0.9
    assert an.power_from_variance(3.0, var(math.ceil(ratio * (n_c - 1)), n_c - 1)) < 0.9


# -- clustering -----------------------------------------------------------------------------
def _pooled_means(rng, sizes, reps, icc, sd=1.0):
    """Mean of all individuals of clustered normal data, for ``reps`` replicates."""
    sizes = np.asarray(sizes)
    u = rng.normal(0, sd * math.sqrt(icc), (reps, sizes.size))
    e = rng.normal(0, sd * math.sqrt(1 - icc), (reps, sizes.sum()))
    y = np.repeat(u, sizes, axis=1) + e
    return y.mean(axis=1)


def test_design_effect_known_limits():
    assert an.design_effect(30, 0.0, cv=0.7) == 1.0
    assert an.design_effect(30, 0.04) == pytest.approx(1 + 29 * 0.04)
    assert an.design_effect(1, 0.3) == pytest.approx(1.0)


def test_eldridge_design_effect_matches_simulation_with_variable_sizes():
    rng = np.random.default_rng(12)
    sizes = np.array([4, 8, 10, 12, 16, 22, 30, 42])  # CV about 0.6
    m, cv = sizes.mean(), sizes.std() / sizes.mean()  # population CV, as in Eldridge
    icc, reps = 0.1, 20000
    diff = _pooled_means(rng, sizes, reps, icc) - _pooled_means(rng, sizes, reps, icc)
    expected = 2 * an.design_effect(m, icc, cv) / sizes.sum()
    assert abs(diff.var(ddof=1) - expected) < var_tol(expected, reps)
    # the equal-size formula would be clearly wrong here (sanity of the test's power)
    assert abs(2 * an.design_effect(m, icc) / sizes.sum() - expected) > 3 * var_tol(expected, reps)


def test_partially_nested_reduces_to_two_sample_without_clustering():
    v = an.variance_clustered_arms(2.0, 60, 30, m_treat=10, icc=0.0)
    assert v == pytest.approx(4.0 * (1 / 60 + 1 / 30))


@pytest.mark.parametrize("control_clustered", [False, True])
def test_clustered_arms_variance_matches_simulation(control_clustered):
    rng = np.random.default_rng(13 + control_clustered)
    reps, icc, sd = 20000, 0.15, 2.0
    treat = [8] * 6  # 6 therapists with 8 clients each
    control = [5] * 6 if control_clustered else [1] * 30  # unclustered: clusters of one
    diff = _pooled_means(rng, treat, reps, icc, sd) - _pooled_means(
        rng, control, reps, icc if control_clustered else 0.0, sd
    )
    expected = an.variance_clustered_arms(
        sd, 48, 30, m_treat=8, icc=icc, m_control=5 if control_clustered else None
    )
    assert abs(diff.var(ddof=1) - expected) < var_tol(expected, reps)


def test_cluster_randomized_power_matches_t_test_on_cluster_means():
    rng = np.random.default_rng(14)
    reps, k_t, k_c, m, icc, delta = 4000, 6, 4, 10, 0.1, 0.6
    sizes_t, sizes_c = [m] * k_t, [m] * k_c

    def cluster_means(sizes, shift):
        u = rng.normal(0, math.sqrt(icc), (reps, len(sizes)))
        e = rng.normal(0, math.sqrt(1 - icc), (reps, len(sizes), m)).mean(axis=2)
        return shift + u + e

    p = stats.ttest_ind(cluster_means(sizes_t, delta), cluster_means(sizes_c, 0.0), axis=1).pvalue
    simulated = np.mean(p < 0.05)
    expected = an.power_cluster_randomized(delta, 1.0, icc, m, k_t, k_c, dist="t")
    assert abs(simulated - expected) < rate_tol(expected, reps)


# -- stepped wedge -----------------------------------------------------------------------------
def _gls_weights(x, cov_blocks):
    """Row of (Z' V^-1 Z)^-1 Z' V^-1 for the effect, cells flattened cluster by cluster.

    Written from scratch with dense matrices (independent of the module's GLS code).
    """
    obs = ~np.isnan(x)
    n_t = x.shape[1]
    rows, blocks = [], []
    for i in range(x.shape[0]):
        cols = np.flatnonzero(obs[i])
        for j in cols:
            z = np.zeros(n_t + 1)
            z[j], z[-1] = 1.0, x[i, j]
            rows.append(z)
        blocks.append(cov_blocks(i, cols))
    z = np.array(rows)
    v = np.zeros((len(rows), len(rows)))
    at = 0
    for b in blocks:
        v[at:at + len(b), at:at + len(b)] = b
        at += len(b)
    vinv = np.linalg.inv(v)
    keep = np.flatnonzero(np.abs(z).sum(axis=0) > 0)
    z = z[:, keep]
    return (np.linalg.inv(z.T @ vinv @ z) @ z.T @ vinv)[-1]


def test_hussey_hughes_matches_simulated_gls():
    rng = np.random.default_rng(15)
    x = an.stepped_wedge_schedule(4, units_per_step=2)
    n_i, n_t = x.shape
    sigma2, tau2, theta, reps = 0.5, 0.2, 0.7, 50000
    beta = np.linspace(0, 1, n_t)  # fixed period effects (secular trend)
    w = _gls_weights(x, lambda i, c: sigma2 * np.eye(c.size) + tau2)
    a = rng.normal(0, math.sqrt(tau2), (reps, n_i, 1))
    e = rng.normal(0, math.sqrt(sigma2), (reps, n_i, n_t))
    y = beta + theta * x + a + e
    est = y.reshape(reps, -1) @ w
    expected = an.hussey_hughes_variance(x, sigma2, tau2)
    assert abs(est.var(ddof=1) - expected) < var_tol(expected, reps)
    assert abs(est.mean() - theta) < 4 * math.sqrt(expected / reps)


def test_hussey_hughes_cross_sectional_identities():
    sd, rho, m = 3.0, 0.05, 12
    x = an.stepped_wedge_schedule(5, units_per_step=3)
    hh = an.hussey_hughes_variance(x, (1 - rho) * sd**2 / m, rho * sd**2)
    # Hooper with rho_c = 1 and rho_s = 0 is the cross-sectional HH design
    assert an.hooper_variance(sd, rho, m, steps=5, clusters_per_step=3) == pytest.approx(hh, rel=1e-10)
    assert an.stepped_wedge_gls_variance(x, sd, rho, m) == pytest.approx(hh, rel=1e-10)
    # no clustering: 6 s2 / (K (T^2 - 1)), the closed form for tau2 = 0
    assert an.hussey_hughes_variance(x, 1.0, 0.0) == pytest.approx(6 / (3 * 24))


def test_hooper_matches_simulated_cohort_with_decaying_cluster_effect():
    rng = np.random.default_rng(16)
    steps, k, m, reps = 3, 2, 6, 10000
    sd, rho, rho_c, rho_s, theta = 2.0, 0.1, 0.6, 0.5, 1.0
    x = an.stepped_wedge_schedule(steps, units_per_step=k)
    n_i, n_t = x.shape
    # individual-level model: persistent cluster effect, cluster-period effect,
    # persistent individual effect (closed cohort), individual-period noise
    a = rng.normal(0, sd * math.sqrt(rho * rho_c), (reps, n_i, 1))
    b = rng.normal(0, sd * math.sqrt(rho * (1 - rho_c)), (reps, n_i, n_t))
    p = rng.normal(0, sd * math.sqrt((1 - rho) * rho_s), (reps, n_i, 1, m))
    e = rng.normal(0, sd * math.sqrt((1 - rho) * (1 - rho_s)), (reps, n_i, n_t, m))
    ybar = theta * x + a + b + (p + e).mean(axis=3)
    var_cell = sd**2 * (rho + (1 - rho) / m)
    cov_cell = sd**2 * (rho * rho_c + (1 - rho) * rho_s / m)
    w = _gls_weights(x, lambda i, c: (var_cell - cov_cell) * np.eye(c.size) + cov_cell)
    est = ybar.reshape(reps, -1) @ w
    expected = an.hooper_variance(sd, rho, m, steps, k, rho_c, rho_s)
    assert abs(est.var(ddof=1) - expected) < var_tol(expected, reps)
    assert an.stepped_wedge_gls_variance(x, sd, rho, m, rho_c, rho_s) == pytest.approx(
        expected, rel=1e-10
    )


def test_incomplete_stepped_wedge_gls_matches_simulation():
    rng = np.random.default_rng(17)
    x = an.stepped_wedge_schedule(4, units_per_step=2, window=2, masked=[(0, 4)])
    n_i, n_t = x.shape
    sd, rho, rho_c, m, reps = 1.0, 0.2, 0.7, 5, 20000
    obs = ~np.isnan(x)
    a = rng.normal(0, sd * math.sqrt(rho * rho_c), (reps, n_i, 1))
    b = rng.normal(0, sd * math.sqrt(rho * (1 - rho_c)), (reps, n_i, n_t))
    e = rng.normal(0, sd * math.sqrt((1 - rho) / m), (reps, n_i, n_t))
    ybar = (np.nan_to_num(x) * 0.5 + a + b + e)[:, obs]
    var_cell, cov_cell = sd**2 * (rho + (1 - rho) / m), sd**2 * rho * rho_c
    w = _gls_weights(x, lambda i, c: (var_cell - cov_cell) * np.eye(c.size) + cov_cell)
    est = ybar @ w
    expected = an.stepped_wedge_gls_variance(x, sd, rho, m, rho_c)
    assert abs(est.var(ddof=1) - expected) < var_tol(expected, reps)


def test_stepped_wedge_schedule_shapes():
    x = an.stepped_wedge_schedule(3, units_per_step=[1, 2, 1], baseline_periods=2)
    assert x.shape == (4, 5)
    assert (x[:, :2] == 0).all() and (x[:, -1] == 1).all()
    assert (np.diff(x, axis=1) >= 0).all()  # once exposed, always exposed
    w = an.stepped_wedge_schedule(4, window=1)
    assert (~np.isnan(w)).sum(axis=1).tolist() == [2, 2, 2, 2]


# -- binary -------------------------------------------------------------------------------------
# difference: unequal arms, where pooled and unpooled null variances differ in power by
# 0.05; log_rr: larger arms, as the Wald test of log RR needs them to be near normal
@pytest.mark.parametrize("scale, n_t, n_c, p_t", [("difference", 80, 320, 0.35),
                                                  ("log_rr", 400, 400, 0.27)])
def test_two_proportions_power_matches_simulated_tests(scale, n_t, n_c, p_t):
    rng = np.random.default_rng(18)
    reps, p_c = 6000, 0.2
    x_t, x_c = rng.binomial(n_t, p_t, reps), rng.binomial(n_c, p_c, reps)
    ph_t, ph_c = x_t / n_t, x_c / n_c
    if scale == "difference":
        pbar = (x_t + x_c) / (n_t + n_c)
        z = (ph_t - ph_c) / np.sqrt(pbar * (1 - pbar) * (1 / n_t + 1 / n_c))
    else:
        z = np.log(ph_t / ph_c) / np.sqrt((1 - ph_t) / x_t + (1 - ph_c) / x_c)
    simulated = np.mean(np.abs(z) > stats.norm.ppf(0.975))
    expected = an.power_two_proportions(p_c, p_t, n_t, n_c, scale=scale)
    assert abs(simulated - expected) < rate_tol(expected, reps)


def test_observed_icc_matches_simulated_pairs():
    rng = np.random.default_rng(19)
    p, vb, vo, reps = 0.3, 0.6, 0.4, 400000
    # intercept for the marginal proportion by adaptive quadrature (not Gauss-Hermite)
    sd = math.sqrt(vb + vo)

    def marginal(mu):
        f = lambda z: stats.norm.pdf(z) / (1 + math.exp(-(mu + sd * z)))  # noqa: E731
        return integrate.quad(f, -12, 12)[0]

    mu = optimize.brentq(lambda u: marginal(u) - p, -10, 10)
    b = rng.normal(0, math.sqrt(vb), reps)
    y1 = rng.random(reps) < 1 / (1 + np.exp(-(mu + b + rng.normal(0, math.sqrt(vo), reps))))
    y2 = rng.random(reps) < 1 / (1 + np.exp(-(mu + b + rng.normal(0, math.sqrt(vo), reps))))
    r = np.corrcoef(y1, y2)[0, 1]
    expected = an.observed_icc(p, vb, vo)
    assert abs(r - expected) < 4 * (1 - expected**2) / math.sqrt(reps)
    assert abs(y1.mean() - p) < 4 * math.sqrt(p * (1 - p) / reps)


def test_chinn_conversion_round_trip_and_logistic_sd():
    assert an.d_from_odds_ratio(an.odds_ratio_from_d(0.37)) == pytest.approx(0.37)
    # ln OR / d is the SD of the standard logistic distribution
    assert math.log(an.odds_ratio_from_d(1.0)) == pytest.approx(stats.logistic.std())


def test_ips_claim_is_checked_by_simulation():
    # "RR 1.96 ~ d = 0.37 gives 82% power with 30 + 30 at one-sided alpha = 0.05"
    rng = np.random.default_rng(20)
    reps = 4000
    p = stats.ttest_ind(rng.normal(0.37, 1, (reps, 30)), rng.normal(0, 1, (reps, 30)),
                        axis=1, alternative="greater").pvalue
    simulated = np.mean(p < 0.05)
    claim = an.ips_power_claim()
    assert abs(simulated - claim["power_t"]) < rate_tol(claim["power_t"], reps)
    assert simulated < 0.82 - 10 * math.sqrt(0.82 * 0.18 / reps)  # the claim does not hold
    assert claim["odds_ratio_from_d"] == pytest.approx(1.96, abs=0.005)
    assert an.power_two_sample(0.37, 1, claim["n_per_arm_for_claim"], claim["n_per_arm_for_claim"],
                               sides=1, dist="t") >= 0.82


# -- scenario level -----------------------------------------------------------------------------
QUIET = {  # no clustering, no extra variance, no attrition: a plain two-sample comparison
    "outcome.unit_icc": 0.0, "outcome.therapist_icc": 0.0, "outcome.slope_sd": 0.0,
    "outcome.not_on_track_share": 0.0, "compliance.complier_shift": 0.0,
    "missingness.attrition_rate": 0.0, "effect.d": 0.4,
}


@pytest.mark.parametrize("kind", ["individual", "cluster"])
def test_scenario_power_reduces_to_two_sample(kind):
    sc = Scenario().replace({**QUIET, "design.kind": kind})
    out = an.power(sc, fitted=False)
    n = sc.size.units * sc.size.clients_per_unit / 2
    effect = 0.4 * sc.outcome.sd * sc.compliance.uptake * sc.compliance.mean_multiplier
    assert out["effect_itt_latent"] == pytest.approx(effect)
    # the 0-40 scale clips: effect and SD shrink (clipped-normal moments at the primary mean)
    clip = an.clipped_normal_moments(18.0 + 6.0, sc.outcome.sd)
    assert out["effect"] == pytest.approx(effect * clip["inside"])
    expected = an.power_two_sample(effect * clip["inside"], math.sqrt(clip["variance"]), n, n)
    assert out["power"] == pytest.approx(expected)


def test_clipped_normal_moments_match_simulation():
    rng = np.random.default_rng(21)
    reps = 200000
    y = np.clip(rng.normal(30.0, 8.0, reps), 0, 40)
    out = an.clipped_normal_moments(30.0, 8.0)
    assert abs(y.mean() - out["mean"]) < 4 * y.std() / math.sqrt(reps)
    assert abs(y.var() - out["variance"]) < var_tol(y.var(), reps) * 1.5  # clipped: not normal
    assert abs(np.mean((y > 0) & (y < 40)) - out["inside"]) < rate_tol(out["inside"], reps)


def test_scenario_partially_nested_uses_one_design_effect():
    sc = Scenario().replace({"design.control_clustered": False, "design.allocation_ratio": 2.0,
                             "design.block_size": 3, "missingness.attrition_rate": 0.0})
    out = an.power(sc, fitted=False)
    assert out["design_effect_control"] == 1.0 and out["therapists_control"] == 0
    # the partially nested formula, but controls lack the therapist variance: s_C^2 = s^2 (1 - rho)
    rho = out["icc_therapist_within_unit"]
    v = an.variance_clustered_arms(out["sd"], out["n_treat"], out["n_control"] / (1 - rho),
                                   out["clients_per_therapist_treat"], rho,
                                   cv=sc.size.cluster_size_cv)
    assert out["variance"] == pytest.approx(v)
    assert out["n_treat"] == pytest.approx(2 * out["n_control"])


def test_scenario_stepped_wedge_gls_equals_hooper_closed_form():
    sc = Scenario().replace({"design.kind": "stepped_wedge", "compliance.ramp_months": 0.0})
    out = an.power(sc, fitted=False)
    assert out["variance"] == pytest.approx(out["variance_hooper_closed_form"], rel=1e-9)


@pytest.mark.parametrize("changes", [
    {},
    {"design.kind": "cluster"},
    {"design.kind": "stepped_wedge"},
    {"design.kind": "stepped_wedge", "design.window_periods": 2, "design.lag_months": 2.0},
    {"outcome": {"kind": "binary"}},
    {"outcome": {"kind": "binary"}, "design.kind": "cluster"},
    {"outcome": {"kind": "binary"}, "design.kind": "stepped_wedge"},
])
def test_scenario_power_runs_and_is_monotone(changes):
    sc = Scenario().replace({**changes, "effect.d": 0.5})
    out = an.power(sc)
    json.dumps(out)  # JSON-native
    assert 0.05 <= out["power"] < 1 and out["design"] == sc.design.kind
    assert out["n_treat"] > 0 and out["n_control"] > 0
    assert (out["power_fitted"] is None) == (sc.outcome.kind == "binary")
    # the textbook formulas only from here (the fitted power has its own tests)
    more_units = an.power(sc.replace({"size.units": 2 * sc.size.units}), fitted=False)["power"]
    more_clients = an.power(sc.replace({"size.clients_per_unit": 40.0}), fitted=False)["power"]
    more_attrition = an.power(sc.replace({"missingness.attrition_rate": 0.4}),
                              fitted=False)["power"]
    assert more_units > out["power"] and more_clients > out["power"]
    assert more_attrition < out["power"]
    assert an.power(sc.null(), fitted=False)["power"] == pytest.approx(sc.analysis.alpha)


def test_power_curve_varies_one_field():
    df = an.power_curve(Scenario(), "size.units", [8, 12, 20], fitted=False)
    assert df["size.units"].tolist() == [8, 12, 20]
    assert df["power"].is_monotonic_increasing


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda: an.power_two_sample(1, -1, 10, 10), "sd"),
    (lambda: an.power_two_sample(1, 1, 10, 10, sides=3), "sides"),
    (lambda: an.power_two_sample(1, 1, 10, 10, alpha=1.5), "alpha"),
    (lambda: an.power_two_sample(1, 1, 10, 10, dist="f"), "dist"),
    (lambda: an.design_effect(10, 1.2), "icc"),
    (lambda: an.n_for_power(0.0, 1.0), "delta"),
    (lambda: an.hussey_hughes_variance(an.stepped_wedge_schedule(3, window=1), 1, 1), "complete"),
    (lambda: an.stepped_wedge_schedule(0), "steps"),
    (lambda: an.power_two_proportions(0.2, 1.2, 10, 10), "p_treat"),
    (lambda: an.power_two_proportions(0.2, 0.3, 10, 10, scale="odds"), "scale"),
    (lambda: an.hooper_variance(1, 0.1, 5, 4, 1, cluster_autocorrelation=1.5),
     "cluster_autocorrelation"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
