"""Noncompliance: one-sided client uptake and three-level therapist fidelity."""

from __future__ import annotations

import numpy as np

from simulate.conventions import FIDELITY_LEVELS

__all__ = ["draw_compliers", "draw_fidelity", "fidelity_ramp", "client_effect_sizes"]


def draw_compliers(n: int, compliance, rng) -> np.ndarray:
    """Latent principal stratum: 1 if the client would take up FIT when offered.

    Defined for every client, including usual care, where it is never observed.
    """
    return (rng.random(n) < compliance.uptake).astype(np.int8)


def draw_fidelity(n_therapists: int, compliance, rng) -> np.ndarray:
    """Fidelity level (0 low, 1 medium, 2 high) of each therapist when delivering FIT."""
    return rng.choice(len(FIDELITY_LEVELS), size=n_therapists,
                      p=compliance.fidelity_shares).astype(np.int8)


def fidelity_ramp(start: np.ndarray, crossover: np.ndarray, ramp_months: float) -> np.ndarray:
    """Share of the therapist's fidelity reached when a client starts after crossover.

    Linear from 0 at the unit's crossover to 1 after ``ramp_months``; 1 where there is no
    crossover (``crossover`` = -inf: individual and cluster designs).
    """
    if ramp_months <= 0:
        return np.ones_like(start)
    since = start - crossover
    return np.clip(since / ramp_months, 0.0, 1.0)


def client_effect_sizes(not_on_track: np.ndarray, effect, share: float) -> np.ndarray:
    """Standardized FIT effect for each client (full uptake, high fidelity).

    Not-on-track clients get ``effect.not_on_track_d``; on-track clients get the effect
    that keeps the average over both classes at ``effect.d`` (effects are larger for
    clients not on track: Rognstad 2022, d 0.29 against 0.14 overall).
    """
    if effect.not_on_track_d is None or share <= 0:
        return np.full(not_on_track.shape, effect.d)
    if share >= 1:
        return np.full(not_on_track.shape, effect.not_on_track_d)
    on_track_d = (effect.d - share * effect.not_on_track_d) / (1 - share)
    return np.where(not_on_track == 1, effect.not_on_track_d, on_track_d)
