"""Diagnosands: named, documented functions of the replicate table, each with its MCSE.

Following DeclareDesign, a diagnosand summarises the replicates of one design and one
estimator. Each function here takes the rows of one (role, estimator) group and returns
``(value, mcse, n)``; the Monte Carlo standard errors follow Morris, White & Crowther (2019,
Stat Med 38:2074, table 6).

Failed fits (``error`` set) are never dropped: they count in ``failed``, they count as
non-rejections in ``power``/``type_i_error`` (a trial whose analysis fails shows no
effect), and the other diagnosands use the fits that returned an estimate (``n`` says how
many). Fits that returned but did not converge are kept and counted in ``not_converged``.

Bias and coverage are measured against each replicate's own sample estimand
(``truth``: ``trial.truth[estimate.estimand]``), DeclareDesign style; ``mean_truth`` reports
its average.

Bayesian decisions: ``bayes_power`` is the share of replicates whose posterior
P(effect > 0 | data) (``p_positive``) exceeds the row's ``decision_threshold`` (the
scenario's ``analysis.decision_threshold``); ``width_below_target`` the share whose 95%
interval is narrower than the row's ``target_width``. Both count failed fits as "no"
(like ``power``) and are left out where they do not apply (no ``p_positive``: a
frequentist fit; no target). ``interval_width`` is the expected 95% (credible) interval
width.

Roles: on the null role ``power`` and ``bayes_power`` are reported as ``type_i_error``
and ``bayes_type_i_error``; on the assurance role (effects drawn from the design prior,
:mod:`fitlab.replicates`) as ``assurance`` and ``bayes_assurance``.

Examples
--------
>>> import pandas as pd
>>> t = pd.DataFrame({"role": "effect", "estimator": "m", "estimand": "itt",
...                   "estimate": [1.0, 3.0], "truth": [2.0, 2.0], "lower": [0.0, 2.5],
...                   "upper": [2.5, 4.0], "significant": [False, True],
...                   "converged": True, "error": None})
>>> d = diagnose(t).set_index("diagnosand")
>>> float(d.loc["coverage", "value"]), float(d.loc["rmse", "value"])
(0.5, 1.0)
>>> suggest_reps(0.01, proportion=0.8)
1600
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from fitlab.errors import UsageError

__all__ = ["DIAGNOSANDS", "ROLE_NAMES", "diagnose", "wide", "suggest_reps",
           "read_diagnosands"]

Result = tuple[float, float, int]


def _errors(t: pd.DataFrame) -> pd.Series:
    """Rows whose simulation or fit raised (``error`` set)."""
    return t["error"].notna() if "error" in t.columns else pd.Series(False, index=t.index)


def _ok(t: pd.DataFrame) -> pd.DataFrame:
    return t[~_errors(t) & t["estimate"].notna()]


def _share(x: np.ndarray) -> Result:
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    p = float(np.mean(x))
    return p, math.sqrt(p * (1 - p) / n), n


def _mean(x: np.ndarray) -> Result:
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan, n


def power(t: pd.DataFrame) -> Result:
    """Share of replicates whose analysis rejects no effect (failed fits: no rejection).

    MCSE ``sqrt(p (1 - p) / n)``. On the null scenario this is the type I error.
    """
    return _share(t["significant"].fillna(False).astype(bool).to_numpy())


def bayes_power(t: pd.DataFrame) -> Result | None:
    """Share of replicates with P(effect > 0 | data) above ``decision_threshold``.

    Failed fits count as no decision; MCSE ``sqrt(p (1 - p) / n)``. None (not reported)
    when no fit has a ``p_positive`` (frequentist estimators). On the null role this is
    the Bayesian rule's type I error, on the assurance role its assurance.
    """
    if "p_positive" not in t.columns or "decision_threshold" not in t.columns:
        return None
    pp = pd.to_numeric(t["p_positive"], errors="coerce").to_numpy(dtype=float)
    ok = ~_errors(t).to_numpy()
    if not np.isfinite(pp[ok]).any():
        return None
    thr = pd.to_numeric(t["decision_threshold"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        return _share(ok & (pp > thr))


def width_below_target(t: pd.DataFrame) -> Result | None:
    """Share of replicates whose 95% interval is narrower than ``target_width``.

    Failed fits count as not reaching it; MCSE ``sqrt(p (1 - p) / n)``. None (not
    reported) without a target.
    """
    if "target_width" not in t.columns:
        return None
    target = pd.to_numeric(t["target_width"], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(target).any():
        return None
    width = (t["upper"] - t["lower"]).to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        return _share(~_errors(t).to_numpy() & (width < target))


def bias(t: pd.DataFrame) -> Result:
    """Mean of ``estimate - truth``; MCSE ``sd(estimate - truth) / sqrt(n)``."""
    ok = _ok(t)
    return _mean((ok["estimate"] - ok["truth"]).to_numpy(dtype=float))


def relative_bias(t: pd.DataFrame) -> Result:
    """``mean(estimate - truth) / mean(truth)``, with a delta-method MCSE for the ratio.

    With ``a = estimate - truth`` and ``b = truth``, ``R = mean(a) / mean(b)`` and
    ``Var(R) ~ (var(a) - 2 R cov(a, b) + R^2 var(b)) / (n mean(b)^2)``. NaN when the
    mean truth is 0 (the null scenario).
    """
    ok = _ok(t)
    a = (ok["estimate"] - ok["truth"]).to_numpy(dtype=float)
    b = ok["truth"].to_numpy(dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = len(a)
    if n < 2 or abs(b.mean()) < 1e-12:
        return math.nan, math.nan, n
    r = a.mean() / b.mean()
    c = np.cov(a, b, ddof=1)
    var = (c[0, 0] - 2 * r * c[0, 1] + r * r * c[1, 1]) / (n * b.mean() ** 2)
    return float(r), float(math.sqrt(max(var, 0.0))), n


def rmse(t: pd.DataFrame) -> Result:
    """Root mean squared error; MCSE by the delta method, ``sd(err^2) / (2 sqrt(n) RMSE)``."""
    ok = _ok(t)
    e2 = ((ok["estimate"] - ok["truth"]) ** 2).to_numpy(dtype=float)
    e2 = e2[np.isfinite(e2)]
    n = len(e2)
    if n == 0:
        return math.nan, math.nan, 0
    r = math.sqrt(e2.mean())
    se = e2.std(ddof=1) / math.sqrt(n) / (2 * r) if n > 1 and r > 0 else math.nan
    return r, float(se), n


def coverage(t: pd.DataFrame) -> Result:
    """Share of intervals holding the replicate's truth; MCSE ``sqrt(c (1 - c) / n)``."""
    ok = _ok(t)
    ok = ok[ok["truth"].notna()]
    return _share(((ok["lower"] <= ok["truth"]) & (ok["truth"] <= ok["upper"])).to_numpy())


