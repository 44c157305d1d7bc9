"""How good a risk prediction is: discrimination (AUC), calibration, and a binary signal's
sensitivity and specificity.

- :func:`auc` is the Mann-Whitney probability that a random event scores above a random
  non-event (ties count one half), from average ranks; :func:`auc_draws` does it for every
  posterior draw at once; :func:`bootstrap_auc` resamples clients (or whole clusters).
- :func:`calibration_slope` is the logistic recalibration of Cox (1958): the slope of
  ``logit P(y = 1) = a + b * logit(p)`` (1 when predictions are calibrated, below 1 when
  they are too extreme, Steyerberg 2019 ch. 15) and the calibration-in-the-large intercept
  of ``logit P(y = 1) = a + logit(p)`` (0 when the mean risk is right), each with its
  standard error from the Fisher information.
- :func:`calibration_curve` bins predictions by quantile and compares each bin's mean
  prediction with its observed share (Jeffreys intervals).
- :func:`signal_accuracy` gives a binary signal's sensitivity, specificity and predictive
  values against a reference, with Jeffreys intervals.

Examples
--------
>>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
0.75
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from simulate.conventions import expit

__all__ = [
    "auc",
    "auc_draws",
    "bootstrap_auc",
    "roc_curve",
    "calibration_slope",
    "calibration_curve",
    "signal_accuracy",
    "jeffreys_interval",
    "logit",
]


def logit(p, eps: float = 1e-9) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` kept inside ``[eps, 1 - eps]``."""
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    return np.log(p / (1 - p))


def _labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype == bool:
        return y
    yv = y.astype(float)
    if not np.isin(yv, (0.0, 1.0)).all():
        raise ValueError("outcomes must be 0/1")
    return yv == 1.0


def auc(y, score) -> float:
    """Area under the ROC curve: P(score of an event > score of a non-event), ties 1/2.

    NaN when there are no events or no non-events.
    """
    y = _labels(y)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = stats.rankdata(np.asarray(score, dtype=float))
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auc_draws(y, score_draws) -> np.ndarray:
    """:func:`auc` of each row of ``score_draws`` (draws x clients), vectorized."""
    y = _labels(y)
    s = np.atleast_2d(np.asarray(score_draws, dtype=float))
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return np.full(s.shape[0], np.nan)
    r = stats.rankdata(s, axis=1)
    return (r[:, y].sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def bootstrap_auc(y, score, reps: int = 1000, seed: int = 0, clusters=None,
                  level: float = 0.95) -> dict[str, float]:
    """AUC with a percentile bootstrap interval.

    Parameters
    ----------
    y, score : array
    reps : int
        Bootstrap resamples.
    seed : int
    clusters : array, optional
        Resample whole clusters (e.g. therapists) instead of clients, so that the
        interval reflects clustered outcomes.
    level : float

    Returns
    -------
    dict
        ``auc, lower, upper, se`` (``se``: the bootstrap SD).
    """
    y = _labels(y)
    score = np.asarray(score, dtype=float)
    rng = np.random.default_rng(seed)
    n = y.size
    if clusters is None:
        idx = rng.integers(0, n, (reps, n))
    else:
        codes, inv = np.unique(np.asarray(clusters), return_inverse=True)
        members = [np.flatnonzero(inv == k) for k in range(codes.size)]
        picks = rng.integers(0, codes.size, (reps, codes.size))
        idx = [np.concatenate([members[k] for k in row]) for row in picks]
    values = np.array([auc(y[i], score[i]) for i in idx])
    values = values[np.isfinite(values)]
    a = (1 - level) / 2
    lo, hi = np.quantile(values, [a, 1 - a]) if values.size else (np.nan, np.nan)
    return {"auc": auc(y, score), "lower": float(lo), "upper": float(hi),
            "se": float(values.std(ddof=1)) if values.size > 1 else float("nan")}


def roc_curve(y, score) -> pd.DataFrame:
    """False and true positive rates at every threshold (``score >= threshold``)."""
    y = _labels(y)
    score = np.asarray(score, dtype=float)
    thresholds = np.r_[np.inf, np.unique(score)[::-1]]
    pos = score[None, :] >= thresholds[:, None]
    tpr = (pos & y).sum(axis=1) / max(int(y.sum()), 1)
    fpr = (pos & ~y).sum(axis=1) / max(int((~y).sum()), 1)
    return pd.DataFrame({"threshold": thresholds, "fpr": fpr, "tpr": tpr})


def _logistic(y: np.ndarray, X: np.ndarray, offset: np.ndarray, iters: int = 50):
    """Maximum-likelihood logistic regression by Newton's method: (coef, covariance)."""
    beta = np.zeros(X.shape[1])
    for _ in range(iters):
        p = expit(offset + X @ beta)
        w = p * (1 - p)
        info = X.T @ (X * w[:, None])
        step = np.linalg.solve(info, X.T @ (y - p))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    p = expit(offset + X @ beta)
    info = X.T @ (X * (p * (1 - p))[:, None])
    return beta, np.linalg.inv(info)


def calibration_slope(y, p) -> dict[str, float]:
    """Calibration slope and calibration-in-the-large, with standard errors.

    Returns
    -------
    dict
        ``slope, slope_se, slope_lower, slope_upper`` (from ``logit P = a + b logit p``),
        ``intercept, intercept_se`` (calibration in the large: ``logit P = a + logit p``),
        ``n``, ``events``, ``mean_predicted``, ``observed_rate``.
    """
    y = _labels(y).astype(float)
    lp = logit(p)
    n = y.size
    out = {"n": int(n), "events": int(y.sum()), "mean_predicted": float(np.mean(p)),
           "observed_rate": float(y.mean())}
    if y.sum() in (0, n):
        return {**out, **dict.fromkeys(("slope", "slope_se", "slope_lower", "slope_upper",
                                        "intercept", "intercept_se"), float("nan"))}
    coef, cov = _logistic(y, np.column_stack([np.ones(n), lp]), np.zeros(n))
    se = float(np.sqrt(cov[1, 1]))
    citl, cov1 = _logistic(y, np.ones((n, 1)), lp)
    return {**out, "slope": float(coef[1]), "slope_se": se,
            "slope_lower": float(coef[1] - 1.96 * se), "slope_upper": float(coef[1] + 1.96 * se),
            "intercept": float(citl[0]), "intercept_se": float(np.sqrt(cov1[0, 0]))}


def jeffreys_interval(k, n, level: float = 0.95) -> tuple[float, float]:
    """Jeffreys interval of a proportion ``k / n`` (Brown, Cai & DasGupta 2001)."""
    if n <= 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k + 0.5, n - k + 0.5))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 0.5, n - k + 0.5))
    return lo, hi


