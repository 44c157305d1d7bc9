"""Vectorized power for nested designs with one outcome per client.

The design is MCPower's: ``U`` units, ``J`` therapists per unit, ``m`` clients per
therapist, one outcome per client,

    y = b0 + delta * arm + unit RE + therapist RE + residual     (residual variance 1).

Every replicate is fitted by exact REML, but never one at a time: with equal cluster sizes
the REML deviance of a replicate depends on the data only through a few sums (over rows,
over therapists of products of therapist totals, over units of products of unit totals of
``1, arm, y``), so :func:`nested_power` computes those sums for ``R`` replicates with
numpy and then evaluates the profiled deviance for all replicates on a grid of the two
variance ratios at once, zooming in twice. Cost per replicate: tens of microseconds.

``arm_level="client"`` draws arm ~ Bernoulli(1/2) per client (MCPower's binary predictor);
``"unit"`` randomizes half the units (a balanced cluster trial, where
:func:`closed_form_power` is exact up to the REML boundary). The Wald test uses a t
reference with the between-within df of :mod:`models.reml`: ``U - 2`` for a unit-level
arm, ``n - 2`` for a client-level arm.

The comparison with MCPower 1.4.1 on the same design (power and time per replicate) is a
benchmark: ``benchmarks/mcpower_compare.py``.

Examples
--------
>>> r = nested_power(delta=0.3, var_unit=0.1, var_therapist=0.1, n_reps=200, seed=1)
>>> 0.0 <= r.power <= 1.0
True
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

__all__ = [
    "PowerResult",
    "nested_power",
    "closed_form_power",
    "icc_to_variance",
]


@dataclass
class PowerResult:
    """Monte Carlo power with its Monte Carlo standard error.

    Attributes
    ----------
    power : float
        Share of replicates with p < alpha.
    mcse : float
        ``sqrt(power (1 - power) / n_reps)``.
    n_reps : int
    seconds : float
        Wall time of the whole run.
    extra : dict
        Engine-specific details (mean estimate, mean SE, boundary share, ...).
    """

    power: float
    mcse: float
    n_reps: int
    seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def per_replicate_us(self) -> float:
        """Microseconds per replicate."""
        return 1e6 * self.seconds / max(self.n_reps, 1)


def icc_to_variance(icc: float) -> float:
    """MCPower's convention: a grouping's ICC ``tau^2 / (tau^2 + 1)`` -> ``tau^2``."""
    if not 0.0 <= icc < 1.0:
        raise ValueError(f"icc must be in [0, 1), got {icc!r}")
    return icc / (1.0 - icc)


def _check_design(units, therapists_per_unit, clients_per_therapist, arm_level):
    for name, v, lo in (("units", units, 2), ("therapists_per_unit", therapists_per_unit, 1),
                        ("clients_per_therapist", clients_per_therapist, 1)):
        if not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if arm_level not in ("client", "unit"):
        raise ValueError(f"arm_level must be 'client' or 'unit', got {arm_level!r}")
    if arm_level == "unit" and units % 2:
        raise ValueError(f"arm_level='unit' needs an even number of units, got {units}")
    if units * therapists_per_unit * clients_per_therapist < 4:
        raise ValueError("the design needs at least 4 clients")


def _sums(y, a, U, J, m):
    """Per-replicate sufficient statistics of (1, a, y) for the balanced nested design."""
    R = y.shape[0]
    one = np.ones_like(y)
    v = {"1": one, "a": a, "y": y}
    raw, thr, unt = {}, {}, {}
    tot_t = {k: x.reshape(R, U * J, m).sum(2) for k, x in v.items()}
    tot_u = {k: x.reshape(R, U, J).sum(2) for k, x in tot_t.items()}
    for p, q in (("1", "1"), ("1", "a"), ("1", "y"), ("a", "a"), ("a", "y"), ("y", "y")):
        raw[p + q] = (v[p] * v[q]).sum(1)
        thr[p + q] = (tot_t[p] * tot_t[q]).sum(1)
        unt[p + q] = (tot_u[p] * tot_u[q]).sum(1)
    return raw, thr, unt


def _deviance(gt, gu, raw, thr, unt, n, J, m):
    """REML deviance (up to a constant) and GLS pieces for variance ratios gt, gu.

    Uses H = A + gu * unit blocks, A = I + gt * therapist blocks; every therapist has m
    rows and every unit J therapists, so w = 1 / (1 + m gt) is one number per replicate.
    """
    w = 1.0 / (1.0 + m * gt)
    cu = J * m * w
    fu = gu / (1.0 + gu * cu) * w * w
    ft = gt * w

    def P(k):
        return raw[k] - ft * thr[k] - fu * unt[k]

    p11, p1a, paa = P("11"), P("1a"), P("aa")
    p1y, pay, pyy = P("1y"), P("ay"), P("yy")
    det = p11 * paa - p1a * p1a
    b1 = (p11 * pay - p1a * p1y) / det  # arm coefficient
    b0 = (paa * p1y - p1a * pay) / det
    rss = np.maximum(pyy - b0 * p1y - b1 * pay, 1e-300)
    logdet_h = (n / m) * np.log1p(m * gt) + (n / (J * m)) * np.log1p(gu * cu)
    dev = logdet_h + np.log(det) + (n - 2) * np.log(rss)
    var_b1 = rss / (n - 2) * p11 / det
    return dev, b1, var_b1


def _fit_grid(raw, thr, unt, n, J, m, zooms=2):
    """Vectorized REML over (gt, gu) for all replicates: log grid, then two zooms."""
    base = np.r_[0.0, np.logspace(-3, 1.5, 19)]
    R = raw["11"].shape[0]
    lo_t = lo_u = None
    best = None
    for level in range(zooms + 1):
        if level == 0:
            gt = np.broadcast_to(base[:, None, None], (base.size, 1, R))
            gu = np.broadcast_to(base[None, :, None], (1, base.size, R))
        else:
            # zoom: 7 points between the neighbours of the current best, per replicate
            s = np.linspace(0.0, 1.0, 7)
            gt = lo_t[0][None, None, :] + s[:, None, None] * (lo_t[1] - lo_t[0])[None, None, :]
            gu = lo_u[0][None, None, :] + s[None, :, None] * (lo_u[1] - lo_u[0])[None, None, :]
        args = {k: {kk: vv[None, None, :] for kk, vv in d.items()}
                for k, d in (("raw", raw), ("thr", thr), ("unt", unt))}
        dev, b1, vb = _deviance(gt, gu, args["raw"], args["thr"], args["unt"], n, J, m)
        dev = np.where(np.isfinite(dev), dev, np.inf)
        G1, G2 = dev.shape[0], dev.shape[1]
        flat = dev.reshape(G1 * G2, R)
        idx = flat.argmin(0)
        i, j = np.divmod(idx, G2)
        cols = np.arange(R)
        gt_full = np.broadcast_to(gt, dev.shape).reshape(G1 * G2, R)
        gu_full = np.broadcast_to(gu, dev.shape).reshape(G1 * G2, R)
        bt, bu = gt_full[idx, cols], gu_full[idx, cols]
        best = (b1.reshape(G1 * G2, R)[idx, cols], vb.reshape(G1 * G2, R)[idx, cols], bt, bu)
        # neighbours of the best point along each axis for the next zoom
        axis_t = gt_full.reshape(G1, G2, R)[:, 0, :]
        axis_u = gu_full.reshape(G1, G2, R)[0, :, :]
        lo_t = (axis_t[np.maximum(i - 1, 0), cols], axis_t[np.minimum(i + 1, G1 - 1), cols])
        lo_u = (axis_u[np.maximum(j - 1, 0), cols], axis_u[np.minimum(j + 1, G2 - 1), cols])
    return best


def nested_power(delta: float = 0.3, var_unit: float = 0.02, var_therapist: float = 0.05,
                 units: int = 12, therapists_per_unit: int = 4, clients_per_therapist: int = 5,
                 n_reps: int = 2000, seed=None, alpha: float = 0.05,
                 arm_level: str = "client", chunk: int = 500) -> PowerResult:
    """Power of the Wald test of ``arm`` in the nested model, R replicates at once.

    Parameters
    ----------
    delta : float
        Effect of arm, in units of the residual SD (residual variance is 1).
    var_unit, var_therapist : float
        Random-intercept variances (MCPower: ``icc / (1 - icc)``, see
        :func:`icc_to_variance`).
    units, therapists_per_unit, clients_per_therapist : int
        Balanced design; MCPower's default comparison is 12 x 4 x 5 = 240 clients.
    n_reps : int
        Replicates.
    seed : int or Generator, optional
    alpha : float
        Two-sided level.
    arm_level : {"client", "unit"}
        Bernoulli(1/2) arm per client, or half of the units randomized to arm 1.
    chunk : int
        Replicates per vectorized block (memory: about 100 kB per replicate).

    Returns
    -------
    PowerResult
        ``extra`` holds the mean estimate, mean SE, df and the share of replicates with a
        variance ratio on the boundary (0).
    """
    _check_design(units, therapists_per_unit, clients_per_therapist, arm_level)
    if var_unit < 0 or var_therapist < 0:
        raise ValueError("var_unit and var_therapist must be >= 0")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if n_reps < 1:
        raise ValueError(f"n_reps must be >= 1, got {n_reps!r}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    U, J, m = units, therapists_per_unit, clients_per_therapist
    n = U * J * m
    df = U - 2 if arm_level == "unit" else n - 2
    crit = stats.t.ppf(1 - alpha / 2, df)
    rej = 0
    est_sum = se_sum = bnd = 0.0
    done = 0
    while done < n_reps:
        R = min(chunk, n_reps - done)
        if arm_level == "client":
            a = (rng.random((R, n)) < 0.5).astype(float)
        else:
            ua = np.argsort(rng.random((R, U)), axis=1) < U // 2
            a = np.repeat(ua.astype(float), J * m, axis=1)
        uu = rng.standard_normal((R, U)) * math.sqrt(var_unit)
        vt = rng.standard_normal((R, U * J)) * math.sqrt(var_therapist)
        y = (delta * a + rng.standard_normal((R, n))
             + np.repeat(uu, J * m, axis=1) + np.repeat(vt, m, axis=1))
        raw, thr, unt = _sums(y, a, U, J, m)
        b1, vb, gt, gu = _fit_grid(raw, thr, unt, n, J, m)
        se = np.sqrt(vb)
        rej += int((np.abs(b1) / se > crit).sum())
        est_sum += float(b1.sum())
        se_sum += float(se.sum())
        bnd += float(((gt == 0) | (gu == 0)).sum())
        done += R
    p = rej / n_reps
    return PowerResult(power=p, mcse=math.sqrt(p * (1 - p) / n_reps), n_reps=n_reps,
                       seconds=time.perf_counter() - t0,
                       extra={"mean_estimate": est_sum / n_reps, "mean_se": se_sum / n_reps,
                              "df": df, "boundary_share": bnd / n_reps,
                              "engine": "fastpower"})


def closed_form_power(delta: float, var_unit: float, var_therapist: float, units: int = 12,
                      therapists_per_unit: int = 4, clients_per_therapist: int = 5,
                      alpha: float = 0.05, arm_level: str = "unit") -> float:
    """Analytic power of the same test.

    ``arm_level="unit"``: balanced cluster trial; the GLS estimate is the difference of
    arm means of unit means, with ``Var = 4 (var_unit + var_therapist / J + 1 / (J m)) / U``,
    tested against t(U - 2): power from the noncentral t (exact when the REML variance
    estimates are interior). ``"client"``: within-cluster randomization, the design effect
    of a within-cluster contrast is about 1, ``Var ~ 4 / n`` (plus a small loss from
    random imbalance, ignored), tested against t(n - 2).
    """
    _check_design(units, therapists_per_unit, clients_per_therapist, arm_level)
    J, m, U = therapists_per_unit, clients_per_therapist, units
    if arm_level == "unit":
        var = 4.0 * (var_unit + var_therapist / J + 1.0 / (J * m)) / U
        df = U - 2
    else:
        var = 4.0 / (U * J * m)
        df = U * J * m - 2
    ncp = delta / math.sqrt(var)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))
