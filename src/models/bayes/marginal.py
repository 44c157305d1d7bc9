"""Fast Bayesian growth model with every random effect integrated out analytically.

The model is the Gaussian three-level growth model of the FIT trial (docs/MODEL.md)::

    y_ij = b0 + b1 t_ij + b2 arm_i + b3 arm_i t_ij            (fixed effects)
           + u_unit + v_therapist + a_i + c_i t_ij + e_ij      (random effects)

with ``t`` the plan's model time (0 at baseline, 1 at the primary month), so
``b3`` is the FIT - usual care difference at the primary month: the ITT estimand.
Random effects: ``u ~ N(0, sd_unit^2)`` per unit, ``v ~ N(0, sd_therapist^2)`` per therapist
(absent for a client with ``therapist == -1``: the partially nested design),
``(a_i, c_i) ~ N(0, G)`` per client with a *correlated* 2x2 covariance
``G = [[sd_int^2, rho sd_int sd_slope], [., sd_slope^2]]`` (correlated because early change
and intake level are related in the data, and a 2x2 correlation costs nothing here), and
``e ~ N(0, sigma^2)``.

Why marginalize
---------------
Sampling the ~350 random effects of a default trial is what makes the non-centred model slow.
Because everything is Gaussian, the random effects can be integrated out: ``y ~ N(X b, V)`` with
``V`` block diagonal by unit. A dense Cholesky of each unit block per gradient is *slower* than
the non-centred model (about 30 s per fit measured), so :func:`marginal_loglik` exploits the
nesting instead:

1. client level: ``C_i = sigma^2 I + Z_i G Z_i'`` (``Z_i = [1, t]``) is handled by a 2x2
   Woodbury update; with ``G = L L'`` only ``M_i = I + L' Z_i'Z_i L / sigma^2`` is inverted,
   in closed form, which stays stable when a standard deviation goes to zero;
2. therapist level: a rank-one (intercept) update by Sherman-Morrison and the matrix
   determinant lemma on the three reduced client quantities ``1'C^-1 1``, ``1'C^-1 r`` and
   ``r'C^-1 r``, summed over the therapist's clients;
3. unit level: the same rank-one update on the summed therapist quantities.

Because the fixed effects vary only by arm within a client, the residual sums a client needs
are quadratics in ``b`` of seven per-client sufficient statistics (``n``, ``sum t``,
``sum t^2``, ``sum y``, ``sum t y``, ``sum y^2``, ``arm``), computed once per data set in
numpy. Each gradient is then O(clients) elementwise work plus two segment sums (client to
therapist slot, slot to unit) with index arrays: no matrix is ever formed.

Re-use across replicates
------------------------
The PyMC model is built and compiled by nutpie once per estimator (on the first data set)
and every data set is swapped in with
``CompiledPyMCModel.with_data``. nutpie reads the shape of each data array at every call (only
the rank is fixed), so data sets of different sizes need neither padding nor a rebuild. Padding
would also be exact: a client with no observations (all statistics zero) and an empty
therapist or unit slot contribute exactly zero to the log-likelihood (tested), so a fixed
capacity with zero rows is a valid fallback for backends that freeze shapes.

Priors (on the standardized outcome ``(y - mean) / sd``; weakly informative)
---------------------------------------------------------------------------
- fixed effects ``b ~ Normal(0, 2.5)``: effects up to a few outcome SDs are plausible, far
  wider than any FIT effect (d about 0.15);
- ``sigma, sd_int, sd_slope ~ HalfNormal(1)``: at most about the total SD;
- ``sd_unit, sd_therapist ~ HalfNormal(0.5)``: unit and therapist shares are 0-10% of
  variance (Firth 2019, Johns 2019), i.e. SDs of about 0.1-0.3; 0.5 keeps them weakly
  informative while keeping mass off implausibly large values with only ~12 units;
- ``(rho + 1) / 2 ~ Beta(2, 2)``: the LKJ(2) prior for a 2x2 correlation.

Examples
--------
>>> from models import get_estimator                       # doctest: +SKIP
>>> est = get_estimator("bayes_marginal", scenario)         # doctest: +SKIP
>>> est.fit(trial.data).estimate                            # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.base import register
from models.bayes.base import BayesEstimator, post

__all__ = [
    "BayesMarginal",
    "MarginalData",
    "marginal_data",
    "marginal_loglik",
    "dense_loglik",
]

#: Names of the data arrays handed to the model (and swapped by ``with_data``).
DATA_NAMES = ("n", "t1", "t2", "y1", "ty", "yy", "arm", "slot", "slot_real", "slot_unit")


@dataclass
class MarginalData:
    """Per-client sufficient statistics and the nesting, as flat numpy arrays.

    Attributes
    ----------
    n, t1, t2 : ndarray of float, shape (clients,)
        Observations per client, sum of ``t`` and sum of ``t^2``.
    y1, ty, yy : ndarray of float, shape (clients,)
        Sum of ``y``, of ``t y`` and of ``y^2`` (``y`` standardized).
    arm : ndarray of float, shape (clients,)
        Randomized arm (0/1).
    slot : ndarray of int, shape (clients,)
        Therapist slot of each client. Clients without a therapist share one pseudo-slot
        per unit, which has ``slot_real == 0``.
    slot_real : ndarray of float, shape (slots,)
        1 for a real therapist, 0 for a unit's no-therapist pseudo-slot (no therapist effect).
    slot_unit : ndarray of int, shape (slots,)
        Unit of each slot.
    y_mean, y_sd : float
        Standardization of the outcome; the estimand is ``b3 * y_sd``.
    n_obs : int
        Number of observations.
    """

    n: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    y1: np.ndarray
    ty: np.ndarray
    yy: np.ndarray
    arm: np.ndarray
    slot: np.ndarray
    slot_real: np.ndarray
    slot_unit: np.ndarray
    y_mean: float = 0.0
    y_sd: float = 1.0
    n_obs: int = 0

    def arrays(self) -> dict[str, np.ndarray]:
        """The model's data arrays by name (see :data:`DATA_NAMES`)."""
        return {k: getattr(self, k) for k in DATA_NAMES}

    @property
    def n_units(self) -> int:
        return int(self.slot_unit.max()) + 1


