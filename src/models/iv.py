"""Fast frequentist cross-checks for compliance: IV/2SLS CACE and the naive per-protocol.

Both work on the client-level table at the primary month (:func:`client_table`): the
outcome there, the baseline score as a covariate, the offer ``Z`` (``exposure``) and the
uptake ``D``. Standard errors are cluster-robust (CR1 sandwich, ``G/(G-1) (N-1)/(N-K)``)
with clusters given by ``cluster="therapist"`` (default; usual-care clients without a
therapist are their own cluster) or ``cluster="unit"``; intervals and p-values use a t
distribution with ``G - 1`` degrees of freedom.

- ``iv_cace``: two-stage least squares of ``y`` on ``D`` instrumented by ``Z`` with the
  baseline as an exogenous covariate (Angrist, Imbens & Rubin 1996). Without covariates it
  equals the Wald ratio ``ITT_Y / ITT_D``, reported in ``extra["wald"]``. With an ordered
  fidelity dose ``D_f = uptake * fidelity / 2`` (0, 0.5, 1), the same 2SLS gives the
  weighted average causal response per unit of dose (Angrist & Imbens 1995),
  ``extra["dose_response"]``.
- ``per_protocol``: OLS of ``y`` on ``D`` among FIT clients who took FIT up and all
  usual-care clients, adjusted for baseline. It compares compliers with a mix of compliers
  and never-takers, so it is biased whenever compliers differ (``compliance.complier_shift``).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from models.base import Estimate, Estimator, LongFormatError, register

__all__ = ["client_table", "cluster_2sls", "IvCace", "PerProtocol"]

CACE_REQUIRED = ("unit", "therapist", "client", "arm", "exposure", "month", "outcome",
                 "uptake")


def client_table(df: pd.DataFrame, primary_month: float) -> pd.DataFrame:
    """One row per client with an observed outcome at the primary month.

    Columns: ``client, unit, therapist, z`` (offer: ``exposure``), ``d`` (uptake),
    ``fidelity`` (-1 when unknown), ``baseline`` (the ``baseline`` column, else the month-0
    outcome; clients with neither are dropped), ``y``.
    """
    first = df.sort_values("month").groupby("client", sort=True).first()
    if "baseline" in df.columns:
        base = df.groupby("client")["baseline"].first()
    else:
        m0 = df[df["month"] == 0].set_index("client")["outcome"]
        base = m0[~m0.index.duplicated()]
    prim = df[df["month"] == float(primary_month)].drop_duplicates("client")
    if prim.empty:
        raise LongFormatError(f"no observed outcome at the primary month {primary_month:g}")
    prim = prim.set_index("client")
    out = pd.DataFrame({
        "unit": first["unit"],
        "therapist": first["therapist"],
        "z": first["exposure"].astype(int),
        "d": first["uptake"].astype(int) if "uptake" in first else first["exposure"] * 0,
        "fidelity": first["fidelity"].astype(int) if "fidelity" in first else -1,
        "baseline": base.reindex(first.index),
    }).loc[prim.index.intersection(first.index)]
    out["y"] = prim["outcome"].astype(float)
    out = out[out["baseline"].notna()].reset_index()
    if (out["d"] > out["z"]).any():
        raise LongFormatError("uptake is 1 for a client not offered FIT; one-sided "
                              "noncompliance needs uptake <= exposure")
    return out


def cluster_ids(ct: pd.DataFrame, cluster: str) -> np.ndarray:
    """Cluster of each client; a therapist of -1 makes the client its own cluster."""
    if cluster not in ("therapist", "unit"):
        raise ValueError(f"cluster must be 'therapist' or 'unit', got {cluster!r}")
    g = ct[cluster].to_numpy().astype(np.int64)
    none = g == -1
    g = g.copy()
    g[none] = g.max(initial=0) + 1 + np.arange(none.sum())
    return g


def cluster_2sls(y, X, Z, groups):
    """Just-identified IV (or OLS when ``Z is X``) with a CR1 cluster-robust covariance.

    Returns ``(beta, cov, n_clusters)``.
    """
    y = np.asarray(y, float)
    X = np.asarray(X, float)
    Z = np.asarray(Z, float)
    zx = Z.T @ X
    beta = np.linalg.solve(zx, Z.T @ y)
    u = y - X @ beta
    _, inv = np.unique(groups, return_inverse=True)
    G = int(inv.max()) + 1
    scores = np.zeros((G, Z.shape[1]))
    np.add.at(scores, inv, Z * u[:, None])
    meat = scores.T @ scores
    bread = np.linalg.inv(zx)
    n, k = X.shape
    c = G / max(G - 1, 1) * (n - 1) / max(n - k, 1)
    cov = c * bread @ meat @ bread.T
    return beta, cov, G


def _t_summary(est: float, se: float, G: int) -> dict[str, float]:
    from scipy import stats

    df = max(G - 1, 1)
    q = stats.t.ppf(0.975, df)
    p = 2 * stats.t.sf(abs(est / se), df) if se > 0 else float("nan")
    return {"estimate": float(est), "se": float(se), "lower": float(est - q * se),
            "upper": float(est + q * se), "p_value": float(p)}


class _ClientLevel(Estimator):
    required = CACE_REQUIRED
    outcome_kinds = ("ors", "binary")

    def __init__(self, scenario=None, columns=None, **options):
        super().__init__(scenario, columns, **options)
        self.cluster = self.options.pop("cluster", "therapist")
        if self.cluster not in ("therapist", "unit"):
            raise ValueError(f"cluster must be 'therapist' or 'unit', got {self.cluster!r}")
        if self.options:
            raise TypeError(f"unknown option(s) for {self.name}: {sorted(self.options)}")


@register
class IvCace(_ClientLevel):
    """CACE by two-stage least squares (offer instruments uptake), cluster-robust.

    ``extra``: ``wald`` (ITT_Y / ITT_D without covariates), ``itt``, ``uptake`` (ITT_D),
    ``dose_response`` and its ``dose_response_se`` (2SLS per unit of fidelity dose), and
    ``n_clusters``.
    """

    name = "iv_cace"
    estimand = "cace"

    def _fit(self, df):
        t0 = time.perf_counter()
        ct = client_table(df, self.primary_month)
        g = cluster_ids(ct, self.cluster)
        one = np.ones(len(ct))
        base = ct["baseline"].to_numpy(float)
        y, z, d = ct["y"].to_numpy(float), ct["z"].to_numpy(float), ct["d"].to_numpy(float)
        if z.min() == z.max():
            raise LongFormatError("iv_cace needs clients in both arms (exposure 0 and 1)")
        X = np.column_stack([one, base, d])
        Z = np.column_stack([one, base, z])
        beta, cov, G = cluster_2sls(y, X, Z, g)
        res = _t_summary(beta[2], math.sqrt(cov[2, 2]), G)
        itt_y = y[z == 1].mean() - y[z == 0].mean()
        itt_d = d[z == 1].mean() - d[z == 0].mean()
        extra = {"wald": float(itt_y / itt_d) if itt_d > 0 else float("nan"),
                 "itt": float(itt_y), "uptake": float(itt_d), "n_clusters": G,
                 "n_clients": len(ct), "cluster": self.cluster}
        fid = ct["fidelity"].to_numpy(float)
        if ((fid >= 0) | (d == 0)).all() and (fid[d == 1] >= 0).any():
            dose = d * np.clip(fid, 0, None) / 2.0
            if dose.std() > 0:
                bd, cd, _ = cluster_2sls(y, np.column_stack([one, base, dose]), Z, g)
                extra["dose_response"] = float(bd[2])
                extra["dose_response_se"] = float(math.sqrt(cd[2, 2]))
        warnings = [] if itt_d >= 0.1 else [f"weak instrument: uptake difference {itt_d:.3f}"]
        diag = {"converged": not warnings, "fit_seconds": time.perf_counter() - t0,
                "warnings": warnings}
        return Estimate(self.name, self.estimand, extra=extra, diagnostics=diag, **res)


@register
class PerProtocol(_ClientLevel):
    """Naive per-protocol: FIT clients who took it up vs all usual-care clients.

    Biased for the CACE whenever compliers differ from never-takers; shown as a warning
    example, not as an analysis to use.
    """

    name = "per_protocol"
    estimand = "cace"

    def _fit(self, df):
        t0 = time.perf_counter()
        ct = client_table(df, self.primary_month)
        keep = (ct["z"] == 0) | (ct["d"] == 1)
        ct = ct[keep]
        d = ct["d"].to_numpy(float)
        if d.min() == d.max():
            raise LongFormatError("per_protocol needs takers of FIT and usual-care clients")
        X = np.column_stack([np.ones(len(ct)), ct["baseline"].to_numpy(float), d])
        beta, cov, G = cluster_2sls(ct["y"].to_numpy(float), X, X, cluster_ids(ct, self.cluster))
        res = _t_summary(beta[2], math.sqrt(cov[2, 2]), G)
        diag = {"converged": True, "fit_seconds": time.perf_counter() - t0, "warnings": []}
        return Estimate(self.name, self.estimand, extra={"n_clusters": G, "n_clients": len(ct)},
                        diagnostics=diag, **res)
