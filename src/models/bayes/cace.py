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
eta, tau ~ N(0, 2.5)``, cluster SDs ``HalfNormal(1)``; ``pi ~ Beta(1, 1)``.
"""

from __future__ import annotations

import numpy as np

from models.base import EstimatorError, LongFormatError, register
from models.bayes.base import BayesEstimator, IdMap, post, random_effect
from models.clients import CACE_REQUIRED, client_table
from simulate.conventions import FIDELITY_LEVELS, expit

__all__ = ["BayesCace"]


@register
class BayesCace(BayesEstimator):
    """Complier average causal effect by Bayesian principal stratification.

    Options: ``outcome`` (``"ors"`` or ``"binary"``; default the plan's outcome),
    ``fidelity`` (``"levels"``, ``"dose"`` or ``"none"``), and the sampler options.
    ``extra``: ``pi`` (complier share), ``eta`` (complier shift), per-level or dose
    effects, and for binary outcomes the CACE on the logit scale.
    """

    name = "bayes_cace"
    estimand = "cace"
    outcome_kinds = ("ors", "binary")
    required = CACE_REQUIRED
    exact = ()

    model_defaults = {"outcome": None, "fidelity": "levels"}

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
        meta = {"taker": taker, "fid": fid, "unit": unit, "therapist": ther,
                "base": data["base"], "n_clients": len(ct)}
        return data, sizes, meta

    def _build(self, data, capacity):
        import pymc as pm
        import pytensor.tensor as pt

        ors = self.kind == "ors"
        s_eff, s_re = (5.0, 3.0) if ors else (2.5, 1.0)
        with pm.Model() as model:
            y = pm.Data("y", data["y"])
            base = pm.Data("base", data["base"])
            z = pm.Data("z", data["z"])
            d = pm.Data("d", data["d"])
            fid = pm.Data("fid", data["fid"])
            a = pm.Normal("a", 20.0 if ors else 0.0, 10.0 if ors else 2.5)
            b = pm.Normal("b", 0.0, 2.0 if ors else 2.5)
            eta = pm.Normal("eta", 0.0, s_eff)
            pi = pm.Beta("pi", 1.0, 1.0)
            u_unit, _ = random_effect("unit", capacity["unit"], s_re,
                                      pm.Data("unit", data["unit"]))
            u_ther, _ = random_effect("therapist", capacity["therapist"], s_re,
                                      pm.Data("therapist", data["therapist"]))
            if self.fidelity == "levels":
                tau_i = pm.Normal("tau", 0.0, s_eff, shape=3)[fid]
            elif self.fidelity == "dose":
                tau_i = (pm.Normal("tau0", 0.0, s_eff)
                         + pm.Normal("slope", 0.0, s_eff) * fid)
            else:
                tau_i = pm.Normal("tau", 0.0, s_eff)
            m = a + b * base + u_unit + u_ther
            if ors:
                sigma = pm.HalfNormal("sigma", 10.0)

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


def _re(idata, name, codes):
    """Posterior draws of a padded random effect at ``codes`` (``-1``: zero)."""
    vals = post(idata, f"z_{name}") * post(idata, f"sigma_{name}")[:, None]
    vals = np.concatenate([vals, np.zeros((vals.shape[0], 1))], axis=1)
    return vals[:, codes]