def marginal_data(df: pd.DataFrame, standardize: bool = True) -> MarginalData:
    """Reduce a long table (observed rows) to :class:`MarginalData`.

    Parameters
    ----------
    df : DataFrame
        Columns ``unit``, ``therapist``, ``client``, ``arm``, ``time``, ``outcome``;
        observed rows only, with the plan's model ``time`` (as :meth:`Estimator.prepare`
        returns them). Clients may have any number of occasions; therapists and units any
        number of clients.
    standardize : bool
        Centre and scale ``y`` by its mean and SD (what the priors assume). ``False`` keeps
        the raw outcome (used by the tests against a dense computation).

    Returns
    -------
    MarginalData
    """
    y = df["outcome"].to_numpy(float)
    t = df["time"].to_numpy(float)
    y_mean, y_sd = (float(y.mean()), float(y.std())) if standardize else (0.0, 1.0)
    if not y_sd > 0:
        y_sd = 1.0
    y = (y - y_mean) / y_sd

    cl_codes = pd.factorize(df["client"].to_numpy())[0]
    n_cl = int(cl_codes.max()) + 1

    def seg(v):
        return np.bincount(cl_codes, weights=v, minlength=n_cl)

    # client-level attributes from each client's first row (check_long guarantees one
    # unit and one therapist per client)
    first_row = np.full(n_cl, -1)
    first_row[cl_codes[::-1]] = np.arange(len(cl_codes))[::-1]
    unit_raw = df["unit"].to_numpy()[first_row]
    ther_raw = df["therapist"].to_numpy()[first_row].astype(np.int64)
    arm = df["arm"].to_numpy(float)[first_row]
    unit = pd.factorize(unit_raw)[0]
    n_units = int(unit.max()) + 1

    # therapist slots: real therapists first, then one pseudo-slot per unit for the clients
    # without a therapist (their variance term is switched off by slot_real = 0)
    has_t = ther_raw != -1
    slot = np.empty(n_cl, dtype=np.int64)
    t_codes, t_uniques = pd.factorize(ther_raw[has_t])
    slot[has_t] = t_codes
    n_real = len(t_uniques)
    pseudo_units, pseudo_codes = np.unique(unit[~has_t], return_inverse=True)
    slot[~has_t] = n_real + pseudo_codes
    slot_unit = np.empty(n_real + len(pseudo_units), dtype=np.int64)
    slot_unit[slot[has_t]] = unit[has_t]
    slot_unit[n_real:] = pseudo_units
    slot_real = np.r_[np.ones(n_real), np.zeros(len(pseudo_units))]
    assert slot_unit.max() + 1 <= n_units

    return MarginalData(
        n=seg(np.ones_like(y)),
        t1=seg(t),
        t2=seg(t * t),
        y1=seg(y),
        ty=seg(t * y),
        yy=seg(y * y),
        arm=arm,
        slot=slot,
        slot_real=slot_real,
        slot_unit=slot_unit,
        y_mean=y_mean,
        y_sd=y_sd,
        n_obs=len(y),
    )


