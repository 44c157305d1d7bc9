"""Closed-form power and variance for FIT trial designs, to cross-check simulations.

Every function states its formula and source. The formulas are the ones listed in
``shared/DOMAIN.md`` section 4; each is checked against a brute-force simulation in
``tests/test_analytic.py``.

Building blocks (plain numbers in, plain numbers out):

- :func:`power_two_sample`, :func:`n_for_power`: two independent samples.
- :func:`design_effect`, :func:`variance_clustered_arms`, :func:`power_clustered_arms`:
  individual randomization with therapist clustering in both arms or in one arm only
  (partially nested).
- :func:`power_cluster_randomized`: parallel cluster randomization with variable cluster
  sizes (Eldridge 2006).
- :func:`stepped_wedge_schedule`, :func:`hussey_hughes_variance`, :func:`hooper_variance`,
  :func:`stepped_wedge_gls_variance`: stepped wedge, complete or incomplete.
- :func:`power_two_proportions`, :func:`observed_icc`, :func:`check_power_claim`,
  :func:`ips_power_claim`: binary outcomes.

Scenario level: :func:`power` (one JSON-native dict) and :func:`power_curve` (a table over
one field).

Examples
--------
>>> from simulate.analytic import power_two_sample
>>> round(power_two_sample(0.5, 1.0, 64, 64), 3)
0.807
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import optimize, stats

__all__ = [
    "power_from_variance",
    "power_two_sample",
    "n_for_power",
    "design_effect",
    "variance_clustered_arms",
    "power_clustered_arms",
    "power_cluster_randomized",
    "stepped_wedge_schedule",
    "hussey_hughes_variance",
    "hooper_variance",
    "stepped_wedge_gls_variance",
    "power_two_proportions",
    "odds_ratio_from_d",
    "d_from_odds_ratio",
    "observed_icc",
    "check_power_claim",
    "ips_power_claim",
    "ors_variance_at_primary",
    "clipped_normal_moments",
    "power",
    "power_curve",
]

LOGISTIC_VARIANCE = math.pi**2 / 3  # variance of the standard logistic distribution


# -- input checks ------------------------------------------------------------------------
def _positive(name: str, value: float, allow_zero: bool = False) -> float:
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        allowed = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def _unit_interval(name: str, value: float, closed_right: bool = False) -> float:
    value = float(value)
    ok = 0 <= value <= 1 if closed_right else 0 <= value < 1
    if not ok:
        raise ValueError(f"{name} must be in [0, 1{']' if closed_right else ')'}, got {value!r}")
    return value


def _alpha_sides(alpha: float, sides: int) -> tuple[float, int]:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if sides not in (1, 2):
        raise ValueError(f"sides must be 1 or 2, got {sides!r}")
    return float(alpha), int(sides)


def _dist(dist: str) -> str:
    if dist not in ("normal", "t"):
        raise ValueError(f"dist must be 'normal' or 't', got {dist!r}")
    return dist


# -- power from a variance -----------------------------------------------------------------
def power_from_variance(
    effect: float,
    variance: float,
    alpha: float = 0.05,
    sides: int = 2,
    df: float | None = None,
) -> float:
    """Power of a Wald test of ``effect`` with known ``variance``.

    Normal (``df=None``): ``Phi(|theta|/se - z_{1-alpha/sides})``, plus the far tail
    ``Phi(-|theta|/se - z)`` when two-sided. With ``df``: the noncentral t with
    noncentrality ``|theta|/se``. A one-sided test is taken in the direction of the effect.

    Parameters
    ----------
    effect : float
        True effect, in outcome units.
    variance : float
        Variance of the effect estimator.
    alpha : float
        Significance level.
    sides : {1, 2}
        One- or two-sided test.
    df : float, optional
        Degrees of freedom for a t test; ``None`` for the normal approximation.

    Returns
    -------
    float

    Examples
    --------
    >>> round(power_from_variance(2.8, 1.0), 3)
    0.8
    """
    alpha, sides = _alpha_sides(alpha, sides)
    se = math.sqrt(_positive("variance", variance))
    lam = abs(float(effect)) / se
    if df is None:
        z = stats.norm.ppf(1 - alpha / sides)
        p = stats.norm.cdf(lam - z)
        if sides == 2:
            p += stats.norm.cdf(-lam - z)
        return float(p)
    df = _positive("df", df)
    tc = stats.t.ppf(1 - alpha / sides, df)
    p = stats.nct.sf(tc, df, lam)
    if sides == 2:
        p += stats.nct.cdf(-tc, df, lam)
    return float(p)


# -- two independent samples ---------------------------------------------------------------
def power_two_sample(
    delta: float,
    sd: float,
    n_treat: float,
    n_control: float,
    alpha: float = 0.05,
    sides: int = 2,
    dist: str = "normal",
) -> float:
    """Power to detect a mean difference between two independent samples.

    ``Var = sd^2 (1/n_T + 1/n_C)``; power by :func:`power_from_variance`. With
    ``dist="t"`` it is the exact power of the pooled two-sample t test (noncentral t,
    ``df = n_T + n_C - 2``).

    Parameters
    ----------
    delta : float
        True mean difference (outcome units).
    sd : float
        Common standard deviation.
    n_treat, n_control : float
        Evaluable sample sizes.
    alpha : float
        Significance level.
    sides : {1, 2}
        One- or two-sided test.
    dist : {"normal", "t"}
        Normal approximation or exact t.

    Returns
    -------
    float

    Examples
    --------
    >>> round(power_two_sample(0.5, 1.0, 64, 64, dist="t"), 3)
    0.801
    """
    sd = _positive("sd", sd)
    n_treat, n_control = _positive("n_treat", n_treat), _positive("n_control", n_control)
    var = sd**2 * (1 / n_treat + 1 / n_control)
    df = n_treat + n_control - 2 if _dist(dist) == "t" else None
    if df is not None and df <= 0:
        raise ValueError("n_treat + n_control must exceed 2 for dist='t'")
    return power_from_variance(delta, var, alpha, sides, df)


def n_for_power(
    delta: float,
    sd: float,
    power: float = 0.8,
    alpha: float = 0.05,
    sides: int = 2,
    ratio: float = 1.0,
    design_effect: float = 1.0,
    dist: str = "normal",
) -> tuple[int, int]:
    """Smallest evaluable sample sizes ``(n_treat, n_control)`` that reach ``power``.

    Starts from ``n_C = (z_{1-alpha/sides} + z_{power})^2 sd^2 DE (1 + 1/r) / delta^2`` and
    ``n_T = ceil(r n_C)``, then steps ``n_C`` up until the power (normal or t, with the
    variance inflated by ``design_effect``) is reached.

    Parameters
    ----------
    delta, sd : float
        Mean difference and SD.
    power : float
        Target power in (0, 1).
    alpha : float
        Significance level.
    sides : {1, 2}
        One- or two-sided test.
    ratio : float
        Allocation ratio ``r = n_T / n_C``.
    design_effect : float
        Variance inflation (e.g. from :func:`design_effect`), applied to both arms.
    dist : {"normal", "t"}
        Normal approximation or t with ``n_T + n_C - 2`` df.

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> n_for_power(0.5, 1.0)
    (63, 63)
    """
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    alpha, sides = _alpha_sides(alpha, sides)
    sd, ratio = _positive("sd", sd), _positive("ratio", ratio)
    deff = _positive("design_effect", design_effect)
    if delta == 0:
        raise ValueError("delta must be non-zero: no sample size detects a zero effect")
    _dist(dist)
    z = stats.norm.ppf(1 - alpha / sides) + stats.norm.ppf(power)
    n_c = max(2, math.ceil(z**2 * sd**2 * deff * (1 + 1 / ratio) / delta**2))

    def achieved(nc: int) -> float:
        nt = math.ceil(ratio * nc)
        var = deff * sd**2 * (1 / nt + 1 / nc)
        return power_from_variance(delta, var, alpha, sides, nt + nc - 2 if dist == "t" else None)

    while achieved(n_c) < power:
        n_c += 1
    # the normal start can overshoot by one when the far tail counts
    while n_c > 2 and achieved(n_c - 1) >= power:
        n_c -= 1
    return math.ceil(ratio * n_c), n_c


# -- therapist clustering within arms -----------------------------------------------------
def design_effect(m: float, icc: float, cv: float = 0.0) -> float:
    """Design effect for clusters of mean size ``m`` and size CV ``cv`` (Eldridge 2006).

    ``DE = 1 + ((cv^2 + 1) m - 1) icc``. With ``cv = 0`` it is Kish's ``1 + (m-1) icc``.
    Exact for the mean of all individuals (weights proportional to cluster size) when
    ``cv`` is the population CV (``ddof=0``) of the sizes; conservative for
    minimum-variance weights.

    Parameters
    ----------
    m : float
        Mean cluster size (>= 1).
    icc : float
        Intraclass correlation in [0, 1).
    cv : float
        Coefficient of variation of cluster sizes.

    Returns
    -------
    float

    Examples
    --------
    >>> round(design_effect(20, 0.05), 4)
    1.95
    >>> round(design_effect(20, 0.05, cv=0.65), 4)
    2.3725
    """
    m = _positive("m", m)
    if m < 1:
        raise ValueError(f"m must be at least 1 (mean cluster size), got {m!r}")
    icc = _unit_interval("icc", icc)
    cv = _positive("cv", cv, allow_zero=True)
    return 1 + ((cv**2 + 1) * m - 1) * icc


def variance_clustered_arms(
    sd: float,
    n_treat: float,
    n_control: float,
    m_treat: float,
    icc: float,
    m_control: float | None = None,
    icc_control: float | None = None,
    cv: float = 0.0,
) -> float:
    """Variance of a difference in means with therapist clustering in one or both arms.

    Both arms clustered: ``Var = sd^2 [DE_T / n_T + DE_C / n_C]`` with each arm's
    :func:`design_effect`. One arm only (``m_control=None``, the partially nested design,
    e.g. the IPS pre-study where only the IPS arm has employment specialists):
    ``Var = sd^2 [(1 + (m_T - 1) icc) / n_T + 1 / n_C]`` (DOMAIN.md section 4; Candlish
    2018 on ignoring this clustering).

    Parameters
    ----------
    sd : float
        Total SD of the outcome (therapist plus client variance).
    n_treat, n_control : float
        Evaluable clients per arm.
    m_treat : float
        Mean clients per therapist in the treated arm.
    icc : float
        Therapist ICC in the treated arm.
    m_control : float, optional
        Mean clients per therapist in the control arm; ``None`` if controls are unclustered.
    icc_control : float, optional
        Therapist ICC in the control arm (default ``icc``).
    cv : float
        CV of clients per therapist (Eldridge 2006), both arms.

    Returns
    -------
    float

    Examples
    --------
    >>> variance_clustered_arms(1.0, 50, 50, m_treat=10, icc=0.0)
    0.04
    >>> round(variance_clustered_arms(1.0, 60, 30, m_treat=10, icc=0.05), 5)
    0.0575
    """
    sd = _positive("sd", sd)
    n_treat, n_control = _positive("n_treat", n_treat), _positive("n_control", n_control)
    var_t = design_effect(m_treat, icc, cv) / n_treat
    if m_control is None:
        var_c = 1 / n_control
    else:
        var_c = design_effect(m_control, icc if icc_control is None else icc_control, cv) / n_control
    return sd**2 * (var_t + var_c)


def power_clustered_arms(
    delta: float,
    sd: float,
    n_treat: float,
    n_control: float,
    m_treat: float,
    icc: float,
    m_control: float | None = None,
    icc_control: float | None = None,
    cv: float = 0.0,
    alpha: float = 0.05,
    sides: int = 2,
) -> float:
    """Power with therapist clustering in one or both arms (normal approximation).

    ``Phi(|delta| / sqrt(Var) - z)`` with ``Var`` from :func:`variance_clustered_arms`;
    the arguments are the same.

    Examples
    --------
    >>> round(power_clustered_arms(0.5, 1.0, 64, 64, m_treat=8, icc=0.0), 3)
    0.807
    """
    var = variance_clustered_arms(sd, n_treat, n_control, m_treat, icc, m_control, icc_control, cv)
    return power_from_variance(delta, var, alpha, sides)


# -- parallel cluster randomization --------------------------------------------------------
def power_cluster_randomized(
    delta: float,
    sd: float,
    icc: float,
    m: float,
    clusters_treat: float,
    clusters_control: float,
    cv: float = 0.0,
    alpha: float = 0.05,
    sides: int = 2,
    dist: str = "normal",
) -> float:
    """Power of a parallel cluster-randomized trial with variable cluster sizes.

    ``Var = sd^2 DE (1/(k_T m) + 1/(k_C m))`` with ``DE = 1 + ((cv^2+1) m - 1) icc``
    (Eldridge, Ashby & Kerry 2006). Any allocation ratio ``k_T : k_C``. With
    ``dist="t"`` the df are ``k_T + k_C - 2`` (cluster-level analysis).

    Parameters
    ----------
    delta, sd : float
        Mean difference and total SD.
    icc : float
        Cluster ICC.
    m : float
        Mean evaluable individuals per cluster.
    clusters_treat, clusters_control : float
        Clusters per arm.
    cv : float
        CV of cluster sizes.
    alpha, sides, dist
        As in :func:`power_two_sample`.

    Returns
    -------
    float

    Examples
    --------
    >>> round(power_cluster_randomized(0.5, 1.0, 0.0, 16, 4, 4), 3)
    0.807
    """
    k_t = _positive("clusters_treat", clusters_treat)
    k_c = _positive("clusters_control", clusters_control)
    var = _positive("sd", sd) ** 2 * design_effect(m, icc, cv) * (1 / (k_t * m) + 1 / (k_c * m))
    df = k_t + k_c - 2 if _dist(dist) == "t" else None
    if df is not None and df <= 0:
        raise ValueError("clusters_treat + clusters_control must exceed 2 for dist='t'")
    return power_from_variance(delta, var, alpha, sides, df)


# -- stepped wedge ---------------------------------------------------------------------------
def stepped_wedge_schedule(
    steps: int,
    units_per_step: int | Sequence[int] = 1,
    baseline_periods: int = 1,
    window: int | None = None,
    masked: Iterable[tuple[int, int]] = (),
) -> np.ndarray:
    """Design matrix ``X`` (units x periods) of a stepped-wedge trial.

    Units at step ``s`` (1..S) are exposed (1) from period ``baseline_periods + s - 1`` on,
    unexposed (0) before. The complete design has ``baseline_periods + steps`` periods.
    Unobserved cells are ``NaN``.

    Parameters
    ----------
    steps : int
        Number of steps S.
    units_per_step : int or sequence of int
        Units crossing over at each step: one number for all steps, or one per step
        (uneven steps).
    baseline_periods : int
        Periods before the first crossover (>= 1).
    window : int, optional
        Incomplete design: a unit is observed only in the ``window`` periods before and the
        ``window`` periods from its crossover on.
    masked : iterable of (unit, period)
        Further unobserved cells.

    Returns
    -------
    numpy.ndarray
        Float array, 0/1 with ``NaN`` for unobserved cells.

    Examples
    --------
    >>> stepped_wedge_schedule(3)
    array([[0., 1., 1., 1.],
           [0., 0., 1., 1.],
           [0., 0., 0., 1.]])
    >>> stepped_wedge_schedule(3, window=1)
    array([[ 0.,  1., nan, nan],
           [nan,  0.,  1., nan],
           [nan, nan,  0.,  1.]])
    """
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    if int(baseline_periods) != baseline_periods or baseline_periods < 1:
        raise ValueError(f"baseline_periods must be a whole number >= 1, got {baseline_periods!r}")
    if isinstance(units_per_step, int | np.integer):
        per = [int(units_per_step)] * steps
    else:
        per = [int(k) for k in units_per_step]
    if len(per) != steps or any(k < 0 for k in per) or sum(per) == 0:
        raise ValueError(
            f"units_per_step must be an int >= 1 or {steps} non-negative ints with a positive "
            f"sum, got {units_per_step!r}"
        )
    if window is not None and (int(window) != window or window < 1):
        raise ValueError(f"window must be a whole number >= 1 or None, got {window!r}")
    n_periods = baseline_periods + steps
    rows = []
    for s, k in enumerate(per, start=1):
        cross = baseline_periods + s - 1
        row = (np.arange(n_periods) >= cross).astype(float)
        if window is not None:
            j = np.arange(n_periods)
            row[(j < cross - window) | (j >= cross + window)] = np.nan
        rows += [row] * k
    x = np.array(rows)
    for i, j in masked:
        x[i, j] = np.nan
    return x


def _check_complete_binary(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"X must be a 2-d array (clusters x periods), got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError(
            "X has unobserved (NaN) cells: the Hussey & Hughes closed form needs a complete "
            "design; use stepped_wedge_gls_variance for incomplete ones"
        )
    if not np.isin(x, (0.0, 1.0)).all():
        raise ValueError("X must hold only 0 and 1 for the closed form")
    return x


def hussey_hughes_variance(x: np.ndarray, sigma2: float, tau2: float) -> float:
    """Variance of the treatment effect in a stepped wedge (Hussey & Hughes 2007).

    ``Var = I s2 (s2 + T t2) / [(I U - W) s2 + (U^2 + I T U - T W - I V) t2]`` with
    ``U = sum X``, ``W = sum_j (sum_i X_ij)^2``, ``V = sum_i (sum_j X_ij)^2``; the model
    has fixed period effects and a random cluster intercept, and every cell is observed.
    For a continuous outcome with total SD ``sd``, ICC ``rho`` and ``N`` individuals per
    cell: ``s2 = (1 - rho) sd^2 / N`` and ``t2 = rho sd^2``.

    Parameters
    ----------
    x : array (I, T)
        0/1 design matrix, complete.
    sigma2 : float
        Variance of a cluster-period mean around its cluster's level (``sigma_e^2 / N``).
    tau2 : float
        Between-cluster variance.

    Returns
    -------
    float

    Examples
    --------
    >>> x = stepped_wedge_schedule(4, units_per_step=2)
    >>> round(hussey_hughes_variance(x, sigma2=1.0, tau2=0.0), 6)  # = 6 s2 / (K (T^2-1))
    0.2
    """
    x = _check_complete_binary(x)
    s2 = _positive("sigma2", sigma2)
    t2 = _positive("tau2", tau2, allow_zero=True)
    n_i, n_t = x.shape
    u = x.sum()
    w = (x.sum(axis=0) ** 2).sum()
    v = (x.sum(axis=1) ** 2).sum()
    den = (n_i * u - w) * s2 + (u**2 + n_i * n_t * u - n_t * w - n_i * v) * t2
    if den <= 0:
        raise ValueError("X does not identify the treatment effect (no within-period contrast)")
    return float(n_i * s2 * (s2 + n_t * t2) / den)


def hooper_variance(
    sd: float,
    icc: float,
    m: float,
    steps: int,
    clusters_per_step: float,
    cluster_autocorrelation: float = 1.0,
    individual_autocorrelation: float = 0.0,
) -> float:
    """Variance of the effect in a standard stepped wedge (Hooper et al. 2016).

    ``DEFF_c = 1 + (m-1) rho``; ``r = (m rho rho_c + (1-rho) rho_s) / DEFF_c``;
    ``DEFF_r = 3T(1-r)(1+Tr) / ((T^2-1)(2+Tr))``; ``Var = 4 sd^2 DEFF_c DEFF_r / (K m T)``.
    ``T`` steps, one baseline period (``T+1`` periods), ``K`` clusters per step, ``m``
    individuals per cluster-period. ``rho`` is the ICC within a cluster-period,
    ``rho_c`` the cluster autocorrelation (correlation of cluster effects between periods)
    and ``rho_s`` the individual autocorrelation (0 for a cross-sectional design, > 0 for a
    closed cohort measured every period). With ``rho_c = 1`` and ``rho_s = 0`` it equals
    :func:`hussey_hughes_variance`.

    Parameters
    ----------
    sd : float
        Total SD.
    icc : float
        Within-cluster-period ICC ``rho``.
    m : float
        Individuals per cluster-period.
    steps : int
        ``T`` (>= 2).
    clusters_per_step : float
        ``K``.
    cluster_autocorrelation : float
        ``rho_c`` in [0, 1].
    individual_autocorrelation : float
        ``rho_s`` in [0, 1).

    Returns
    -------
    float

    Examples
    --------
    >>> round(hooper_variance(1.0, 0.0, 1, steps=4, clusters_per_step=2), 6)
    0.2
    """
    sd = _positive("sd", sd)
    rho = _unit_interval("icc", icc)
    m = _positive("m", m)
    if int(steps) != steps or steps < 2:
        raise ValueError(f"steps must be a whole number >= 2, got {steps!r}")
    k = _positive("clusters_per_step", clusters_per_step)
    rho_c = _unit_interval("cluster_autocorrelation", cluster_autocorrelation, closed_right=True)
    rho_s = _unit_interval("individual_autocorrelation", individual_autocorrelation)
    t = steps
    deff_c = 1 + (m - 1) * rho
    r = (m * rho * rho_c + (1 - rho) * rho_s) / deff_c
    deff_r = 3 * t * (1 - r) * (1 + t * r) / ((t**2 - 1) * (2 + t * r))
    return float(4 * sd**2 * deff_c * deff_r / (k * m * t))


def stepped_wedge_gls_variance(
    x: np.ndarray,
    sd: float,
    icc: float,
    m: float | np.ndarray,
    cluster_autocorrelation: float = 1.0,
    individual_autocorrelation: float = 0.0,
) -> float:
    """GLS variance of the effect for any stepped-wedge or longitudinal cluster design.

    The model of Hooper et al. (2016) for cluster-period means ``ybar_it = beta_t +
    theta X_it + error``: ``Var(ybar_it) = sd^2 (rho + (1-rho)/m_it)`` and, between periods
    of the same cluster, ``Cov = sd^2 (rho rho_c + (1-rho) rho_s / m)``. The variance is the
    treatment element of ``(sum_i Z_i' V_i^{-1} Z_i)^{-1}`` with ``Z_i`` the period
    indicators and ``X_i`` of the observed cells. Handles incomplete designs (``NaN``
    cells), uneven steps, cell sizes that vary and fractional exposure (e.g. a cell in
    which only part of the clients are exposed). With a complete 0/1 design it equals
    :func:`hussey_hughes_variance` (``rho_c = 1``, ``rho_s = 0``) and
    :func:`hooper_variance`.

    Parameters
    ----------
    x : array (I, T)
        Exposure per cell (0..1), ``NaN`` where not observed.
    sd : float
        Total SD.
    icc : float
        Within-cluster-period ICC.
    m : float or array (I, T)
        Individuals per cell.
    cluster_autocorrelation, individual_autocorrelation : float
        ``rho_c`` and ``rho_s`` as in :func:`hooper_variance`. ``rho_s > 0`` needs one
        cell size (a closed cohort).

    Returns
    -------
    float

    Examples
    --------
    >>> x = stepped_wedge_schedule(4, units_per_step=2)
    >>> round(stepped_wedge_gls_variance(x, 1.0, 0.0, 1), 6)
    0.2
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"x must be a 2-d array (clusters x periods), got shape {x.shape}")
    obs = ~np.isnan(x)
    if ((x[obs] < 0) | (x[obs] > 1)).any():
        raise ValueError("x must hold exposures in [0, 1] (or NaN for unobserved cells)")
    sd = _positive("sd", sd)
    rho = _unit_interval("icc", icc)
    rho_c = _unit_interval("cluster_autocorrelation", cluster_autocorrelation, closed_right=True)
    rho_s = _unit_interval("individual_autocorrelation", individual_autocorrelation)
    m_arr = np.broadcast_to(np.asarray(m, dtype=float), x.shape)
    if (m_arr[obs] <= 0).any():
        raise ValueError("m must be > 0 in every observed cell")
    if rho_s > 0 and np.ptp(m_arr[obs]) > 0:
        raise ValueError("individual_autocorrelation > 0 needs one cell size m (a closed cohort)")
    n_t = x.shape[1]
    info = np.zeros((n_t + 1, n_t + 1))
    for i in range(x.shape[0]):
        cols = np.flatnonzero(obs[i])
        if cols.size == 0:
            continue
        mi = m_arr[i, cols]
        cov = sd**2 * (rho * rho_c + (1 - rho) * rho_s / mi[0])
        v = np.full((cols.size, cols.size), cov)
        np.fill_diagonal(v, sd**2 * (rho + (1 - rho) / mi))
        z = np.zeros((cols.size, n_t + 1))
        z[np.arange(cols.size), cols] = 1.0
        z[:, -1] = x[i, cols]
        info += z.T @ np.linalg.solve(v, z)
    # periods nobody observes carry no information: drop them before inverting
    keep = np.flatnonzero(np.diag(info) > 0)
    if keep[-1] != n_t:
        raise ValueError("x has no exposed observed cell: the effect is not identified")
    info = info[np.ix_(keep, keep)]
    if np.linalg.matrix_rank(info) < info.shape[0]:
        raise ValueError("x does not identify the effect apart from the period effects")
    return float(np.linalg.inv(info)[-1, -1])


