"""A fast, transparent reference estimator: difference in means at the primary month.

``diff_means`` compares the mean outcome at the primary month between clients offered FIT
(``exposure == 1``) and usual care, with a cluster-robust (CR1) standard error. It is cheap
enough for thousands of replicates, which makes it the workhorse of the study layer's tests,
and its ``naive`` twin (``diff_means_naive``, or ``naive=True``) ignores clustering, which
shows how ignoring therapist clustering inflates type I error (Candlish 2018).

It ignores baseline, period effects and the repeated measures, so in a stepped-wedge design
with a secular trend it is biased (the trend is confounded with exposure); use the REML or
Bayesian stepped-wedge models there.

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
from scipy import stats

from models.base import Estimate, Estimator, register

__all__ = ["DiffMeans", "DiffMeansNaive", "diff_means"]

_CLUSTERS = ("unit", "therapist", "none")


def diff_means(
    y: np.ndarray, x: np.ndarray, groups: np.ndarray | None = None
) -> tuple[float, float, int]:
    """Difference in means of ``y`` between ``x == 1`` and ``x == 0`` with its SE.

    Parameters
    ----------
    y : array of float
        Outcomes.
    x : array of 0/1
        Treatment indicator.
    groups : array, optional
        Cluster labels for a CR1 cluster-robust SE; ``None`` gives the classical OLS SE.

    Returns
    -------
    estimate, se, df : float, float, int
        ``df`` is ``G - 1`` clusters for the robust SE, ``n - 2`` otherwise.

    Examples
    --------
    >>> est, se, df = diff_means(np.array([1.0, 2.0, 3.0, 5.0]), np.array([0, 0, 1, 1]))
    >>> est, df
    (2.5, 2)
    """
    y = np.asarray(y, dtype=float)
    x = np.asarray(x, dtype=float)
    n = len(y)
    if n < 3 or x.min() == x.max():
        raise ValueError("needs observed outcomes in both arms at the primary month")
    X = np.column_stack([np.ones(n), x])
    bread = np.linalg.inv(X.T @ X)
    beta = bread @ X.T @ y
    resid = y - X @ beta
    if groups is None:
        sigma2 = resid @ resid / (n - 2)
        return float(beta[1]), float(np.sqrt(sigma2 * bread[1, 1])), n - 2
    codes, _ = pd.factorize(pd.Series(groups))
    G = int(codes.max()) + 1
    if G < 2:
        raise ValueError("needs at least two clusters for a cluster-robust SE")
    # per-cluster score sums: sum_i X_i e_i within each cluster
    scores = np.zeros((G, 2))
    np.add.at(scores, codes, X * resid[:, None])
    meat = scores.T @ scores
    # CR1 small-sample factor, as Stata and statsmodels use
    factor = G / (G - 1) * (n - 1) / (n - 2)
    vcov = factor * bread @ meat @ bread
    return float(beta[1]), float(np.sqrt(vcov[1, 1])), G - 1


@register
class DiffMeans(Estimator):
    """Difference in mean outcome at the primary month, FIT minus usual care.

    Parameters
    ----------
    scenario : Scenario, optional
        Sets the primary month and the clustering (``unit`` for cluster and stepped-wedge
        designs, ``therapist`` for individual randomization).
    naive : bool
        Ignore clustering (classical OLS SE).
    cluster : {"unit", "therapist", "none"}, optional
        Override the clustering. Without a scenario the default is ``unit``.
        A client without a therapist (``therapist == -1``) is its own cluster.
    """

    name = "diff_means"
    estimand = "itt"
    outcome_kinds = ("ors", "binary")

    def __init__(self, scenario=None, columns=None, **options):
        naive = bool(options.pop("naive", False))
        cluster = options.pop("cluster", None)
        super().__init__(scenario, columns, **options)
        if cluster is None:
            if naive:
                cluster = "none"
            elif scenario is not None and scenario.design.kind == "individual":
                cluster = "therapist"
            else:
                cluster = "unit"
        if cluster not in _CLUSTERS:
            raise ValueError(f"cluster must be one of {_CLUSTERS}, got {cluster!r}")
        self.cluster = cluster

    def _fit(self, df: pd.DataFrame) -> Estimate:
        t0 = time.perf_counter()
        at = df[np.isclose(df["month"].astype(float), float(self.primary_month))]
        if at.empty:
            raise ValueError(f"no observed outcomes at the primary month {self.primary_month:g}")
        groups = None
        if self.cluster == "unit":
            groups = at["unit"].to_numpy()
        elif self.cluster == "therapist":
            # unclustered clients (partially nested designs) are singleton clusters
            g = at["therapist"].astype("int64").to_numpy()
            groups = np.where(g == -1, -(at["client"].astype("int64").to_numpy()) - 2, g)
        est, se, dof = diff_means(at["outcome"].to_numpy(), at["exposure"].to_numpy(), groups)
        q = stats.t.ppf(0.975, dof)
        p = float(2 * stats.t.sf(abs(est / se), dof)) if se > 0 else float("nan")
        return Estimate(
            estimator=self.name,
            estimand=self.estimand,
            estimate=est,
            se=se,
            lower=est - q * se,
            upper=est + q * se,
            p_value=p,
            extra={"n": int(len(at)), "df": int(dof), "cluster": self.cluster},
            diagnostics={"converged": bool(np.isfinite(se) and se > 0),
                         "fit_seconds": time.perf_counter() - t0},
        )


@register
class DiffMeansNaive(DiffMeans):
    """:class:`DiffMeans` ignoring clustering (classical OLS SE): for teaching only."""

    name = "diff_means_naive"

    def __init__(self, scenario=None, columns=None, **options):
        options.setdefault("naive", True)
        super().__init__(scenario, columns, **options)
