"""Exact REML/ML (models.reml) against a dense reference, statsmodels, and known truth."""

import math

import numpy as np
import pandas as pd
import pytest

from models import EstimatorError, LongFormatError, get_estimator
from models.reml import fit_nested_lmm, stepped_wedge_design, trajectory_design
from models.reml.engine import _NestedLMM
from simulate.conventions import scaled_time

PRIMARY = 12.0
MONTHS = np.array([0.0, 1.0, 3.0, 6.0, 12.0])


def synth(U=8, per_unit=12, ther=3, seed=0, beta=(18.0, 6.0, 0.0, 1.5), var_unit=1.0,
          var_ther=2.0, var_client=20.0, var_slope=9.0, var_resid=25.0, months=MONTHS,
          control_no_therapist=False, p_miss=0.0):
    """Long-format trajectory data from the model itself (independent client int/slope)."""
    rng = np.random.default_rng(seed)
    rows = []
    cid = 0
    u_eff = rng.normal(0, math.sqrt(var_unit), U)
    t_eff = rng.normal(0, math.sqrt(var_ther), U * ther)
    for u in range(U):
        for i in range(per_unit):
            arm = i % 2
            th = u * ther + (i % ther)
            if control_no_therapist and arm == 0:
                th = -1
            ci = rng.normal(0, math.sqrt(var_client))
            cs = rng.normal(0, math.sqrt(var_slope))
            for mo in months:
                t = math.log1p(mo) / math.log1p(PRIMARY)
                mu = beta[0] + beta[1] * t + beta[2] * arm + beta[3] * arm * t
                y = (mu + u_eff[u] + (t_eff[th] if th >= 0 else 0.0) + ci + cs * t
                     + rng.normal(0, math.sqrt(var_resid)))
                rows.append((u, th, cid, arm, arm, mo, y))
            cid += 1
    df = pd.DataFrame(rows, columns=["unit", "therapist", "client", "arm", "exposure",
                                     "month", "outcome"])
    if p_miss:
        drop = (rng.random(len(df)) < p_miss) & (df["month"] > 0)
        df.loc[drop, "outcome"] = np.nan
    return df


def dense_llf(y, X, unit, ther, client, t, var, method, period=None):
    """REML/ML log-likelihood from an explicit n x n covariance (the brute-force truth)."""
    n, p = X.shape
    V = var["var_resid"] * np.eye(n)
    same_u = unit[:, None] == unit[None, :]
    V += var["var_unit"] * same_u
    V += var["var_therapist"] * ((ther[:, None] == ther[None, :]) & (ther[:, None] >= 0))
    same_c = client[:, None] == client[None, :]
    V += same_c * (var["var_client"] + var["cov_client_slope"] * (t[:, None] + t[None, :])
                   + var["var_slope"] * np.outer(t, t))
    if period is not None:
        V += var["var_unit_period"] * (same_u & (period[:, None] == period[None, :]))
    Vi = np.linalg.inv(V)
    XtVX = X.T @ Vi @ X
    b = np.linalg.solve(XtVX, X.T @ Vi @ y)
    r = y - X @ b
    ll = -0.5 * (np.linalg.slogdet(V)[1] + r @ Vi @ r)
    if method == "reml":
        return ll - 0.5 * np.linalg.slogdet(XtVX)[1] - 0.5 * (n - p) * math.log(2 * math.pi)
    return ll - 0.5 * n * math.log(2 * math.pi)


def _timed(df):
    """Observed rows with the default model time (what Estimator.prepare adds)."""
    df = df[df["outcome"].notna()].reset_index(drop=True)
    return df.assign(time=scaled_time(df["month"], PRIMARY))


