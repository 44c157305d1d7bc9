"""Bayesian stepped-wedge model with occasion-specific means and learning
(estimator ``bayes_occasion_stepped_wedge``).

The growth model of :mod:`models.bayes.occasion` with the exposure (FIT offered: the client
started after the unit's crossover) in place of the randomized arm, plus fixed
calendar-period effects (Hussey & Hughes 2007; leaving out the secular trend can reverse
the estimated effect, Hemming 2017)::

    y_ij = alpha + beta[occ_ij] + gamma[period_ij] + delta[occ_ij] * exposure_i
         + kappa * exposure_i * t_ij * (r_i - 1)                 (learning, optional)
         + u_unit + w_unit,period (optional) + u_therapist + a_client + b_client * t_ij + e_ij

``gamma[0] = 0`` (first calendar period is the reference). ``unit_period=True`` adds the
unit x period random effect (cluster autocorrelation below 1). ``learning=True`` adds a
time-since-crossover effect: ``r_i = min(1, months from the unit's crossover to the
client's start / ramp_months)``, so ``delta`` is the effect once FIT is fully in place and
``kappa`` how much less it is at crossover. The unit's crossover month is taken as the
earliest start among its exposed clients (the long format has no crossover column).

The estimand (``itt``) is the mean effect at the primary month over exposed clients:
``delta[primary] + kappa * mean(r_i - 1)`` (just ``delta[primary]`` without learning).
Priors as in :mod:`models.bayes.occasion`; ``gamma ~ N(0, 5)``, ``kappa ~ N(0, 5)``,
``sigma_unit_period ~ HalfNormal(2)``.
"""

from __future__ import annotations

import numpy as np

from models.base import EstimatorError, LongFormatError, register
from models.bayes.base import IdMap, post, random_effect
from models.bayes.occasion import BayesOccasion

__all__ = ["BayesOccasionSteppedWedge"]


@register
class BayesOccasionSteppedWedge(BayesOccasion):
    """Stepped-wedge growth model with fixed calendar-period effects.

    Options: ``unit_period`` (False), ``learning`` (False), ``ramp_months`` (the plan's
    ``ramp_months``, else 6), ``time_shape``, ``censored`` and the sampler options.
    """

    name = "bayes_occasion_stepped_wedge"
    estimand = "itt"
    required = ("unit", "therapist", "client", "exposure", "month", "outcome", "period",
                "start_month")
    monitor = BayesOccasion.monitor + ("gamma",)

    model_defaults = {**BayesOccasion.model_defaults, "unit_period": False,
                      "learning": False, "ramp_months": None}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        self.unit_period = bool(self.options["unit_period"])
        self.learning = bool(self.options["learning"])
        ramp = self.options["ramp_months"]
        if ramp is None:
            ramp = self.plan.ramp_months if self.plan.ramp_months is not None else 6.0
        self.ramp_months = float(ramp)
        if self.learning and not self.ramp_months > 0:
            raise EstimatorError("ramp_months must be positive for learning=True")
        if self.unit_period:
            self.monitor = self.monitor + ("sigma_unit_period",)
        if self.learning:
            self.monitor = self.monitor + ("kappa",)

    def prepare(self, data):
        df = super().prepare(data)
        # the growth model's treatment term is the exposure in a stepped wedge
        df["arm"] = df["exposure"].astype(int)
        return df

    def _arrays(self, df, primary_month):
        data, sizes, meta = super()._arrays(df, primary_month)
        period, n_period = IdMap.codes(df["period"])
        data["period"] = period
        sizes["period"] = n_period
        if self.unit_period:
            up = df["unit"].astype(np.int64) * 100_000 + df["period"].astype(np.int64)
            data["unit_period"], sizes["unit_period"] = IdMap.codes(up)
        if self.learning:
            exp = df["exposure"].to_numpy() == 1
            if not exp.any():
                raise LongFormatError("no exposed clients: cannot place the crossover")
            cross = df[exp].groupby("unit")["start_month"].min()
            tsc = df["start_month"].to_numpy(float) - df["unit"].map(cross).to_numpy(float)
            r = np.clip(np.nan_to_num(tsc, nan=0.0) / self.ramp_months, 0.0, 1.0)
            data["ramp_gap"] = np.where(exp, r - 1.0, 0.0)
            # the estimand averages over exposed clients, not over their observations
            first = ~df["client"].duplicated().to_numpy()
            meta["mean_ramp_gap"] = float(np.mean(r[exp & first] - 1.0))
        return data, sizes, meta

    def _extra_mean(self, data, capacity, t):
        import pymc as pm
        import pytensor.tensor as pt

        period = pm.Data("period", data["period"])
        gamma = pm.Normal("gamma", 0.0, 5.0, shape=max(capacity["period"] - 1, 1))
        extra = pt.concatenate([pt.zeros(1), gamma])[period]
        if self.unit_period:
            w, _ = random_effect("unit_period", capacity["unit_period"], 2.0,
                                 pm.Data("unit_period", data["unit_period"]))
            extra = extra + w
        if self.learning:
            kappa = pm.Normal("kappa", 0.0, 5.0)
            extra = extra + kappa * t * pm.Data("ramp_gap", data["ramp_gap"])
        return extra

    def _summarize(self, idata, meta):
        effect, extra = super()._summarize(idata, meta)
        if self.learning:
            kappa = post(idata, "kappa")
            effect = effect + kappa * meta["mean_ramp_gap"]
            extra["kappa"] = float(kappa.mean())
            extra["effect_full_ramp"] = float(post(idata, "delta")[
                :, meta["primary_index"] - 1].mean()) if self.time_shape == "occasion" else None
        if self.unit_period:
            extra["var_unit_period"] = float((post(idata, "sigma_unit_period") ** 2).mean())
        extra.update(unit_period=self.unit_period, learning=self.learning)
        return effect, extra
