"""Reference fits with statsmodels MixedLM: the correctness anchor and the slow baseline.

statsmodels expresses the nested model with ``groups = unit`` (the unit random intercept)
and variance components inside each unit: one per therapist, one intercept per client and,
for the client slope, one ``time`` coefficient per client. Variance components are
independent, so MixedLM cannot fit a *correlated* client intercept and slope nested in
units; the closest model it can fit has independent client intercepts and slopes. The exact
fast path matches it with ``client_cov="diagonal"`` (``reml_trajectory``'s option), and
that is the pair compared to 1e-3 in the tests.

Clients without a therapist (``therapist == -1``) get no therapist component, as in
:mod:`models.reml.engine`.
"""

from __future__ import annotations

import time as _time
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from models.base import Estimate, Estimator, EstimatorError, register
from models.reml.estimators import client_re_level, stepped_wedge_design, trajectory_design

__all__ = ["MixedLMReference", "fit_mixedlm"]


def fit_mixedlm(y, X, unit, therapist, client, z_slope=None, *, method="reml",
                client_re=None, names=None):
    """Fit the nested model with statsmodels MixedLM (independent client intercept/slope).

    Parameters are as :func:`models.reml.fit.fit_nested_lmm`. Returns ``(result, messages)``:
    the statsmodels result and the warning messages raised while fitting.
    """
    import statsmodels.api as sm
    from statsmodels.regression.mixed_linear_model import VCSpec

    if method not in ("reml", "ml"):
        raise ValueError(f"method must be 'reml' or 'ml', got {method!r}")
    y = np.asarray(y, float)
    X = np.asarray(X, float)
    unit, therapist, client = map(np.asarray, (unit, therapist, client))
    if client_re is None:
        client_re = 2 if z_slope is not None else 1
    order = np.lexsort((client, unit))
    y, X, unit, therapist, client = y[order], X[order], unit[order], therapist[order], \
        client[order]
    z = None if z_slope is None else np.asarray(z_slope, float)[order]
    groups = np.unique(unit)
    comps: dict[str, list] = {"therapist": [], "client": [], "slope": []}
    cols: dict[str, list] = {"therapist": [], "client": [], "slope": []}
    for g in groups:
        rows = unit == g
        th = therapist[rows]
        tl = np.unique(th[th >= 0])
        comps["therapist"].append((th[:, None] == tl[None, :]).astype(float))
        cols["therapist"].append([f"t{t}" for t in tl])
        cl = np.unique(client[rows])
        ind = (client[rows][:, None] == cl[None, :]).astype(float)
        comps["client"].append(ind)
        cols["client"].append([f"c{c}" for c in cl])
        if client_re == 2:
            comps["slope"].append(ind * z[rows][:, None])
            cols["slope"].append([f"s{c}" for c in cl])
    use = ["therapist"] if (therapist >= 0).any() else []
    if client_re >= 1:
        use.append("client")
    if client_re == 2:
        use.append("slope")
    vc = VCSpec(use, [cols[k] for k in use], [comps[k] for k in use])
    exog = pd.DataFrame(X, columns=names) if names is not None else X
    model = sm.MixedLM(y, exog, groups=unit, exog_re=np.ones((len(y), 1)), exog_vc=vc)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(reml=(method == "reml"))
    return res, [str(w.message) for w in caught]


@register
class MixedLMReference(Estimator):
    """statsmodels MixedLM fit of the trajectory (or stepped-wedge) model.

    Options: ``model`` ("trajectory" or "stepped_wedge"), ``method`` ("reml"/"ml").
    ``converged`` is False when MixedLM reports non-convergence, a boundary optimum,
    a singular covariance or that its last optimizer failed (a failure followed by a
    successful retry counts as converged); all messages are in ``warnings``.
    The test is a Wald z test (statsmodels' own p-values).
    """

    name = "mixedlm"
    estimand = "itt"
    outcome_kinds = ("ors",)

    defaults = {"model": "trajectory", "method": "reml"}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        if self.options["model"] not in ("trajectory", "stepped_wedge"):
            raise EstimatorError("model must be 'trajectory' or 'stepped_wedge', got "
                                 f"{self.options['model']!r}")
        if self.options["method"] not in ("reml", "ml"):
            raise EstimatorError(f"method must be 'reml' or 'ml', got {self.options['method']!r}")
        if self.options["model"] == "stepped_wedge":
            self.required = ("unit", "therapist", "client", "exposure", "month", "outcome",
                             "period")

    def _fit(self, df: pd.DataFrame, primary_month: float) -> Estimate:
        t0 = _time.perf_counter()
        design = (stepped_wedge_design if self.options["model"] == "stepped_wedge"
                  else trajectory_design)
        X, names, target = design(df)
        cre = client_re_level(df)
        t = df["time"].to_numpy(float)
        res, msgs = fit_mixedlm(df["outcome"].to_numpy(float), X, df["unit"].to_numpy(),
                                df["therapist"].to_numpy(), df["client"].to_numpy(),
                                t if cre == 2 else None, client_re=cre, names=names,
                                method=self.options["method"])
        b = float(res.fe_params[target])
        se = float(res.bse_fe[target])
        q = float(stats.norm.ppf(1 - self.plan.alpha / 2))
        p = float(2 * stats.norm.sf(abs(b) / se)) if se > 0 else float("nan")
        vcomp = dict(zip(res.model.exog_vc.names, map(float, res.vcomp)))
        extra = {"var_unit": float(res.cov_re.iloc[0, 0]),
                 "var_therapist": vcomp.get("therapist", 0.0),
                 "var_client": vcomp.get("client", 0.0),
                 "var_slope": vcomp.get("slope", 0.0),
                 "var_resid": float(res.scale), "llf": float(res.llf), "target": target}
        # MixedLM retries other optimizers after a failure and warns each time; only the
        # final verdict counts: failed, boundary or singular means not converged
        bad = ("optimization failed", "Gradient optimization failed", "boundary",
               "singular")
        ok = bool(res.converged) and not any(b in m for m in msgs for b in bad)
        diag = {"converged": ok,
                "fit_seconds": _time.perf_counter() - t0, "warnings": msgs}
        return Estimate(estimator=self.name, estimand=self.estimand, estimate=b, se=se,
                        lower=b - q * se, upper=b + q * se, p_value=p, extra=extra,
                        diagnostics=diag)
