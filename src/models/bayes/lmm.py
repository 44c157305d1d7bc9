"""Bayesian trajectory and stepped-wedge mixed models: the fast integrated route and its
NUTS twin with the same model and priors.

- ``bayes_trajectory`` and ``bayes_stepped_wedge``: the models that ``reml_trajectory``
  and ``reml_stepped_wedge`` fit (the same fixed effects and random effects), with the
  priors of :class:`models.bayes.integrated.Priors`, computed by exact conditional
  integration and importance sampling (:func:`models.bayes.integrated.integrate`): tens of
  milliseconds per fit, with its own integration-error check.
- ``bayes_trajectory_nuts`` and ``bayes_stepped_wedge_nuts``: the same models and priors
  sampled by NUTS (nutpie) with every random effect explicit (non-centred): the
  independent reference the fast route is checked against, and the route to use when a
  full trace (R-hat, posterior predictive checks) is wanted.

The estimand is the FIT - usual care difference at the primary month (``arm:time``, or
``exposure:time`` in a stepped wedge). Both routes accept ``priors={field: value}`` to
change any prior of :class:`~models.bayes.integrated.Priors` and provide
``posterior_draws`` and ``prior_predictive`` for simulation-based calibration.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from models.base import Estimate, Estimator, EstimatorError, register
from models.bayes.base import (
    BayesEstimator,
    IdMap,
    Posterior,
    check_integer_options,
    post,
    random_effect,
    resampled_posterior,
)
from models.bayes.integrated import Priors, check_diagnostics, integrate
from models.reml.engine import _NestedLMM
from models.reml.estimators import client_re_level, stepped_wedge_design, trajectory_design

__all__ = ["BayesTrajectory", "BayesSteppedWedge", "BayesTrajectoryNuts",
           "BayesSteppedWedgeNuts", "make_priors"]

#: variance components reported and drawn, by kernel parameter
_COMPONENTS = ("var_unit", "var_therapist", "var_unit_period", "var_client", "var_slope",
               "var_resid")


def make_priors(spec: dict | Priors | None) -> Priors:
    """:class:`Priors` from ``None`` (the defaults), a Priors, or a dict of fields."""
    if spec is None:
        return Priors()
    if isinstance(spec, Priors):
        return spec
    if not isinstance(spec, dict):
        raise EstimatorError(f"priors must be a mapping of prior fields, got {spec!r}")
    fields = Priors().as_dict()
    bad = sorted(set(spec) - set(fields))
    if bad:
        raise EstimatorError(f"unknown prior(s) {bad}; allowed: {sorted(fields)}")
    for k, v in spec.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) or v <= 0:
            raise EstimatorError(f"priors.{k} must be a positive number, got {v!r}")
    return Priors(**{**fields, **{k: float(v) for k, v in spec.items()}})


class _Design:
    """The fixed-effect design, groupings and structure of one prepared data set."""

    def __init__(self, df: pd.DataFrame, stepped: bool, unit_period: bool):
        design = stepped_wedge_design if stepped else trajectory_design
        self.X, self.names, target = design(df)
        self.target = self.names.index(target)
        self.client_re = client_re_level(df)
        self.period = df["period"].to_numpy() if stepped else None
        self.unit_period = bool(stepped and unit_period and len(np.unique(self.period)) > 1)
        self.y = df["outcome"].to_numpy(float)
        self.t = df["time"].to_numpy(float)
        self.unit = df["unit"].to_numpy()
        self.therapist = df["therapist"].to_numpy()
        self.client = df["client"].to_numpy()

    def model(self, client_cov: str, y=None) -> _NestedLMM:
        """The REML engine's sufficient statistics (numba) for these data (or outcome ``y``)."""
        return _NestedLMM(self.y if y is None else np.asarray(y, float), self.X, self.unit,
                          self.therapist, self.client, self.t, self.client_re,
                          self.unit_period, self.period, client_cov, engine="numba")


