"""Binary outcomes such as employment (IPS pre-study): Bayesian logit mixed model and a
fast frequentist risk difference.

``bayes_binary``: one row per observed client x occasion::

    logit P(y_ij = 1) = alpha + beta[occ_ij] + delta[occ_ij] * arm_i
                        + u_unit (district) + u_therapist (specialist) + a_client

with ``beta[baseline] = delta[baseline] = 0``. The risk difference and risk ratio at the
primary month are *marginal* (population-averaged) derived quantities: for each posterior
draw the risk in each arm is ``E[invlogit(eta + b)]`` with ``b ~ N(0, s^2)``, ``s^2`` the
sum of the random-effect variances (the therapist variance only in an arm whose clients
have therapists), integrated by Gauss-Hermite quadrature. Priors (logit scale)::

    alpha ~ N(0, 2.5); beta, delta ~ N(0, 2.5)
    sigma_unit, sigma_therapist ~ HalfNormal(1); sigma_client ~ HalfNormal(2)

``glm_binary``: linear-probability OLS of the primary-month outcome on arm and baseline,
cluster-robust (CR1) by therapist or unit; the risk difference in seconds.
"""

from __future__ import annotations

import math
import time

import numpy as np

from models.base import Estimate, Estimator, register
from models.bayes import (
    BayesEstimator,
    IdMap,
    gauss_hermite,
    invlogit,
    occasion_codes,
    post,
    random_effect,
)
from models.iv import _t_summary, client_table, cluster_2sls, cluster_ids

__all__ = ["BayesBinary", "GlmBinary"]


@register
class BayesBinary(BayesEstimator):
    """Logit mixed model; marginal risk difference at the primary month.

    ``extra``: ``risk_ratio`` (posterior mean) with ``risk_ratio_lower/upper``,
    ``risk_control``, ``risk_treated``, and the logit-scale variances.
    """

    name = "bayes_binary"
    estimand = "risk_difference"
    outcome_kinds = ("binary",)
    monitor = ("alpha", "beta", "delta", "sigma_unit", "sigma_therapist", "sigma_client")

    def __init__(self, scenario=None, columns=None, **options):
        super().__init__(scenario, columns, **options)
        if self.options:
            raise TypeError(f"unknown option(s) for {self.name}: {sorted(self.options)}")

    def _arrays(self, df):
        occ, months, p = occasion_codes(df, self.primary_month)
        unit, n_unit = IdMap.codes(df["unit"])
        ther, n_ther = IdMap.codes(df["therapist"])
        client, n_client = IdMap.codes(df["client"])
        data = {"y": df["outcome"].to_numpy(float), "occ": occ,
                "arm": df["arm"].to_numpy(float), "unit": unit, "therapist": ther,
                "client": client}
        sizes = {"occ": len(months), "unit": n_unit, "therapist": max(n_ther, 1),
                 "client": n_client}
        arm = df["arm"].to_numpy()
        has_t = df["therapist"].to_numpy() != -1
        meta = {"primary_index": p,
                "therapist_in_arm": [bool(has_t[arm == a].any()) for a in (0, 1)]}
        return data, sizes, meta

    def _build(self, data, capacity):
        import pymc as pm
        import pytensor.tensor as pt

        with pm.Model() as model:
            y = pm.Data("y", data["y"])
            occ = pm.Data("occ", data["occ"])
            arm = pm.Data("arm", data["arm"])
            alpha = pm.Normal("alpha", 0.0, 2.5)
            k = capacity["occ"] - 1
            beta = pm.Normal("beta", 0.0, 2.5, shape=k)
            delta = pm.Normal("delta", 0.0, 2.5, shape=k)
            zero = pt.zeros(1)
            eta = (alpha + pt.concatenate([zero, beta])[occ]
                   + arm * pt.concatenate([zero, delta])[occ])
            u_unit, _ = random_effect("unit", capacity["unit"], 1.0, pm.Data("unit", data["unit"]))
            u_ther, _ = random_effect("therapist", capacity["therapist"], 1.0,
                                      pm.Data("therapist", data["therapist"]))
            a_client, _ = random_effect("client", capacity["client"], 2.0,
                                        pm.Data("client", data["client"]))
            pm.Bernoulli("obs", logit_p=eta + u_unit + u_ther + a_client, observed=y)
        return model

    def _summarize(self, idata, meta):
        j = meta["primary_index"] - 1
        eta0 = post(idata, "alpha") + post(idata, "beta")[:, j]
        eta1 = eta0 + post(idata, "delta")[:, j]
        vu, vt, vc = (post(idata, f"sigma_{k}") ** 2 for k in ("unit", "therapist", "client"))
        x, w = gauss_hermite(40)
        risks = []
        for a, eta in ((0, eta0), (1, eta1)):
            s = np.sqrt(vu + vc + (vt if meta["therapist_in_arm"][a] else 0.0))
            risks.append(invlogit(eta[:, None] + s[:, None] * x[None, :]) @ w)
        p0, p1 = risks
        rr = p1 / p0
        extra = {"risk_control": float(p0.mean()), "risk_treated": float(p1.mean()),
                 "risk_ratio": float(rr.mean()),
                 "risk_ratio_lower": float(np.quantile(rr, 0.025)),
                 "risk_ratio_upper": float(np.quantile(rr, 0.975)),
                 "var_unit": float(vu.mean()), "var_therapist": float(vt.mean()),
                 "var_client": float(vc.mean())}
        return p1 - p0, extra


@register
class GlmBinary(Estimator):
    """Risk difference at the primary month: cluster-robust linear-probability OLS.

    Options: ``cluster`` (``"therapist"`` default, or ``"unit"``). ``extra`` has the
    unadjusted ``risk_control``/``risk_treated`` and their ratio ``risk_ratio``.
    """

    name = "glm_binary"
    estimand = "risk_difference"
    outcome_kinds = ("binary",)

    def __init__(self, scenario=None, columns=None, **options):
        super().__init__(scenario, columns, **options)
        self.cluster = self.options.pop("cluster", "therapist")
        if self.cluster not in ("therapist", "unit"):
            raise ValueError(f"cluster must be 'therapist' or 'unit', got {self.cluster!r}")
        if self.options:
            raise TypeError(f"unknown option(s) for {self.name}: {sorted(self.options)}")

    def _fit(self, df):
        t0 = time.perf_counter()
        ct = client_table(df.assign(uptake=0) if "uptake" not in df else df, self.primary_month)
        y, z = ct["y"].to_numpy(float), ct["z"].to_numpy(float)
        X = np.column_stack([np.ones(len(ct)), z, ct["baseline"].to_numpy(float)])
        beta, cov, G = cluster_2sls(y, X, X, cluster_ids(ct, self.cluster))
        res = _t_summary(beta[1], math.sqrt(cov[1, 1]), G)
        p0, p1 = y[z == 0].mean(), y[z == 1].mean()
        extra = {"risk_control": float(p0), "risk_treated": float(p1),
                 "risk_ratio": float(p1 / p0) if p0 > 0 else float("nan"),
                 "n_clusters": G, "n_clients": len(ct)}
        diag = {"converged": True, "fit_seconds": time.perf_counter() - t0, "warnings": []}
        return Estimate(self.name, self.estimand, extra=extra, diagnostics=diag, **res)