# -- binary outcomes ------------------------------------------------------------------------
def power_two_proportions(
    p_control: float,
    p_treat: float,
    n_treat: float,
    n_control: float,
    alpha: float = 0.05,
    sides: int = 2,
    design_effect: float | tuple[float, float] = 1.0,
    scale: str = "difference",
    pooled: bool = True,
) -> float:
    """Power to compare two proportions, with an optional design effect.

    ``scale="difference"``: the z test of ``p_T - p_C``. Power (Fleiss 1981, ch. 3) is
    ``Phi((|p_T - p_C| - z sqrt(DE pbar qbar (1/n_T + 1/n_C))) / sqrt(DE_T p_T q_T / n_T +
    DE_C p_C q_C / n_C))`` with the null variance pooled (``pooled=True``, ``pbar`` the
    weighted mean), or unpooled (Wald) when ``pooled=False``.
    ``scale="log_rr"``: Wald test of the log risk ratio,
    ``Var = DE_T (1-p_T)/(n_T p_T) + DE_C (1-p_C)/(n_C p_C)``. The far tail is added when
    two-sided.

    Parameters
    ----------
    p_control, p_treat : float
        Proportions in (0, 1).
    n_treat, n_control : float
        Evaluable sizes.
    alpha : float
        Significance level.
    sides : {1, 2}
        One- or two-sided test.
    design_effect : float or (float, float)
        Variance inflation, one for both arms or ``(DE_T, DE_C)``.
    scale : {"difference", "log_rr"}
        Risk difference or log risk ratio.
    pooled : bool
        Pool the null variance (difference scale only).

    Returns
    -------
    float

    Examples
    --------
    >>> round(power_two_proportions(0.2, 0.4, 100, 100), 3)
    0.876
    """
    for name, p in (("p_control", p_control), ("p_treat", p_treat)):
        if not 0 < p < 1:
            raise ValueError(f"{name} must be in (0, 1), got {p!r}")
    n_t, n_c = _positive("n_treat", n_treat), _positive("n_control", n_control)
    alpha, sides = _alpha_sides(alpha, sides)
    de_t, de_c = (design_effect, design_effect) if np.isscalar(design_effect) else design_effect
    de_t, de_c = _positive("design_effect", de_t), _positive("design_effect", de_c)
    if scale == "log_rr":
        var = de_t * (1 - p_treat) / (n_t * p_treat) + de_c * (1 - p_control) / (n_c * p_control)
        return power_from_variance(math.log(p_treat / p_control), var, alpha, sides)
    if scale != "difference":
        raise ValueError(f"scale must be 'difference' or 'log_rr', got {scale!r}")
    diff = abs(p_treat - p_control)
    var1 = de_t * p_treat * (1 - p_treat) / n_t + de_c * p_control * (1 - p_control) / n_c
    if not pooled:
        return power_from_variance(diff, var1, alpha, sides)
    pbar = (n_t * p_treat + n_c * p_control) / (n_t + n_c)
    de_bar = (n_t * de_t + n_c * de_c) / (n_t + n_c)
    var0 = de_bar * pbar * (1 - pbar) * (1 / n_t + 1 / n_c)
    z = stats.norm.ppf(1 - alpha / sides)
    p = stats.norm.cdf((diff - z * math.sqrt(var0)) / math.sqrt(var1))
    if sides == 2:
        p += stats.norm.cdf((-diff - z * math.sqrt(var0)) / math.sqrt(var1))
    return float(p)


