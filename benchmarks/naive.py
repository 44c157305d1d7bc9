"""The naive reference: build a PyMC model and ``pm.sample`` it for every replicate.

The model is the same as :mod:`models.marginal` (same likelihood, same priors on the
standardized outcome) but with the random effects sampled explicitly, non-centred:
unit and therapist intercepts, and correlated client intercept and slope through the 2x2
Cholesky factor ``L`` of their covariance. Clients without a therapist get a structural
zero therapist effect. Being the same posterior, its ITT posterior mean must agree with
``bayes_marginal`` up to Monte Carlo error.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

__all__ = ["naive_fit"]


def naive_model(df: pd.DataFrame, primary_month: float):
    """Non-centred PyMC model of observed rows ``df``; returns ``(model, y_sd)``."""
    import pymc as pm
    import pytensor.tensor as pt

    y = df["outcome"].to_numpy(float)
    y_sd = float(y.std())
    y = (y - y.mean()) / y_sd
    t = np.log1p(df["month"].to_numpy(float)) / math.log1p(primary_month)
    arm = df["arm"].to_numpy(float)
    unit = pd.factorize(df["unit"])[0]
    client = pd.factorize(df["client"])[0]
    th = df["therapist"].to_numpy()
    has_t = th != -1
    ther = np.zeros(len(df), dtype=int)
    ther[has_t] = pd.factorize(th[has_t])[0] + 1  # slot 0: no therapist, effect fixed at 0
    n_u, n_c, n_t = int(unit.max()) + 1, int(client.max()) + 1, int(ther.max()) + 1

    with pm.Model() as model:
        beta = pm.Normal("beta", 0.0, 2.5, shape=4)
        sigma = pm.HalfNormal("sigma", 1.0)
        sd_unit = pm.HalfNormal("sd_unit", 0.5)
        sd_therapist = pm.HalfNormal("sd_therapist", 0.5)
        sd_int = pm.HalfNormal("sd_int", 1.0)
        sd_slope = pm.HalfNormal("sd_slope", 1.0)
        rho = 2 * pm.Beta("rho01", 2.0, 2.0) - 1
        z_u = pm.Normal("z_unit", 0, 1, shape=n_u)
        z_t = pm.Normal("z_therapist", 0, 1, shape=n_t)
        z_c = pm.Normal("z_client", 0, 1, shape=(2, n_c))
        a = sd_int * z_c[0]
        b = sd_slope * (rho * z_c[0] + pt.sqrt(1 - rho**2) * z_c[1])
        v = pt.set_subtensor((sd_therapist * z_t)[0], 0.0)
        mu = (beta[0] + beta[1] * t + arm * (beta[2] + beta[3] * t)
              + sd_unit * z_u[unit] + v[ther] + a[client] + b[client] * t)
        pm.Normal("y", mu, sigma, observed=y)
    return model, y_sd


def naive_fit(df: pd.DataFrame, primary_month: float, draws: int = 1000, tune: int = 1000,
              chains: int = 2, cores: int = 2, seed: int = 0) -> dict:
    """Build, compile and sample (PyMC's NUTS, default C backend); time everything."""
    import arviz as az
    import pymc as pm

    t0 = time.perf_counter()
    model, y_sd = naive_model(df, primary_month)
    with model:
        idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores,
                          random_seed=seed, progressbar=False,
                          compute_convergence_checks=False)
    seconds = time.perf_counter() - t0
    b3 = idata.posterior["beta"].values[..., 3].ravel() * y_sd
    names = ["beta", "sigma", "sd_unit", "sd_therapist", "sd_int", "sd_slope", "rho01"]
    ess = az.ess(idata.posterior[names])
    ess_min = float(min(np.nanmin(ess[v].values) for v in names))
    rhat = az.rhat(idata.posterior[names])
    return {
        "estimate": float(b3.mean()), "se": float(b3.std(ddof=1)), "seconds": seconds,
        "ess_bulk_min": ess_min,
        "rhat_max": float(max(np.nanmax(rhat[v].values) for v in names)),
        "divergences": int(idata.sample_stats["diverging"].values.sum()),
    }