def _arrays(df):
    df = _timed(df)
    X, names, target = trajectory_design(df)
    t = df["time"].to_numpy()
    return (df["outcome"].to_numpy(float), X, df["unit"].to_numpy(),
            df["therapist"].to_numpy(), df["client"].to_numpy(), t, names)


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize("partial", [False, True])
def test_sweep_likelihood_equals_dense(method, partial):
    # exact algebra: the O(rows) sweeps give the dense log-likelihood at the fitted
    # variances (to rounding), including clients without therapist and the unit x period
    df = synth(U=4, per_unit=6, seed=3, control_no_therapist=partial, p_miss=0.2)
    df["period"] = (df["client"] + df["month"].astype(int)) % 3
    y, X, u, th, c, t, names = _arrays(df)
    X = X[:, ::-1]  # the sweeps must not assume where intercept and time sit in X
    per = df.loc[df["outcome"].notna(), "period"].to_numpy()
    fit = fit_nested_lmm(y, X, u, th, c, t, method=method, period=per, unit_period=True)
    ref = dense_llf(y, X, u, th, c, t, fit.variances, method, period=per)
    assert fit.llf == pytest.approx(ref, abs=1e-6)
    # and at an arbitrary non-optimal point (the sweep itself, not just the optimum)
    m = _NestedLMM(y, X, u, th, c, t, 2, True, per, "unstructured")
    theta = np.array([0.7, -0.2, 0.4, 0.3, 0.5, 0.2])
    dev, (b, _, s2) = m.profile(theta, method)
    L = np.array([[0.7, 0], [-0.2, 0.4]])
    G = s2 * L @ L.T
    var = {"var_resid": s2, "var_therapist": s2 * 0.09, "var_unit": s2 * 0.25,
           "var_unit_period": s2 * 0.04, "var_client": G[0, 0], "var_slope": G[1, 1],
           "cov_client_slope": G[0, 1]}
    assert -0.5 * dev == pytest.approx(dense_llf(y, X, u, th, c, t, var, method, per),
                                       abs=1e-6)


def _simulated(seed):
    simulate = pytest.importorskip("simulate")
    return simulate.simulate_trial(simulate.Scenario(), seed).data


@pytest.mark.parametrize("client_re, cov, up", [(2, "unstructured", True),
                                                 (2, "diagonal", False),
                                                 (1, "unstructured", True),
                                                 (0, "unstructured", False)])