def odds_ratio_from_d(d: float) -> float:
    """Odds ratio equivalent to a standardized difference (Chinn 2000).

    ``ln OR = d pi / sqrt(3)``: the logistic distribution has SD ``pi / sqrt(3)``.

    Examples
    --------
    >>> round(odds_ratio_from_d(0.37), 2)
    1.96
    """
    return float(math.exp(float(d) * math.pi / math.sqrt(3)))


def d_from_odds_ratio(odds_ratio: float) -> float:
    """Standardized difference equivalent to an odds ratio (Chinn 2000), ``sqrt(3) ln OR / pi``.

    Examples
    --------
    >>> round(d_from_odds_ratio(1.96), 3)
    0.371
    """
    return float(math.log(_positive("odds_ratio", odds_ratio)) * math.sqrt(3) / math.pi)


_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(60)
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()  # expectations over a standard normal


def observed_icc(p: float, var_cluster: float, var_other: float = 0.0) -> float:
    """ICC on the proportion scale of a logistic random-intercept model.

    The model is ``logit P(Y=1) = mu + b + c`` with ``b ~ N(0, var_cluster)`` shared by a
    cluster and ``c ~ N(0, var_other)`` not shared (other random effects). ``mu`` is set so
    that the marginal proportion is ``p``; then ``ICC = Var_b(E[Y | b]) / (p (1 - p))``,
    computed by Gauss-Hermite quadrature. This is the correlation of two cluster members'
    0/1 outcomes, the ``rho`` of a design effect for a proportion.

    Parameters
    ----------
    p : float
        Marginal proportion in (0, 1).
    var_cluster : float
        Latent (logit-scale) variance of the cluster effect.
    var_other : float
        Latent variance of the other random effects, integrated out.

    Returns
    -------
    float

    Examples
    --------
    >>> observed_icc(0.2, 0.0)
    0.0
    >>> round(observed_icc(0.2, 0.2), 3)
    0.031
    """
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    vb = _positive("var_cluster", var_cluster, allow_zero=True)
    vo = _positive("var_other", var_other, allow_zero=True)
    if vb == 0:
        return 0.0
    z = _GH_NODES

    def marginal(mu: float) -> float:
        return float(_GH_WEIGHTS @ _expit(mu + math.sqrt(vb + vo) * z))

    mu = optimize.brentq(lambda u: marginal(u) - p, -40, 40, xtol=1e-12)
    # E[Y | b] at each quadrature node of b, integrating c out
    cond = _expit(mu + math.sqrt(vb) * z[:, None] + math.sqrt(vo) * z[None, :]) @ _GH_WEIGHTS
    var_b = float(_GH_WEIGHTS @ (cond - p) ** 2)
    return var_b / (p * (1 - p))


