"""Fast Bayesian growth model with every random effect integrated out analytically.

The model is the Gaussian three-level growth model of the FIT trial (DOMAIN.md section 3)::

    y_ij = b0 + b1 t_ij + b2 arm_i + b3 arm_i t_ij            (fixed effects)
           + u_unit + v_therapist + a_i + c_i t_ij + e_ij      (random effects)

with ``t = log1p(month) / log1p(primary_month)`` (0 at baseline, 1 at the primary month), so
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
The PyMC model is built and compiled by nutpie once per estimator (:meth:`BayesMarginal.fit`
on the first data set) and every later data set is swapped in with
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
import time
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.base import Estimate, Estimator, register

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


def marginal_data(
    df: pd.DataFrame, primary_month: float, standardize: bool = True
) -> MarginalData:
    """Reduce a long table (observed rows) to :class:`MarginalData`.

    Parameters
    ----------
    df : DataFrame
        Columns ``unit``, ``therapist``, ``client``, ``arm``, ``month``, ``outcome``; observed
        rows only (as :meth:`Estimator.prepare` returns them). Clients may have any number of
        occasions; therapists and units any number of clients.
    primary_month : float
        Month at which ``t = 1``.
    standardize : bool
        Centre and scale ``y`` by its mean and SD (what the priors assume). ``False`` keeps
        the raw outcome (used by the tests against a dense computation).

    Returns
    -------
    MarginalData
    """
    y = df["outcome"].to_numpy(float)
    t = np.log1p(df["month"].to_numpy(float)) / math.log1p(float(primary_month))
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


def dense_loglik(df, primary_month, beta, sigma, sd_unit, sd_therapist, sd_int, sd_slope,
                 rho):
    """Reference: the same log-likelihood from the dense marginal covariance (numpy/scipy).

    O(rows^3); for tests on small data only. Same arguments as :func:`marginal_loglik`
    with plain floats and a long table instead of the reduced data.
    """
    from scipy.stats import multivariate_normal

    y = df["outcome"].to_numpy(float)
    t = np.log1p(df["month"].to_numpy(float)) / math.log1p(float(primary_month))
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
class BayesMarginal(Estimator):
    """Bayesian 3-level growth model, random effects marginalized, compiled once by nutpie.

    Parameters
    ----------
    scenario : Scenario, optional
        Supplies the primary month.
    draws, tune, chains : int
        Per chain; defaults 400 / 150 / 4. Four chains (two per core on a 2-core machine)
        rather than two longer ones because R-hat from two chains falsely flags about one
        fit in ten at the 1.01 threshold (measured on the default scenario). With every
        random effect integrated out the posterior has ten near-Gaussian parameters and no
        funnel, so nutpie adapts within 150 tuning steps and the 1,600 draws give a bulk
        ESS of every parameter of typically 400-900 and of the estimand above 400: Monte
        Carlo error of the posterior mean below 5% of the posterior SD. Measured on twelve
        default replicates: 0.59 s per fit, 9 of 12 passing every check (the others at
        R-hat 1.012-1.022 on a variance parameter); 300 draws took 0.50 s but passed only 5
        of 12, so the extra draws buy honest diagnostics.
    low_rank : bool
        nutpie's low-rank modified mass matrix (default True): the variance parameters are
        correlated a posteriori, and the low-rank correction cuts the leapfrog steps per
        draw from about 10 to 7 on the default scenario.
    cores : int, optional
        Threads for the chains (default ``min(chains, os.cpu_count())``).
    seed : int
        Base seed; each fit's sampler seed mixes it with a checksum of the data so the same
        data always give the same draws.
    rhat_max, min_ess, min_ess_all : float
        Convergence thresholds checked on every fit: all parameters' R-hat below
        ``rhat_max`` (1.01), bulk and tail ESS of the estimand at least ``min_ess`` (400,
        Vehtari et al. 2021), bulk ESS of every other parameter at least ``min_ess_all``
        (50 per chain: enough for R-hat to be reliable, the nuisance variances need no
        more) and no divergent transitions.
    """

    name = "bayes_marginal"
    estimand = "itt"
    outcome_kinds = ("ors",)

    def __init__(self, scenario=None, columns=None, **options):
        super().__init__(scenario, columns, **options)
        o = self.options
        self.draws = int(o.get("draws", 400))
        self.tune = int(o.get("tune", 150))
        self.low_rank = bool(o.get("low_rank", True))
        self.chains = int(o.get("chains", 4))
        import os

        self.cores = int(o.get("cores") or min(self.chains, os.cpu_count() or 1))
        self.seed = int(o.get("seed", 0))
        self.rhat_threshold = float(o.get("rhat_max", 1.01))
        self.min_ess = float(o.get("min_ess", 400))
        self.min_ess_all = float(o.get("min_ess_all", 50 * self.chains))
        self._compiled = None
        self.compile_seconds = None

    # -- model ------------------------------------------------------------------------
    def build_model(self, md: MarginalData):
        """The PyMC model with ``md`` as its (swappable) data."""
        import pymc as pm

        with pm.Model() as model:
            data = {k: pm.Data(k, v) for k, v in md.arrays().items()}
            beta = pm.Normal("beta", 0.0, 2.5, shape=4)
            sigma = pm.HalfNormal("sigma", 1.0)
            sd_unit = pm.HalfNormal("sd_unit", 0.5)
            sd_therapist = pm.HalfNormal("sd_therapist", 0.5)
            sd_int = pm.HalfNormal("sd_int", 1.0)
            sd_slope = pm.HalfNormal("sd_slope", 1.0)
            rho01 = pm.Beta("rho01", 2.0, 2.0)  # (rho + 1) / 2: LKJ(2) for a 2x2 correlation
            pm.Potential(
                "loglik",
                marginal_loglik(beta, sigma, sd_unit, sd_therapist, sd_int, sd_slope,
                                2 * rho01 - 1, data),
            )
        return model

    def compile(self, md: MarginalData):
        """Build and compile with nutpie (once per estimator)."""
        import nutpie

        t0 = time.perf_counter()
        self._compiled = nutpie.compile_pymc_model(self.build_model(md))
        self.compile_seconds = time.perf_counter() - t0
        return self._compiled

    def sample(self, md: MarginalData, seed: int | None = None):
        """Swap ``md`` into the compiled model and sample; returns the arviz InferenceData."""
        import nutpie

        if self._compiled is None:
            compiled = self.compile(md)  # fresh build: the data are already in it
        else:
            compiled = self._compiled.with_data(**md.arrays())
        if seed is None:
            seed = self._data_seed(md)
        return nutpie.sample(
            compiled, draws=self.draws, tune=self.tune, chains=self.chains, cores=self.cores,
            seed=seed, progress_bar=False, save_warmup=False,
            low_rank_modified_mass_matrix=self.low_rank,
        )

    def _data_seed(self, md: MarginalData) -> int:
        crc = zlib.crc32(np.ascontiguousarray(md.yy).tobytes())
        return (self.seed * 1_000_003 + crc) % (2**31 - 1)

    # -- fit --------------------------------------------------------------------------
    def _fit(self, df: pd.DataFrame) -> Estimate:
        import arviz as az

        md = marginal_data(df, self.primary_month)
        first = self._compiled is None
        t0 = time.perf_counter()
        idata = self.sample(md)
        post = idata.posterior
        b3 = post["beta"].values[..., 3] * md.y_sd  # (chain, draw)
        flat = b3.ravel()

        # diagnostics on every free parameter (beta as its four components)
        names = ["beta", "sigma", "sd_unit", "sd_therapist", "sd_int", "sd_slope", "rho01"]
        rhat = az.rhat(post[names])
        ess = az.ess(post[names], method="bulk")
        rhat_max = float(max(np.nanmax(rhat[v].values) for v in names))
        ess_min = float(min(np.nanmin(ess[v].values) for v in names))
        ess_b3 = float(ess["beta"].values[3])
        ess_tail_b3 = float(az.ess(b3, method="tail"))
        divergences = int(idata.sample_stats["diverging"].values.sum())
        warnings = []
        if not rhat_max < self.rhat_threshold:
            warnings.append(f"rhat_max {rhat_max:.3f} >= {self.rhat_threshold}")
        if not min(ess_b3, ess_tail_b3) >= self.min_ess:
            warnings.append(f"estimand ESS bulk {ess_b3:.0f} / tail {ess_tail_b3:.0f} "
                            f"< {self.min_ess:.0f}")
        if not ess_min >= self.min_ess_all:
            warnings.append(f"ess_bulk_min {ess_min:.0f} < {self.min_ess_all:.0f}")
        if divergences:
            warnings.append(f"{divergences} divergent transitions")
        fit_seconds = time.perf_counter() - t0

        def pm_(v):
            return float(post[v].values.mean())

        lower, upper = np.quantile(flat, [0.025, 0.975])
        return Estimate(
            estimator=self.name,
            estimand=self.estimand,
            estimate=float(flat.mean()),
            se=float(flat.std(ddof=1)),
            lower=float(lower),
            upper=float(upper),
            p_positive=float((flat > 0).mean()),
            extra={
                "sd_unit": pm_("sd_unit") * md.y_sd,
                "sd_therapist": pm_("sd_therapist") * md.y_sd,
                "sd_client": pm_("sd_int") * md.y_sd,
                "sd_slope": pm_("sd_slope") * md.y_sd,
                "sigma": pm_("sigma") * md.y_sd,
                "rho": 2 * pm_("rho01") - 1,
                "n_obs": md.n_obs,
                "n_clients": len(md.n),
            },
            diagnostics={
                "converged": not warnings,
                "rhat_max": rhat_max,
                "ess_bulk_min": ess_min,
                "ess_bulk_estimand": ess_b3,
                "ess_tail_estimand": ess_tail_b3,
                "divergences": divergences,
                "fit_seconds": fit_seconds,
                "ess_per_second": ess_min / fit_seconds,
                "compile_seconds": self.compile_seconds if first else 0.0,
                "warnings": warnings,
            },
        )
