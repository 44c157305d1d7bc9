"""The REML estimators: the trajectory and stepped-wedge mixed models on the long format.

Both build their fixed effects from the prepared long table (with the plan's model
``time``, 0 at baseline and 1 at the primary month), fit them with
:func:`models.reml.fit.fit_nested_lmm` from a fixed starting point, and test the
effect at the primary month with a Wald t test (between-within degrees of freedom) or a
z test. A fit depends on its data and plan only.
"""

from __future__ import annotations

import time as _time

import numpy as np
import pandas as pd
from scipy import special

from models.base import Estimate, Estimator, EstimatorError, LongFormatError, register
from models.reml.fit import MixedFit, fit_nested_lmm

__all__ = [
    "client_re_level",
    "trajectory_design",
    "stepped_wedge_design",
    "RemlEstimator",
    "RemlTrajectory",
    "RemlSteppedWedge",
]


def client_re_level(df: pd.DataFrame) -> int:
    """Client random effects the data identify: 2 (intercept and slope on ``time``) if
    some client has >= 3 distinct times, 1 (intercept) if some has >= 2 rows, else 0."""
    # one sort by (client, time): rows per client and distinct times per client are runs
    t = df["time"].to_numpy(dtype=float)
    client = df["client"].to_numpy()
    o = np.lexsort((t, client))
    cs, ts = client[o], t[o]
    new_c = np.empty(len(cs), dtype=bool)
    new_c[:1] = True
    np.not_equal(cs[1:], cs[:-1], out=new_c[1:])
    starts = np.flatnonzero(new_c)
    if np.diff(np.append(starts, len(cs))).max() < 2:
        return 0
    new_t = new_c.copy()
    new_t[1:] |= ts[1:] != ts[:-1]
    n_times = np.add.reduceat(new_t.astype(np.int64), starts)
    return 2 if n_times.max() >= 3 else 1


def _binary_column(df: pd.DataFrame, name: str, what: str) -> np.ndarray:
    x = df[name].to_numpy(dtype=float)
    if not np.isin(x, (0.0, 1.0)).all():
        raise LongFormatError(f"column '{name}' must be 0/1")
    if x.min() == x.max():
        raise LongFormatError(f"column '{name}' has one value only; {what}")
    return x


def trajectory_design(df: pd.DataFrame):
    """Fixed effects of the trajectory model.

    Returns ``X, names, target``: intercept, time, arm, arm:time with target ``arm:time``
    (the FIT - usual care difference at the primary month, where time = 1). If ``time``
    does not vary (one occasion), intercept and arm with target ``arm``.
    """
    t = df["time"].to_numpy(dtype=float)
    arm = _binary_column(df, "arm", "both arms are needed")
    one = np.ones_like(t)
    if np.ptp(t) == 0:
        return np.column_stack([one, arm]), ["Intercept", "arm"], "arm"
    X = np.column_stack([one, t, arm, arm * t])
    return X, ["Intercept", "time", "arm", "arm:time"], "arm:time"


def stepped_wedge_design(df: pd.DataFrame):
    """Fixed effects of the stepped-wedge model (Hussey & Hughes 2007).

    Intercept, calendar-period effects (first period the reference) and exposure; with
    repeated measures also time and exposure:time, and the target is exposure:time (the
    effect of FIT at the primary month, growing with time like the trajectory model;
    ``exposure`` is then the difference at baseline). Returns ``X, names, target``.
    """
    if "period" not in df.columns:
        raise LongFormatError("the stepped-wedge model needs column 'period' "
                              "(calendar period of the observation)")
    t = df["time"].to_numpy(dtype=float)
    expo = _binary_column(df, "exposure", "a stepped wedge needs exposed and unexposed "
                                          "observations")
    per = df["period"].to_numpy()
    levels = np.unique(per)
    cols = [np.ones_like(t)] + [(per == lv).astype(float) for lv in levels[1:]]
    names = ["Intercept"] + [f"period[{lv}]" for lv in levels[1:]]
    if np.ptp(t) > 0:
        cols += [t, expo, expo * t]
        names += ["time", "exposure", "exposure:time"]
        target = "exposure:time"
    else:
        cols += [expo]
        names += ["exposure"]
        target = "exposure"
    X = np.column_stack(cols)
    # a period confounded with exposure (or empty) makes X rank deficient: say so
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise LongFormatError("period effects and exposure are collinear: every period "
                              "needs exposed and unexposed observations somewhere")
    return X, names, target


