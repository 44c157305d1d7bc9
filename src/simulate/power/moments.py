"""The expected design of a scenario and the moments of its recorded ORS scores.

:func:`expected_design` describes, without drawing anything, the trial that
``simulate_trial`` draws: the kinds of unit (individual randomization: one; cluster: FIT
and usual-care units; stepped wedge: one per step) with their numbers and size
distribution, and inside a unit the kinds of client, on a grid of start months, with
their arm or exposure, fidelity ramp, therapist group, calendar periods and attrition
patterns, each with its expected share of the unit's clients.

:func:`client_moments` gives, for each kind of client, the first two moments of the
scores the estimators see (clipped to 0-40), computed from the data-generating model
(:mod:`simulate.outcomes`, :mod:`simulate.compliance`) by quadrature, with no simulation:

- the latent score is ``intake + L + P time + trend calendar / 12 + e`` with ``L`` the
  client's level (unit, therapist and client intercepts), ``P`` the progress (class
  change + client slope + complier shift + the FIT effect of a complier, which depends on
  the not-on-track class, the therapist's fidelity and the ramp) and ``e`` the occasion
  noise (with the unit x period effect);
- the discrete parts (not on track, complier, fidelity level) are enumerated; ``L`` and
  the client slope are integrated by two-dimensional Gauss-Hermite quadrature of the
  clipped-normal moments of each occasion given ``(L, P)``, so the within-client means,
  variances and covariances of the *recorded* scores are exact up to the quadrature
  (rounding to one decimal adds 1/1200 to a variance and is left out);
- scores of different clients share the unit, unit x period and therapist intercepts and
  the therapist's fidelity: those covariances are taken to first order (a shared normal
  effect of variance ``v`` gives ``v P_a P_b``, with ``P_a`` the chance that occasion ``a``
  is not clipped), while the fidelity part is exact (``Cov`` over the three levels of the
  two clients' expected scores).

Examples
--------
>>> from simulate import load_scenario
>>> design = expected_design(load_scenario(None))
>>> [u.kind for u in design.units], design.units[0].count
([('individual', 0)], 12.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from simulate import compliance as comp
from simulate import design as des
from simulate.conventions import (
    ORS_MAX,
    ORS_MIN,
    expit,
    gauss_hermite,
    scaled_time,
    therapist_split,
)
from simulate.outcomes import variance_components
from simulate.population import cluster_size_distribution
from simulate.power.formulas import clipped_moments

__all__ = ["UnitKind", "ExpectedDesign", "Selection", "expected_design", "selection_model",
           "client_moments", "attrition_patterns"]

#: Start months per month of a unit's recruitment window (stepped wedge: 4, so that
#: exposure, the fidelity ramp and calendar periods are resolved to half a month).
_STARTS_PER_MONTH = {"stepped_wedge": 2.0, "individual": 1.0, "cluster": 1.0}
#: Gauss-Hermite nodes per dimension of the (level, slope) quadrature.
_NODES = 10  # 1e-5 of a covariance from 30 nodes


@dataclass
class UnitKind:
    """One kind of unit and, inside it, its kinds of client (one row each).

    Attributes
    ----------
    kind : tuple
        ``("individual", 0)``, ``("cluster", arm)`` or ``("stepped_wedge", step)``.
    count : float
        Units of this kind in the trial.
    start : ndarray
        Start month of each kind of client.
    exposure : ndarray
        FIT offered (0/1).
    ramp : ndarray
        Share of the therapist's fidelity reached (stepped wedge), else 1.
    group : ndarray
        Therapist group: 0 the FIT (or only) group, 1 the usual-care group, -1 none.
    share : ndarray
        Expected share of the unit's clients of each kind (sums to 1).
    therapists : tuple of int
        Therapists in each group.
    """

    kind: tuple
    count: float
    start: np.ndarray
    exposure: np.ndarray
    ramp: np.ndarray
    group: np.ndarray
    share: np.ndarray
    therapists: tuple[int, ...]


@dataclass
class ExpectedDesign:
    """The expected trial: unit kinds, sizes, occasions and calendar periods."""

    units: list[UnitKind]
    sizes: np.ndarray  # clients per unit: support of the size distribution
    size_prob: np.ndarray
    months: np.ndarray
    time: np.ndarray  # model time of each occasion (log scale, 1 at the primary month)
    primary: int  # index of the primary occasion
    period_months: float


def expected_design(sc) -> ExpectedDesign:
    """The expected design of an ORS scenario (see the module docstring).

    Start months are the midpoints of a regular grid over each unit's recruitment
    window (uniform recruitment, as :func:`simulate.population.recruitment_months`);
    individual randomization gives each start the allocation share in each arm (blocked
    randomization within unit), and each arm's clients are shared evenly by its
    therapists (round-robin, :func:`simulate.population.assign_therapists`).
    """
    d, s, f = sc.design, sc.size, sc.followup
    months = np.asarray(f.months, dtype=float)
    primary = int(np.flatnonzero(months == f.primary)[0])
    sizes, prob = cluster_size_distribution(s)
    k = s.therapists_per_unit

    def grid(lo: float, hi: float) -> np.ndarray:
        n = max(4, int(np.ceil((hi - lo) * _STARTS_PER_MONTH[d.kind])))
        return lo + (np.arange(n) + 0.5) / n * (hi - lo)

    units = []
    if d.kind == "individual":
        start = grid(0.0, s.recruitment_months)
        q = d.treated_share
        n_fit, n_ctrl = therapist_split(k, q, d.control_clustered)
        g = len(start)
        units.append(UnitKind(
            ("individual", 0), float(s.units), np.tile(start, 2),
            np.repeat([1, 0], g), np.ones(2 * g),
            np.repeat([0, 1 if d.control_clustered else -1], g),
            np.repeat([q / g, (1 - q) / g], g), (n_fit, n_ctrl)))
    elif d.kind == "cluster":
        start = grid(0.0, s.recruitment_months)
        g = len(start)
        k_t = round(s.units * d.treated_share)
        for arm, count in ((1, k_t), (0, s.units - k_t)):
            units.append(UnitKind(("cluster", arm), float(count), start,
                                  np.full(g, arm), np.ones(g), np.zeros(g, dtype=int),
                                  np.full(g, 1.0 / g), (k,)))
    else:
        cross = des.crossover_months(sc)
        length = des.step_length(sc)
        for step, count in enumerate(des.units_per_step(s.units, d.steps), start=1):
            lo, hi = 0.0, s.recruitment_months
            if d.window_periods is not None:
                lo = max(0.0, (step - d.window_periods) * length)
                hi = min(s.recruitment_months, (step + d.window_periods) * length)
            start = grid(lo, hi)
            g = len(start)
            units.append(UnitKind(
                ("stepped_wedge", step), float(count), start,
                des.exposed(start, cross[step], d.lag_months).astype(int),
                comp.fidelity_ramp(start, np.full(g, cross[step]), sc.compliance.ramp_months),
                np.zeros(g, dtype=int), np.full(g, 1.0 / g), (k,)))
    return ExpectedDesign(units, sizes, prob, months, scaled_time(months, f.primary),
                          primary, f.period_months)


def attrition_patterns(sc, exposure: int) -> tuple[np.ndarray, np.ndarray]:
    """Observed-occasion patterns and their probabilities for a client.

    ``simulate_trial``'s monotone attrition: a client misses the primary follow-up with
    probability ``attrition_rate`` (times ``attrition_ratio`` under FIT), and then every
    occasion from a follow-up drawn uniformly up to the primary one. Returns
    ``(observed, prob)``: patterns x occasions (bool) and one probability each.
    """
    m = sc.missingness
    months = np.asarray(sc.followup.months, dtype=float)
    j_primary = int(np.flatnonzero(months == sc.followup.primary)[0])
    rate = m.attrition_rate * (m.attrition_ratio if exposure else 1.0)
    occasion = np.arange(months.size)
    rows = [np.ones(months.size, dtype=bool)]
    prob = [1.0 - rate]
    for leave in range(1, j_primary + 1):
        rows.append(occasion < leave)
        prob.append(rate / j_primary)
    return np.array(rows), np.array(prob)


def _classes(sc) -> tuple[np.ndarray, ...]:
    """The discrete client classes: not on track, complier, fidelity level, probability."""
    oc, c = sc.outcome, sc.compliance
    nt, cp, lev = np.meshgrid([0, 1], [0, 1], [0, 1, 2], indexing="ij")
    nt, cp, lev = nt.ravel(), cp.ravel(), lev.ravel()
    p = (np.where(nt == 1, oc.not_on_track_share, 1 - oc.not_on_track_share)
         * np.where(cp == 1, c.uptake, 1 - c.uptake)
         * np.asarray(c.fidelity_shares)[lev])
    return nt, cp, lev, p


@dataclass
class Selection:
    """Who misses the follow-ups: ``simulate.missingness`` with its intercepts calibrated.

    The driver is the recorded baseline (MAR) or the progress (MNAR), standardized over
    the trial's clients (``center``, ``scale``); MCAR has no driver. ``a_drop`` and
    ``a_attrition`` (by exposure) are the intercepts that give the scenario's rates over
    the expected trial, as :func:`simulate.missingness.calibrate_intercept` gives them
    over a drawn one.
    """

    mechanism: str
    strength: float
    center: float
    scale: float
    a_drop: float
    a_attrition: tuple[float, float]
    log_or: float  # dropout odds ratio of clients who take FIT up
    log_dao: float  # attrition odds ratio after a treatment dropout

    def score(self, driver):
        """Standardized score ``z``: higher means more likely to leave."""
        if self.mechanism == "mcar":
            return np.zeros_like(np.asarray(driver, dtype=float))
        return -(np.asarray(driver, dtype=float) - self.center) / self.scale

    def dropout(self, z, uptake, a_drop=None):
        a = self.a_drop if a_drop is None else a_drop
        return expit(a + self.strength * z - self.log_or * uptake)

    def attrition(self, z, uptake, exposure, a=None):
        """Chance of missing the primary follow-up, dropout integrated out."""
        a = np.asarray(self.a_attrition)[np.asarray(exposure, dtype=int)] if a is None else a
        pd = self.dropout(z, uptake)
        lin = a + self.strength * z
        return pd * expit(lin + self.log_dao) + (1 - pd) * expit(lin)


def selection_model(sc, design: ExpectedDesign) -> Selection:
    """Calibrate the missingness model of ``sc`` on the expected trial (see :class:`Selection`)."""
    m, oc = sc.missingness, sc.outcome
    u, wu = gauss_hermite(24)
    values, weights, uptake, expo = [], [], [], []
    for unit in design.units:
        nd = _nodes(sc, design, unit, None)
        n_c = len(unit.start)
        cw = unit.count * unit.share  # clients of each kind in the trial (per unit size)
        if m.mechanism == "mnar":
            v = nd["prog"][:, :, None] + oc.slope_sd * u[None, None, :]
        else:  # the baseline score, clipped; MCAR does not use it
            sd0 = np.sqrt(nd["var_level"] + nd["sd_e"] ** 2)
            v = np.clip(nd["loc0"][:, 0, None, None] + sd0[:, None, None] * u[None, None, :],
                        ORS_MIN, ORS_MAX) * np.ones((1, len(nd["p"]), 1))
        values.append(v.ravel())
        weights.append((cw[:, None, None] * nd["p"][None, :, None] * wu[None, None, :]).ravel())
        uptake.append(np.broadcast_to((nd["cp"][None, :, None] * unit.exposure[:, None, None]),
                                      (n_c, len(nd["p"]), u.size)).ravel())
        expo.append(np.broadcast_to(unit.exposure[:, None, None], v.shape).ravel())
    v, w = np.concatenate(values), np.concatenate(weights)
    up, ex = np.concatenate(uptake), np.concatenate(expo)
    w = w / w.sum()
    center = float(w @ v)
    scale = float(np.sqrt(w @ (v - center) ** 2)) or 1.0
    sel = Selection(m.mechanism, m.strength, center, scale, 0.0, (0.0, 0.0),
                    float(np.log(m.dropout_odds_ratio)),
                    float(np.log(m.dropout_attrition_odds_ratio)))
    z = sel.score(v)
    sel.a_drop = _intercept(lambda a: w @ expit(a + m.strength * z), m.dropout_rate)
    a_att = []
    for e in (0, 1):
        rate = m.attrition_rate * (m.attrition_ratio if e else 1.0)
        on = ex == e
        if not on.any():
            a_att.append(0.0)
            continue
        we = w[on] / w[on].sum()
        a_att.append(_intercept(
            lambda a, on=on, we=we, e=e: we @ sel.attrition(z[on], up[on], e, a), rate))
    sel.a_attrition = (a_att[0], a_att[1])
    return sel


def _intercept(mean_at, target: float) -> float:
    """The intercept ``a`` with ``mean_at(a) == target`` (increasing in ``a``)."""
    if target <= 0:
        return -np.inf
    return float(brentq(lambda a: mean_at(a) - target, -40.0, 40.0, xtol=1e-10))


def _nodes(sc, design: ExpectedDesign, unit: UnitKind, exposure) -> dict:
    """Locations of the latent score at the quadrature nodes, and the class structure."""
    oc, eff, c = sc.outcome, sc.effect, sc.compliance
    vc = variance_components(oc)
    expo = unit.exposure if exposure is None else np.broadcast_to(exposure, unit.exposure.shape)
    has_t = unit.group >= 0
    var_level = (vc["var_unit"] * oc.cluster_autocorrelation + vc["var_client"]
                 + vc["var_therapist"] * has_t)
    nt, cp, lev, p = _classes(sc)
    d_class = comp.client_effect_sizes(nt, eff, oc.not_on_track_share)
    change = np.where(nt == 1, oc.not_on_track_change, oc.mean_change)
    mult = np.asarray(c.fidelity_multipliers)[lev]
    tau = (d_class * oc.sd * mult * cp)[None, :] * (unit.ramp * expo)[:, None]
    prog = (change + c.complier_shift * oc.sd * cp)[None, :] + tau  # clients x classes
    calendar = unit.start[:, None] + design.months[None, :]
    loc0 = oc.intake_mean + oc.secular_trend * calendar / 12.0  # clients x occasions
    return {"var_level": var_level, "sd_e": float(np.sqrt(vc["var_resid"] + vc["var_unit_period"])),
            "prog": prog, "tau": tau, "loc0": loc0, "cp": cp, "lev": lev, "p": p, "expo": np.asarray(expo),
            "vc": vc}


def client_moments(sc, design: ExpectedDesign, unit: UnitKind, selection=None,
                   exposure=None) -> dict:
    """Moments of the recorded scores of each kind of client of ``unit``.

    With ``selection`` (:func:`selection_model`) the moments are conditional on whether
    the client completes the follow-ups or leaves (axis ``A``: 0 completes, 1 leaves),
    as MAR or MNAR attrition selects on the baseline or the progress; without it, one
    unconditional class.

    Parameters
    ----------
    sc : Scenario
    design : ExpectedDesign
    unit : UnitKind
    selection : Selection, optional
    exposure : array, optional
        Override the clients' exposure (0 gives the potential outcome without FIT).

    Returns
    -------
    dict
        ``prob`` (clients x A), ``mean`` (clients x A x occasions), ``cov`` (clients x A x
        occasions x occasions, the within-client covariance), ``inside`` (chance of not
        being clipped), ``mean_lev`` (clients x A x 3 levels x occasions: the mean given
        the therapist's fidelity level), ``lev_prob`` (3), and ``shared`` (the latent
        variances of the effects clients share: ``unit``, ``unit_period``,
        ``therapist``).
    """
    oc, c = sc.outcome, sc.compliance
    nd = _nodes(sc, design, unit, exposure)
    vc, sd_e, p, lev = nd["vc"], nd["sd_e"], nd["p"], nd["lev"]
    t = design.time
    z, w = gauss_hermite(_NODES)
    # location: clients x classes x occasions x level node x slope node
    level = np.sqrt(nd["var_level"])[:, None, None, None, None] * z[None, None, None, :, None]
    slope = (nd["prog"][:, :, None, None, None]
             + oc.slope_sd * z[None, None, None, None, :]) * t[None, None, :, None, None]
    loc = nd["loc0"][:, None, :, None, None] + level + slope
    m1, m2, inside = clipped_moments(loc, sd_e)
    n_c, n_k, n_j = m1.shape[:3]
    N = _NODES * _NODES
    ww = (w[:, None] * w[None, :]).ravel()
    m1, m2, inside = (x.reshape(n_c, n_k, n_j, N) for x in (m1, m2, inside))
    weights, base = _selection_weights(sc, nd, selection, level[:, :, 0], m1, m2, inside)
    out = {k: [] for k in ("prob", "mean", "cov", "inside", "mean_lev")}
    lev_prob = np.asarray(c.fidelity_shares, dtype=float)
    j = np.arange(n_j)
    for W, (b1, b2, b_in) in zip(weights, base):
        Wn = W * ww  # clients x classes x nodes
        pk = Wn.sum(-1)  # chance of this class A within each class k
        prob = pk @ p
        # a class nobody is in (no attrition) gets finite moments and weight 0
        prob_safe = np.where(prob > 0, prob, 1.0)
        G = m1 * Wn[:, :, None, :]
        G[:, :, 0] = b1 * ww
        mean_k = G.sum(-1)  # E[Y 1_A | k]
        mean = np.einsum("ckj,k->cj", mean_k, p) / prob_safe[:, None]
        H = m1.copy()
        H[:, :, 0] = 1.0
        cross = np.einsum("ckaN,ckbN,k->cab", G, H, p)
        cross[:, :, 0] = cross[:, 0, :]
        diag = np.einsum("ckjN,ckN,k->cj", m2, Wn, p)
        diag[:, 0] = np.einsum("ckN,k->c", b2 * ww, p)
        cross[:, j, j] = diag
        cross /= prob_safe[:, None, None]
        ins = np.einsum("ckjN,ckN,k->cj", inside, Wn, p)
        ins[:, 0] = np.einsum("ckN,k->c", b_in * ww, p)
        mean_lev = np.zeros((n_c, 3, n_j))
        for li in range(3):
            sel = lev == li
            if lev_prob[li] > 0:
                den = pk[:, sel] @ p[sel]
                mean_lev[:, li] = (np.einsum("ckj,k->cj", mean_k[:, sel], p[sel])
                                   / np.where(den > 0, den, 1.0)[:, None])
        out["prob"].append(prob)
        out["mean"].append(mean)
        out["cov"].append(cross - mean[:, :, None] * mean[:, None, :])
        out["inside"].append(ins / prob_safe[:, None])
        out["mean_lev"].append(mean_lev)
    res = {k: np.stack(v, axis=1) for k, v in out.items()}
    res["lev_prob"] = lev_prob
    res["latent_effect"] = nd["tau"] @ p
    res["shared"] = {"unit": vc["var_unit"] * oc.cluster_autocorrelation,
                     "unit_period": vc["var_unit_period"], "therapist": vc["var_therapist"]}
    return res


def _selection_weights(sc, nd: dict, selection, level, m1, m2, inside):
    """Chance of each class A (completes, leaves) at every node, and the baseline terms.

    Returns ``weights`` (per class A: clients x classes x nodes) and ``base`` (per class
    A: ``E[y0 1_A]``, ``E[y0^2 1_A]``, ``E[inside 1_A]`` given the node). MAR selects on
    the recorded baseline, which also depends on the baseline noise: that is integrated
    here by a third Gauss-Hermite rule, so the baseline's own moments within each class
    are exact too.
    """
    n_c, n_k, n_j, N = m1.shape
    if selection is None:
        one = np.ones((n_c, n_k, N))
        return [one], [(m1[:, :, 0], m2[:, :, 0], inside[:, :, 0])]
    oc = sc.outcome
    uptake = nd["cp"][None, :] * nd["expo"][:, None]  # clients x classes
    expo = np.broadcast_to(nd["expo"][:, None], uptake.shape)
    n1 = _NODES
    if selection.mechanism == "mar":
        x, wx = gauss_hermite(16)
        # baseline latent at (client, level node, noise node); level: clients x 1 x n1
        lat = nd["loc0"][:, 0, None, None] + level[:, 0, :, 0][:, :, None] + nd["sd_e"] * x
        y0 = np.clip(lat, ORS_MIN, ORS_MAX)
        inside0 = ((lat > ORS_MIN) & (lat < ORS_MAX)).astype(float)
        zs = selection.score(y0)  # clients x n1 x nx
        leave = selection.attrition(zs[:, None], uptake[:, :, None, None],
                                    expo[:, :, None, None])  # clients x classes x n1 x nx
        def integ(f):  # E over the noise, then repeated over the slope nodes
            r = np.einsum("ckix,x->cki", leave * f[:, None], wx)
            return np.repeat(r[:, :, :, None], n1, axis=3).reshape(n_c, n_k, N)
        p_leave = integ(np.ones_like(y0))
        b_leave = (integ(y0), integ(y0**2), integ(inside0))
        total = (m1[:, :, 0], m2[:, :, 0], inside[:, :, 0])
        base_stay = tuple(t_ - b_ for t_, b_ in zip(total, b_leave))
        return [1 - p_leave, p_leave], [base_stay, b_leave]
    if selection.mechanism == "mnar":
        z, _ = gauss_hermite(_NODES)
        progress = nd["prog"][:, :, None] + oc.slope_sd * z[None, None, :]  # c x k x slope
        leave = selection.attrition(selection.score(progress), uptake[:, :, None],
                                    expo[:, :, None])
        p_leave = np.broadcast_to(leave[:, :, None, :], (n_c, n_k, n1, n1)).reshape(n_c, n_k, N)
    else:
        leave = selection.attrition(np.zeros(uptake.shape), uptake, expo)
        p_leave = np.broadcast_to(leave[:, :, None], (n_c, n_k, N))
    b = (m1[:, :, 0], m2[:, :, 0], inside[:, :, 0])
    return ([1 - p_leave, p_leave],
            [tuple(x * (1 - p_leave) for x in b), tuple(x * p_leave for x in b)])
