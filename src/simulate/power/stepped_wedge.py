"""Stepped-wedge designs: the schedule, and the variance of the effect in closed form and
by generalized least squares.

- :func:`stepped_wedge_schedule`: the design matrix, complete or incomplete.
- :func:`hussey_hughes_variance`: Hussey & Hughes (2007), complete designs, one cluster
  intercept.
- :func:`hooper_variance`: Hooper et al. (2016), with cluster and individual
  autocorrelation.
- :func:`stepped_wedge_gls_variance`: the same model for any design (incomplete, uneven,
  partial exposure).

Examples
--------
>>> x = stepped_wedge_schedule(4, units_per_step=2)
>>> round(hussey_hughes_variance(x, sigma2=1.0, tau2=0.0), 6)
0.2
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from simulate.power.checks import (
    PowerInputError,
    autocorrelations,
    positive,
    unit_interval,
    whole_number,
)

__all__ = [
    "stepped_wedge_schedule",
    "hussey_hughes_variance",
    "hooper_variance",
    "stepped_wedge_gls_variance",
]


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
    steps = whole_number("steps", steps, 1)
    baseline_periods = whole_number("baseline_periods", baseline_periods, 1)
    if isinstance(units_per_step, int | np.integer):
        per = [int(units_per_step)] * steps
    else:
        per = [int(k) for k in units_per_step]
    if len(per) != steps or any(k < 0 for k in per) or sum(per) == 0:
        raise PowerInputError(
            f"units_per_step must be an int >= 1 or {steps} non-negative ints with a positive "
            f"sum, got {units_per_step!r}"
        )
    if window is not None:
        window = whole_number("window", window, 1)
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


def _matrix(x) -> np.ndarray:
    """A design matrix as a 2-d float array (clusters x periods)."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise PowerInputError(f"x must be a 2-d array (clusters x periods), got shape {x.shape}")
    return x


def _complete_binary(x) -> np.ndarray:
    """A complete 0/1 design, as the Hussey & Hughes closed form needs."""
    x = _matrix(x)
    if np.isnan(x).any():
        raise PowerInputError(
            "X has unobserved (NaN) cells: the Hussey & Hughes closed form needs a complete "
            "design; use stepped_wedge_gls_variance for incomplete ones"
        )
    if not np.isin(x, (0.0, 1.0)).all():
        raise PowerInputError("X must hold only 0 and 1 for the closed form")
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
    x = _complete_binary(x)
    s2 = positive("sigma2", sigma2)
    t2 = positive("tau2", tau2, allow_zero=True)
    n_i, n_t = x.shape
    u = x.sum()
    w = (x.sum(axis=0) ** 2).sum()
    v = (x.sum(axis=1) ** 2).sum()
    den = (n_i * u - w) * s2 + (u**2 + n_i * n_t * u - n_t * w - n_i * v) * t2
    if den <= 0:
        raise PowerInputError("X does not identify the treatment effect (no within-period contrast)")
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
    sd = positive("sd", sd)
    rho = unit_interval("icc", icc)
    m = positive("m", m)
    t = whole_number("steps", steps, 2)
    k = positive("clusters_per_step", clusters_per_step)
    rho_c, rho_s = autocorrelations(cluster_autocorrelation, individual_autocorrelation)
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
    pairs: np.ndarray | None = None,
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

    **Open cohorts** (``pairs``): where individuals are measured in some periods and not
    others, or more than once in a period, the individual part of the covariance counts
    the pairs of measurements of one individual: ``Cov(ybar_it, ybar_is) = sd^2 (rho
    rho_c + (1-rho) rho_s P_its / (m_it m_is))`` and ``Var(ybar_it)`` gains ``sd^2 (1-rho)
    rho_s P_itt / m_it^2``, with ``P_its`` the expected number of (ordered) pairs of
    measurements of the same individual in periods ``t`` and ``s`` (in the same period for
    ``P_itt``, pairs of distinct measurements). A closed cohort of ``m`` individuals
    measured once per period has ``P_its = m`` and ``P_itt = 0``: Hooper's model.

    Parameters
    ----------
    x : array (I, T)
        Exposure per cell (0..1), ``NaN`` where not observed.
    sd : float
        Total SD.
    icc : float
        Within-cluster-period ICC.
    m : float or array (I, T)
        Individuals (measurements) per cell.
    cluster_autocorrelation, individual_autocorrelation : float
        ``rho_c`` and ``rho_s`` as in :func:`hooper_variance`. Without ``pairs``,
        ``rho_s > 0`` needs one cell size m (a closed cohort).
    pairs : array (I, T, T), optional
        Expected same-individual pairs of measurements (open cohort).

    Returns
    -------
    float

    Examples
    --------
    >>> x = stepped_wedge_schedule(4, units_per_step=2)
    >>> round(stepped_wedge_gls_variance(x, 1.0, 0.0, 1), 6)
    0.2
    """
    x = _matrix(x)
    obs = ~np.isnan(x)
    if ((x[obs] < 0) | (x[obs] > 1)).any():
        raise PowerInputError("x must hold exposures in [0, 1] (or NaN for unobserved cells)")
    sd = positive("sd", sd)
    rho = unit_interval("icc", icc)
    rho_c, rho_s = autocorrelations(cluster_autocorrelation, individual_autocorrelation)
    m_arr = np.broadcast_to(np.asarray(m, dtype=float), x.shape)
    if (m_arr[obs] <= 0).any():
        raise PowerInputError("m must be > 0 in every observed cell")
    if pairs is None and rho_s > 0 and np.ptp(m_arr[obs]) > 0:
        raise PowerInputError("individual_autocorrelation > 0 needs one cell size m (a closed "
                              "cohort) or the pairs of an open cohort")
    if pairs is not None:
        pairs = np.asarray(pairs, dtype=float)
        if pairs.shape != x.shape + (x.shape[1],) or (pairs < 0).any():
            raise PowerInputError(f"pairs must be non-negative with shape {x.shape + (x.shape[1],)}")
    n_t = x.shape[1]
    info = np.zeros((n_t + 1, n_t + 1))
    for i in range(x.shape[0]):
        cols = np.flatnonzero(obs[i])
        if cols.size == 0:
            continue
        mi = m_arr[i, cols]
        if pairs is None:
            v = np.full((cols.size, cols.size), sd**2 * (rho * rho_c + (1 - rho) * rho_s / mi[0]))
            np.fill_diagonal(v, sd**2 * (rho + (1 - rho) / mi))
        else:
            share = pairs[i][np.ix_(cols, cols)] / np.outer(mi, mi)
            v = sd**2 * (rho * rho_c + (1 - rho) * rho_s * share)
            v[np.diag_indices(cols.size)] = sd**2 * (rho + (1 - rho) / mi
                                                     + (1 - rho) * rho_s * np.diag(share))
        z = np.zeros((cols.size, n_t + 1))
        z[np.arange(cols.size), cols] = 1.0
        z[:, -1] = x[i, cols]
        info += z.T @ np.linalg.solve(v, z)
    # periods nobody observes carry no information: drop them before inverting
    keep = np.flatnonzero(np.diag(info) > 0)
    if keep[-1] != n_t:
        raise PowerInputError("x has no exposed observed cell: the effect is not identified")
    info = info[np.ix_(keep, keep)]
    if np.linalg.matrix_rank(info) < info.shape[0]:
        raise PowerInputError("x does not identify the effect apart from the period effects")
    return float(np.linalg.inv(info)[-1, -1])