class RemlEstimator(Estimator):
    """Shared machinery of the REML estimators.

    Options: ``method`` ("reml" or "ml"), ``client_cov`` ("unstructured" or "diagonal"),
    ``df`` ("between_within" or "normal"). Subclasses provide ``design(df)`` and may add
    options through ``_engine_kwargs``.
    """

    estimand = "itt"
    outcome_kinds = ("ors",)
    defaults = {"method": "reml", "client_cov": "unstructured", "df": "between_within"}
    _choices = {"method": ("reml", "ml"), "client_cov": ("unstructured", "diagonal"),
                "df": ("between_within", "normal")}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        for key, allowed in self._choices.items():
            if self.options[key] not in allowed:
                raise EstimatorError(f"{key} must be one of {allowed}, got "
                                     f"{self.options[key]!r}")

    def design(self, df: pd.DataFrame):  # pragma: no cover - abstract
        raise NotImplementedError

    def _engine_kwargs(self, df: pd.DataFrame) -> tuple[dict, dict]:
        """Extra keyword arguments for the engine, and extra entries for ``extra``."""
        return {}, {}

    def _fit(self, df: pd.DataFrame, primary_month: float) -> Estimate:
        t0 = _time.perf_counter()
        X, names, target = self.design(df)
        cre = client_re_level(df)
        kwargs, extra = self._engine_kwargs(df)
        fit = fit_nested_lmm(
            df["outcome"].to_numpy(float), X, df["unit"].to_numpy(),
            df["therapist"].to_numpy(), df["client"].to_numpy(),
            df["time"].to_numpy(float) if cre == 2 else None,
            method=self.options["method"], client_re=cre,
            client_cov=self.options["client_cov"], names=names, **kwargs)
        return self._estimate(fit, target, t0, {"client_re": cre, "target": target, **extra})

    def _estimate(self, fit: MixedFit, target: str, t0: float, extra: dict) -> Estimate:
        b, se = fit.coef(target), fit.se(target)
        level = 1 - self.plan.alpha / 2
        # scipy.special's ufuncs: the frozen scipy.stats distributions cost a millisecond
        if self.options["df"] == "normal":
            q = float(special.ndtri(level))
            p = float(2 * special.ndtr(-abs(b) / se)) if se > 0 else float("nan")
        else:
            dfv = fit.df[target]
            q = float(special.stdtrit(dfv, level))
            p = float(2 * special.stdtr(dfv, -abs(b) / se)) if se > 0 else float("nan")
        diag = {"converged": fit.converged, "fit_seconds": _time.perf_counter() - t0,
                "n_eval": fit.n_eval, "boundary": ", ".join(fit.boundary),
                "warnings": [f"variance at zero: {b_}" for b_ in fit.boundary]}
        ex = {**fit.variances, "df": fit.df[target], "llf": fit.llf, "method": fit.method,
              "alpha": self.plan.alpha, **extra}
        return Estimate(estimator=self.name, estimand=self.estimand, estimate=b, se=se,
                        lower=b - q * se, upper=b + q * se, p_value=p, extra=ex,
                        diagnostics=diag)


@register
class RemlTrajectory(RemlEstimator):
    """Gaussian 3-level trajectory model by exact REML (ML with ``method="ml"``).

    Fixed: intercept, time, arm, arm:time; random: unit, therapist (nested; none for
    therapist -1), client intercept and slope on time (dropped where not identified).
    The estimate is the arm:time coefficient, the FIT - usual-care difference at the
    primary month.
    """

    name = "reml_trajectory"

    def design(self, df):
        return trajectory_design(df)


@register
class RemlSteppedWedge(RemlEstimator):
    """Stepped-wedge mixed model by exact REML: Hussey & Hughes with repeated measures.

    Fixed: intercept, calendar-period effects, exposure (+ time and exposure:time with
    repeated measures; the estimate is then exposure:time, the effect at the primary
    month). Random: unit, therapist, optional unit x period (``unit_period``, default
    True), client intercept and slope where identified.
    """

    name = "reml_stepped_wedge"
    required = ("unit", "therapist", "client", "exposure", "month", "outcome", "period")
    defaults = {**RemlEstimator.defaults, "unit_period": True}

    def design(self, df):
        return stepped_wedge_design(df)

    def _engine_kwargs(self, df):
        per = df["period"].to_numpy()
        up = bool(self.options["unit_period"]) and len(np.unique(per)) > 1
        return {"period": per, "unit_period": up}, {"unit_period": up}
