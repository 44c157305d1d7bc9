"""Bayesian growth model with occasion-specific means (estimator ``bayes_occasion``).

Model (one row per observed client x occasion)::

    y_ij = alpha + beta[occ_ij] + delta[occ_ij] * arm_i            (fixed, occasion-specific)
         + u_unit + u_therapist + a_client + b_client * t_ij + e_ij
    t_ij = the plan's model time (0 at baseline, 1 at the primary month; log1p(month) /
           log1p(primary) by default)

with ``beta[baseline] = delta[baseline] = 0`` (a constrained baseline: randomized arms do
not differ at intake). The estimand is ``delta`` at the primary month: the FIT vs usual-care
difference in mean ORS there. ``time_shape="loglinear"`` replaces the occasion-specific
means by ``beta * t`` and ``delta * arm * t`` (fewer parameters, assumes log-linear
change as in Stulz 2013). Incomplete data need no special handling: the likelihood uses
every observed occasion, which is valid under MAR given the earlier scores.

Option ``censored=True`` treats scores at the ORS ceiling (40) as right-censored
(``pm.Censored``), respecting the 0-40 bounds.

Priors (ORS points; weakly informative for a 0-40 scale)::

    alpha ~ N(20, 10);  beta, delta ~ N(0, 10)
    sigma_unit, sigma_therapist ~ HalfNormal(3)     # ICC 0.02-0.10 of SD 7.5 is 1-2.4 pts
    sigma_client ~ HalfNormal(8); sigma_slope ~ HalfNormal(5); sigma ~ HalfNormal(8)

All random effects are non-centred; clients under no therapist (``therapist == -1``) get a
structural zero therapist effect.
"""

from __future__ import annotations

from models.base import EstimatorError, register
from models.bayes.base import (
    BayesEstimator,
    IdMap,
    occasion_codes,
    post,
    random_effect,
    variance_components,
)
from simulate.conventions import ORS_MAX

__all__ = ["BayesOccasion", "GROWTH_SDS"]

#: the SD parameter of each variance component of the growth model
GROWTH_SDS = {"unit": "sigma_unit", "therapist": "sigma_therapist", "client": "sigma_client",
              "slope": "sigma_slope", "resid": "sigma"}


@register
class BayesOccasion(BayesEstimator):
    """Hierarchical growth model; ITT difference at the primary month.

    Options: ``time_shape`` (``"occasion"`` default, or ``"loglinear"``), ``censored``
    (False), plus the sampler options of :class:`models.bayes.base.BayesEstimator`.

    ``extra`` holds posterior means of the variance components (``var_unit``,
    ``var_therapist``, ``var_client``, ``var_slope``, ``var_resid``) and the intake ICCs
    (``icc_unit``, ``icc_therapist``, ``icc_client``).

    Examples
    --------
    >>> est = get_estimator("bayes_occasion", Scenario(), draws=300)  # doctest: +SKIP
    >>> est.fit(trial.data).estimate                                    # doctest: +SKIP
    """

    name = "bayes_occasion"
    estimand = "itt"
    outcome_kinds = ("ors",)
    monitor = ("alpha", "beta", "delta", "sigma_unit", "sigma_therapist", "sigma_client",
               "sigma_slope", "sigma")

    model_defaults = {"time_shape": "occasion", "censored": False}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        self.time_shape = self.options["time_shape"]
        self.censored = bool(self.options["censored"])
        if self.time_shape not in ("occasion", "loglinear"):
            raise EstimatorError(f"time_shape must be 'occasion' or 'loglinear', got "
                                 f"{self.time_shape!r}")

    def _arrays(self, df, primary_month):
        occ, months, p = occasion_codes(df, primary_month)
        unit, n_unit = IdMap.codes(df["unit"])
        ther, n_ther = IdMap.codes(df["therapist"])
        client, n_client = IdMap.codes(df["client"])
        data = {
            "y": df["outcome"].to_numpy(float),
            "arm": df["arm"].to_numpy(float),
            "t": df["time"].to_numpy(float),
            "unit": unit,
            "therapist": ther,
            "client": client,
        }
        if self.time_shape == "occasion":
            # only a model that uses it may declare it: nutpie's with_data refuses
            # containers that the compiled graph does not contain
            data["occ"] = occ
        sizes = {"occ": len(months), "unit": n_unit, "therapist": max(n_ther, 1),
                 "client": n_client}
        return data, sizes, {"primary_index": p, "months": months}

    def _build(self, data, capacity):
        import pymc as pm
        import pytensor.tensor as pt

        with pm.Model() as model:
            y = pm.Data("y", data["y"])
            arm = pm.Data("arm", data["arm"])
            t = pm.Data("t", data["t"])
            alpha = pm.Normal("alpha", 20.0, 10.0)
            if self.time_shape == "occasion":
                occ = pm.Data("occ", data["occ"])
                k = capacity["occ"] - 1
                beta = pm.Normal("beta", 0.0, 10.0, shape=k)
                delta = pm.Normal("delta", 0.0, 10.0, shape=k)
                zero = pt.zeros(1)
                mean = (pt.concatenate([zero, beta])[occ]
                        + arm * pt.concatenate([zero, delta])[occ])
            else:
                beta = pm.Normal("beta", 0.0, 10.0)
                delta = pm.Normal("delta", 0.0, 10.0)
                mean = beta * t + delta * arm * t
            u_unit, _ = random_effect("unit", capacity["unit"], 3.0, pm.Data("unit", data["unit"]))
            u_ther, _ = random_effect("therapist", capacity["therapist"], 3.0,
                                      pm.Data("therapist", data["therapist"]))
            client = pm.Data("client", data["client"])
            a_client, _ = random_effect("client", capacity["client"], 8.0, client)
            b_client, _ = random_effect("slope", capacity["client"], 5.0, client)
            mu = alpha + mean + u_unit + u_ther + a_client + b_client * t
            mu = mu + self._extra_mean(data, capacity, t)
            sigma = pm.HalfNormal("sigma", 8.0)
            if self.censored:
                pm.Censored("obs", pm.Normal.dist(mu, sigma), lower=None, upper=ORS_MAX,
                            observed=y)
            else:
                pm.Normal("obs", mu, sigma, observed=y)
        return model

    def _extra_mean(self, data, capacity, t):
        """Hook for subclasses: more terms of the mean, built inside the model context."""
        return 0.0

    def _summarize(self, idata, meta):
        if self.time_shape == "occasion":
            effect = post(idata, "delta")[:, meta["primary_index"] - 1]
        else:
            effect = post(idata, "delta")
        extra = variance_components(idata, GROWTH_SDS)
        extra["time_shape"] = self.time_shape
        extra["censored"] = self.censored
        return effect, extra