class _IntegratedLMM(Estimator):
    """Shared machinery of the integrated Bayesian mixed models."""

    estimand = "itt"
    outcome_kinds = ("ors",)
    stepped = False
    defaults = {"priors": None, "seed": 0, "client_cov": "unstructured",
                "first_draws": 128, "max_draws": 4096, "max_error": 0.03}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        self.priors = make_priors(self.options["priors"])
        if self.options["client_cov"] not in ("unstructured", "diagonal"):
            raise EstimatorError("client_cov must be 'unstructured' or 'diagonal', got "
                                 f"{self.options['client_cov']!r}")
        check_integer_options(self.options, {"first_draws": 8, "max_draws": 8})

    def _design(self, df: pd.DataFrame) -> _Design:
        return _Design(df, self.stepped, bool(self.options.get("unit_period", False)))

    def integrated(self, df: pd.DataFrame, y=None):
        """The integrated posterior (:class:`~models.bayes.integrated.Integrated`) of a
        prepared frame (optionally with another outcome vector ``y``)."""
        d = self._design(df)
        o = self.options
        res = integrate(d.model(o["client_cov"], y), d.target, self.priors,
                        alpha=self.plan.alpha, seed=int(o["seed"]),
                        first_draws=int(o["first_draws"]), max_draws=int(o["max_draws"]),
                        max_error=float(o["max_error"]))
        return d, res

    def _fit(self, df: pd.DataFrame, primary_month: float) -> Estimate:
        return self._estimate(df)[0]

    def posterior(self, data: pd.DataFrame, draws: int = 4000) -> Posterior:
        """The Estimate with ``draws`` posterior draws (:func:`resampled_posterior`)."""
        return resampled_posterior(self, data, draws)

    def _estimate(self, df: pd.DataFrame):
        t0 = time.perf_counter()
        d, res = self.integrated(df)
        diag = check_diagnostics(res.diagnostics, self.options["max_error"],
                                 time.perf_counter() - t0)
        extra = {**res.variance_components(), "target": d.names[d.target],
                 "client_re": d.client_re, "route": "integrated"}
        if self.stepped:
            extra["unit_period"] = d.unit_period
        est = Estimate(estimator=self.name, estimand=self.estimand, **res.summary,
                       extra=extra, diagnostics=diag)
        return est, res

    # -- simulation-based calibration ---------------------------------------------------
    def posterior_draws(self, data_or_fit, n: int, seed: int = 0) -> dict[str, np.ndarray]:
        """``n`` independent joint posterior draws: ``effect`` and the ``var_*``
        components, for a long table or a :class:`~models.bayes.base.Posterior`."""
        df = data_or_fit.data if isinstance(data_or_fit, Posterior) else self.prepare(data_or_fit)
        _, res = self.integrated(df)
        return res.draws(int(n), np.random.default_rng(seed))

    def prior_predictive(self, data: pd.DataFrame, n: int, seed: int = 0):
        """Parameters drawn from the prior and outcomes simulated from the model for the
        design of ``data`` (its observed rows).

        Returns
        -------
        params : dict of name -> array (n,)
            ``effect`` and the ``var_*`` components.
        columns : dict
            ``{"outcome": array (n, rows)}`` for the rows of ``self.prepare(data)``.
        """
        df = self.prepare(data)
        d = self._design(df)
        params, y = simulate_from_prior(d, self.priors, self.options["client_cov"], n,
                                        np.random.default_rng(seed))
        return params, {"outcome": y}


