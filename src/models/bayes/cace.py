"""Bayesian principal stratification for one-sided noncompliance (estimator ``bayes_cace``).

Imbens & Rubin (1997): each client belongs to a latent stratum ``C`` (complier: would take
up FIT if offered; never-taker otherwise), ``P(C = 1) = pi``. Usual care cannot get FIT
(one-sided), so in the FIT arm ``C`` is observed as ``uptake`` and in usual care it is
latent. Under the exclusion restriction never-takers have the same outcome distribution in
both arms. Client-level model on the primary-month outcome with the baseline as covariate::

    m_i   = a + b * (baseline_i - mean) + u_unit + u_therapist
    y_i | C=0        ~ f(m_i)                       never-takers, both arms
    y_i | C=1, Z=0   ~ f(m_i + eta)                 compliers under usual care
    y_i | C=1, Z=1   ~ f(m_i + eta + tau[fid_i])    compliers offered FIT

``f`` is Normal(., sigma) for ORS and Bernoulli(logit) for a binary outcome. In usual care
the likelihood is the two-component mixture ``pi f(m+eta) + (1-pi) f(m)``; ``C`` is
marginalised analytically (logsumexp), never sampled. ``eta`` lets compliers differ from
never-takers (``compliance.complier_shift``), which is what biases per-protocol.

Fidelity (option ``fidelity``):

- ``"levels"`` (default when a ``fidelity`` column exists): ``tau[0..2]`` for the FIT
  therapist's low/medium/high fidelity; reported as ``extra["cace_fidelity_low"]`` etc.
- ``"dose"``: ``tau = tau0 + slope * fidelity`` (linear dose-response in the level).
- ``"none"``: one ``tau``.

The estimand ``cace`` is the mean effect over FIT-arm compliers (takers), i.e. ``tau``
averaged over their fidelity levels; for a binary outcome, the mean over takers of
``expit(m_i + eta + tau) - expit(m_i + eta)`` (a risk difference). Clients missing
the primary outcome are left out (valid when missingness depends on baseline and arm).

Priors: ORS ``a ~ N(20, 10)``, ``b ~ N(0, 2)``, ``eta, tau ~ N(0, 5)``,
``sigma ~ HalfNormal(10)``, cluster SDs ``HalfNormal(3)``; binary (logit scale) ``a, b,
eta, tau ~ N(0, 2.5)``, cluster SDs ``HalfNormal(1)``; ``pi ~ Beta(1, 1)``. The scales
are :data:`PRIORS`, changed by the option ``priors`` (e.g. to simulate from a deliberately
wrong prior in simulation-based calibration). ``tau0`` and ``slope`` of the dose model
share the scale of ``tau``.

The generative twin (for prior predictive draws, :meth:`BayesCace.prior_predictive`)
draws each client's stratum ``C ~ Bernoulli(pi)`` and the outcome given it, so that it
simulates the uptake (``uptake = offer * C``) as well as the primary-month outcome.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.base import EstimatorError, LongFormatError, register
from models.bayes.base import (
    BayesEstimator,
    IdMap,
    fused_callback,
    parameter_offsets,
    post,
    random_effect,
)
from models.clients import CACE_REQUIRED, client_table
from simulate.conventions import FIDELITY_LEVELS, expit

__all__ = ["BayesCace", "PRIORS", "fused_logp"]

#: prior scales by outcome: normal SDs of a, b, eta, tau; half-normal scales of the SDs
PRIORS = {
    "ors": {"a": 10.0, "b": 2.0, "eta": 5.0, "tau": 5.0, "sigma": 10.0, "sigma_unit": 3.0,
            "sigma_therapist": 3.0},
    "binary": {"a": 2.5, "b": 2.5, "eta": 2.5, "tau": 2.5, "sigma_unit": 1.0,
               "sigma_therapist": 1.0},
}


@register
class BayesCace(BayesEstimator):
    """Complier average causal effect by Bayesian principal stratification.

    Options: ``outcome`` (``"ors"`` or ``"binary"``; default the plan's outcome),
    ``fidelity`` (``"levels"``, ``"dose"`` or ``"none"``), ``priors`` (a dict replacing
    some of the outcome's :data:`PRIORS`), and the sampler options.
    ``extra``: ``pi`` (complier share), ``eta`` (complier shift), per-level or dose
    effects, and for binary outcomes the CACE on the logit scale.
    """

    name = "bayes_cace"
    estimand = "cace"
    outcome_kinds = ("ors", "binary")
    required = CACE_REQUIRED
    exact = ()

    model_defaults = {"outcome": None, "fidelity": "levels", "priors": None, "fused": True}
    # measured in benchmarks/bayes_speed.py: the intercept, the unit SD and eta mix
    # slowest (bulk ESS ~0.15-0.3 per draw); 4 x 1,000 draws keep every R-hat below 1.01,
    # target_accept 0.9 removes the rare divergence, and nutpie adapts in 300 steps
    sampler_overrides = {"draws": 1000, "tune": 300, "target_accept": 0.9}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        kind = self.options["outcome"] or self.plan.outcome or "ors"
        if kind not in ("ors", "binary"):
            raise EstimatorError(f"outcome must be 'ors' or 'binary', got {kind!r}")
        self.kind = kind
        self.fidelity = self.options["fidelity"]
        if self.fidelity not in ("levels", "dose", "none"):
            raise EstimatorError(f"fidelity must be 'levels', 'dose' or 'none', got "
                                 f"{self.fidelity!r}")
        tau = {"levels": ("tau",), "dose": ("tau0", "slope"), "none": ("tau",)}[self.fidelity]
        self.monitor = ("a", "b", "eta", "pi", "sigma_unit", "sigma_therapist") + tau + (
            ("sigma",) if kind == "ors" else ())
        self.priors = self.prior_scales(PRIORS[kind])

    def prepare(self, data):
        df = super().prepare(data)
        if self.kind == "binary" and not df["outcome"].isin([0.0, 1.0]).all():
            raise LongFormatError("column 'outcome' must be 0/1 for outcome='binary'")
        if self.fidelity != "none" and "fidelity" not in df.columns:
            raise LongFormatError(f"fidelity={self.fidelity!r} needs a 'fidelity' column "
                                  "(or use fidelity='none')")
        return df

    def _arrays(self, df, primary_month):
        ct = client_table(df, primary_month)
        if ct["z"].nunique() < 2:
            raise LongFormatError("bayes_cace needs clients offered FIT and usual care")
        unit, n_unit = IdMap.codes(ct["unit"])
        ther, n_ther = IdMap.codes(ct["therapist"])
        taker = ((ct["z"] == 1) & (ct["d"] == 1)).to_numpy()
        # a taker whose therapist's fidelity is unknown counts as high (full protocol)
        fid = np.where(taker, np.where(ct["fidelity"] >= 0, ct["fidelity"], 2), 0)
        base = ct["baseline"].to_numpy(float)
        data = {"y": ct["y"].to_numpy(float), "base": base - base.mean(),
                "z": ct["z"].to_numpy(float), "d": ct["d"].to_numpy(float),
                "fid": fid.astype(np.int64), "unit": unit, "therapist": ther}
        sizes = {"unit": n_unit, "therapist": max(n_ther, 1)}
        # the FIT therapist's level of every client offered FIT, taker or not (the
        # generative twin decides who takes up FIT)
        offered = (ct["z"] == 1).to_numpy()
        fid_offered = np.where(offered, np.where(ct["fidelity"] >= 0, ct["fidelity"], 2), 0)
        meta = {"taker": taker, "fid": fid, "unit": unit, "therapist": ther,
                "base": data["base"], "n_clients": len(ct),
                "clients": ct["client"].to_numpy(), "offered": offered,
                "fid_offered": fid_offered.astype(np.int64)}
        return data, sizes, meta

    def _build(self, data, capacity, generative_fid=None):
        """The model; ``generative_fid`` (each client's level if offered FIT) builds the
        generative twin instead, which draws the strata and outcomes."""
        import pymc as pm
        import pytensor.tensor as pt

        ors = self.kind == "ors"
        s = self.priors
        with pm.Model() as model:
            y = pm.Data("y", data["y"])
            base = pm.Data("base", data["base"])
            z = pm.Data("z", data["z"])
            d = pm.Data("d", data["d"])
            fid = pm.Data("fid", data["fid"] if generative_fid is None else generative_fid)
            a = pm.Normal("a", 20.0 if ors else 0.0, s["a"])
            b = pm.Normal("b", 0.0, s["b"])
            eta = pm.Normal("eta", 0.0, s["eta"])
            pi = pm.Beta("pi", 1.0, 1.0)
            u_unit, _ = random_effect("unit", capacity["unit"], s["sigma_unit"],
                                      pm.Data("unit", data["unit"]))
            u_ther, _ = random_effect("therapist", capacity["therapist"],
                                      s["sigma_therapist"],
                                      pm.Data("therapist", data["therapist"]))
            if self.fidelity == "levels":
                tau_i = pm.Normal("tau", 0.0, s["tau"], shape=3)[fid]
            elif self.fidelity == "dose":
                tau_i = (pm.Normal("tau0", 0.0, s["tau"])
                         + pm.Normal("slope", 0.0, s["tau"]) * fid)
            else:
                tau_i = pm.Normal("tau", 0.0, s["tau"])
            m = a + b * base + u_unit + u_ther
            sigma = pm.HalfNormal("sigma", s["sigma"]) if ors else None
            if generative_fid is not None:
                c = pm.Bernoulli("complier", pi, shape=y.shape[0])
                mu = m + c * (eta + z * tau_i)
                if ors:
                    pm.Normal("obs", mu, sigma, observed=y)
                else:
                    pm.Bernoulli("obs", logit_p=mu, observed=y)
                return model
            if ors:
                def loglik(mu):
                    return pm.logp(pm.Normal.dist(mu, sigma), y)
            else:
                def loglik(eta_):
                    # Bernoulli(logit) log-likelihood, stable for large |eta_|
                    return y * eta_ - pt.softplus(eta_)
            ll_never = pt.log1p(-pi) + loglik(m)
            ll_comp_ctrl = pt.log(pi) + loglik(m + eta)
            ll_comp_fit = pt.log(pi) + loglik(m + eta + tau_i)
            ll_fit = d * ll_comp_fit + (1.0 - d) * ll_never
            ll_ctrl = pt.logaddexp(ll_comp_ctrl, ll_never)
            pm.Potential("lik", pt.sum(z * ll_fit + (1.0 - z) * ll_ctrl))
        return model

    def _summarize(self, idata, meta):
        taker, fid = meta["taker"], meta["fid"]
        if self.fidelity == "levels":
            tau = post(idata, "tau")  # (S, 3)
            tau_i = tau[:, fid[taker]]
        elif self.fidelity == "dose":
            tau_i = post(idata, "tau0")[:, None] + post(idata, "slope")[:, None] * fid[taker]
        else:
            tau_i = np.repeat(post(idata, "tau")[:, None], taker.sum(), axis=1)
        extra = {"pi": float(post(idata, "pi").mean()), "eta": float(post(idata, "eta").mean()),
                 "fidelity": self.fidelity, "outcome": self.kind,
                 "n_clients": meta["n_clients"], "n_takers": int(taker.sum())}
        if self.kind == "ors":
            effect = tau_i.mean(axis=1)
            by_level = tau_i if self.fidelity != "none" else None
        else:
            m = (post(idata, "a")[:, None] + post(idata, "b")[:, None] * meta["base"][None, :]
                 + _re(idata, "unit", meta["unit"]) + _re(idata, "therapist", meta["therapist"]))
            mc = m[:, taker] + post(idata, "eta")[:, None]
            rd = expit(mc + tau_i) - expit(mc)
            effect = rd.mean(axis=1)
            extra["cace_logit"] = float(tau_i.mean())
            by_level = rd if self.fidelity != "none" else None
        if by_level is not None:
            f = fid[taker]
            for lev, name in enumerate(FIDELITY_LEVELS):
                sel = f == lev
                if sel.any():
                    v = by_level[:, sel].mean(axis=1)
                    extra[f"cace_fidelity_{name}"] = float(v.mean())
                    extra[f"cace_fidelity_{name}_sd"] = float(v.std())
        if self.fidelity == "dose":
            extra["dose_slope"] = float(post(idata, "slope").mean())
        return effect, extra


    def _fused_logp(self, compiled, cap):
        return fused_logp(compiled, cap, self.priors, self.kind, self.fidelity)

    # -- the generative twin (simulation-based calibration) -----------------------------
    def _prior_model(self, data, capacity, meta):
        return self._build(data, capacity, generative_fid=meta["fid_offered"])

    def _prior_columns(self, df, idata, meta):
        """Outcome at the primary month and uptake, for the rows of clients in the fit."""
        y = _stack(idata.prior_predictive["obs"])
        c = _stack(idata.prior["complier"])
        pos = pd.Index(meta["clients"]).get_indexer(df["client"].to_numpy())
        inside = pos >= 0
        primary = inside & (df["month"].to_numpy(float) == df.attrs["primary_month"])
        outcome = np.repeat(df["outcome"].to_numpy(float)[None, :], len(y), axis=0)
        outcome[:, primary] = y[:, pos[primary]]
        uptake = np.repeat(df["uptake"].to_numpy(float)[None, :], len(y), axis=0)
        offer = df["exposure"].to_numpy(float)
        uptake[:, inside] = offer[inside] * c[:, pos[inside]]
        return {"outcome": outcome, "uptake": uptake}

    def _prior_effect(self, idata, meta, columns):
        """The CACE of each prior draw, over the clients that draw made takers."""
        c = _stack(idata.posterior["complier"])
        out = np.empty(len(c))
        for i in range(len(c)):
            taker = meta["offered"] & (c[i] == 1)
            m_i = {**meta, "taker": taker, "fid": np.where(taker, meta["fid_offered"], 0)}
            out[i] = np.nan if not taker.any() else float(
                np.ravel(self._summarize(idata.isel(draw=[i]), m_i)[0])[0])
        return out


def _stack(values) -> np.ndarray:
    """``(chain, draw, ...)`` draws as ``(chain * draw, ...)``."""
    a = np.asarray(values)
    return a.reshape((-1,) + a.shape[2:])


def _re(idata, name, codes):
    """Posterior draws of a padded random effect at ``codes`` (``-1``: zero)."""
    vals = post(idata, f"z_{name}") * post(idata, f"sigma_{name}")[:, None]
    vals = np.concatenate([vals, np.zeros((vals.shape[0], 1))], axis=1)
    return vals[:, codes]


# -- the fused log density --------------------------------------------------------------
def fused_logp(compiled, cap: dict[str, int], priors: dict[str, float], kind: str,
               fidelity: str):
    """The log density of :class:`BayesCace` and its gradient as one numba loop.

    The same function of the same unconstrained parameters as the PyMC graph (up to a
    constant; :func:`models.bayes.base.fused_callback`), one pass over the clients: the
    mixture of the usual-care clients is marginalised with a two-term log-sum-exp as in
    the graph.
    """
    import numba

    at = parameter_offsets(compiled)
    ors = kind == "ors"
    mode = {"levels": 0, "dose": 1, "none": 2}[fidelity]
    o_a, o_b, o_eta, o_pi = at["a"], at["b"], at["eta"], at["pi_logodds__"]
    o_lsu, o_zu = at["sigma_unit_log__"], at["z_unit"]
    o_lst, o_zt = at["sigma_therapist_log__"], at["z_therapist"]
    n_zu, n_zt = cap["unit"], cap["therapist"]
    o_tau = at["tau0"] if mode == 1 else at["tau"]
    o_slope = at["slope"] if mode == 1 else 0
    n_tau = 3 if mode == 0 else 2 if mode == 1 else 1
    o_ls = at["sigma_log__"] if ors else 0
    mu_a = 20.0 if ors else 0.0
    s_a, s_b, s_eta, s_tau = priors["a"], priors["b"], priors["eta"], priors["tau"]
    s_u, s_t, s_s = priors["sigma_unit"], priors["sigma_therapist"], priors.get("sigma", 1.0)

    @numba.njit(inline="always")
    def lik(y, mu, sigma):
        """log f(y | mu), its derivative in mu and in sigma (ORS: normal; else logit)."""
        if ors:
            r = y - mu
            return (-0.5 * r * r / sigma**2 - np.log(sigma), r / sigma**2,
                    r * r / sigma**3 - 1.0 / sigma)
        q = np.exp(-abs(mu))
        p = 1.0 / (1.0 + q) if mu >= 0 else q / (1.0 + q)
        return y * mu - max(mu, 0.0) - np.log1p(q), y - p, 0.0

    @numba.njit
    def kernel(x, g, y, base, z, d, fid, unit, ther):
        g[:] = 0.0
        a, b, eta, xp = x[o_a], x[o_b], x[o_eta], x[o_pi]
        pi = 1.0 / (1.0 + np.exp(-xp))
        log_pi = -(max(-xp, 0.0) + np.log1p(np.exp(-abs(xp))))
        log_1pi = -(max(xp, 0.0) + np.log1p(np.exp(-abs(xp))))
        su, st = np.exp(x[o_lsu]), np.exp(x[o_lst])
        sigma = np.exp(x[o_ls]) if ors else 1.0
        lp, dsu, dst, dsig, geta, gpi = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        for i in range(y.shape[0]):
            ju, jt = unit[i], ther[i]
            m = a + b * base[i]
            if ju >= 0:
                m += su * x[o_zu + ju]
            if jt >= 0:
                m += st * x[o_zt + jt]
            if mode == 0:
                t = x[o_tau + fid[i]]
            elif mode == 1:
                t = x[o_tau] + x[o_slope] * fid[i]
            else:
                t = x[o_tau]
            if z[i] > 0.5 and d[i] > 0.5:  # a complier offered FIT: tau applies
                f, fp, fs = lik(y[i], m + eta + t, sigma)
                lp += log_pi + f
                gm = fp
                geta += fp
                gpi += 1.0 - pi
                dsig += fs
                if mode == 0:
                    g[o_tau + fid[i]] += fp
                elif mode == 1:
                    g[o_tau] += fp
                    g[o_slope] += fp * fid[i]
                else:
                    g[o_tau] += fp
            elif z[i] > 0.5:  # a never-taker offered FIT
                f, fp, fs = lik(y[i], m, sigma)
                lp += log_1pi + f
                gm = fp
                gpi -= pi
                dsig += fs
            else:  # usual care: complier or never-taker
                fa, fpa, fsa = lik(y[i], m + eta, sigma)
                fb, fpb, fsb = lik(y[i], m, sigma)
                la, lb = log_pi + fa, log_1pi + fb
                top = max(la, lb)
                ll = top + np.log(np.exp(la - top) + np.exp(lb - top))
                wa = np.exp(la - ll)
                lp += ll
                gm = wa * fpa + (1.0 - wa) * fpb
                geta += wa * fpa
                gpi += wa - pi
                dsig += wa * fsa + (1.0 - wa) * fsb
            g[o_a] += gm
            g[o_b] += gm * base[i]
            if ju >= 0:
                g[o_zu + ju] += gm * su
                dsu += gm * x[o_zu + ju]
            if jt >= 0:
                g[o_zt + jt] += gm * st
                dst += gm * x[o_zt + jt]
        g[o_eta] += geta
        g[o_pi] += gpi
        # priors: a, b, eta, tau normal; pi ~ Beta(1, 1) on the log-odds; SDs half-normal
        lp -= 0.5 * ((a - mu_a) / s_a) ** 2 + 0.5 * (b / s_b) ** 2 + 0.5 * (eta / s_eta) ** 2
        g[o_a] -= (a - mu_a) / s_a**2
        g[o_b] -= b / s_b**2
        g[o_eta] -= eta / s_eta**2
        for j in range(n_tau):
            o = o_slope if (mode == 1 and j == 1) else o_tau + j
            lp -= 0.5 * (x[o] / s_tau) ** 2
            g[o] -= x[o] / s_tau**2
        lp += log_pi + log_1pi
        g[o_pi] += 1.0 - 2.0 * pi
        for o_z, n_z in ((o_zu, n_zu), (o_zt, n_zt)):
            for j in range(n_z):
                lp -= 0.5 * x[o_z + j] ** 2
                g[o_z + j] -= x[o_z + j]
        lp += -0.5 * (su / s_u) ** 2 + x[o_lsu] - 0.5 * (st / s_t) ** 2 + x[o_lst]
        g[o_lsu] += dsu * su - (su / s_u) ** 2 + 1.0
        g[o_lst] += dst * st - (st / s_t) ** 2 + 1.0
        if ors:
            lp += -0.5 * (sigma / s_s) ** 2 + x[o_ls]
            g[o_ls] += dsig * sigma - (sigma / s_s) ** 2 + 1.0
        return lp

    # without fidelity levels the graph has no "fid": any integer array stands in
    fid = "unit" if mode == 2 else "fid"
    return fused_callback(kernel, compiled, ("y", "base", "z", "d", fid, "unit", "therapist"))
