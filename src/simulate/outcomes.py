"""Outcome models: ORS trajectories, SRS with its ceiling, and binary outcomes (employment).

ORS (0-40) is log-linear in time (most change early; Stulz 2013, Finch 2001 used
log(session)): with ``time`` from :func:`simulate.conventions.scaled_time`
(``log1p(month) / log1p(primary)``, 0 at baseline and 1 at the primary month),

    ORS* = intake + u_unit + u_unit,period + v_therapist + c_client
           + (change_class + s_client + shift * complier + tau_client * exposed) * time
           + trend * calendar_month / 12 + e

clipped to [0, 40] and rounded to one decimal (ORS is four 10 cm visual-analogue lines).
The binary outcome uses the same random-effect structure on the logit scale, with
intercepts calibrated so the *marginal* rates equal the scenario's.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.optimize import brentq

from simulate.conventions import ORS_MAX, ORS_MIN, expit, gauss_hermite

__all__ = ["variance_components", "binary_calibration", "srs_scores"]


def variance_components(outcome) -> dict[str, float]:
    """Variances of each level on the outcome's scale.

    ORS: shares of ``sd**2`` (the intake variance). Binary: shares of the total latent
    variance whose residual part is the logistic pi^2/3.
    """
    shares = outcome.unit_icc + outcome.therapist_icc + outcome.client_icc
    if outcome.kind == "ors":
        total = outcome.sd**2
        resid = (1 - shares) * total
        slope = outcome.slope_sd**2
    else:
        resid = np.pi**2 / 3
        total = resid / (1 - shares)
        slope = 0.0
    unit = outcome.unit_icc * total
    return {
        "var_unit": unit,
        "var_unit_period": unit * (1 - outcome.cluster_autocorrelation),
        "var_therapist": outcome.therapist_icc * total,
        "var_client": outcome.client_icc * total,
        "var_slope": slope,
        "var_resid": resid,
    }


def _marginal(a: float, sd: float) -> float:
    """E[expit(a + b)], b ~ N(0, sd^2), by Gauss-Hermite quadrature."""
    x, w = gauss_hermite(60)
    return float(np.dot(w, expit(a + sd * x)))


@lru_cache(maxsize=256)
def binary_calibration(baseline_rate, control_rate, risk_ratio, uptake, shift, re_sd):
    """Logit intercepts and effect that reproduce the scenario's marginal rates.

    Returns ``(a0, a1, delta)``: the linear predictor is ``a0`` at baseline and ``a1`` at
    the primary month for a non-complier under usual care; compliers add ``shift``;
    a complier treated by a high-fidelity FIT therapist adds ``delta``, chosen so that
    the compliers' risk ratio at the primary month equals ``risk_ratio``.
    """
    a0 = brentq(lambda a: _marginal(a, re_sd) - baseline_rate, -30, 30)

    def control(a):
        return uptake * _marginal(a + shift, re_sd) + (1 - uptake) * _marginal(a, re_sd)

    a1 = brentq(lambda a: control(a) - control_rate, -30, 30)
    p_c = _marginal(a1 + shift, re_sd)
    target = min(risk_ratio * p_c, 1 - 1e-9)
    delta = brentq(lambda d: _marginal(a1 + shift + d, re_sd) - target, -40, 40)
    return a0, a1, delta


def srs_scores(ors_latent: np.ndarray, client_alliance: np.ndarray, outcome, rng) -> np.ndarray:
    """SRS with its ceiling at 40 (Meier & Feeley 2022: strong ceiling effects).

    Latent SRS is normal with the scenario's mean and SD, correlated
    ``srs_ors_correlation`` with ORS and carrying a stable client alliance; scores are
    censored at 40 and rounded to one decimal, which gives the skewed, piled-up
    distribution seen in practice.
    """
    r = outcome.srs_ors_correlation
    z_ors = (ors_latent - ors_latent.mean()) / max(ors_latent.std(), 1e-12)
    own = np.sqrt(0.6) * client_alliance[:, None] + np.sqrt(0.4) * rng.standard_normal(ors_latent.shape)
    latent = outcome.srs_mean + outcome.srs_sd * (r * z_ors + np.sqrt(1 - r**2) * own)
    return np.round(np.clip(latent, ORS_MIN, ORS_MAX), 1)
