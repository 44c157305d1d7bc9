"""The rules the whole lab shares, written once: time scale, therapist split, fidelity
levels, the ORS range, Gauss-Hermite expectations, the logistic function, JSON values.

Every package (``simulate``, ``models``, ``fitlab``) imports these from here, so that the
simulator, the analytic power formulas and the estimators cannot drift apart.

Examples
--------
>>> round(float(scaled_time(12.0, 12.0)), 6), round(float(scaled_time(0.0, 12.0)), 6)
(1.0, 0.0)
>>> therapist_split(4, 0.5, control_clustered=True)
(2, 2)
>>> json_native({"a": np.float64(1.5), "b": [np.int64(2)], "c": float("nan")}, finite=True)
{'a': 1.5, 'b': [2], 'c': None}
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import special

__all__ = [
    "FIDELITY_LEVELS",
    "ORS_MIN",
    "ORS_MAX",
    "TIME_SCALES",
    "scaled_time",
    "therapist_split",
    "expit",
    "gauss_hermite",
    "json_native",
    "luhn_total",
]

#: Therapist fidelity levels, in the order of ``compliance.fidelity_shares`` and the
#: ``fidelity`` column (0, 1, 2).
FIDELITY_LEVELS = ("low", "medium", "high")
#: The ORS scale: four 10 cm visual-analogue lines, 0-40.
ORS_MIN, ORS_MAX = 0.0, 40.0
#: How months since a client's start become the model's time axis.
TIME_SCALES = ("log", "linear")


def scaled_time(month, primary_month: float, scale: str = "log") -> np.ndarray:
    """Model time: 0 at baseline and 1 at the primary month.

    ``"log"``: ``log1p(month) / log1p(primary_month)`` (ORS changes most early; Stulz
    2013, Finch 2001 used log(session)). ``"linear"``: ``month / primary_month``.

    Parameters
    ----------
    month : float or array
        Months since the client's start (>= 0).
    primary_month : float
        The primary time point (> 0).
    scale : {"log", "linear"}

    Returns
    -------
    ndarray of float
    """
    if scale not in TIME_SCALES:
        raise ValueError(f"time scale must be one of {TIME_SCALES}, got {scale!r}")
    primary = float(primary_month)
    if not primary > 0:
        raise ValueError(f"primary_month must be positive, got {primary_month!r}")
    m = np.asarray(month, dtype=float)
    if scale == "log":
        return np.log1p(m) / math.log1p(primary)
    return m / primary


def therapist_split(therapists_per_unit: int, treated_share: float,
                    control_clustered: bool) -> tuple[int, int]:
    """Therapists per unit in the FIT group and in the usual-care group.

    With usual-care therapists (``control_clustered``) the unit's staff are split by the
    allocation share, at least one in each group; without them (a partially nested
    design such as the IPS pre-study) every therapist is a FIT therapist.
    """
    k = int(therapists_per_unit)
    if not control_clustered:
        return k, 0
    n_fit = int(min(max(round(k * treated_share), 1), k - 1))
    return n_fit, k - n_fit


def expit(x):
    """The logistic function ``1 / (1 + exp(-x))``, without overflow for large ``|x|``.

    It is scipy's ``expit``: the simulator has always drawn its binary outcomes and its
    missingness with it, so every trial stays the same draw for the same seed.
    """
    return special.expit(np.asarray(x, dtype=float))


@lru_cache(maxsize=16)
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite_e.hermegauss(n)
    x.setflags(write=False)
    w = w / w.sum()
    w.setflags(write=False)
    return x, w


def gauss_hermite(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for ``E[f(Z)]``, ``Z ~ N(0, 1)``: ``sum(w * f(x))``.

    Probabilists' Hermite quadrature with the weights normalized to sum to 1; exact for
    polynomials of degree below ``2 n``. The arrays are read-only and shared.
    """
    return _hermite(int(n))


def json_native(obj: Any, finite: bool = False) -> Any:
    """Numpy scalars, arrays and tuples as plain JSON values, recursively.

    With ``finite=True`` NaN and infinity become ``None`` (JSON has neither).
    """
    if isinstance(obj, dict):
        return {str(k): json_native(v, finite) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_native(v, finite) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_native(obj.tolist(), finite)
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return None if finite and not math.isfinite(v) else v
    return obj


def luhn_total(values, base: int, factor: int = 1) -> int:
    """The Luhn mod ``base`` sum of ``values`` (each in ``0..base-1``), read from the right.

    Weights alternate 1 and 2, the rightmost ``factor``; a weighted value counts as the sum
    of its two digits in ``base``. A string with its check character included is valid
    when the total (``factor`` 1) is a multiple of ``base``; a check character is the
    value that makes it so (total of the body with ``factor`` 2). Base 10 is the check
    digit of Swedish personal identity numbers (:mod:`models.privacy`), base 32 that of
    the allocation lists' sequence codes (:mod:`simulate.allocation`).

    Examples
    --------
    >>> luhn_total([1, 2, 1, 2, 1, 2, 1, 2, 1, 2], 10) % 10   # 121212-1212 is valid
    0
    """
    total = 0
    for v in reversed(values):
        addend = factor * v
        total += addend // base + addend % base
        factor = 3 - factor
    return total
