"""Fast, transparent estimators: difference in means, and the binary risk difference.

``diff_means`` compares the mean outcome at the primary month between clients offered FIT
(``exposure == 1``) and usual care, with a cluster-robust (CR1) standard error. It is cheap
enough for thousands of replicates, which makes it the workhorse of the study layer's tests,
and its naive twin (``diff_means_naive``, or ``cluster="none"``) ignores clustering, which
shows how ignoring therapist clustering inflates type I error (Candlish 2018).

It ignores baseline, period effects and the repeated measures, so in a stepped-wedge design
with a secular trend it is biased (the trend is confounded with exposure); use the REML or
Bayesian stepped-wedge models there.

``glm_binary`` is the binary outcome's fast estimator: the risk difference at the primary
month by linear-probability OLS adjusted for baseline, cluster-robust.

Examples
--------
>>> import pandas as pd
>>> from models import get_estimator
>>> df = pd.DataFrame({
...     "unit": [0, 0, 1, 1, 2, 2, 3, 3], "therapist": [0, 1, 2, 3, 4, 5, 6, 7],
...     "client": range(8), "arm": [1, 0] * 4, "exposure": [1, 0] * 4,
...     "month": [12.0] * 8, "outcome": [22.0, 20.0, 25.0, 21.0, 19.0, 18.0, 24.0, 20.0]})
>>> e = get_estimator("diff_means", primary_month=12.0).fit(df)
>>> round(e.estimate, 2)
2.75
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from models.base import Estimate, Estimator, EstimatorError, LongFormatError, register
from models.clients import client_table
from models.robust import robust_fit, t_summary

__all__ = ["DiffMeans", "DiffMeansNaive", "GlmBinary"]

_CLUSTERS = ("unit", "therapist", "none")


def _groups(table: pd.DataFrame, level: str):
    """Cluster labels of each row for ``level`` (``None``: no clustering)."""
    if level == "none":
        return None
    return table[level].to_numpy()


@register
class DiffMeans(Estimator):
    """Difference in mean outcome at the primary month, FIT minus usual care.

    Options
    -------
    cluster : {"unit", "therapist", "none"}, optional
        Clustering of the robust SE; default the plan's (therapist for individual
        randomization, unit otherwise). A client without a therapist
        (``therapist == -1``) is its own cluster.
    """

    name = "diff_means"
    estimand = "itt"
    outcome_kinds = ("ors", "binary")
    defaults = {"cluster": None}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        self.cluster = self.options["cluster"] or self.plan.cluster_level()
        if self.cluster not in _CLUSTERS:
            raise EstimatorError(f"cluster must be one of {_CLUSTERS}, got {self.cluster!r}")

    def _fit(self, df: pd.DataFrame, primary_month: float) -> Estimate:
        t0 = time.perf_counter()
        at = df[np.isclose(df["month"].astype(float), primary_month)]
        x = at["exposure"].to_numpy(dtype=float)
        if len(at) < 3 or x.min() == x.max():
            raise LongFormatError(f"needs observed outcomes in both arms at the primary "
                                  f"month {primary_month:g}")
        X = np.column_stack([np.ones(len(at)), x])
        beta, cov, dof = robust_fit(at["outcome"].to_numpy(), X, _groups(at, self.cluster))
        res = t_summary(beta[1], float(np.sqrt(cov[1, 1])), dof, self.plan.alpha)
        return Estimate(
            estimator=self.name, estimand=self.estimand, **res,
            extra={"n": int(len(at)), "df": int(dof), "cluster": self.cluster},
            diagnostics={"converged": bool(np.isfinite(res["se"]) and res["se"] > 0),
                         "fit_seconds": time.perf_counter() - t0},
        )


@register
class DiffMeansNaive(DiffMeans):
    """:class:`DiffMeans` ignoring clustering (classical OLS SE): for teaching only."""

    name = "diff_means_naive"
    defaults = {"cluster": "none"}


@register
class GlmBinary(Estimator):
    """Risk difference at the primary month: cluster-robust linear-probability OLS.

    OLS of the primary-month outcome on the offer and the baseline outcome, CR1 by
    therapist (default) or unit. ``extra`` has the unadjusted ``risk_control`` /
    ``risk_treated`` and their ratio ``risk_ratio``.
    """

    name = "glm_binary"
    estimand = "risk_difference"
    outcome_kinds = ("binary",)
    defaults = {"cluster": "therapist"}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        if self.options["cluster"] not in ("therapist", "unit"):
            raise EstimatorError(f"cluster must be 'therapist' or 'unit', got "
                                 f"{self.options['cluster']!r}")

    def _fit(self, df, primary_month):
        t0 = time.perf_counter()
        ct = client_table(df, primary_month)
        y, z = ct["y"].to_numpy(float), ct["z"].to_numpy(float)
        if z.min() == z.max():
            raise LongFormatError("glm_binary needs clients in both arms at the primary month")
        X = np.column_stack([np.ones(len(ct)), z, ct["baseline"].to_numpy(float)])
        beta, cov, dof = robust_fit(y, X, _groups(ct, self.options["cluster"]))
        res = t_summary(beta[1], float(np.sqrt(cov[1, 1])), dof, self.plan.alpha)
        p0, p1 = y[z == 0].mean(), y[z == 1].mean()
        extra = {"risk_control": float(p0), "risk_treated": float(p1),
                 "risk_ratio": float(p1 / p0) if p0 > 0 else float("nan"),
                 "n_clusters": dof + 1, "n_clients": len(ct)}
        diag = {"converged": True, "fit_seconds": time.perf_counter() - t0, "warnings": []}
        return Estimate(self.name, self.estimand, extra=extra, diagnostics=diag, **res)