def marginal_loglik(beta, sigma, sd_unit, sd_therapist, sd_int, sd_slope, rho, data):
    """Log-likelihood of the growth model with all random effects integrated out.

    Written with PyTensor operations so that PyMC/nutpie can differentiate it.

    Parameters
    ----------
    beta : tensor, shape (4,)
        Fixed effects: intercept, time, arm, arm:time.
    sigma, sd_unit, sd_therapist, sd_int, sd_slope : scalar tensors
        Residual SD and random-effect SDs (unit, therapist, client intercept, client slope).
    rho : scalar tensor
        Correlation of client intercept and slope.
    data : dict
        The arrays of :data:`DATA_NAMES` (numpy arrays or tensors).

    Returns
    -------
    scalar tensor
        ``log N(y | X beta, V)`` including the ``-N/2 log(2 pi)`` constant.
    """
    import pytensor.tensor as pt

    def as_tensor(x):
        # plain Python/numpy numbers become float64 constants (PyTensor would otherwise pick
        # the narrowest float that holds them, losing precision)
        return pt.as_tensor_variable(np.asarray(x, dtype="float64")) if np.isscalar(x) or (
            isinstance(x, np.ndarray)) else pt.as_tensor_variable(x)

    beta, sigma, sd_unit, sd_therapist, sd_int, sd_slope, rho = map(
        as_tensor, (beta, sigma, sd_unit, sd_therapist, sd_int, sd_slope, rho))
    d = {k: pt.as_tensor_variable(data[k]) for k in DATA_NAMES}
    n, t1, t2 = d["n"], d["t1"], d["t2"]
    s2 = sigma**2

    # residual sums of each client: r = y - alpha - gamma t, with alpha, gamma set by arm
    alpha = beta[0] + beta[2] * d["arm"]
    gamma = beta[1] + beta[3] * d["arm"]
    r1 = d["y1"] - alpha * n - gamma * t1
    rt = d["ty"] - alpha * t1 - gamma * t2
    rr = (
        d["yy"] - 2 * alpha * d["y1"] - 2 * gamma * d["ty"]
        + alpha**2 * n + 2 * alpha * gamma * t1 + gamma**2 * t2
    )

    # client level: G = L L', M = I + L' S L / sigma^2 with S = Z'Z = [[n, t1], [t1, t2]]
    l11 = sd_int
    l21 = rho * sd_slope
    l22 = sd_slope * pt.sqrt(1 - rho**2)
    m11 = 1 + (l11**2 * n + 2 * l11 * l21 * t1 + l21**2 * t2) / s2
    m12 = l22 * (l11 * t1 + l21 * t2) / s2
    m22 = 1 + l22**2 * t2 / s2
    det = m11 * m22 - m12**2  # >= 1: M is the identity plus a PSD matrix

    def quad(w1, w2, z1, z2):
        # w' M^-1 z for 2-vectors, with the closed-form inverse of M
        return (m22 * w1 * z1 - m12 * (w1 * z2 + w2 * z1) + m11 * w2 * z2) / det

    # L' Z'1 and L' Z'r
    p1, p2 = l11 * n + l21 * t1, l22 * t1
    q1, q2 = l11 * r1 + l21 * rt, l22 * rt
    a = (n - quad(p1, p2, p1, p2) / s2) / s2  # 1' C^-1 1
    b = (r1 - quad(p1, p2, q1, q2) / s2) / s2  # 1' C^-1 r
    c = (rr - quad(q1, q2, q1, q2) / s2) / s2  # r' C^-1 r
    ld = n * pt.log(s2) + pt.log(det)  # log det C_i

    def rank_one(idx, size_like, var, a, b, c, ld):
        # Sherman-Morrison and the determinant lemma for V = blockdiag + var 1 1', per segment
        zero = pt.zeros_like(size_like)
        sa = pt.inc_subtensor(zero[idx], a)
        sb = pt.inc_subtensor(zero[idx], b)
        sc = pt.inc_subtensor(zero[idx], c)
        sld = pt.inc_subtensor(zero[idx], ld)
        den = 1 + var * sa
        return sa / den, sb / den, sc - var * sb**2 / den, sld + pt.log(den)

    a, b, c, ld = rank_one(d["slot"], d["slot_real"], sd_therapist**2 * d["slot_real"],
                           a, b, c, ld)
    units_like = pt.zeros(pt.max(d["slot_unit"]) + 1, dtype="float64")
    a, b, c, ld = rank_one(d["slot_unit"], units_like, sd_unit**2, a, b, c, ld)
    return -0.5 * (pt.sum(n) * math.log(2 * math.pi) + pt.sum(ld) + pt.sum(c))


