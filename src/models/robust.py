"""Least squares and just-identified IV with cluster-robust (CR1) standard errors.

One implementation for every frequentist estimator that needs a sandwich: the difference
in means, the linear-probability risk difference, 2SLS for the CACE and the per-protocol
contrast. The CR1 covariance is

    V = c (Z'X)^-1 (sum_g s_g s_g') (X'Z)^-1,   s_g = sum_{i in g} Z_i u_i,
    c = G / (G - 1) * (n - 1) / (n - k)

(the small-sample factor of Stata and statsmodels), with ``G`` clusters, ``n`` rows and
``k`` coefficients; tests and intervals use a t distribution with ``G - 1`` degrees of
freedom. Without clusters the classical OLS covariance ``s^2 (X'X)^-1`` with ``n - k``
degrees of freedom is used. A row whose cluster label is ``-1`` (a client with no
therapist, in a partially nested design) is a cluster of its own.

Examples
--------
>>> import numpy as np
>>> y = np.array([1.0, 2.0, 3.0, 5.0]); X = np.column_stack([np.ones(4), [0, 0, 1, 1]])
>>> beta, cov, df = robust_fit(y, X)
>>> float(beta[1]), df
(2.5, 2)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import special

__all__ = ["cluster_ids", "robust_fit", "t_summary"]


def cluster_ids(labels, none=-1) -> np.ndarray:
    """Integer cluster codes ``0..G-1``; every row labelled ``none`` is its own cluster."""
    codes, _ = pd.factorize(pd.Series(np.asarray(labels)))
    codes = codes.astype(np.int64)
    alone = np.asarray(labels) == none
    if alone.any():
        # renumber: real clusters first, then one new cluster per unclustered row
        real, _ = pd.factorize(pd.Series(np.asarray(labels)[~alone]))
        out = np.empty(len(codes), dtype=np.int64)
        out[~alone] = real
        start = int(real.max()) + 1 if real.size else 0
        out[alone] = start + np.arange(int(alone.sum()))
        codes = out
    return codes


def robust_fit(y, X, groups=None, Z=None) -> tuple[np.ndarray, np.ndarray, int]:
    """OLS (``Z=None``) or just-identified IV of ``y`` on ``X`` with instruments ``Z``.

    Parameters
    ----------
    y : array (n,)
    X : array (n, k)
    groups : array (n,), optional
        Cluster labels (``-1``: a cluster of its own) for the CR1 covariance; ``None``
        gives the classical covariance.
    Z : array (n, k), optional
        Instruments (``X`` itself for OLS).

    Returns
    -------
    beta : ndarray (k,)
    cov : ndarray (k, k)
    df : int
        ``G - 1`` with clusters, ``n - k`` without.
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    Z = X if Z is None else np.asarray(Z, dtype=float)
    n, k = X.shape
    if n <= k:
        raise ValueError(f"needs more rows ({n}) than coefficients ({k})")
    zx = Z.T @ X
    beta = np.linalg.solve(zx, Z.T @ y)
    u = y - X @ beta
    bread = np.linalg.inv(zx)
    if groups is None:
        s2 = float(u @ u) / (n - k)
        return beta, s2 * bread @ (Z.T @ Z) @ bread.T, n - k
    codes = cluster_ids(groups)
    G = int(codes.max()) + 1
    if G < 2:
        raise ValueError("needs at least two clusters for a cluster-robust standard error")
    scores = np.zeros((G, Z.shape[1]))
    np.add.at(scores, codes, Z * u[:, None])
    c = G / (G - 1) * (n - 1) / (n - k)
    return beta, c * bread @ (scores.T @ scores) @ bread.T, G - 1


def t_summary(estimate: float, se: float, df: float, alpha: float = 0.05) -> dict[str, float]:
    """Estimate, SE, ``1 - alpha`` t interval and two-sided p-value with ``df`` degrees."""
    df = max(float(df), 1.0)
    q = float(special.stdtrit(df, 1 - alpha / 2))
    p = float(2 * special.stdtr(df, -abs(estimate) / se)) if se > 0 else math.nan
    return {"estimate": float(estimate), "se": float(se), "lower": float(estimate - q * se),
            "upper": float(estimate + q * se), "p_value": p}
