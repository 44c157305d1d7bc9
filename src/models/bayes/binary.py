"""Binary outcomes such as employment (IPS pre-study): the Bayesian logit mixed model.

``bayes_binary``: one row per observed client x occasion::

    logit P(y_ij = 1) = alpha + beta[occ_ij] + delta[occ_ij] * arm_i
                        + u_unit (district) + u_therapist (specialist) + a_client

with ``beta[baseline] = delta[baseline] = 0``. The risk difference and risk ratio at the
primary month are *marginal* (population-averaged) derived quantities: for each posterior
draw the risk in each arm is ``E[expit(eta + b)]`` with ``b ~ N(0, s^2)``, ``s^2`` the
sum of the random-effect variances (the therapist variance only in an arm whose clients
have therapists), integrated by Gauss-Hermite quadrature. Priors (logit scale)::

    alpha ~ N(0, 2.5); beta, delta ~ N(0, 2.5)
    sigma_unit, sigma_therapist ~ HalfNormal(1); sigma_client ~ HalfNormal(2)

The fast frequentist risk difference (``glm_binary``) is in :mod:`models.simple`.
"""

from __future__ import annotations

import numpy as np

from models.base import register
from models.bayes.base import BayesEstimator, IdMap, occasion_codes, post, random_effect
from simulate.conventions import expit, gauss_hermite

__all__ = ["BayesBinary"]


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

    def _arrays(self, df, primary_month):
        occ, months, p = occasion_codes(df, primary_month)
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
            risks.append(expit(eta[:, None] + s[:, None] * x[None, :]) @ w)
        p0, p1 = risks
        rr = p1 / p0
        extra = {"risk_control": float(p0.mean()), "risk_treated": float(p1.mean()),
                 "risk_ratio": float(rr.mean()),
                 "risk_ratio_lower": float(np.quantile(rr, 0.025)),
                 "risk_ratio_upper": float(np.quantile(rr, 0.975)),
                 "var_unit": float(vu.mean()), "var_therapist": float(vt.mean()),
                 "var_client": float(vc.mean())}
        return p1 - p0, extra