def calibration_curve(y, p, bins: int = 10) -> pd.DataFrame:
    """Observed share against mean prediction in quantile bins of the prediction.

    Returns
    -------
    DataFrame
        One row per bin: ``predicted`` (mean), ``observed`` (share), ``n``, ``lower``,
        ``upper`` (Jeffreys interval of the observed share).
    """
    y = _labels(y).astype(float)
    p = np.asarray(p, dtype=float)
    bins = max(1, min(int(bins), p.size))
    order = np.argsort(p, kind="stable")
    rows = []
    for part in np.array_split(order, bins):
        if part.size == 0:
            continue
        k, n = int(y[part].sum()), int(part.size)
        lo, hi = jeffreys_interval(k, n)
        rows.append({"predicted": float(p[part].mean()), "observed": k / n, "n": n,
                     "lower": lo, "upper": hi})
    return pd.DataFrame(rows)


def signal_accuracy(signal, reference) -> dict[str, float]:
    """Sensitivity, specificity and predictive values of a 0/1 signal.

    Pairs where either is missing are left out.

    Returns
    -------
    dict
        ``n, tp, fp, fn, tn, sensitivity, specificity, ppv, npv`` and a ``_lower`` /
        ``_upper`` Jeffreys interval for each of the four rates.
    """
    s = pd.array(signal, dtype="boolean")
    r = pd.array(reference, dtype="boolean")
    keep = ~(s.isna() | r.isna())
    s = np.asarray(s[keep], dtype=bool)
    r = np.asarray(r[keep], dtype=bool)
    tp, fp = int((s & r).sum()), int((s & ~r).sum())
    fn, tn = int((~s & r).sum()), int((~s & ~r).sum())
    out: dict[str, float] = {"n": int(s.size), "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    for name, k, n in (("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp),
                       ("ppv", tp, tp + fp), ("npv", tn, tn + fn)):
        out[name] = k / n if n else float("nan")
        out[f"{name}_lower"], out[f"{name}_upper"] = jeffreys_interval(k, n)
    return out
