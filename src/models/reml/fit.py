"""Fitting the nested Gaussian mixed model by REML or ML (:func:`fit_nested_lmm`).

The deviance and its gradient come from :class:`models.reml.engine._NestedLMM`; this module
optimizes them from a fixed starting point (so the fit depends on the data alone) and
assembles the :class:`MixedFit`.

Degrees of freedom for the Wald test (documented choice, ``df="between_within"``): the
number of groups at the lowest level (unit, therapist, client) at which the tested column
is constant, minus the number of fixed effects. A column that varies within clients (such
as ``arm:time``) counts as client level when a client random slope is fitted, because its
estimate is then a between-client comparison of slopes; otherwise it uses ``n - p``.
``df="normal"`` gives Wald z tests.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> unit = np.repeat(np.arange(6), 20); client = np.arange(120)
>>> therapist = unit * 2 + np.arange(120) % 2
>>> X = np.column_stack([np.ones(120), therapist % 2])
>>> y = X @ [1.0, 0.5] + rng.normal(size=6)[unit] + rng.normal(size=120)
>>> fit = fit_nested_lmm(y, X, unit, therapist, client)
>>> fit.beta.shape
(2,)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from models.reml.engine import _NestedLMM

__all__ = ["MixedFit", "fit_nested_lmm"]


@dataclass
class MixedFit:
    """Result of :func:`fit_nested_lmm`.

    Attributes
    ----------
    beta : ndarray
        Fixed effects (GLS at the optimum).
    cov_beta : ndarray
        ``sigma^2 (X' H^-1 X)^-1``.
    names : list of str
        Names of the fixed effects.
    sigma2 : float
        Residual variance.
    variances : dict
        ``var_unit``, ``var_therapist``, ``var_unit_period``, ``var_client``,
        ``var_slope``, ``cov_client_slope``, ``var_resid`` (absent components are 0).
    llf : float
        Maximized (restricted) log-likelihood, with the same constants as statsmodels.
    method : str
        ``"reml"`` or ``"ml"``.
    converged : bool
        The optimizer reported success.
    boundary : list of str
        Variance components estimated at (numerically) zero.
    n_eval : int
        Likelihood evaluations used.
    df : dict
        Between-within degrees of freedom per fixed effect.
    """

    beta: np.ndarray
    cov_beta: np.ndarray
    names: list[str]
    sigma2: float
    variances: dict[str, float]
    llf: float
    method: str
    converged: bool
    boundary: list[str] = field(default_factory=list)
    n_eval: int = 0
    theta: np.ndarray | None = None
    df: dict[str, float] = field(default_factory=dict)

    def se(self, name: str) -> float:
        """Standard error of the fixed effect ``name``."""
        i = self.names.index(name)
        return float(math.sqrt(max(self.cov_beta[i, i], 0.0)))

    def coef(self, name: str) -> float:
        """The fixed effect ``name``."""
        return float(self.beta[self.names.index(name)])


def fit_nested_lmm(y, X, unit, therapist, client, z_slope=None, *, method="reml",
                   client_re=None, client_cov="unstructured", period=None,
                   unit_period=False, names=None, start=None, tol=1e-10, engine=None):
    """Fit the nested linear mixed model by REML or ML.

    Parameters
    ----------
    y : array (n,)
        Outcome (observed rows only).
    X : array (n, p)
        Fixed-effect design, full column rank.
    unit, therapist, client : int arrays (n,)
        Groupings; ``therapist == -1`` means the client has no therapist effect.
    z_slope : array (n,), optional
        Covariate of the client random slope (``time``).
    method : {"reml", "ml"}
    client_re : {0, 1, 2}, optional
        Client random effects: none, intercept, intercept and slope. Default: 2 when
        ``z_slope`` is given, else 1.
    client_cov : {"unstructured", "diagonal"}
        Correlated client intercept and slope, or independent (statsmodels' variance
        components can only express the latter).
    period : int array (n,), optional
        Calendar period, for the unit x period random intercept.
    unit_period : bool
        Add a unit x period random intercept (stepped wedge, Hooper et al. 2016).
    names : list of str, optional
        Fixed-effect names.
    start : array or dict, optional
        Starting relative parameters (standard deviations relative to sigma, client
        Cholesky elements), as an array or a dict by name (``_NestedLMM.par_names``).
        Default: 0.5 for every relative SD and 0 for the client intercept-slope
        Cholesky term, a fixed point, so the fit depends on the data alone.
    tol : float
        L-BFGS-B ``ftol``.
    engine : {None, "numba", "numpy"}
        How the deviance and gradient are evaluated: the numba kernels
        (:mod:`models.reml.kernels`, compiled on the first fit and cached on disk) or the
        numpy sweeps (the reference). Both give the same fit to rounding. ``None``: numba
        when it imports, else numpy.

    Returns
    -------
    MixedFit
    """
    if method not in ("reml", "ml"):
        raise ValueError(f"method must be 'reml' or 'ml', got {method!r}")
    if client_cov not in ("unstructured", "diagonal"):
        raise ValueError(f"client_cov must be 'unstructured' or 'diagonal', got {client_cov!r}")
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be (n, p) with n = len(y) = {len(y)}, got {X.shape}")
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(X)):
        raise ValueError("y and X must be finite (drop unobserved rows first)")
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError("X is not of full column rank; drop collinear fixed effects")
    if client_re is None:
        client_re = 2 if z_slope is not None else 1
    if client_re not in (0, 1, 2):
        raise ValueError(f"client_re must be 0, 1 or 2, got {client_re!r}")
    if client_re == 2 and z_slope is None:
        raise ValueError("client_re=2 (random slope) needs z_slope")
    z = np.zeros_like(y) if z_slope is None else np.asarray(z_slope, dtype=float)
    unit = np.asarray(unit)
    therapist = np.asarray(therapist)
    client = np.asarray(client)
    per = None if period is None else np.asarray(period)
    if unit_period and per is None:
        raise ValueError("unit_period=True needs period")
    mdl = _NestedLMM(y, X, unit, therapist, client, z, client_re, unit_period, per,
                     client_cov, engine=engine)
    names = list(names) if names is not None else [f"x{i}" for i in range(X.shape[1])]
    theta0 = np.array([0.0 if nm == "l21" else 0.5 for nm in mdl.par_names])
    if isinstance(start, dict):
        theta0 = np.array([start.get(nm, v) for nm, v in zip(mdl.par_names, theta0)])
    elif start is not None:
        theta0 = np.asarray(start, float)

    res = _lbfgs(mdl, theta0, method, tol)
    theta = res.x
    dev, (beta, XtX, sigma2) = mdl.profile(theta, method)
    cov = sigma2 * np.linalg.inv(XtX)
    L, s_t, s_u, s_p = mdl._unpack(theta)
    var = {"var_unit": sigma2 * s_u**2, "var_therapist": sigma2 * s_t**2,
           "var_unit_period": sigma2 * s_p**2, "var_client": 0.0, "var_slope": 0.0,
           "cov_client_slope": 0.0, "var_resid": sigma2}
    if L is not None:
        Gm = sigma2 * (L @ L.T)
        var["var_client"] = float(Gm[0, 0])
        if Gm.shape[0] == 2:
            var["var_slope"] = float(Gm[1, 1])
            var["cov_client_slope"] = float(Gm[0, 1])
    var = {k: float(v) for k, v in var.items()}
    present = {"var_unit": True, "var_therapist": mdl.has_therapist,
               "var_unit_period": mdl.unit_period, "var_client": client_re >= 1,
               "var_slope": client_re == 2}
    boundary = [k for k, on in present.items() if on and var[k] < 1e-6 * sigma2]
    df = _between_within_df(X, names, mdl, client_re)
    return MixedFit(beta=beta, cov_beta=cov, names=names, sigma2=float(sigma2),
                    variances=var, llf=-0.5 * float(dev), method=method,
                    converged=bool(res.success), boundary=boundary,
                    n_eval=mdl.n_eval, theta=theta, df=df)


def _lbfgs(mdl, theta0, method, tol):
    """L-BFGS-B on the profiled deviance with its analytic gradient."""

    def obj(th):
        out = mdl.profile(th, method, grad=True)
        if not np.isfinite(out[0]):
            # a trial point so far out that the sweeps lose precision: a large value
            # with a zero gradient makes the line search back off
            return 1e30, np.zeros_like(th)
        return out[0], out[2]

    # relative SDs beyond 30 (variance ratio 900) are never plausible; the bounds also
    # keep the first line search away from overflow
    return optimize.minimize(obj, theta0, jac=True, method="L-BFGS-B",
                             bounds=[(-30.0, 30.0)] * len(theta0),
                             options={"ftol": tol, "gtol": 1e-7, "maxiter": 500})


def _between_within_df(X, names, mdl, client_re):
    """Between-within df per fixed effect (see the module docstring).

    Units and clients are contiguous runs of the sorted rows, so the within-group range
    of every column is one ``reduceat`` per level.
    """
    Xs, n, p = mdl.X_sorted, mdl.n, mdl.p
    levels = []
    for starts, ng in ((mdl.u_rstart, mdl.U), (mdl.c_start, mdl.C)):
        lo = np.minimum.reduceat(Xs, starts, axis=0)
        hi = np.maximum.reduceat(Xs, starts, axis=0)
        levels.append((lo, hi, ng))
    # np.allclose's test (rtol 1e-5, atol 1e-8) for all columns at once
    const = [((np.abs(lo - hi) <= 1e-8 + 1e-5 * np.abs(hi)).all(axis=0), ng)
             for lo, hi, ng in levels]
    out = {}
    for j, nm in enumerate(names):
        g_n = None
        for ok, ng in const:
            if ok[j]:
                g_n = ng
                break
        if g_n is None:
            g_n = mdl.C if client_re == 2 else n
        out[nm] = float(max(g_n - p, 1))
    return out
