"""Binary outcomes such as employment (IPS pre-study): the Bayesian logit mixed model, by
nested integration (``bayes_binary``) and by NUTS (``bayes_binary_nuts``).

One row per observed client x occasion::

    logit P(y_ij = 1) = alpha + beta[occ_ij] + delta[occ_ij] * arm_i
                        + u_unit (district) + u_therapist (specialist) + a_client

with ``beta[baseline] = delta[baseline] = 0``. The risk difference and risk ratio at the
primary month are *marginal* (population-averaged) derived quantities: the risk in each
arm is ``E[expit(eta + b)]`` with ``b ~ N(0, s^2)``, ``s^2`` the sum of the random-effect
variances (the therapist variance only in an arm whose clients have therapists),
integrated by Gauss-Hermite quadrature. Priors (logit scale; the scales are the option
``priors``, :data:`~models.bayes.logit_integrated.PRIORS`)::

    alpha ~ N(0, 2.5); beta, delta ~ N(0, 2.5)
    sigma_unit, sigma_therapist ~ HalfNormal(1); sigma_client ~ HalfNormal(2)

``bayes_binary`` integrates the posterior (:mod:`models.bayes.logit_integrated`: exact over
each client's effect, Laplace over the unit and therapist effects and the fixed effects
with a skewness correction, importance sampling over the three SDs) in a fraction of a
second, with its own integration-error check; it is checked against ``bayes_binary_nuts``
(``benchmarks/agreement.py``, tests). ``bayes_binary_nuts`` samples every effect by NUTS
and gives a full trace (R-hat, posterior predictive checks).

NUTS sampling: every random effect is non-centred, ``u = sigma * z`` with ``z ~ N(0,
1)``. With few units (three districts in the IPS pre-study) the intercept and the mean of
the unit effects are nearly the same thing to the data, a ridge that NUTS crosses slowly.
The model is therefore sampled in an exactly equivalent form: ``alpha_c = alpha + sum_k
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

import time
import zlib

import numpy as np
import pandas as pd

from models.base import Estimate, Estimator, EstimatorError, register
from models.bayes.base import (
    BayesEstimator,
    IdMap,
    Posterior,
    check_integer_options,
    fused_callback,
    occasion_codes,
    parameter_offsets,
    post,
    prior_scales,
    resampled_posterior,
)
from models.bayes.integrated import check_diagnostics
from models.bayes.logit_integrated import (
    FALLBACK_WEIGHT,
    PRIORS,
    BinaryPosterior,
    LogitData,
    arm_sds,
    integrate_binary,
    marginal_risks,
    therapist_in_arm,
)
from simulate.conventions import expit, gauss_hermite

__all__ = ["BayesBinary", "BayesBinaryNuts", "PRIORS", "fused_logp", "simulate_from_prior"]

#: the random-effect vectors, in the order of the ``levels`` and ``absorbed`` data
VECTORS = ("unit", "therapist", "client")


@register
class BayesBinaryNuts(BayesEstimator):
    """Logit mixed model; marginal risk difference at the primary month.

    Options: ``priors`` (a dict replacing some of :data:`PRIORS`, e.g. to simulate from a
    deliberately wrong prior in simulation-based calibration) and the sampler options.
    ``extra``: ``risk_ratio`` (posterior mean) with ``risk_ratio_lower/upper``,
    ``risk_control``, ``risk_treated``, and the logit-scale variances.
    """

    name = "bayes_binary_nuts"
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
        has_t = ther != -1
        # levels of each vector (units, therapists, clients), and whether its mean goes
        # into the intercept: units and clients always, therapists when every row has one
        data["levels"] = np.array([max(n_unit, 1), max(n_ther, 1), max(n_client, 1)], float)
        data["absorbed"] = np.array([1.0, float(has_t.all()), 1.0])
        meta = {"primary_index": p,
                "therapist_in_arm": therapist_in_arm(df),
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
        for eta, s in zip((eta0, eta1), arm_sds(vu, vt, vc, meta["therapist_in_arm"])):
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
    """The log density of :class:`BayesBinaryNuts` and its gradient as one numba loop.

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


