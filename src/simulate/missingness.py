"""Treatment dropout and study attrition under MCAR, MAR and MNAR mechanisms.

Both processes are logistic in a client-level score ``z`` (standardized): zero under
MCAR, the (always observed) baseline score under MAR, and the unobserved lack of progress
under MNAR. Intercepts are calibrated on the trial's own clients so the expected rates
equal the scenario's, whatever the mechanism.

Treatment dropout is recorded as an outcome in its own right (does FIT prevent dropout?)
and raises the odds of missing later follow-ups; it does not change the outcome
trajectory itself, so the ITT effect on ORS is the effect of offering FIT whatever the
client then did.
"""

from __future__ import annotations

import numpy as np

from simulate.conventions import expit

__all__ = ["missingness_score", "calibrate_intercept", "dropout_probability", "draw_dropout",
           "draw_attrition"]


def _standardize(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def missingness_score(mechanism: str, baseline: np.ndarray, progress: np.ndarray) -> np.ndarray:
    """Client-level driver of missingness; higher means more likely to leave.

    MAR: a worse (lower) observed baseline. MNAR: less progress on the unobserved
    trajectory ("dropout driven by lack of progress").
    """
    if mechanism == "mcar":
        return np.zeros_like(baseline, dtype=float)
    if mechanism == "mar":
        return -_standardize(baseline.astype(float))
    return -_standardize(progress.astype(float))


def calibrate_intercept(offset: np.ndarray, target: float, iters: int = 50) -> float:
    """Intercept a with ``mean(expit(a + offset)) == target`` (Newton's method).

    The mean is monotone in a, so Newton from logit(target) converges in a few steps.
    """
    if target <= 0:
        return -np.inf
    a = np.log(target / (1 - target))
    for _ in range(iters):
        p = expit(a + offset)
        f = p.mean() - target
        g = (p * (1 - p)).mean()
        if abs(f) < 1e-12 or g <= 0:
            break
        a -= f / g
    return float(a)


def dropout_probability(z, uptake, missingness) -> np.ndarray:
    """Each client's probability of treatment dropout (the data-generating one).

    Calibrated to ``dropout_rate`` as if no one took up FIT; clients who take up FIT have
    their odds of dropout divided by ``dropout_odds_ratio`` (de Jong 2021: OR 1.19).
    """
    lin = missingness.strength * z
    a = calibrate_intercept(lin, missingness.dropout_rate)
    return expit(a + lin - np.log(missingness.dropout_odds_ratio) * uptake)


def draw_dropout(z, uptake, missingness, rng) -> np.ndarray:
    """Treatment dropout (client-level 0/1), drawn from :func:`dropout_probability`."""
    return (rng.random(z.size) < dropout_probability(z, uptake, missingness)).astype(np.int8)


def draw_attrition(z, dropout, exposure, missingness, rng) -> np.ndarray:
    """Whether each client misses the primary follow-up (monotone attrition).

    Calibrated within each arm: usual care to ``attrition_rate``, FIT to
    ``attrition_rate * attrition_ratio``. Treatment dropouts have higher odds
    (``dropout_attrition_odds_ratio``).
    """
    lin = missingness.strength * z + np.log(missingness.dropout_attrition_odds_ratio) * dropout
    p = np.empty(z.size)
    for arm, target in ((0, missingness.attrition_rate),
                        (1, missingness.attrition_rate * missingness.attrition_ratio)):
        sel = exposure == arm
        if sel.any():
            p[sel] = expit(calibrate_intercept(lin[sel], target) + lin[sel])
    return (rng.random(z.size) < p).astype(np.int8)