def _expit(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(x)))


def check_power_claim(
    d: float,
    n_treat: float,
    n_control: float,
    claimed_power: float | None = None,
    alpha: float = 0.05,
    sides: int = 1,
    risk_ratio: float | None = None,
    control_rate: float | None = None,
) -> dict[str, Any]:
    """Recompute a published power statement from its own numbers.

    Parameters
    ----------
    d : float
        Standardized effect.
    n_treat, n_control : float
        Evaluable sizes.
    claimed_power : float, optional
        The power the text claims.
    alpha : float
        Significance level.
    sides : {1, 2}
        One- or two-sided test.
    risk_ratio, control_rate : float, optional
        A binary version of the claim: power of the two-proportion z test (pooled) at
        ``p_C = control_rate`` and ``p_T = control_rate * risk_ratio``, with the same ``d``
        read as an odds ratio via Chinn (2000) for comparison.

    Returns
    -------
    dict
        ``power_normal``, ``power_t`` (two-sample t), ``n_per_arm_for_claim`` (equal arms,
        t test), ``d_for_claim`` (normal), ``odds_ratio_from_d`` and, when given, binary
        powers; all JSON-native.

    Examples
    --------
    >>> out = check_power_claim(0.37, 30, 30, claimed_power=0.82)
    >>> round(out["power_t"], 2)
    0.41
    """
    out: dict[str, Any] = {
        "d": float(d),
        "n_treat": float(n_treat),
        "n_control": float(n_control),
        "alpha": float(alpha),
        "sides": int(sides),
        "claimed_power": None if claimed_power is None else float(claimed_power),
        "power_normal": power_two_sample(d, 1.0, n_treat, n_control, alpha, sides),
        "power_t": power_two_sample(d, 1.0, n_treat, n_control, alpha, sides, dist="t"),
        "odds_ratio_from_d": odds_ratio_from_d(d),
    }
    if claimed_power is not None:
        out["n_per_arm_for_claim"] = n_for_power(d, 1.0, claimed_power, alpha, sides, dist="t")[1]
        # smallest d with the claimed power at these n (normal approximation)
        z = stats.norm.ppf(1 - alpha / sides) + stats.norm.ppf(claimed_power)
        out["d_for_claim"] = float(z * math.sqrt(1 / n_treat + 1 / n_control))
    if risk_ratio is not None and control_rate is not None:
        p_t = control_rate * risk_ratio
        odds = control_rate / (1 - control_rate) * odds_ratio_from_d(d)
        out.update(
            control_rate=float(control_rate),
            risk_ratio=float(risk_ratio),
            power_binary_risk_ratio=power_two_proportions(
                control_rate, p_t, n_treat, n_control, alpha, sides
            ),
            power_binary_odds_ratio_from_d=power_two_proportions(
                control_rate, odds / (1 + odds), n_treat, n_control, alpha, sides
            ),
        )
    return out