def simulate_from_prior(d: _Design, pr: Priors, client_cov: str, n: int, rng):
    """Draw parameters from the priors and outcomes for design ``d`` (see the module)."""
    rows = len(d.y)
    sig2 = pr.sigma2_scale / rng.gamma(pr.sigma2_shape, 1.0, n)
    sig = np.sqrt(sig2)
    beta = rng.standard_normal((n, d.X.shape[1])) * (pr.beta_sd * sig)[:, None]
    mu = beta @ d.X.T
    params: dict[str, Any] = {"effect": beta[:, d.target], "var_resid": sig2}

    def level(codes, scale, key):
        s = np.abs(rng.standard_normal(n)) * scale
        c, m = IdMap.codes(codes)
        eff = rng.standard_normal((n, m)) * (s * sig)[:, None]
        eff = np.concatenate([eff, np.zeros((n, 1))], axis=1)  # index -1: no such level
        params[key] = sig2 * s**2
        return eff[:, c]

    mu = mu + level(d.unit, pr.unit, "var_unit")
    if (d.therapist >= 0).any():
        mu = mu + level(d.therapist, pr.therapist, "var_therapist")
    if d.unit_period:
        up = d.unit.astype(np.int64) * 100_000 + d.period.astype(np.int64)
        mu = mu + level(up, pr.unit_period, "var_unit_period")
    if d.client_re >= 1:
        c, m = IdMap.codes(d.client)
        a = np.abs(rng.standard_normal(n)) * pr.client
        z1 = rng.standard_normal((n, m))
        mu = mu + (sig * a)[:, None] * z1[:, c]
        params["var_client"] = sig2 * a**2
        if d.client_re == 2:
            b = np.abs(rng.standard_normal(n)) * pr.slope
            rho = (2 * rng.beta(pr.lkj_eta, pr.lkj_eta, n) - 1 if client_cov == "unstructured"
                   else np.zeros(n))
            z2 = rng.standard_normal((n, m))
            slope = (sig * b)[:, None] * (rho[:, None] * z1 + np.sqrt(1 - rho**2)[:, None] * z2)
            mu = mu + slope[:, c] * d.t[None, :]
            params["var_slope"] = sig2 * b**2
    y = mu + sig[:, None] * rng.standard_normal((n, rows))
    return params, y


@register
class BayesTrajectory(_IntegratedLMM):
    """Bayesian trajectory model (the model of ``reml_trajectory``), integrated route.

    Options: ``priors`` (dict of :class:`~models.bayes.integrated.Priors` fields),
    ``client_cov`` ("unstructured" or "diagonal"), ``seed``, ``first_draws``,
    ``max_draws``, ``max_error`` (see :func:`~models.bayes.integrated.integrate`).
    """

    name = "bayes_trajectory"


@register
class BayesSteppedWedge(_IntegratedLMM):
    """Bayesian stepped-wedge model (the model of ``reml_stepped_wedge``: calendar
    periods, exposure x time, unit x period effects), integrated route.

    Options as :class:`BayesTrajectory` plus ``unit_period`` (default True).
    """

    name = "bayes_stepped_wedge"
    stepped = True
    required = ("unit", "therapist", "client", "exposure", "month", "outcome", "period")
    defaults = {**_IntegratedLMM.defaults, "unit_period": True}


