"""Units, therapists and clients: cluster sizes, recruitment over calendar time, caseloads."""

from __future__ import annotations

import numpy as np

__all__ = ["cluster_sizes", "cluster_size_distribution", "recruitment_months",
           "assign_therapists", "max_caseload"]


def cluster_sizes(size, rng) -> np.ndarray:
    """Clients per unit: gamma with the scenario's mean and CV, rounded, at least 1.

    The gamma keeps sizes positive and right-skewed, as unit sizes are in practice;
    CV = 0 gives equal sizes.
    """
    m, cv = size.clients_per_unit, size.cluster_size_cv
    if cv == 0:
        return np.full(size.units, max(1, int(round(m))), dtype=int)
    shape = 1.0 / cv**2
    draws = rng.gamma(shape, m / shape, size.units)
    return np.maximum(1, np.rint(draws)).astype(int)


def cluster_size_distribution(size, points: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The distribution of :func:`cluster_sizes`: sizes and their probabilities.

    The rounded gamma, at least 1, exactly (one entry per whole size) when it has at most
    ``points`` sizes worth keeping, else as ``points`` equally likely quantiles (their
    midpoints, rounded, at least 1): a quadrature for expectations of smooth functions of
    the size, such as a unit's information. Sizes with probability below 1e-9 are left
    out and the rest renormalized.
    """
    m, cv = size.clients_per_unit, size.cluster_size_cv
    if cv == 0:
        return np.array([max(1.0, float(round(m)))]), np.array([1.0])
    from scipy import stats  # scipy.stats is slow to import; only the analytic power needs it

    dist = stats.gamma(1.0 / cv**2, scale=m * cv**2)
    hi = int(np.ceil(dist.isf(1e-9))) + 1
    if hi <= points:
        n = np.arange(1, hi + 1, dtype=float)
        upper = dist.cdf(n + 0.5)
        prob = np.diff(np.r_[0.0, upper])  # size 1 takes every draw below 1.5
    else:
        n = np.maximum(1.0, np.rint(dist.ppf((np.arange(points) + 0.5) / points)))
        prob = np.full(points, 1.0 / points)
    keep = prob > 1e-9
    return n[keep], prob[keep] / prob[keep].sum()


def recruitment_months(n_per_unit: np.ndarray, lo: np.ndarray, hi: np.ndarray, rng) -> np.ndarray:
    """Start months, uniform on ``[lo_u, hi_u)`` for each unit, sorted within unit.

    Continuous recruitment: clients arrive spread over each unit's recruitment window.
    """
    unit = np.repeat(np.arange(len(n_per_unit)), n_per_unit)
    start = lo[unit] + rng.random(unit.size) * (hi - lo)[unit]
    order = np.lexsort((start, unit))
    return start[order]


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """0-based rank of each element within its group (elements already sorted by group)."""
    n = keys.size
    if n == 0:
        return np.zeros(0, dtype=int)
    new = np.r_[True, keys[1:] != keys[:-1]]
    starts = np.flatnonzero(new)
    return np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))


def assign_therapists(unit, arm, n_fit, n_ctrl, control_clustered, rng) -> np.ndarray:
    """Round-robin assignment of clients to therapists of their arm, in recruitment order.

    Clients must be ordered by unit and start month. A random offset per unit and arm
    decides which therapist takes the first client. Round-robin keeps caseloads even,
    which is what services do when they allocate new clients.

    Parameters
    ----------
    unit, arm : ndarray
        Unit and arm of each client (``arm`` all 1 for designs where every therapist of a
        unit treats every client).
    n_fit, n_ctrl : int
        Therapists per unit in the FIT and usual-care groups.
    control_clustered : bool
        If False, usual-care clients get therapist -1.

    Returns
    -------
    ndarray of int
        Globally unique therapist ids ``unit * (n_fit + n_ctrl) + local``, or -1.
    """
    per_unit = n_fit + n_ctrl
    key = unit.astype(np.int64) * 2 + arm
    order = np.argsort(key, kind="stable")
    rank = np.empty_like(order)
    rank[order] = _rank_within(key[order])
    offset = rng.integers(0, 1 << 30, size=(int(unit.max()) + 1, 2))[unit, arm]
    k_arm = np.where(arm == 1, n_fit, max(n_ctrl, 1))
    local = (rank + offset) % k_arm + np.where(arm == 1, 0, n_fit)
    ther = unit.astype(np.int64) * per_unit + local
    if not control_clustered:
        ther = np.where(arm == 1, ther, -1)
    return ther


def max_caseload(therapist: np.ndarray, start: np.ndarray, episode: float) -> int:
    """Largest number of concurrent clients of any therapist (episodes of fixed length)."""
    keep = therapist >= 0
    if not keep.any():
        return 0
    t, s = therapist[keep], start[keep]
    # sweep: +1 at each start, -1 at each end; ends sort before starts at the same time
    times = np.r_[s, s + episode]
    delta = np.r_[np.ones_like(s), -np.ones_like(s)]
    ther = np.r_[t, t]
    order = np.lexsort((delta, times, ther))
    ther, delta = ther[order], delta[order]
    running = np.cumsum(delta)
    first = np.r_[True, ther[1:] != ther[:-1]]
    base = np.maximum.accumulate(np.where(first, np.arange(ther.size), 0))
    before = np.r_[0, running][base]
    return int((running - before).max())