def ips_power_claim(control_rate: float = 0.20) -> dict[str, Any]:
    """Check the IPS pre-study's claim "RR 1.96 ~ d = 0.37 gives 82% power with 30 + 30 at
    one-sided alpha = 0.05" (seed 002).

    ``d = 0.37`` is the odds ratio 1.96 under Chinn's (2000) conversion, so the "RR" is an
    odds ratio. The binary powers use ``control_rate`` (0.20: DOMAIN.md default; the
    pre-study gives none). Also reports the power with the planned 60 + 30 evaluable
    (2:1 allocation).

    Returns
    -------
    dict
        :func:`check_power_claim` output plus ``power_t_60_30``.

    Examples
    --------
    >>> round(ips_power_claim()["power_normal"], 3)
    0.416
    """
    out = check_power_claim(0.37, 30, 30, claimed_power=0.82, alpha=0.05, sides=1,
                            risk_ratio=1.96, control_rate=control_rate)
    out["power_t_60_30"] = power_two_sample(0.37, 1.0, 60, 30, 0.05, 1, dist="t")
    return out


# -- scenario level -------------------------------------------------------------------------
def ors_variance_at_primary(
    outcome: Any, compliance: Any = None, clipped: bool = True
) -> dict[str, float]:
    """Variance components of ORS at the primary month, in ORS points squared.

    The intake variance ``sd^2`` is split into unit (``unit_icc sd^2``), therapist
    (``therapist_icc sd^2``) and the rest (client and occasion). By the primary month the
    total grows by the client random slopes (``slope_sd^2``), the mixture of on-track and
    not-on-track classes (``share (1 - share) (mean_change - not_on_track_change)^2``) and,
    when ``compliance`` is given, the mixture of compliers and never-takers
    (``uptake (1 - uptake) (complier_shift sd)^2``), all assumed independent of the intake
    components. The effect's own heterogeneity is left out (second order). With
    ``clipped`` every component is shrunk by the variance ratio of a normal clipped to the
    0-40 scale at the primary-month mean (:func:`clipped_normal_moments`), because
    ``simulate_trial`` records ORS on 0-40.

    Returns
    -------
    dict
        ``var_unit``, ``var_therapist``, ``var_rest``, ``var_total``, ``mean`` (latent mean
        at the primary month under usual care), ``inside`` (share not clipped).
    """
    sd2 = outcome.sd**2
    share = outcome.not_on_track_share
    extra = outcome.slope_sd**2 + share * (1 - share) * (
        outcome.mean_change - outcome.not_on_track_change
    ) ** 2
    if compliance is not None:
        extra += compliance.uptake * (1 - compliance.uptake) * (compliance.complier_shift * outcome.sd) ** 2
    total = sd2 + extra
    # the 0-40 scale clips scores: shrink every component by the clipped-normal variance
    # ratio at the primary-month mean (an approximation: the mixture is not normal)
    mu = (outcome.intake_mean + (1 - share) * outcome.mean_change
          + share * outcome.not_on_track_change)
    if compliance is not None:
        mu += compliance.uptake * compliance.complier_shift * outcome.sd
    clip = clipped_normal_moments(mu, math.sqrt(total)) if clipped else None
    shrink = clip["variance"] / total if clipped else 1.0
    var_unit = outcome.unit_icc * sd2 * shrink
    var_th = outcome.therapist_icc * sd2 * shrink
    total *= shrink
    return {"var_unit": var_unit, "var_therapist": var_th,
            "var_rest": total - var_unit - var_th, "var_total": total,
            "mean": mu, "inside": clip["inside"] if clipped else 1.0}