def interval_width(t: pd.DataFrame) -> Result:
    """Mean width of the 95% interval; MCSE ``sd(width) / sqrt(n)``."""
    ok = _ok(t)
    return _mean((ok["upper"] - ok["lower"]).to_numpy(dtype=float))


def mean_estimate(t: pd.DataFrame) -> Result:
    """Mean estimate; MCSE ``sd(estimate) / sqrt(n)``."""
    return _mean(_ok(t)["estimate"].to_numpy(dtype=float))


def empirical_se(t: pd.DataFrame) -> Result:
    """SD of the estimates over replicates; MCSE ``emp_se / sqrt(2 (n - 1))``."""
    x = _ok(t)["estimate"].to_numpy(dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 2:
        return math.nan, math.nan, n
    s = float(x.std(ddof=1))
    return s, s / math.sqrt(2 * (n - 1)), n


def mean_truth(t: pd.DataFrame) -> Result:
    """Mean of the replicates' sample estimands; MCSE ``sd(truth) / sqrt(n)``."""
    return _mean(t["truth"].to_numpy(dtype=float))


def failed(t: pd.DataFrame) -> Result:
    """Share of fits that raised (or whose simulation raised); binomial MCSE."""
    return _share(_errors(t).to_numpy())


def not_converged(t: pd.DataFrame) -> Result:
    """Share of fits that returned but did not converge (of all fits); binomial MCSE."""
    conv = t["converged"].fillna(False).astype(bool) if "converged" in t.columns else True
    return _share((~_errors(t) & ~conv).to_numpy())


#: Name -> function of one (role, estimator) group returning (value, mcse, n), or None
#: where the diagnosand does not apply (then it is not reported).
DIAGNOSANDS: dict[str, Callable[[pd.DataFrame], Result]] = {
    "power": power,
    "bayes_power": bayes_power,
    "width_below_target": width_below_target,
    "bias": bias,
    "relative_bias": relative_bias,
    "rmse": rmse,
    "coverage": coverage,
    "interval_width": interval_width,
    "mean_estimate": mean_estimate,
    "empirical_se": empirical_se,
    "mean_truth": mean_truth,
    "failed": failed,
    "not_converged": not_converged,
}


#: How a diagnosand is reported on a role other than "effect".
ROLE_NAMES: dict[str, dict[str, str]] = {
    "null": {"power": "type_i_error", "bayes_power": "bayes_type_i_error"},
    "assurance": {"power": "assurance", "bayes_power": "bayes_assurance"},
}


def diagnose(table: pd.DataFrame, diagnosands: dict | None = None, *,
             decision_threshold: float | None = None,
             target_width: float | None = None) -> pd.DataFrame:
    """Every diagnosand for every (role, estimator) in a replicate table.

    Parameters
    ----------
    table : DataFrame
        Replicate rows (``role``, ``estimator``, ``estimate``, ``truth``, ``lower``,
        ``upper``, ``significant``, ``converged``, ``error``; for the Bayesian decision
        diagnosands ``p_positive``, ``decision_threshold``, ``target_width``).
    diagnosands : dict, optional
        Name -> function; default :data:`DIAGNOSANDS`.
    decision_threshold, target_width : float, optional
        Replace the rows' own (the scenario's) threshold or target width, e.g. to see
        the operating characteristics of another decision rule on the same fits.

    Returns
    -------
    DataFrame
        Long table: ``role, estimator, estimand, diagnosand, value, mcse, n, reps``.
        Diagnosands are renamed on the null and assurance roles (:data:`ROLE_NAMES`).
    """
    funcs = diagnosands or DIAGNOSANDS
    cols = ["role", "estimator", "estimand", "diagnosand", "value", "mcse", "n", "reps"]
    if table is None or len(table) == 0:
        return pd.DataFrame(columns=cols)
    if "role" not in table.columns:
        table = table.assign(role="effect")
    if decision_threshold is not None:
        table = table.assign(decision_threshold=float(decision_threshold))
    if target_width is not None:
        table = table.assign(target_width=float(target_width))
    out = []
    for (role, name), t in table.groupby(["role", "estimator"], sort=True):
        est = t["estimand"].dropna() if "estimand" in t.columns else pd.Series([], dtype=object)
        estimand = str(est.iloc[0]) if len(est) else None
        for dname, f in funcs.items():
            res = f(t)
            if res is None:  # does not apply to this estimator or scenario
                continue
            value, mcse, n = res
            dname = ROLE_NAMES.get(role, {}).get(dname, dname)
            out.append((role, name, estimand, dname, value, mcse, n, len(t)))
    return pd.DataFrame(out, columns=cols)


def read_diagnosands(path) -> pd.DataFrame:
    """Read a ``diagnosands.csv`` (keeping the role ``"null"``, which pandas reads as NaN)."""
    from fitlab.store import read_file

    return read_file(path, lambda p: pd.read_csv(p, keep_default_na=False, na_values=[""]))


def wide(diag: pd.DataFrame) -> pd.DataFrame:
    """One row per estimator: ``<diagnosand>`` and ``<diagnosand>_mcse`` columns.

    Effect-role diagnosands keep their names; of the null and assurance roles only the
    renamed decision rates (``type_i_error``, ``bayes_type_i_error``, ``assurance``,
    ``bayes_assurance``, their MCSEs, ``null_reps`` and ``assurance_reps``) are kept.
    """
    if diag is None or len(diag) == 0:
        return pd.DataFrame(columns=["estimator"])
    rows: dict[str, dict] = {}
    for r in diag.itertuples(index=False):
        row = rows.setdefault(r.estimator, {"estimator": r.estimator})
        if r.role in ROLE_NAMES:
            if r.diagnosand not in ROLE_NAMES[r.role].values():
                continue
            row[f"{r.role}_reps"] = r.reps
        else:
            row["estimand"] = r.estimand
            row["reps"] = r.reps
        row[r.diagnosand] = r.value
        row[f"{r.diagnosand}_mcse"] = r.mcse
    return pd.DataFrame(list(rows.values()))


def suggest_reps(
    target_mcse: float, *, proportion: float | None = None, sd: float | None = None
) -> int:
    """Replicates needed for a target Monte Carlo standard error.

    Parameters
    ----------
    target_mcse : float
        The MCSE wanted, on the diagnosand's scale (e.g. 0.01 for power to +-1 point).
    proportion : float, optional
        Expected power, type I error or coverage: ``n = p (1 - p) / mcse^2``. With neither
        argument the worst case ``p = 0.5`` is used.
    sd : float, optional
        SD of the estimates (the empirical SE) for bias: ``n = sd^2 / mcse^2``.

    Returns
    -------
    int

    Raises
    ------
    UsageError
        For a non-positive target, a proportion outside [0, 1], or both options.

    Examples
    --------
    >>> suggest_reps(0.01)        # power to +-1 point whatever it is
    2500
    >>> suggest_reps(0.1, sd=2.0)  # bias to +-0.1 ORS points when the empirical SE is 2
    400
    """
    if not target_mcse > 0:
        raise UsageError(f"target_mcse must be positive, got {target_mcse!r}")
    if proportion is not None and sd is not None:
        raise UsageError("give proportion or sd, not both")
    if sd is not None:
        var = float(sd) ** 2
    else:
        p = 0.5 if proportion is None else float(proportion)
        if not 0 <= p <= 1:
            raise UsageError(f"proportion must be in [0, 1], got {p}")
        var = p * (1 - p)
    return max(1, math.ceil(var / target_mcse**2 - 1e-9))
