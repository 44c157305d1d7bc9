"""Sample size and minimum detectable effect of a scenario, analytically.

- :func:`solve_size`: the smallest number of units, clients per unit or (stepped wedge)
  units per step whose power reaches a target;
- :func:`mde`: the smallest effect the scenario's design detects with the target power,
  on the recorded scale and as ``d``.

Both work with either analytic power of :func:`simulate.power.power`:

- ``method="fitted"``: the power of the mixed model actually fitted
  (``reml_trajectory`` / ``reml_stepped_wedge``, :mod:`simulate.power.fitted`), ORS only;
- ``method="textbook"``: the closed-form cross-checks (``power_textbook``: the
  primary-month comparison; for the stepped wedge, Hooper et al. 2016 on baseline and
  primary-month scores with the open-cohort correction).

``None`` picks ``"fitted"`` for ORS outcomes and ``"textbook"`` for binary ones. The test
is the scenario's (``analysis.alpha``, ``analysis.sides``).

Examples
--------
>>> from simulate import Scenario
>>> out = solve_size(Scenario().replace({"effect.d": 0.5}), "size.units", method="textbook")
>>> out["value"], out["power"] >= 0.8 > out["power_below"]
(76, True)
"""

from __future__ import annotations

from typing import Any

from scipy import optimize

from simulate.power.checks import PowerInputError, proportion

__all__ = ["solve_size", "mde", "SIZE_FIELDS", "METHODS"]

#: What :func:`solve_size` can solve for.
SIZE_FIELDS = ("size.units", "size.clients_per_unit", "units_per_step")
#: Analytic power methods.
METHODS = ("fitted", "textbook")
#: Largest value tried for each field before giving up.
_MAX = {"size.units": 5000, "size.clients_per_unit": 20000, "units_per_step": 1000}


def _method(scenario, method: str | None) -> str:
    if method is None:
        return "fitted" if scenario.outcome.kind == "ors" else "textbook"
    if method not in METHODS:
        raise PowerInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "fitted" and scenario.outcome.kind != "ors":
        raise PowerInputError("method 'fitted' needs an ORS outcome (the REML estimators fit "
                              "Gaussian scores); use method 'textbook' for a binary outcome")
    return method


def _power_of(scenario, method: str) -> float:
    """Analytic power by ``method``."""
    if method == "fitted":
        from simulate.power.fitted import fitted_power

        return float(fitted_power(scenario)["power"])
    from simulate.power.scenario import power

    return float(power(scenario, fitted=False)["power_textbook"])


def _sized(scenario, field: str, value: int):
    """The scenario with ``field`` at ``value``; ``units_per_step`` sets ``size.units``."""
    if field == "units_per_step":
        return scenario.replace({"size.units": value * scenario.design.steps})
    return scenario.replace({field: value})


def _refused(scenario, field: str, value: int) -> str | None:
    """Why the scenario refuses ``field = value`` (its problems, one line), or None."""
    from simulate.scenario import ScenarioError

    try:
        _sized(scenario, field, value)
    except ScenarioError as exc:
        return "; ".join(exc.problems)
    return None


def _lowest(scenario, field: str) -> int:
    d = scenario.design
    if field == "size.units":
        return d.steps if d.kind == "stepped_wedge" else (1 if d.kind == "individual" else 2)
    return 1