def clipped_normal_moments(mu: float, sd: float, low: float = 0.0, high: float = 40.0) -> dict:
    """Mean and variance of ``clip(Y, low, high)`` for ``Y ~ N(mu, sd^2)``.

    ORS is recorded on 0-40, so scores beyond the scale pile up at its ends: this shrinks
    both the variance and a mean difference (by about ``P(low < Y < high)``).

    Returns
    -------
    dict
        ``mean``, ``variance``, ``inside`` (``P(low < Y < high)``).

    Examples
    --------
    >>> round(clipped_normal_moments(0.0, 1.0, -50, 50)["variance"], 6)
    1.0
    """
    sd = _positive("sd", sd)
    a, b = (low - mu) / sd, (high - mu) / sd
    pa, pb = stats.norm.cdf(a), stats.norm.cdf(b)
    fa, fb = stats.norm.pdf(a), stats.norm.pdf(b)
    inside = pb - pa
    m1 = low * pa + high * (1 - pb) + mu * inside + sd * (fa - fb)
    m2 = (low**2 * pa + high**2 * (1 - pb) + (mu**2 + sd**2) * inside
          + 2 * mu * sd * (fa - fb) + sd**2 * (a * fa - b * fb))
    return {"mean": float(m1), "variance": float(m2 - m1**2), "inside": float(inside)}


def _latent_components(outcome: Any) -> dict[str, float]:
    # ICCs of a binary outcome are shares of the latent total whose residual is pi^2/3
    total = LOGISTIC_VARIANCE / (1 - outcome.unit_icc - outcome.therapist_icc - outcome.client_icc)
    return {"var_unit": outcome.unit_icc * total, "var_therapist": outcome.therapist_icc * total,
            "var_client": outcome.client_icc * total}


def _arms(sc: Any) -> dict[str, float]:
    """Evaluable clients per arm, after attrition."""
    q = sc.design.treated_share
    n = sc.size.units * sc.size.clients_per_unit
    a_c = sc.missingness.attrition_rate
    a_t = a_c * sc.missingness.attrition_ratio
    return {"n_treat": n * q * (1 - a_t), "n_control": n * (1 - q) * (1 - a_c),
            "keep_treat": 1 - a_t, "keep_control": 1 - a_c}


def _effect(sc: Any) -> dict[str, Any]:
    dilution = sc.compliance.uptake * sc.compliance.mean_multiplier
    if sc.outcome.kind == "ors":
        full = sc.effect.d * sc.outcome.sd
        inside = ors_variance_at_primary(sc.outcome, sc.compliance)["inside"]
        # the recorded (0-40) difference is about the latent one times the unclipped share
        return {"effect": full * dilution * inside, "effect_itt_latent": full * dilution,
                "effect_full": full, "dilution": dilution, "unclipped_share": inside,
                "effect_scale": "ORS points (ITT mean difference on the recorded 0-40 scale)"}
    p_c = sc.outcome.control_rate
    rd = (p_c * sc.effect.risk_ratio - p_c) * dilution
    return {"effect": rd, "effect_full": p_c * sc.effect.risk_ratio - p_c, "dilution": dilution,
            "effect_scale": "risk difference (ITT)", "p_control": p_c, "p_treat": p_c + rd,
            "risk_ratio_itt": (p_c + rd) / p_c}


def _icc_pair(sc: Any, p: float | None = None) -> dict[str, float]:
    """Unit and therapist ICCs on the analysis scale, with the total variance."""
    if sc.outcome.kind == "ors":
        v = ors_variance_at_primary(sc.outcome, sc.compliance)
        tot = v["var_total"]
        return {"var_total": tot, "icc_unit": v["var_unit"] / tot,
                "icc_therapist": v["var_therapist"] / tot}
    lat = _latent_components(sc.outcome)
    # one level at a time, the other random effects integrated out
    return {"var_total": p * (1 - p),
            "icc_unit": observed_icc(p, lat["var_unit"], lat["var_therapist"] + lat["var_client"]),
            "icc_therapist": observed_icc(p, lat["var_therapist"], lat["var_unit"] + lat["var_client"])}


def _finish(out: dict[str, Any], variance: float, alpha: float, df: float | None = None) -> dict:
    out["variance"] = variance
    out["se"] = math.sqrt(variance)
    out["alpha"] = alpha
    out["sides"] = 2
    out["power"] = power_from_variance(out["effect"], variance, alpha, 2)
    if df is not None:
        out["df"] = df
        out["power_t"] = power_from_variance(out["effect"], variance, alpha, 2, df)
    return _json_native(out)


