"""Input checks shared by the power formulas: each names the argument and what is allowed.

Examples
--------
>>> positive("sd", 2)
2.0
>>> alpha_sides(0.05, 3)
Traceback (most recent call last):
...
simulate.power.checks.PowerInputError: sides must be 1 or 2, got 3
"""

from __future__ import annotations

import math

from scipy import stats

from simulate.errors import FitlabError

__all__ = [
    "PowerInputError",
    "positive",
    "unit_interval",
    "proportion",
    "whole_number",
    "alpha_sides",
    "sample_sizes",
    "autocorrelations",
    "distribution",
    "t_df",
    "critical_z",
]


class PowerInputError(FitlabError, ValueError):
    """An argument of a power formula outside its allowed range (a user mistake)."""


def positive(name: str, value: float, allow_zero: bool = False) -> float:
    """``value`` as a float, finite and > 0 (or >= 0 with ``allow_zero``)."""
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        allowed = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise PowerInputError(f"{name} must be {allowed}, got {value!r}")
    return value


def unit_interval(name: str, value: float, closed_right: bool = False) -> float:
    """``value`` in [0, 1) (or [0, 1] with ``closed_right``): an ICC or a correlation."""
    value = float(value)
    ok = 0 <= value <= 1 if closed_right else 0 <= value < 1
    if not ok:
        raise PowerInputError(
            f"{name} must be in [0, 1{']' if closed_right else ')'}, got {value!r}")
    return value


def proportion(name: str, value: float) -> float:
    """A proportion strictly inside (0, 1)."""
    if not 0 < value < 1:
        raise PowerInputError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


def whole_number(name: str, value: float, minimum: int) -> int:
    """A whole number >= ``minimum`` (steps, periods)."""
    if int(value) != value or value < minimum:
        raise PowerInputError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def alpha_sides(alpha: float, sides: int) -> tuple[float, int]:
    """A significance level in (0, 1) and a test with 1 or 2 sides."""
    if not 0 < alpha < 1:
        raise PowerInputError(f"alpha must be in (0, 1), got {alpha!r}")
    if sides not in (1, 2):
        raise PowerInputError(f"sides must be 1 or 2, got {sides!r}")
    return float(alpha), int(sides)


def sample_sizes(n_treat: float, n_control: float) -> tuple[float, float]:
    """Evaluable sizes of the two arms, each > 0."""
    return positive("n_treat", n_treat), positive("n_control", n_control)


def autocorrelations(cluster: float, individual: float) -> tuple[float, float]:
    """Cluster autocorrelation in [0, 1] and individual autocorrelation in [0, 1)."""
    return (unit_interval("cluster_autocorrelation", cluster, closed_right=True),
            unit_interval("individual_autocorrelation", individual))


def distribution(dist: str) -> str:
    """``"normal"`` (approximation) or ``"t"`` (exact t test)."""
    if dist not in ("normal", "t"):
        raise PowerInputError(f"dist must be 'normal' or 't', got {dist!r}")
    return dist


def t_df(dist: str, df: float, what: str) -> float | None:
    """Degrees of freedom of a t test (``dist="t"``), or None for the normal approximation.

    ``what`` names the sizes the df come from, for the message when they are too few.
    """
    if distribution(dist) == "normal":
        return None
    if df <= 0:
        raise PowerInputError(f"{what} must exceed 2 for dist='t'")
    return df


def critical_z(alpha: float, sides: int) -> float:
    """The normal critical value ``z_{1 - alpha / sides}``."""
    return float(stats.norm.ppf(1 - alpha / sides))
