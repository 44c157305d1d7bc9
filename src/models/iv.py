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

from models.base import Estimate, Estimator, EstimatorError, LongFormatError, register
from models.clients import CACE_REQUIRED, client_table
from models.robust import robust_fit, t_summary

__all__ = ["IvCace", "PerProtocol"]

class _ClientLevel(Estimator):
    required = CACE_REQUIRED
    outcome_kinds = ("ors", "binary")
    defaults = {"cluster": "therapist"}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        self.cluster = self.options["cluster"]
        if self.cluster not in ("therapist", "unit"):
            raise EstimatorError(f"cluster must be 'therapist' or 'unit', got {self.cluster!r}")


@register
class IvCace(_ClientLevel):
    """CACE by two-stage least squares (offer instruments uptake), cluster-robust.

    ``extra``: ``wald`` (ITT_Y / ITT_D without covariates), ``itt``, ``uptake`` (ITT_D),
    ``dose_response`` and its ``dose_response_se`` (2SLS per unit of fidelity dose), and
    ``n_clusters``.
    """

    name = "iv_cace"
    estimand = "cace"

    def _fit(self, df, primary_month):
        t0 = time.perf_counter()
        ct = client_table(df, primary_month)
        g = ct[self.cluster].to_numpy()
        one = np.ones(len(ct))
        base = ct["baseline"].to_numpy(float)
        y, z, d = ct["y"].to_numpy(float), ct["z"].to_numpy(float), ct["d"].to_numpy(float)
        if z.min() == z.max():
            raise LongFormatError("iv_cace needs clients in both arms (exposure 0 and 1)")
        X = np.column_stack([one, base, d])
        Z = np.column_stack([one, base, z])
        beta, cov, dof = robust_fit(y, X, g, Z)
        res = t_summary(beta[2], math.sqrt(cov[2, 2]), dof, self.plan.alpha)
        itt_y = y[z == 1].mean() - y[z == 0].mean()
        itt_d = d[z == 1].mean() - d[z == 0].mean()
        extra = {"wald": float(itt_y / itt_d) if itt_d > 0 else float("nan"),
                 "itt": float(itt_y), "uptake": float(itt_d), "n_clusters": dof + 1,
                 "n_clients": len(ct), "cluster": self.cluster}
        fid = ct["fidelity"].to_numpy(float)
        if ((fid >= 0) | (d == 0)).all() and (fid[d == 1] >= 0).any():
            dose = d * np.clip(fid, 0, None) / 2.0
            if dose.std() > 0:
                bd, cd, _ = robust_fit(y, np.column_stack([one, base, dose]), g, Z)
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

    def _fit(self, df, primary_month):
        t0 = time.perf_counter()
        ct = client_table(df, primary_month)
        keep = (ct["z"] == 0) | (ct["d"] == 1)
        ct = ct[keep]
        d = ct["d"].to_numpy(float)
        if d.min() == d.max():
            raise LongFormatError("per_protocol needs takers of FIT and usual-care clients")
        X = np.column_stack([np.ones(len(ct)), ct["baseline"].to_numpy(float), d])
        beta, cov, dof = robust_fit(ct["y"].to_numpy(float), X, ct[self.cluster].to_numpy())
        res = t_summary(beta[2], math.sqrt(cov[2, 2]), dof, self.plan.alpha)
        diag = {"converged": True, "fit_seconds": time.perf_counter() - t0, "warnings": []}
        return Estimate(self.name, self.estimand,
                        extra={"n_clusters": dof + 1, "n_clients": len(ct)},
                        diagnostics=diag, **res)
