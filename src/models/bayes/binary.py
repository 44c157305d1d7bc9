"""Binary outcomes such as employment (IPS pre-study): the Bayesian logit mixed model.

``bayes_binary``: one row per observed client x occasion::

    logit P(y_ij = 1) = alpha + beta[occ_ij] + delta[occ_ij] * arm_i
                        + u_unit (district) + u_therapist (specialist) + a_client

with ``beta[baseline] = delta[baseline] = 0``. The risk difference and risk ratio at the
primary month are *marginal* (population-averaged) derived quantities: for each posterior
draw the risk in each arm is ``E[expit(eta + b)]`` with ``b ~ N(0, s^2)``, ``s^2`` the
sum of the random-effect variances (the therapist variance only in an arm whose clients
have therapists), integrated by Gauss-Hermite quadrature. Priors (logit scale; the scales
are the option ``priors``)::

    alpha ~ N(0, 2.5); beta, delta ~ N(0, 2.5)
    sigma_unit, sigma_therapist ~ HalfNormal(1); sigma_client ~ HalfNormal(2)

Sampling: every random effect is non-centred, ``u = sigma * z`` with ``z ~ N(0, 1)``. With
few units (three districts in the IPS pre-study) the intercept and the mean of the unit
effects are nearly the same thing to the data, a ridge that NUTS crosses slowly. The
model is therefore sampled in an exactly equivalent form: ``alpha_c = alpha + sum_k
sigma_k zbar_k``, the intercept plus the mean effect ``zbar_k`` of each random-effect
vector that touches every row (units and clients always; therapists when every client
has one), with the effects centred on their mean, ``u_kj = sigma_k (z_kj - zbar_k)``.
Integrating the ``zbar_k ~ N(0, 1 / J_k)`` out gives ``alpha_c ~ N(0, sqrt(2.5^2 + V))``,
``V = sum_k sigma_k^2 / J_k``; given ``alpha_c`` they do not touch the data, so after
sampling ``m = sum_k sigma_k zbar_k`` is drawn from its conditional prior,
``N(V / (2.5^2 + V) alpha_c, 2.5^2 V / (2.5^2 + V))``, and ``alpha = alpha_c - m``
(a seeded draw per posterior draw, from the draws themselves: a fit stays a function of
its data). Likewise the occasion effects are sampled as the logits at each follow-up,
``gamma = alpha_c + beta ~ N(alpha_c, 2.5)``: with few events at baseline the intercept is
poorly known and ``beta`` would carry all of its uncertainty. The convergence rule
monitors the sampled parameters (``alpha_c``, ``gamma``, ``delta``, the SDs) and the
estimand.

The fast frequentist risk difference (``glm_binary``) is in :mod:`models.simple`.
"""

from __future__ import annotations

import zlib

import numpy as np

from models.base import register
from models.bayes.base import (
    BayesEstimator,
    IdMap,
    fused_callback,
    occasion_codes,
    parameter_offsets,
    post,
)
from simulate.conventions import expit, gauss_hermite

__all__ = ["BayesBinary", "PRIORS", "fused_logp"]

#: prior scales (logit scale): normal SDs of alpha, beta, delta; half-normal scales of SDs
PRIORS = {"alpha": 2.5, "beta": 2.5, "delta": 2.5, "sigma_unit": 1.0,
          "sigma_therapist": 1.0, "sigma_client": 2.0}
#: the random-effect vectors, in the order of the ``levels`` and ``absorbed`` data
VECTORS = ("unit", "therapist", "client")