# -- the integrated route ------------------------------------------------------------------
@register
class BayesBinary(Estimator):
    """Logit mixed model for a binary outcome; marginal risk difference at the primary
    month, by nested integration (module docstring): a fraction of a second per fit.

    Options: ``priors`` (a dict replacing some of :data:`models.bayes.binary.PRIORS`),
    ``seed``, ``nodes``, ``inner``, ``first_draws``, ``max_draws``, ``max_error``.
    ``extra``: ``risk_ratio`` (posterior mean) with ``risk_ratio_lower/upper``,
    ``risk_control``, ``risk_treated`` and the logit-scale variances ``var_*``.
    The NUTS twin with the same model and priors is ``bayes_binary_nuts``.
    """

    name = "bayes_binary"
    estimand = "risk_difference"
    outcome_kinds = ("binary",)
    defaults = {"priors": None, "seed": 0, "nodes": 9, "inner": 256, "first_draws": 128,
                "max_draws": 2048, "max_error": 0.03}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        self.priors = prior_scales(self.name, self.options["priors"], PRIORS)
        check_integer_options(self.options, {"nodes": 3, "inner": 8, "first_draws": 8,
                                             "max_draws": 8})
        v = self.options["max_error"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < np.inf:
            raise EstimatorError(f"max_error must be a positive number, got {v!r}")

    def integrated(self, df: pd.DataFrame, y=None) -> tuple[LogitData, BinaryPosterior]:
        """The integrated posterior of a prepared frame (optionally another outcome ``y``)."""
        d = LogitData(df, df.attrs["primary_month"], y)
        o = self.options
        res = integrate_binary(d, self.priors, alpha=self.plan.alpha, seed=int(o["seed"]),
                               nodes=int(o["nodes"]), inner=int(o["inner"]),
                               first_draws=int(o["first_draws"]),
                               max_draws=int(o["max_draws"]), max_error=float(o["max_error"]))
        return d, res

    def _fit(self, df: pd.DataFrame, primary_month: float) -> Estimate:
        return self._estimate(df)[0]

    def _estimate(self, df: pd.DataFrame):
        t0 = time.perf_counter()
        _, res = self.integrated(df)
        g = res.diagnostics
        warnings = []
        if g["failed_laplace"]:
            warnings.append(f"the Laplace step failed at {g['failed_laplace']} of "
                            f"{g['draws']} draws (given weight 0)")
        if g["fallback_weight"] > FALLBACK_WEIGHT:
            warnings.append(f"{g['fallback_draws']} draws holding {g['fallback_weight']:.1%} "
                            "of the posterior needed the one-node (Laplace) client integral")
        diag = check_diagnostics(g, self.options["max_error"], time.perf_counter() - t0,
                                 warnings)
        extra = {**res.extra(), "route": "integrated"}
        est = Estimate(estimator=self.name, estimand=self.estimand, **res.summary,
                       extra=extra, diagnostics=diag)
        return est, res

    def posterior(self, data: pd.DataFrame, draws: int = 4000) -> Posterior:
        """The Estimate with ``draws`` posterior draws (:func:`resampled_posterior`)."""
        return resampled_posterior(self, data, draws)

    # -- simulation-based calibration ---------------------------------------------------
    def posterior_draws(self, data_or_fit, n: int, seed: int = 0) -> dict[str, np.ndarray]:
        """``n`` joint posterior draws: ``effect`` and the ``var_*`` components, for a long
        table (integrated here) or a :class:`~models.bayes.base.Posterior` (``n`` of its
        draws, which are independent)."""
        names = ("effect", "var_unit", "var_therapist", "var_client")
        rng = np.random.default_rng(seed)
        if isinstance(data_or_fit, Posterior):
            post_ = data_or_fit.idata.posterior
            total = post_.sizes["draw"]
            i = rng.choice(total, size=int(n), replace=int(n) > total)
            return {k: np.asarray(post_[k]).reshape(-1)[i] for k in names}
        _, res = self.integrated(self.prepare(data_or_fit))
        out = res.draws(int(n), rng)
        return {k: out[k] for k in names}

    def prior_predictive(self, data: pd.DataFrame, n: int, seed: int = 0):
        """Parameters drawn from the prior and outcomes simulated from the model for the
        design of ``data`` (its observed rows).

        Returns
        -------
        params : dict of name -> array (n,)
            ``effect`` (the marginal risk difference) and the ``var_*`` components.
        columns : dict
            ``{"outcome": array (n, rows)}`` for the rows of ``self.prepare(data)``.
        """
        df = self.prepare(data)
        return simulate_from_prior(df, self.priors, n, np.random.default_rng(seed))


def simulate_from_prior(df: pd.DataFrame, priors: dict[str, float], n: int, rng):
    """``n`` draws of the model's parameters from the prior and of outcomes for the rows of
    the prepared frame ``df``; returns ``(params, {"outcome": (n, rows)})``."""
    occ, months, j = occasion_codes(df, df.attrs["primary_month"])
    unit, n_unit = IdMap.codes(df["unit"])
    ther, n_ther = IdMap.codes(df["therapist"])
    client, n_client = IdMap.codes(df["client"])
    arm = df["arm"].to_numpy(float)
    k = len(months) - 1
    alpha = priors["alpha"] * rng.standard_normal(n)
    beta = np.concatenate([np.zeros((n, 1)), priors["beta"] * rng.standard_normal((n, k))], 1)
    delta = np.concatenate([np.zeros((n, 1)), priors["delta"] * rng.standard_normal((n, k))],
                           1)
    sig = {v: np.abs(priors[f"sigma_{v}"] * rng.standard_normal(n))
           for v in ("unit", "therapist", "client")}

    def level(codes, size, name):
        z = sig[name][:, None] * rng.standard_normal((n, max(size, 1)))
        return np.where(codes >= 0, z[:, np.maximum(codes, 0)], 0.0)

    eta = (alpha[:, None] + beta[:, occ] + delta[:, occ] * arm + level(unit, n_unit, "unit")
           + level(ther, n_ther, "therapist") + level(client, n_client, "client"))
    y = (rng.uniform(size=eta.shape) < expit(eta)).astype(float)
    sds = arm_sds(sig["unit"] ** 2, sig["therapist"] ** 2, sig["client"] ** 2,
                  therapist_in_arm(df))
    risks = [marginal_risks(eta_a, s) for eta_a, s in
             zip((alpha + beta[:, j], alpha + beta[:, j] + delta[:, j]), sds)]
    params = {"effect": risks[1] - risks[0], "var_unit": sig["unit"] ** 2,
              "var_therapist": sig["therapist"] ** 2 if n_ther else np.zeros(n),
              "var_client": sig["client"] ** 2}
    return params, {"outcome": y}