@pytest.mark.parametrize("method", ["reml", "ml"])
def test_analytic_gradient_matches_finite_differences(client_re, cov, up, method):
    from scipy.optimize import approx_fprime

    df = synth(U=4, per_unit=6, seed=3, control_no_therapist=True, p_miss=0.2)
    df["period"] = (df["client"] + df["month"].astype(int)) % 3
    y, X, u, th, c, t, _ = _arrays(df)
    per = df.loc[df["outcome"].notna(), "period"].to_numpy()
    m = _NestedLMM(y, X[:, ::-1], u, th, c, t, client_re, up, per, cov)
    theta = np.random.default_rng(1).uniform(0.2, 0.9, len(m.par_names))
    analytic = m.profile(theta, method, grad=True)[2]
    fd = approx_fprime(theta, lambda x: m.profile(x, method)[0], 1e-6)
    # forward differences with h = 1e-6 on a deviance of ~1e3: error ~ h * curvature
    # (< 1e-3 here) plus rounding 1e-13 / h; the analytic gradient must agree to 1e-3
    assert np.allclose(analytic, fd, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("source, seed, must_converge", [
    ("synth", 11, False), ("synth", 12, False), ("simulator", 2, True)])
def test_matches_statsmodels_mixedlm(source, seed, must_converge):
    # statsmodels can only fit independent client intercept and slope: compare the
    # matching diagonal REML; 1e-3 (relative) where MixedLM converged cleanly, else our
    # optimum must be at least as high as MixedLM's. The simulator's seed 2 is a case
    # where MixedLM converges, so the 1e-3 branch is exercised for sure.
    df = synth(U=6, per_unit=10, seed=seed, p_miss=0.1) if source == "synth" \
        else _simulated(seed)
    reml = get_estimator("reml_trajectory", primary_month=PRIMARY, client_cov="diagonal")
    ref = get_estimator("mixedlm", primary_month=PRIMARY)
    a, b = reml.fit(df), ref.fit(df)
    assert a.extra["llf"] >= b.extra["llf"] - 1e-6
    assert b.diagnostics["converged"] or not must_converge
    if b.diagnostics["converged"]:
        assert a.estimate == pytest.approx(b.estimate, rel=1e-3, abs=1e-3)
        assert a.se == pytest.approx(b.se, rel=1e-3)
        for k in ("var_therapist", "var_client", "var_slope", "var_resid", "var_unit"):
            assert a.extra[k] == pytest.approx(b.extra[k], rel=1e-3, abs=1e-3 * a.extra[
                "var_resid"]), k


def test_recovers_known_parameters_large():
    beta = (18.0, 6.0, 0.5, 2.0)
    df = synth(U=30, per_unit=30, ther=4, seed=5, beta=beta)
    y, X, u, th, c, t, names = _arrays(df)
    fit = fit_nested_lmm(y, X, u, th, c, t, names=names)
    assert fit.converged
    # every fixed effect within 4 model SEs of the truth (a 4-sigma band: fails by
    # chance with probability < 3e-4 for each)
    for nm, b in zip(names, beta):
        assert abs(fit.coef(nm) - b) < 4 * fit.se(nm), nm
    # residual variance: SE about sigma^2 sqrt(2 / (n - clients)) for 5 occasions
    n, C = len(y), df["client"].nunique()
    assert abs(fit.sigma2 - 25.0) < 4 * 25.0 * math.sqrt(2 / (n - 2 * C))
    # client intercept variance: SE about sqrt(2/C) * (var_client + var_resid / 5)
    assert abs(fit.variances["var_client"] - 20.0) < 4 * math.sqrt(2 / C) * 25.0


def test_ml_vs_reml():
    df = synth(U=6, per_unit=10, seed=21)
    y, X, u, th, c, t, names = _arrays(df)
    r = fit_nested_lmm(y, X, u, th, c, t, method="reml", names=names)
    m = fit_nested_lmm(y, X, u, th, c, t, method="ml", names=names)
    # REML's optimum is not ML's: the ML log-likelihood at REML's variances is lower
    m_at_r = dense_llf(y, X, u, th, c, t, r.variances, "ml")
    assert m.llf >= m_at_r - 1e-8
    r_at_m = dense_llf(y, X, u, th, c, t, m.variances, "reml")
    assert r.llf >= r_at_m - 1e-8
    # the two criteria differ, so the optima differ (ML has no log|X'V^-1X| term)
    assert r.llf != pytest.approx(m.llf, abs=1e-3)
    # fixed effects agree to well within one SE
    assert abs(m.coef("arm:time") - r.coef("arm:time")) < 0.2 * r.se("arm:time")


def test_partially_nested_estimator():
    df = synth(U=6, per_unit=12, seed=8, control_no_therapist=True)
    e = get_estimator("reml_trajectory", primary_month=PRIMARY).fit(df)
    assert e.converged
    assert e.extra["var_therapist"] >= 0
    # the same data with every control client given its own private therapist is a
    # different model; with therapists all -1 the therapist component disappears
    df2 = df.assign(therapist=-1)
    e2 = get_estimator("reml_trajectory", primary_month=PRIMARY).fit(df2)
    assert e2.extra["var_therapist"] == 0.0


def test_one_occasion_drops_client_effects():
    df = synth(U=8, per_unit=12, seed=2, months=np.array([12.0]), beta=(18, 6, 1.0, 0))
    e = get_estimator("reml_trajectory", primary_month=PRIMARY).fit(df)
    assert e.extra["client_re"] == 0 and e.extra["target"] == "arm"
    assert abs(e.estimate - 1.0) < 4 * e.se


def hh_data(U=12, steps=4, m=15, seed=0, theta=2.0, period_eff=(0, 1, 2, 1.5, 3.0),
            var_unit=2.0, var_up=0.5, var_ther=1.0, var_resid=25.0):
    """Cross-sectional Hussey & Hughes stepped wedge: units cross over in `steps` groups."""
    rng = np.random.default_rng(seed)
    T = steps + 1
    step_of = np.repeat(np.arange(1, steps + 1), U // steps)
    rows = []
    cid = 0
    ue = rng.normal(0, math.sqrt(var_unit), U)
    upe = rng.normal(0, math.sqrt(var_up), (U, T))
    te = rng.normal(0, math.sqrt(var_ther), U * 2)
    for u in range(U):
        for per in range(T):
            x = int(per >= step_of[u])
            for i in range(m):
                th = u * 2 + i % 2
                y = (20 + period_eff[per] + theta * x + ue[u] + upe[u, per] + te[th]
                     + rng.normal(0, math.sqrt(var_resid)))
                rows.append((u, th, cid, x, x, 12.0, y, per))
                cid += 1
    return pd.DataFrame(rows, columns=["unit", "therapist", "client", "arm", "exposure",
                                       "month", "outcome", "period"])


def test_stepped_wedge_recovers_effects():
    theta, pe = 2.0, (0, 1, 2, 1.5, 3.0)
    df = hh_data(seed=4, theta=theta, period_eff=pe, m=25)
    e = get_estimator("reml_stepped_wedge", primary_month=PRIMARY).fit(df)
    assert e.converged and e.extra["target"] == "exposure"
    assert abs(e.estimate - theta) < 4 * e.se
    # period effects, from the underlying fit
    y = df["outcome"].to_numpy()
    X, names, _ = stepped_wedge_design(_timed(df))
    fit = fit_nested_lmm(y, X, df["unit"].to_numpy(), df["therapist"].to_numpy(),
                         df["client"].to_numpy(), client_re=0, period=df["period"].to_numpy(),
                         unit_period=True, names=names)
    for k in range(1, 5):
        nm = f"period[{k}]"
        assert abs(fit.coef(nm) - pe[k]) < 4 * fit.se(nm), nm


def test_stepped_wedge_on_simulator():
    simulate = pytest.importorskip("simulate")
    sc = simulate.Scenario().replace({"design.kind": "stepped_wedge"})
    data = simulate.simulate_trial(sc, 3).data
    e = get_estimator("reml_stepped_wedge", sc).fit(data)
    assert e.extra["target"] == "exposure:time"
    assert np.isfinite(e.estimate) and e.se > 0 and e.lower < e.estimate < e.upper


def test_bad_input():
    df = synth(U=3, per_unit=4, seed=0)
    with pytest.raises(LongFormatError, match="period"):
        get_estimator("reml_stepped_wedge", primary_month=PRIMARY).fit(df)
    with pytest.raises(LongFormatError, match="arm"):
        get_estimator("reml_trajectory", primary_month=PRIMARY).fit(df.assign(arm=1))
    with pytest.raises(LongFormatError, match="missing column"):
        get_estimator("reml_trajectory", primary_month=PRIMARY).fit(df.drop(columns="unit"))
    with pytest.raises(EstimatorError, match="method"):
        get_estimator("reml_trajectory", primary_month=PRIMARY, method="bayes")
    with pytest.raises(EstimatorError, match="unknown option"):
        get_estimator("reml_trajectory", primary_month=PRIMARY, draws=10)
    y, X, u, th, c, t, _ = _arrays(df)
    with pytest.raises(ValueError, match="full column rank"):
        fit_nested_lmm(y, np.column_stack([X, X[:, 0]]), u, th, c, t)
    with pytest.raises(ValueError, match="z_slope"):
        fit_nested_lmm(y, X, u, th, c, None, client_re=2)


def _engine_cases():
    """Data sets for the numba-vs-numpy check: full and partial nesting, unit x period,
    missing occasions, one occasion."""
    out = []
    for seed, partial in [(3, True), (4, False)]:
        df = synth(U=5, per_unit=8, seed=seed, control_no_therapist=partial, p_miss=0.2)
        df["period"] = (df["client"] + df["month"].astype(int)) % 3
        y, X, u, th, c, t, _ = _arrays(df)
        per = df.loc[df["outcome"].notna(), "period"].to_numpy()
        out.append((y, X[:, ::-1], u, th, c, t, per))
    df = synth(U=6, per_unit=10, seed=7, months=np.array([0.0]))
    y, X, u, th, c, t, _ = _arrays(df)
    out.append((y, X, u, th, c, np.zeros_like(y), None))
    return out


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_numba_kernel_matches_numpy_sweeps(method):
    pytest.importorskip("numba")
    for y, X, u, th, c, t, per in _engine_cases():
        single = per is None
        configs = ([(1, "unstructured", False), (0, "unstructured", False)] if single else
                   [(2, "unstructured", True), (2, "diagonal", False),
                    (1, "unstructured", True), (0, "unstructured", False)])
        for client_re, cov, up in configs:
            a = _NestedLMM(y, X, u, th, c, t, client_re, up, per, cov, engine="numba")
            b = _NestedLMM(y, X, u, th, c, t, client_re, up, per, cov, engine="numpy")
            assert a.par_names == b.par_names
            rng = np.random.default_rng(client_re)
            for _ in range(3):
                theta = rng.uniform(-0.9, 1.2, len(a.par_names))
                fa, (ba, Xa, sa), ga = a.profile(theta, method, grad=True)
                fb, (bb, Xb, sb), gb = b.profile(theta, method, grad=True)
                assert fa == pytest.approx(fb, rel=1e-10)
                assert np.allclose(ga, gb, rtol=1e-10, atol=1e-10 * abs(fb))
                assert np.allclose(ba, bb, rtol=1e-10, atol=1e-10)
                assert np.allclose(Xa, Xb, rtol=1e-10, atol=0)
                assert sa == pytest.approx(sb, rel=1e-10)
                # the gradient-free path (used for the final evaluation) agrees too
                assert a.profile(theta, method)[0] == pytest.approx(fb, rel=1e-10)
            fit_a = fit_nested_lmm(y, X, u, th, c, None if single else t, method=method,
                                   client_re=client_re, client_cov=cov, period=per,
                                   unit_period=up, engine="numba")
            fit_b = fit_nested_lmm(y, X, u, th, c, None if single else t, method=method,
                                   client_re=client_re, client_cov=cov, period=per,
                                   unit_period=up, engine="numpy")
            assert fit_a.llf == pytest.approx(fit_b.llf, rel=1e-10)
            assert np.allclose(fit_a.beta, fit_b.beta, rtol=1e-6, atol=1e-6)
            assert fit_a.df == fit_b.df and fit_a.boundary == fit_b.boundary


def test_numba_engine_on_simulator_and_bad_engine():
    pytest.importorskip("numba")
    simulate = pytest.importorskip("simulate")
    df = simulate.simulate_trial(simulate.Scenario(), 5).data
    df = df[df["observed"]].reset_index(drop=True)
    y, X, u, th, c, t, names = _arrays(df)
    a = fit_nested_lmm(y, X, u, th, c, t, names=names, engine="numba")
    b = fit_nested_lmm(y, X, u, th, c, t, names=names, engine="numpy")
    assert a.llf == pytest.approx(b.llf, rel=1e-10)
    assert np.allclose(a.beta, b.beta, rtol=1e-6, atol=1e-6)
    for k, v in b.variances.items():
        assert a.variances[k] == pytest.approx(v, rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="engine"):
        fit_nested_lmm(y, X, u, th, c, t, engine="cuda")