@register
class BayesBinary(BayesEstimator):
    """Logit mixed model; marginal risk difference at the primary month.

    Options: ``priors`` (a dict replacing some of :data:`PRIORS`, e.g. to simulate from a
    deliberately wrong prior in simulation-based calibration) and the sampler options.
    ``extra``: ``risk_ratio`` (posterior mean) with ``risk_ratio_lower/upper``,
    ``risk_control``, ``risk_treated``, and the logit-scale variances.
    """

    name = "bayes_binary"
    estimand = "risk_difference"
    outcome_kinds = ("binary",)
    monitor = ("alpha_c", "gamma", "delta", "sigma_unit", "sigma_therapist", "sigma_client")
    model_defaults = {"priors": None, "fused": True}
    # measured in benchmarks/bayes_speed.py: the SDs of the client and therapist effects
    # mix slowest (bulk ESS ~0.15 per draw). Two long chains (2 x 2,500 draws) kept every
    # R-hat below 1.01 where four shorter ones (4 x 1,000-1,500) did not, at less tuning;
    # target_accept 0.9 removes the rare divergence (few districts)
    sampler_overrides = {"chains": 2, "draws": 2500, "tune": 300, "target_accept": 0.9}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        self.priors = self.prior_scales(PRIORS)

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
        has_t = ther != -1
        # levels of each vector (units, therapists, clients), and whether its mean goes
        # into the intercept: units and clients always, therapists when every row has one
        data["levels"] = np.array([max(n_unit, 1), max(n_ther, 1), max(n_client, 1)], float)
        data["absorbed"] = np.array([1.0, float(has_t.all()), 1.0])
        meta = {"primary_index": p,
                "therapist_in_arm": [bool(has_t[arm == a].any()) for a in (0, 1)],
                "levels": {"unit": n_unit, "client": n_client,
                           "therapist": n_ther if has_t.all() else 0}}
        return data, sizes, meta

    def _build(self, data, capacity):
        import pymc as pm
        import pytensor.tensor as pt

        s = self.priors
        with pm.Model() as model:
            y = pm.Data("y", data["y"])
            occ = pm.Data("occ", data["occ"])
            arm = pm.Data("arm", data["arm"])
            k = capacity["occ"] - 1
            delta = pm.Normal("delta", 0.0, s["delta"], shape=k)
            zero = pt.zeros(1)
            eta = arm * pt.concatenate([zero, delta])[occ]
            n_levels = pm.Data("levels", data["levels"])
            absorbed = pm.Data("absorbed", data["absorbed"])
            var_means = 0.0
            for v, name in enumerate(VECTORS):
                index = pm.Data(name, data[name])
                sigma = pm.HalfNormal(f"sigma_{name}", s[f"sigma_{name}"])
                z = pm.Normal(f"z_{name}", 0.0, 1.0, shape=capacity[name])
                # entries beyond the data's levels (capacity padding) are never centred
                mask = pt.cast(pt.lt(pt.arange(capacity[name]), n_levels[v]), "float64")
                zbar = pt.sum(z * mask) / n_levels[v]
                values = sigma * (z - absorbed[v] * zbar * mask)
                eta = eta + pt.concatenate([values, zero])[index]
                var_means = var_means + absorbed[v] * sigma**2 / n_levels[v]
            alpha_c = pm.Normal("alpha_c", 0.0, pt.sqrt(s["alpha"] ** 2 + var_means))
            # gamma = alpha_c + beta: the logit at each follow-up (beta ~ N(0, s) centred)
            gamma = pm.Normal("gamma", alpha_c, s["beta"], shape=k)
            intercept = pt.concatenate([pt.reshape(alpha_c, (1,)), gamma])[occ]
            pm.Bernoulli("obs", logit_p=intercept + eta, observed=y)
        return model

    def _fused_logp(self, compiled, cap):
        return fused_logp(compiled, cap, self.priors)

    def _alpha(self, idata, meta) -> np.ndarray:
        """Draws of ``alpha`` from ``alpha_c`` (see the module docstring)."""
        alpha_c = post(idata, "alpha_c")
        var_means = sum(post(idata, f"sigma_{k}") ** 2 / n
                        for k, n in meta["levels"].items() if n > 0)
        a2 = self.priors["alpha"] ** 2
        mean = var_means / (a2 + var_means) * alpha_c
        sd = np.sqrt(a2 * var_means / (a2 + var_means))
        rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(alpha_c).tobytes()))
        return alpha_c - (mean + sd * rng.standard_normal(alpha_c.shape))

    def _summarize(self, idata, meta):
        j = meta["primary_index"] - 1
        beta = post(idata, "gamma")[:, j] - post(idata, "alpha_c")
        eta0 = self._alpha(idata, meta) + beta
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