def dense_loglik(df, beta, sigma, sd_unit, sd_therapist, sd_int, sd_slope, rho):
    """Reference: the same log-likelihood from the dense marginal covariance (numpy/scipy).

    O(rows^3); for tests on small data only. Same arguments as :func:`marginal_loglik`
    with plain floats and a prepared long table (with ``time``) instead of the reduced data.
    """
    from scipy.stats import multivariate_normal

    y = df["outcome"].to_numpy(float)
    t = df["time"].to_numpy(float)
    arm = df["arm"].to_numpy(float)
    X = np.column_stack([np.ones_like(t), t, arm, arm * t])
    G = np.array([[sd_int**2, rho * sd_int * sd_slope], [rho * sd_int * sd_slope, sd_slope**2]])
    Z = np.column_stack([np.ones_like(t), t])
    cl = df["client"].to_numpy()
    same_client = cl[:, None] == cl[None, :]
    V = sigma**2 * np.eye(len(y)) + same_client * (Z @ G @ Z.T)
    th = df["therapist"].to_numpy()
    V += sd_therapist**2 * ((th[:, None] == th[None, :]) & (th[:, None] != -1))
    u = df["unit"].to_numpy()
    V += sd_unit**2 * (u[:, None] == u[None, :])
    return float(multivariate_normal(X @ np.asarray(beta, float), V).logpdf(y))


@register
class BayesMarginal(BayesEstimator):
    """Bayesian 3-level growth model, random effects marginalized, compiled once by nutpie.

    The model of the module docstring with its priors on the standardized outcome.
    Because it has no random-effect vectors, its parameters do not depend on the data's
    size: one compilation serves every data set.

    Options (besides the common ones of :class:`models.bayes.base.BayesEstimator`):
    defaults ``draws=400``, ``tune=150``, ``chains=4`` and ``low_rank=True``. Four chains
    rather than two longer ones because R-hat from two chains falsely flags about one fit
    in ten at the 1.01 threshold; with every random effect integrated out the posterior
    has ten near-Gaussian parameters and no funnel, so nutpie adapts within 150 tuning
    steps, and nutpie's low-rank mass matrix handles the correlated variance parameters.
    ``extra`` reports posterior means of ``var_unit``, ``var_therapist``, ``var_client``,
    ``var_slope``, ``var_resid`` and ``cov_client_slope`` on the outcome's own scale.
    """

    name = "bayes_marginal"
    estimand = "itt"
    outcome_kinds = ("ors",)
    exact = ()
    sampler_overrides = {"draws": 400, "tune": 150, "low_rank": True}
    monitor = ("beta", "sigma", "sd_unit", "sd_therapist", "sd_int", "sd_slope", "rho01")

    def _arrays(self, df, primary_month):
        md = marginal_data(df)
        return md.arrays(), {}, md

    def _build(self, data, capacity):
        import pymc as pm

        with pm.Model() as model:
            d = {k: pm.Data(k, v) for k, v in data.items()}
            beta = pm.Normal("beta", 0.0, 2.5, shape=4)
            sigma = pm.HalfNormal("sigma", 1.0)
            sd_unit = pm.HalfNormal("sd_unit", 0.5)
            sd_therapist = pm.HalfNormal("sd_therapist", 0.5)
            sd_int = pm.HalfNormal("sd_int", 1.0)
            sd_slope = pm.HalfNormal("sd_slope", 1.0)
            rho01 = pm.Beta("rho01", 2.0, 2.0)  # (rho + 1) / 2: LKJ(2) for a 2x2 correlation
            pm.Potential("loglik", marginal_loglik(beta, sigma, sd_unit, sd_therapist,
                                                   sd_int, sd_slope, 2 * rho01 - 1, d))
        return model

    def _summarize(self, idata, md):
        def draws(v):
            return post(idata, v)

        scale2 = md.y_sd**2
        rho = 2 * draws("rho01") - 1
        extra = {
            "var_unit": float((draws("sd_unit") ** 2).mean() * scale2),
            "var_therapist": float((draws("sd_therapist") ** 2).mean() * scale2),
            "var_client": float((draws("sd_int") ** 2).mean() * scale2),
            "var_slope": float((draws("sd_slope") ** 2).mean() * scale2),
            "cov_client_slope": float((rho * draws("sd_int") * draws("sd_slope")).mean()
                                      * scale2),
            "var_resid": float((draws("sigma") ** 2).mean() * scale2),
            "n_obs": md.n_obs,
            "n_clients": len(md.n),
        }
        return draws("beta")[:, 3] * md.y_sd, extra