class _NutsLMM(BayesEstimator):
    """The integrated models' twin: the same model and priors, sampled by NUTS."""

    estimand = "itt"
    outcome_kinds = ("ors",)
    stepped = False
    exact = ("p", "client_re", "unit_period")
    model_defaults = {"priors": None, "client_cov": "unstructured"}
    sampler_overrides = {"draws": 1000, "tune": 1000, "target_accept": 0.9}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        self.priors = make_priors(self.options["priors"])
        if self.options["client_cov"] not in ("unstructured", "diagonal"):
            raise EstimatorError("client_cov must be 'unstructured' or 'diagonal'")
        # every variance parameter the model may have (diagnose skips absent ones)
        self.monitor = ("beta", "sigma2", "sigma_unit", "sigma_therapist", "sigma_unit_period",
                        "sd_client", "sd_slope", "rho01")

    def _arrays(self, df, primary_month):
        d = _Design(df, self.stepped, bool(self.options.get("unit_period", False)))
        unit, n_unit = IdMap.codes(d.unit)
        ther, n_ther = IdMap.codes(d.therapist)
        client, n_client = IdMap.codes(d.client)
        data = {"y": d.y, "X": d.X, "t": d.t, "unit": unit, "therapist": ther,
                "client": client}
        sizes = {"p": d.X.shape[1], "client_re": d.client_re, "unit_period": int(d.unit_period),
                 "unit": n_unit, "therapist": max(n_ther, 1), "client": n_client}
        if d.unit_period:
            up = d.unit.astype(np.int64) * 100_000 + d.period.astype(np.int64)
            data["unit_period_id"], sizes["up"] = IdMap.codes(up)
        return data, sizes, {"target": d.target, "names": d.names, "design": d}

    def _build(self, data, capacity):
        import pymc as pm
        import pytensor.tensor as pt

        pr = self.priors
        with pm.Model() as model:
            y = pm.Data("y", data["y"])
            X = pm.Data("X", data["X"])
            t = pm.Data("t", data["t"])
            sigma2 = pm.InverseGamma("sigma2", alpha=pr.sigma2_shape, beta=pr.sigma2_scale)
            sigma = pt.sqrt(sigma2)
            beta = pm.Normal("beta", 0.0, pr.beta_sd * sigma, shape=capacity["p"])
            u, _ = random_effect("unit", capacity["unit"], pr.unit, pm.Data("unit", data["unit"]))
            v, _ = random_effect("therapist", capacity["therapist"], pr.therapist,
                                 pm.Data("therapist", data["therapist"]))
            rel = u + v
            if capacity["unit_period"]:
                w, _ = random_effect("unit_period", capacity["up"], pr.unit_period,
                                     pm.Data("unit_period_id", data["unit_period_id"]))
                rel = rel + w
            if capacity["client_re"] >= 1:
                client = pm.Data("client", data["client"])
                sd_c = pm.HalfNormal("sd_client", pr.client)
                z1 = pm.Normal("z_client", 0.0, 1.0, shape=capacity["client"])
                rel = rel + sd_c * z1[client]
                if capacity["client_re"] == 2:
                    sd_s = pm.HalfNormal("sd_slope", pr.slope)
                    z2 = pm.Normal("z_slope", 0.0, 1.0, shape=capacity["client"])
                    if self.options["client_cov"] == "unstructured":
                        rho = 2.0 * pm.Beta("rho01", pr.lkj_eta, pr.lkj_eta) - 1.0
                        slope = sd_s * (rho * z1 + pt.sqrt(1.0 - rho**2) * z2)
                    else:
                        slope = sd_s * z2
                    rel = rel + slope[client] * t
            pm.Normal("obs", X @ beta + sigma * rel, sigma, observed=y)
        return model

    def _summarize(self, idata, meta):
        s2 = post(idata, "sigma2")
        extra = {"var_resid": float(s2.mean()), "route": "nuts"}
        for key, nm in (("var_unit", "sigma_unit"), ("var_therapist", "sigma_therapist"),
                        ("var_unit_period", "sigma_unit_period"), ("var_client", "sd_client"),
                        ("var_slope", "sd_slope")):
            if nm in idata.posterior:
                extra[key] = float((s2 * post(idata, nm) ** 2).mean())
        extra["target"] = meta["names"][meta["target"]]
        return post(idata, "beta")[:, meta["target"]], extra


@register
class BayesTrajectoryNuts(_NutsLMM):
    """``bayes_trajectory``'s model and priors, sampled by NUTS (the reference)."""

    name = "bayes_trajectory_nuts"


@register
class BayesSteppedWedgeNuts(_NutsLMM):
    """``bayes_stepped_wedge``'s model and priors, sampled by NUTS (the reference)."""

    name = "bayes_stepped_wedge_nuts"
    stepped = True
    required = ("unit", "therapist", "client", "exposure", "month", "outcome", "period")
    model_defaults = {**_NutsLMM.model_defaults, "unit_period": True}