# -- the fused log density --------------------------------------------------------------
def fused_logp(compiled, cap: dict[str, int], priors: dict[str, float]):
    """The log density of :class:`BayesBinary` and its gradient as one numba loop.

    The same function of the same unconstrained parameters as the PyMC graph (up to a
    constant), about 3x cheaper per gradient than the graph compiled by PyTensor, whose
    cost is one allocation and pass per operation (:func:`models.bayes.base.fused_callback`).
    """
    import numba

    at = parameter_offsets(compiled)
    k = cap["occ"] - 1
    o_delta, o_gamma, o_alpha = at["delta"], at["gamma"], at["alpha_c"]
    o_log = np.array([at[f"sigma_{v}_log__"] for v in VECTORS], np.int64)
    o_z = np.array([at[f"z_{v}"] for v in VECTORS], np.int64)
    n_z = np.array([cap[v] for v in VECTORS], np.int64)
    s_sig = np.array([priors[f"sigma_{v}"] for v in VECTORS])
    a2, s_beta, s_delta = priors["alpha"] ** 2, priors["beta"], priors["delta"]

    @numba.njit
    def kernel(x, g, y, occ, arm, idx0, idx1, idx2, levels, absorbed):
        g[:] = 0.0
        lp = 0.0
        sig = np.empty(3)
        zbar = np.empty(3)
        for v in range(3):
            sig[v] = np.exp(x[o_log[v]])
            tot = 0.0
            for j in range(min(n_z[v], int(levels[v]))):
                tot += x[o_z[v] + j]
            zbar[v] = absorbed[v] * tot / levels[v]
        alpha = x[o_alpha]
        # the data: one pass over the rows
        for r in range(y.shape[0]):
            o = occ[r]
            e = alpha if o == 0 else x[o_gamma + o - 1] + arm[r] * x[o_delta + o - 1]
            j0, j1, j2 = idx0[r], idx1[r], idx2[r]
            if j0 >= 0:
                e += sig[0] * (x[o_z[0] + j0] - zbar[0])
            if j1 >= 0:
                e += sig[1] * (x[o_z[1] + j1] - zbar[1])
            if j2 >= 0:
                e += sig[2] * (x[o_z[2] + j2] - zbar[2])
            q = np.exp(-abs(e))
            lp += y[r] * e - max(e, 0.0) - np.log1p(q)
            dr = y[r] - (1.0 / (1.0 + q) if e >= 0 else q / (1.0 + q))
            if o == 0:
                g[o_alpha] += dr
            else:
                g[o_gamma + o - 1] += dr
                g[o_delta + o - 1] += dr * arm[r]
            # raw sums by level; the centring and the sigma factor come after the loop
            if j0 >= 0:
                g[o_z[0] + j0] += dr
            if j1 >= 0:
                g[o_z[1] + j1] += dr
            if j2 >= 0:
                g[o_z[2] + j2] += dr
        var_means = 0.0
        for v in range(3):
            total, dsig = 0.0, 0.0
            live = min(n_z[v], int(levels[v]))
            for j in range(live):
                total += g[o_z[v] + j]
            for j in range(n_z[v]):
                raw = g[o_z[v] + j]
                dsig += raw * (x[o_z[v] + j] - (zbar[v] if j < live else 0.0))
                g[o_z[v] + j] = sig[v] * (raw - (absorbed[v] * total / levels[v]
                                                 if j < live else 0.0))
                # z ~ N(0, 1)
                lp -= 0.5 * x[o_z[v] + j] ** 2
                g[o_z[v] + j] -= x[o_z[v] + j]
            # sigma = exp(l) ~ HalfNormal(s): density and Jacobian
            t = sig[v] / s_sig[v]
            lp += -0.5 * t * t + x[o_log[v]]
            g[o_log[v]] += dsig * sig[v] - t * t + 1.0
            var_means += absorbed[v] * sig[v] ** 2 / levels[v]
        # alpha_c ~ N(0, sqrt(a2 + var_means))
        tau = a2 + var_means
        lp += -0.5 * alpha * alpha / tau - 0.5 * np.log(tau)
        g[o_alpha] -= alpha / tau
        dtau = 0.5 * alpha * alpha / tau**2 - 0.5 / tau
        for v in range(3):
            g[o_log[v]] += dtau * absorbed[v] * 2.0 * sig[v] ** 2 / levels[v]
        # gamma ~ N(alpha_c, s_beta); delta ~ N(0, s_delta)
        for i in range(k):
            dev = (x[o_gamma + i] - alpha) / s_beta
            lp -= 0.5 * dev * dev
            g[o_gamma + i] -= dev / s_beta
            g[o_alpha] += dev / s_beta
            dd = x[o_delta + i] / s_delta
            lp -= 0.5 * dd * dd
            g[o_delta + i] -= dd / s_delta
        return lp

    return fused_callback(kernel, compiled, ("y", "occ", "arm", "unit", "therapist", "client",
                                             "levels", "absorbed"))