def _json_native(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_native(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_native(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj)
    return obj


def _power_individual(sc: Any, base: dict[str, Any]) -> dict[str, Any]:
    d, s = sc.design, sc.size
    arms = _arms(sc)
    q = d.treated_share
    if d.control_clustered:
        # therapists split by the allocation ratio, at least one per arm
        th_t = min(max(1, round(s.therapists_per_unit * q)), s.therapists_per_unit - 1)
        th_c = s.therapists_per_unit - th_t
    else:
        th_t, th_c = s.therapists_per_unit, 0
    m_t = arms["n_treat"] / (s.units * th_t)
    m_c = arms["n_control"] / (s.units * th_c) if th_c else None
    if sc.outcome.kind == "ors":
        v = ors_variance_at_primary(sc.outcome, sc.compliance)
        # randomization within unit removes the unit variance from the contrast
        var_w = v["var_total"] - v["var_unit"]
        icc_t = icc_c = v["var_therapist"] / var_w
        # clients without a therapist carry no therapist variance (as in simulate_trial)
        var_terms = (var_w, var_w if d.control_clustered else var_w - v["var_therapist"])
        iccs = {"icc_unit": v["var_unit"] / v["var_total"],
                "icc_therapist": v["var_therapist"] / v["var_total"],
                "icc_therapist_within_unit": icc_t}
        sd = math.sqrt(var_w)
    else:
        p_t, p_c = base["p_treat"], base["p_control"]
        icc_t = _icc_pair(sc, p_t)["icc_therapist"]
        icc_c = _icc_pair(sc, p_c)["icc_therapist"]
        var_terms = (p_t * (1 - p_t), p_c * (1 - p_c))
        iccs = {"icc_therapist_treat": icc_t, "icc_therapist_control": icc_c}
        sd = None
    cv = s.cluster_size_cv
    de_t = design_effect(max(m_t, 1.0), icc_t, cv)
    de_c = design_effect(max(m_c, 1.0), icc_c, cv) if m_c is not None else 1.0
    variance = var_terms[0] * de_t / arms["n_treat"] + var_terms[1] * de_c / arms["n_control"]
    out = {
        **base,
        "method": ("therapist clustering per arm: Var = s_T^2 DE_T/n_T + s_C^2 DE_C/n_C, "
                   "DE = 1 + ((CV^2+1) m - 1) rho (Eldridge 2006); partially nested when "
                   "controls have no therapist (DOMAIN.md s4); unit variance removed by "
                   "randomization within unit"),
        "sd": sd,
        **iccs,
        "therapists_treat": s.units * th_t,
        "therapists_control": s.units * th_c,
        "clients_per_therapist_treat": m_t,
        "clients_per_therapist_control": m_c,
        "variance_per_client_treat": var_terms[0],
        "variance_per_client_control": var_terms[1],
        "design_effect_treat": de_t,
        "design_effect_control": de_c,
        "n_treat": arms["n_treat"],
        "n_control": arms["n_control"],
    }
    return _finish(out, variance, sc.analysis.alpha)


def _power_cluster(sc: Any, base: dict[str, Any]) -> dict[str, Any]:
    d, s = sc.design, sc.size
    arms = _arms(sc)
    k_t = round(s.units * d.treated_share)
    k_c = s.units - k_t
    if k_t < 1 or k_c < 1:
        raise ValueError(
            f"size.units ({s.units}) and design.allocation_ratio ({d.allocation_ratio:g}) "
            "leave an arm without units"
        )
    cv = s.cluster_size_cv
    out = {**base, "units_treat": k_t, "units_control": k_c}
    variance = 0.0
    # every unit's clients see its therapists (simulate_trial ignores control_clustered here)
    for arm, k, keep in (("treat", k_t, arms["keep_treat"]), ("control", k_c, arms["keep_control"])):
        m = s.clients_per_unit * keep
        p = base.get("p_treat" if arm == "treat" else "p_control")
        ic = _icc_pair(sc, p)
        rho_t = ic["icc_therapist"]
        # three levels, sizes weighted as in Eldridge 2006: therapists share a unit's
        # (m (1+CV^2)) clients, so their term is ((CV^2+1) m - 1) rho_t / t
        big = (cv**2 + 1) * m
        de = 1 + (big - 1) * ic["icc_unit"] + (big - 1) * rho_t / s.therapists_per_unit
        variance += ic["var_total"] * de / (k * m)
        out.update({f"icc_unit_{arm}": ic["icc_unit"], f"icc_therapist_{arm}": rho_t,
                    f"design_effect_{arm}": de, f"n_{arm}": k * m,
                    f"clients_per_unit_{arm}": m})
        if sc.outcome.kind == "ors":
            out["sd"] = math.sqrt(ic["var_total"])
    out["method"] = ("parallel cluster randomization, Var = sum_arm s^2 DE/(k m), DE = 1 + "
                     "((CV^2+1) m - 1)(rho_u + rho_t / t) (Eldridge 2006, with therapists "
                     "nested in units)")
    return _finish(out, variance, sc.analysis.alpha, df=float(k_t + k_c - 2))


def _exposure_cells(sc: Any, x: np.ndarray) -> np.ndarray:
    """Mean exposure of the clients starting in each cell, given lag and fidelity ramp."""
    d, s = sc.design, sc.size
    length = s.recruitment_months / x.shape[1]
    lag, ramp = d.lag_months, sc.compliance.ramp_months
    out = x.copy()
    first = np.argmax(np.nan_to_num(x, nan=0.0) > 0, axis=1)
    grid = (np.arange(400) + 0.5) / 400  # start times within a period, as fractions
    for i, c in enumerate(first):
        for j in range(c, x.shape[1]):
            if np.isnan(x[i, j]):
                continue
            u = (j - c + grid) * length  # months from the unit's crossover to the start
            # as in simulate_trial: no FIT within the lag, fidelity ramps from crossover
            g = np.where(u < lag, 0.0, 1.0 if ramp == 0 else np.clip(u / max(ramp, 1e-12), 0, 1))
            out[i, j] = g.mean()
    return out


def _power_stepped_wedge(sc: Any, base: dict[str, Any]) -> dict[str, Any]:
    d, s = sc.design, sc.size
    steps, units = d.steps, s.units
    per = [units // steps + (1 if k < units % steps else 0) for k in range(steps)]
    x01 = stepped_wedge_schedule(steps, per, baseline_periods=1, window=d.window_periods)
    x = _exposure_cells(sc, x01)
    arms = _arms(sc)
    open_cells = (~np.isnan(x01)).sum(axis=1, keepdims=True)
    m_cell = s.clients_per_unit / open_cells * np.ones_like(x01)
    # attrition: exposed share of a cell follows FIT attrition, the rest usual care
    keep = np.where(np.isnan(x01), np.nan, x01 * arms["keep_treat"] + (1 - x01) * arms["keep_control"])
    m_eval = m_cell * keep
    if sc.outcome.kind == "ors":
        v = ors_variance_at_primary(sc.outcome, sc.compliance)
        var_u, var_th, var_tot = v["var_unit"], v["var_therapist"], v["var_total"]
    else:
        p_bar = (base["p_treat"] + base["p_control"]) / 2
        ic = _icc_pair(sc, p_bar)
        var_tot = p_bar * (1 - p_bar)
        var_u, var_th = ic["icc_unit"] * var_tot, ic["icc_therapist"] * var_tot
    t = s.therapists_per_unit
    # therapists persist across periods: their share of a cell mean (1/t) counts both
    # within and between periods; the unit part decays with the cluster autocorrelation
    rho_c_unit = sc.outcome.cluster_autocorrelation
    within = var_u + var_th / t
    rho = within / var_tot
    rho_c = (rho_c_unit * var_u + var_th / t) / within if within > 0 else 1.0
    variance = stepped_wedge_gls_variance(x, math.sqrt(var_tot), rho, m_eval, rho_c, 0.0)
    out = {
        **base,
        "method": ("stepped wedge, Hooper et al. (2016) model (cluster autocorrelation, "
                   "cross-sectional), GLS variance on the scenario's schedule with period "
                   "effects (Hussey & Hughes 2007)"),
        "sd": math.sqrt(var_tot) if sc.outcome.kind == "ors" else None,
        "icc_cluster_period": rho,
        "cluster_autocorrelation": rho_c,
        "design_effect": 1 + (float(np.nanmean(m_eval)) - 1) * rho,
        "units_per_step": per,
        "periods": int(x.shape[1]),
        "clients_per_cell": float(np.nanmean(m_cell)),
        "clients_per_cell_evaluable": float(np.nanmean(m_eval)),
        "n_treat": float(np.nansum(m_eval * x)),
        "n_control": float(np.nansum(m_eval * (1 - x))),
        "mean_exposure_exposed_cells": float(np.nanmean(np.where(x01 == 1, x, np.nan))),
    }
    # the closed form holds only for equal steps, full 0/1 exposure and one cell size
    same_keep = arms["keep_treat"] == arms["keep_control"]
    full = np.array_equal(x, x01, equal_nan=True)
    if d.window_periods is None and units % steps == 0 and steps >= 2 and same_keep and full:
        out["variance_hooper_closed_form"] = hooper_variance(
            math.sqrt(var_tot), rho, float(np.nanmean(m_eval)), steps, units // steps, rho_c
        )
    return _finish(out, variance, sc.analysis.alpha)


def power(scenario: Any) -> dict[str, Any]:
    """Analytic power of a scenario's primary ITT comparison at the primary month.

    Dispatches on ``scenario.design.kind`` and ``scenario.outcome.kind``.

    - **Effect**: the ITT effect, diluted by uptake and the mean fidelity multiplier:
      ORS ``effect.d * outcome.sd * uptake * mean_multiplier`` (``effect_itt_latent``),
      times the share of scores not clipped by the 0-40 scale (``effect``, the difference
      a comparison of recorded scores sees); binary the risk difference
      ``control_rate (risk_ratio - 1)`` diluted the same way.
    - **Variance** (ORS): :func:`ors_variance_at_primary` (intake ``sd^2`` plus slopes plus
      the class and complier mixtures); ICCs are the unit and therapist variances over
      that total. Binary: ``p (1 - p)`` with ICCs converted from the latent logit scale by
      :func:`observed_icc`.
    - **Analysis**: a comparison of primary-month outcomes with no baseline adjustment
      (conservative for ANCOVA and growth models), normal approximation, two-sided
      ``analysis.alpha``; evaluable clients after ``missingness.attrition_rate`` (times
      ``attrition_ratio`` under FIT).
    - ``individual``: therapists per unit split by the allocation ratio (all of them FIT
      therapists when ``design.control_clustered`` is False: partially nested); each arm
      its own design effect with the unit-size CV as the caseload CV; randomization within
      unit removes the unit variance from the contrast; unclustered controls have no
      therapist variance (so the partially nested formula is applied with arm-specific
      variances).
    - ``cluster``: units split by the allocation ratio; Eldridge's design effect with
      therapists nested in units.
    - ``stepped_wedge``: ``steps + 1`` periods of ``recruitment_months / (steps + 1)``,
      units spread over steps as evenly as possible (the first steps get the extra ones),
      ``clients_per_unit`` spread over the unit's observed periods (fewer periods with
      ``design.window_periods``), cells partly exposed where ``lag_months`` or
      ``ramp_months`` delay full FIT (no FIT for ``lag_months`` after crossover; fidelity
      rising linearly from crossover to full over ``ramp_months``), cluster autocorrelation
      ``outcome.cluster_autocorrelation`` for the unit effect (therapist effects persist);
      GLS variance under the Hooper et al. (2016) model.

    Parameters
    ----------
    scenario : simulate.scenario.Scenario

    Returns
    -------
    dict
        JSON-native: ``design``, ``outcome``, ``method``, ``effect`` (and its parts),
        ``sd``, ICCs, design effects, evaluable ``n_treat`` / ``n_control``, ``variance``,
        ``se``, ``power``, ``alpha``; cluster designs add ``df`` and ``power_t``.

    Examples
    --------
    >>> from simulate import Scenario
    >>> out = power(Scenario().replace({"effect.d": 0.5}))
    >>> out["design"], round(out["power"], 2)
    ('individual', 0.2)
    """
    kind = scenario.design.kind
    base = {"design": kind, "outcome": scenario.outcome.kind, **_effect(scenario)}
    if kind == "individual":
        out = _power_individual(scenario, base)
    elif kind == "cluster":
        out = _power_cluster(scenario, base)
    elif kind == "stepped_wedge":
        out = _power_stepped_wedge(scenario, base)
    else:
        raise ValueError(f"design.kind must be individual, cluster or stepped_wedge, got {kind!r}")
    return _json_native({**out, **baseline_adjusted(scenario, out)})


def baseline_correlation(scenario: Any) -> float:
    """Correlation of a client's ORS at baseline and at the primary month.

    The components shared by both occasions are the stable unit effect
    (``cluster_autocorrelation`` times the unit variance: baseline and the primary month
    fall in different calendar periods), the therapist and the client intercept; the
    primary month adds slopes and the class and complier mixtures
    (:func:`ors_variance_at_primary`, unclipped).
    """
    oc = scenario.outcome
    sd2 = oc.sd**2
    shared = (oc.unit_icc * oc.cluster_autocorrelation + oc.therapist_icc + oc.client_icc) * sd2
    primary = ors_variance_at_primary(oc, scenario.compliance, clipped=False)["var_total"]
    return float(shared / math.sqrt(sd2 * primary))


def baseline_adjusted(scenario: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Power of the same comparison adjusted for the baseline score (ANCOVA).

    Adjusting for baseline multiplies the variance of the effect by ``1 - r^2``, with
    ``r`` the baseline-primary correlation (Borm, Fransen & Lemmens 2007). The factor is
    exact for individual randomization and an approximation for clustered designs, where
    the cluster-level correlation over time differs from the individual one (Teerenstra
    et al. 2012). Growth models that use every occasion do somewhat better still, so
    simulated power of ``reml_trajectory`` lies between ``power`` and this. Binary
    outcomes: not computed (``None``).
    """
    if scenario.outcome.kind != "ors":
        return {"r_baseline": None, "variance_baseline_adjusted": None,
                "power_baseline_adjusted": None}
    r = baseline_correlation(scenario)
    var = out["variance"] * (1 - r**2)
    return {
        "r_baseline": r,
        "variance_baseline_adjusted": var,
        "power_baseline_adjusted": power_from_variance(
            out["effect"], var, alpha=out["alpha"], sides=out.get("sides", 2)),
    }


def power_curve(scenario: Any, field: str, values: Iterable[Any]) -> Any:
    """Power over the values of one dotted field, e.g. ``"size.units"``.

    Parameters
    ----------
    scenario : simulate.scenario.Scenario
    field : str
        Dotted path accepted by ``Scenario.replace``.
    values : iterable
        Values to try.

    Returns
    -------
    pandas.DataFrame
        One row per value: the field, then the scalar entries of :func:`power`.

    Examples
    --------
    >>> from simulate import Scenario
    >>> df = power_curve(Scenario(), "size.units", [12, 24])
    >>> bool(df["power"].is_monotonic_increasing)
    True
    """
    import pandas as pd  # pandas is heavy; keep `import simulate` cheap

    rows = []
    for v in values:
        res = power(scenario.replace({field: v}))
        rows.append({field: v, **{k: r for k, r in res.items() if not isinstance(r, list | dict)}})
    if not rows:
        raise ValueError("values must hold at least one value")
    return pd.DataFrame(rows)