def _current(scenario, field: str) -> int:
    if field == "units_per_step":
        return max(1, scenario.size.units // scenario.design.steps)
    value = scenario.size.units if field == "size.units" else scenario.size.clients_per_unit
    return max(1, int(round(value)))


def solve_size(scenario, field: str, target: float = 0.8, method: str | None = None,
               max_value: int | None = None) -> dict[str, Any]:
    """The smallest ``field`` at which the analytic power reaches ``target``.

    Power rises with the size, so the search doubles from the scenario's own value until
    the target is reached (or halves while it still is), then bisects. Allocation
    rounding can make power dip by a little between neighbouring sizes; the answer is the
    boundary the bisection finds, with the power at it and one below it reported.

    Parameters
    ----------
    scenario : Scenario
    field : {"size.units", "size.clients_per_unit", "units_per_step"}
        What to solve for; ``units_per_step`` (stepped wedge only) sets ``size.units``
        to that many units at each of ``design.steps`` steps.
    target : float
        Target power in (0, 1).
    method : {"fitted", "textbook"} or None
        See the module docstring.
    max_value : int, optional
        Give up above this value (default: 5000 units, 20000 clients per unit, 1000
        units per step).

    Returns
    -------
    dict
        ``field``, ``method``, ``target``, ``alpha``, ``sides``, ``value`` (the size
        needed; ``None`` if not reachable), ``power`` (at ``value``), ``power_below``
        (at ``value - 1``; ``None`` at the lowest size), ``current`` (the scenario's
        value) and ``power_current``, ``units`` and ``clients_per_unit`` of the solution,
        ``evaluations``, and where the target is out of reach ``limit`` (why), ``largest``
        (the largest size tried) and ``power_largest`` (its power), else ``None``.
    """
    if field not in SIZE_FIELDS:
        raise PowerInputError(f"field must be one of {', '.join(SIZE_FIELDS)}, got {field!r}")
    if field == "units_per_step" and scenario.design.kind != "stepped_wedge":
        raise PowerInputError("units_per_step needs a stepped-wedge design "
                              "(design.kind: stepped_wedge); use size.units")
    target = proportion("target", target)
    method = _method(scenario, method)
    top = int(max_value or _MAX[field])
    lo_bound = _lowest(scenario, field)
    cache: dict[int, float] = {}
    limit = None

    def pw(n: int) -> float:
        if n not in cache:
            cache[n] = _power_of(_sized(scenario, field, n), method)
        return cache[n]

    start = min(max(_current(scenario, field), lo_bound), top)
    n_ok = n_fail = None
    if pw(start) >= target:
        n_ok = start
        n = start
        while n > lo_bound:
            n = max(lo_bound, n // 2)
            if pw(n) >= target:
                n_ok = n
            else:
                n_fail = n
                break
        if n_fail is None:
            n_fail = lo_bound - 1
    else:
        n_fail = start
        n = start
        while n_ok is None:
            nxt = min(2 * n, top)
            problem = _refused(scenario, field, nxt)
            if problem is not None:
                # the scenario refuses the size (e.g. the caseload cap): find the largest
                # size it accepts (validation only, no power) and try that once
                bad = nxt
                while bad - n > 1:
                    mid = (n + bad) // 2
                    if _refused(scenario, field, mid) is None:
                        n = mid
                    else:
                        bad = mid
                limit = f"{field} = {bad} is not a valid scenario: {_refused(scenario, field, bad)}"
                top = n
                if n > n_fail and pw(n) >= target:
                    n_ok = n
                else:
                    n_fail = n
                break
            if pw(nxt) >= target:
                n_ok = nxt
            else:
                n_fail = nxt
                if nxt >= top:
                    limit = f"the target is not reached at {field} = {top}"
                    break
                n = nxt
    while n_ok is not None and n_ok - n_fail > 1:
        mid = (n_ok + n_fail) // 2
        if pw(mid) >= target:
            n_ok = mid
        else:
            n_fail = mid
    a = scenario.analysis
    out = {"field": field, "method": method, "target": target, "alpha": a.alpha,
           "sides": a.sides, "value": n_ok, "current": start, "power_current": cache[start],
           "power": cache.get(n_ok) if n_ok is not None else None,
           "power_below": cache.get(n_ok - 1) if n_ok is not None and n_ok > lo_bound else None,
           "units": None, "clients_per_unit": None, "evaluations": len(cache),
           "limit": None if n_ok is not None else limit,
           "largest": None if n_ok is not None else n_fail,
           "power_largest": None if n_ok is not None else cache.get(n_fail)}
    if n_ok is not None:
        solved = _sized(scenario, field, n_ok)
        out["units"] = solved.size.units
        out["clients_per_unit"] = solved.size.clients_per_unit
    return out


def _scaled(scenario, scale: float):
    """The scenario with its effect scaled: ``d`` and ``not_on_track_d`` (ORS; a null
    scenario's ``d`` becomes ``scale``), or ``risk_ratio - 1`` (binary)."""
    e = scenario.effect
    if scenario.outcome.kind == "binary":
        return scenario.replace({"effect.risk_ratio": 1.0 + scale * (e.risk_ratio - 1.0)})
    if e.d == 0:
        return scenario.replace({"effect.d": scale, "effect.not_on_track_d": None})
    changes = {"effect.d": scale * e.d}
    if e.not_on_track_d is not None:
        changes["effect.not_on_track_d"] = scale * e.not_on_track_d
    return scenario.replace(changes)


def mde(scenario, target: float = 0.8, method: str | None = None,
        max_scale: float = 50.0) -> dict[str, Any]:
    """Minimum detectable effect: the effect at which the analytic power is ``target``.

    The scenario's effect is scaled as a whole, so its structure is kept: ORS
    ``effect.d`` and ``effect.not_on_track_d`` by the same factor (not-on-track clients
    keep their larger share of the benefit; a scenario with ``d = 0`` gets ``d`` itself
    with no class difference), binary ``risk_ratio - 1``. The factor is bracketed by
    doubling and found by Brent's method.

    Parameters
    ----------
    scenario : Scenario
    target : float
        Target power in (0, 1).
    method : {"fitted", "textbook"} or None
        See the module docstring.
    max_scale : float
        Give up beyond this multiple of the scenario's effect.

    Returns
    -------
    dict
        ``method``, ``target``, ``alpha``, ``sides``, ``power`` (at the MDE), ``scale``
        (of the scenario's effect), and for ORS ``d`` and ``not_on_track_d`` (the
        scenario's effect fields at the MDE), ``effect`` (the ITT at the primary month on
        the recorded 0-40 scale, ORS points), ``effect_d`` (that ITT in SDs of ORS at
        intake, ``outcome.sd``), ``effect_latent`` (before clipping), ``effect_fitted``
        (the fitted estimator's expected value; ``None`` for the textbook); for binary
        ``risk_ratio`` (full uptake and fidelity), ``risk_difference`` (the ITT) and
        ``risk_ratio_itt``. ``None`` values and ``limit`` when the target is not reached
        (for instance where the 0-40 scale caps the effect).
    """
    target = proportion("target", target)
    method = _method(scenario, method)
    binary = scenario.outcome.kind == "binary"
    if binary:
        ok_scale = (1.0 / scenario.outcome.control_rate - 1.0 - 1e-6) / (
            scenario.effect.risk_ratio - 1.0) if scenario.effect.risk_ratio > 1 else max_scale
        max_scale = min(max_scale, ok_scale)
        if scenario.effect.risk_ratio == 1.0:
            raise PowerInputError("effect.risk_ratio is 1: set a risk ratio above 1 to scale")
    evaluations = 0

    def f(s: float) -> float:
        nonlocal evaluations
        evaluations += 1
        return _power_of(_scaled(scenario, s), method) - target

    lo, hi = 0.0, 1.0 if scenario.effect.d != 0 or binary else 0.5
    limit = None
    f_hi = f(hi)
    while f_hi < 0:
        lo = hi
        if hi >= max_scale:
            limit = f"the target is not reached at {max_scale:g} times the scenario's effect"
            break
        hi = min(2 * hi, max_scale)
        f_hi = f(hi)
    a = scenario.analysis
    out = {"method": method, "target": target, "alpha": a.alpha, "sides": a.sides,
           "limit": limit}
    if limit is not None:
        out.update(power=None, scale=None)
        out["evaluations"] = evaluations
        return out
    scale = optimize.brentq(f, lo, hi, xtol=1e-4 * hi, rtol=1e-6) if f_hi > 1e-9 else hi
    solved = _scaled(scenario, scale)
    out.update(_describe(solved, method))
    out["scale"] = scale
    out["evaluations"] = evaluations
    return out


def _describe(scenario, method: str) -> dict[str, Any]:
    """The effect of a scenario on the scales :func:`mde` reports, and its power."""
    e = scenario.effect
    if method == "fitted":
        from simulate.power.fitted import fitted_power

        r = fitted_power(scenario)
        return {"power": r["power"], "d": e.d, "not_on_track_d": e.not_on_track_d,
                "effect": r["itt_recorded"], "effect_d": r["itt_recorded"] / scenario.outcome.sd,
                "effect_latent": r["itt_latent"], "effect_fitted": r["effect"]}
    from simulate.power.scenario import power

    res = power(scenario, fitted=False)
    if scenario.outcome.kind == "binary":
        return {"power": res["power_textbook"], "risk_ratio": e.risk_ratio,
                "risk_difference": res["effect"], "risk_ratio_itt": res["risk_ratio_itt"]}
    return {"power": res["power_textbook"], "d": e.d, "not_on_track_d": e.not_on_track_d,
            "effect": res["effect"], "effect_d": res["effect"] / scenario.outcome.sd,
            "effect_latent": res["effect_itt_latent"], "effect_fitted": None}
