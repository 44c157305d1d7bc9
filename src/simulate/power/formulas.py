"""Textbook power and variance formulas, each with its source: plain numbers in and out.

- :func:`power_from_variance`: the Wald test of an effect with a known variance.
- :func:`power_two_sample`, :func:`n_for_power`: two independent samples (Cohen 1988).
- :func:`design_effect`, :func:`variance_clustered_arms`, :func:`power_clustered_arms`:
  individual randomization with therapist clustering in both arms or in one arm only
  (partially nested; Candlish 2018).
- :func:`power_cluster_randomized`: parallel cluster randomization with variable cluster
  sizes (Eldridge, Ashby & Kerry 2006).
- :func:`power_two_proportions`, :func:`odds_ratio_from_d`, :func:`d_from_odds_ratio`,
  :func:`observed_icc`: binary outcomes (Fleiss 1981, Chinn 2000).
- :func:`clipped_normal_moments`: a normal outcome recorded on a bounded scale (ORS 0-40).

The stepped-wedge formulas are in :mod:`simulate.power.stepped_wedge`. Each formula is
checked against a brute-force simulation in ``tests/test_analytic.py``.

Examples
--------
>>> round(power_two_sample(0.5, 1.0, 64, 64), 3)
0.807
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special, stats

from simulate.conventions import ORS_MAX, ORS_MIN, expit, gauss_hermite
from simulate.power.checks import (
    PowerInputError,
    alpha_sides,
    critical_z,
    distribution,
    positive,
    proportion,
    sample_sizes,
    t_df,
    unit_interval,
)

__all__ = [
    "power_from_variance",
    "power_two_sample",
    "n_for_power",
    "design_effect",
    "variance_clustered_arms",
    "power_clustered_arms",
    "power_cluster_randomized",
    "power_two_proportions",
    "odds_ratio_from_d",
    "d_from_odds_ratio",
    "observed_icc",
    "clipped_normal_moments",
    "clipped_moments",
]

_SQRT2PI = math.sqrt(2.0 * math.pi)


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
    alpha, sides = alpha_sides(alpha, sides)
    se = math.sqrt(positive("variance", variance))
    lam = abs(float(effect)) / se
    if df is None:
        z = critical_z(alpha, sides)
        p = stats.norm.cdf(lam - z)
        if sides == 2:
            p += stats.norm.cdf(-lam - z)
        return float(p)
    df = positive("df", df)
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
    sd = positive("sd", sd)
    n_treat, n_control = sample_sizes(n_treat, n_control)
    var = sd**2 * (1 / n_treat + 1 / n_control)
    df = t_df(dist, n_treat + n_control - 2, "n_treat + n_control")
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
    power = proportion("power", power)
    alpha, sides = alpha_sides(alpha, sides)
    sd, ratio = positive("sd", sd), positive("ratio", ratio)
    deff = positive("design_effect", design_effect)
    if delta == 0:
        raise PowerInputError("delta must be non-zero: no sample size detects a zero effect")
    distribution(dist)
    z = critical_z(alpha, sides) + stats.norm.ppf(power)
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
    m = positive("m", m)
    if m < 1:
        raise PowerInputError(f"m must be at least 1 (mean cluster size), got {m!r}")
    icc = unit_interval("icc", icc)
    cv = positive("cv", cv, allow_zero=True)
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
    ``Var = sd^2 [(1 + (m_T - 1) icc) / n_T + 1 / n_C]`` (the partially nested design;
    Candlish et al. 2018 on what ignoring this clustering does to the type I error).

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
    sd = positive("sd", sd)
    n_treat, n_control = sample_sizes(n_treat, n_control)
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
    k_t = positive("clusters_treat", clusters_treat)
    k_c = positive("clusters_control", clusters_control)
    var = positive("sd", sd) ** 2 * design_effect(m, icc, cv) * (1 / (k_t * m) + 1 / (k_c * m))
    df = t_df(dist, k_t + k_c - 2, "clusters_treat + clusters_control")
    return power_from_variance(delta, var, alpha, sides, df)



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
    proportion("p_control", p_control), proportion("p_treat", p_treat)
    n_t, n_c = sample_sizes(n_treat, n_control)
    alpha, sides = alpha_sides(alpha, sides)
    de_t, de_c = (design_effect, design_effect) if np.isscalar(design_effect) else design_effect
    de_t, de_c = positive("design_effect", de_t), positive("design_effect", de_c)
    if scale == "log_rr":
        var = de_t * (1 - p_treat) / (n_t * p_treat) + de_c * (1 - p_control) / (n_c * p_control)
        return power_from_variance(math.log(p_treat / p_control), var, alpha, sides)
    if scale != "difference":
        raise PowerInputError(f"scale must be 'difference' or 'log_rr', got {scale!r}")
    diff = abs(p_treat - p_control)
    var1 = de_t * p_treat * (1 - p_treat) / n_t + de_c * p_control * (1 - p_control) / n_c
    if not pooled:
        return power_from_variance(diff, var1, alpha, sides)
    pbar = (n_t * p_treat + n_c * p_control) / (n_t + n_c)
    de_bar = (n_t * de_t + n_c * de_c) / (n_t + n_c)
    var0 = de_bar * pbar * (1 - pbar) * (1 / n_t + 1 / n_c)
    z = critical_z(alpha, sides)
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
    return float(math.log(positive("odds_ratio", odds_ratio)) * math.sqrt(3) / math.pi)


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
    p = proportion("p", p)
    vb = positive("var_cluster", var_cluster, allow_zero=True)
    vo = positive("var_other", var_other, allow_zero=True)
    if vb == 0:
        return 0.0
    z, w = gauss_hermite(60)

    def marginal(mu: float) -> float:
        return float(w @ expit(mu + math.sqrt(vb + vo) * z))

    mu = optimize.brentq(lambda u: marginal(u) - p, -40, 40, xtol=1e-12)
    # E[Y | b] at each quadrature node of b, integrating c out
    cond = expit(mu + math.sqrt(vb) * z[:, None] + math.sqrt(vo) * z[None, :]) @ w
    var_b = float(w @ (cond - p) ** 2)
    return var_b / (p * (1 - p))


def clipped_normal_moments(mu: float, sd: float, low: float = ORS_MIN,
                           high: float = ORS_MAX) -> dict:
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
    sd = positive("sd", sd)
    m1, m2, inside = clipped_moments(mu, sd, low, high)
    return {"mean": float(m1), "variance": float(m2 - m1**2), "inside": float(inside)}


def clipped_moments(mu, sd, low: float = ORS_MIN, high: float = ORS_MAX):
    """``E[clip(Y)]``, ``E[clip(Y)^2]`` and ``P(low < Y < high)``, elementwise.

    The array form of :func:`clipped_normal_moments` (no checks; ``sd > 0``), for the
    quadratures of :mod:`simulate.power.moments`.
    """
    mu = np.asarray(mu, dtype=float)
    a, b = (low - mu) / sd, (high - mu) / sd
    pa, pb = special.ndtr(a), special.ndtr(b)
    fa, fb = np.exp(-0.5 * a * a) / _SQRT2PI, np.exp(-0.5 * b * b) / _SQRT2PI
    inside = pb - pa
    m1 = low * pa + high * (1 - pb) + mu * inside + sd * (fa - fb)
    m2 = (low**2 * pa + high**2 * (1 - pb) + (mu**2 + sd**2) * inside
          + 2 * mu * sd * (fa - fb) + sd**2 * (a * fa - b * fb))
    return m1, m2, inside
