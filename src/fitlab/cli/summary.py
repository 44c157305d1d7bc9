"""Readable summaries for the command line: the analytic power of a scenario in a few lines.

:func:`power_summary` turns the dict of :func:`simulate.power.power` into what a reader
needs first: the design and its sizes, the effect on the recorded scale and what diluted
it, the ICCs and design effects, the standard error and the power (and, where the
solvers of :mod:`simulate.power` exist, the sizes needed and the detectable effect).
``fitlab power --json`` prints every key instead.

Examples
--------
>>> from simulate import Scenario
>>> from simulate.power import power
>>> text = power_summary(power(Scenario()), Scenario())
>>> text.splitlines()[0]
'fit_individual: individual randomization, ORS outcome at month 12'
"""

from __future__ import annotations

import textwrap
from typing import Any

__all__ = ["power_summary", "solve_summary", "mde_summary", "DESIGN_NAMES", "SOLVE_TARGET"]

DESIGN_NAMES = {"individual": "individual randomization",
                "cluster": "parallel cluster randomization", "stepped_wedge": "stepped wedge"}
#: The power the size and detectable-effect lines aim at.
SOLVE_TARGET = 0.8


def _f(x: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; "-" for a missing one."""
    if x is None:
        return "-"
    if isinstance(x, int | float) and float(x).is_integer() and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.{digits}g}"


def _by_arm(res: dict[str, Any], prefix: str, unnamed: str = "") -> str:
    """``prefix*`` keys as text, a quantity shown once where both arms share its value.

    ``icc_therapist_treat`` and ``icc_therapist_control`` become ``therapist 0.04`` when
    equal, else ``therapist 0.03 (FIT), 0.02 (usual care)``; a key that is only the
    prefix (and arm) is labelled ``unnamed``.
    """
    arms = {"treat": "FIT", "control": "usual care"}
    found: dict[str, dict[str, float]] = {}
    for key, value in res.items():
        if not key.startswith(prefix) or not isinstance(value, int | float):
            continue
        name = key.removeprefix(prefix).strip("_")
        arm = next((a for a in arms if name == a or name.endswith("_" + a)), "")
        name = name.removesuffix(arm).strip("_").replace("_", " ")
        found.setdefault(name or unnamed, {})[arm] = value
    parts = []
    for name, by in found.items():
        label = (name.replace("cluster period", "cluster-period") + " ") if name else ""
        values = list(by.values())
        if len(set(values)) == 1:
            parts.append(label + _f(values[0]))
        else:
            parts.append(label + ", ".join(f"{_f(v)} ({arms.get(a, a)})" for a, v in by.items()))
    return ", ".join(parts)


def power_summary(res: dict[str, Any], scenario: Any) -> str:
    """A short, readable summary of :func:`simulate.power.power` for ``scenario``.

    Parameters
    ----------
    res : dict
        The output of :func:`simulate.power.power` for the scenario.
    scenario : simulate.scenario.Scenario

    Returns
    -------
    str
        Lines of ``label  text``; the last one says how to get every quantity.
    """
    sc, kind = scenario, res["design"]
    s, c = sc.size, sc.compliance
    lines = [f"{sc.name}: {DESIGN_NAMES.get(kind, kind)}, {res['outcome'].upper() if res['outcome'] == 'ors' else res['outcome']} "
             f"outcome at month {_f(sc.followup.primary)}"]

    def row(label: str, text: str) -> None:
        lines.append(f"  {label:<15}{text}")

    size = (f"{s.units} units x {_f(s.clients_per_unit)} clients (CV {_f(s.cluster_size_cv)}), "
            f"{s.therapists_per_unit} therapists per unit")
    if kind == "individual":
        size += f", allocation {_f(sc.design.allocation_ratio)}:1"
        if not sc.design.control_clustered:
            size += " (usual care without therapists: partially nested)"
    elif kind == "stepped_wedge":
        per = res.get("units_per_step") or []
        size += f"; {sc.design.steps} steps of {', '.join(map(str, per))} units"
    elif kind == "cluster":
        size += f"; {res.get('units_treat')} FIT and {res.get('units_control')} usual-care units"
    row("size", size)
    row("evaluable", f"{_f(res['n_treat'], 4)} FIT + {_f(res['n_control'], 4)} usual care "
        f"after {_f(100 * sc.missingness.attrition_rate)}% attrition")
    dilution = (f"dilution {_f(res['dilution'])} = uptake {_f(c.uptake)} x mean fidelity "
                f"multiplier {_f(c.mean_multiplier)}")
    if res["outcome"] == "ors":
        row("effect", f"{_f(res['effect'])} ORS points on the recorded 0-40 scale "
            f"(ITT at month {_f(sc.followup.primary)})")
        row("", f"= d {_f(sc.effect.d)} x SD {_f(sc.outcome.sd)} = {_f(res['effect_full'])} "
            f"for a taker-up at high fidelity,")
        row("", f"  x {dilution},")
        row("", f"  x {_f(res['unclipped_share'])} share of scores not clipped at 0 or 40")
    else:
        row("effect", f"risk difference {_f(res['effect'])} (ITT): {_f(res['p_control'])} "
            f"-> {_f(res['p_treat'])}, risk ratio {_f(res['risk_ratio_itt'])}")
        row("", f"= full risk ratio {_f(sc.effect.risk_ratio)} (difference "
            f"{_f(res['effect_full'])}) x {dilution}")
    iccs = _by_arm(res, "icc_")
    if iccs:
        row("ICC", iccs)
    if "cluster_autocorrelation" in res:
        row("", f"cluster autocorrelation {_f(res['cluster_autocorrelation'])}")
    deffs = _by_arm(res, "design_effect", {"individual": "therapists",
                                           "cluster": "units"}.get(kind, "cluster-period"))
    if deffs:
        row("design effect", deffs)
    test = f"{res.get('sides', 2)}-sided alpha {_f(res['alpha'])}"
    row("SE", f"{_f(res['se'])} ({test})")
    if res.get("power_fitted") is not None:
        row("power", f"{_f(res['power_fitted'])} of the mixed model fitted "
            f"({res.get('estimator_fitted', 'REML')}, all occasions, expected information)")
        power = f"{_f(res['power'])} textbook, primary month only (normal approximation)"
        row("", power if res.get("power_t") is None
            else power + f", {_f(res['power_t'])} (t, {_f(res['df'])} df)")
    else:
        power = f"{_f(res['power'])} (normal approximation)"
        if res.get("power_t") is not None:
            power += f", {_f(res['power_t'])} (t, {_f(res['df'])} df)"
        row("power", power)
    if res.get("power_baseline_adjusted") is not None:
        row("", f"{_f(res['power_baseline_adjusted'])} textbook adjusted for baseline "
            f"(ANCOVA, r = {_f(res['r_baseline'])})")
    lines += [f"  {'':<15}{t}" if i else f"  {'needed':<15}{t}"
              for i, t in enumerate(_solver_lines(sc))]
    wrapped = textwrap.wrap(res.get("method", ""), 72) or [""]
    row("method", wrapped[0])
    for more in wrapped[1:]:
        row("", more)
    row("more", "--json prints every quantity; formulas and sources: docs/MODEL.md")
    return "\n".join(lines)


def _solver_lines(scenario: Any) -> list[str]:
    """Sizes for 80% power and the detectable effect, where :mod:`simulate.power` solves.

    The solvers (``solve_size``, ``mde``) are optional: without them, or when they cannot
    solve this scenario (no size reaches the target), there are no lines.
    """
    import simulate.power as sp
    from simulate.errors import FitlabError

    out = []
    solve = getattr(sp, "solve_size", None)
    if solve is not None:
        fields = ["size.units", "size.clients_per_unit"]
        for field in fields:
            try:
                # the textbook formulas: quick enough for a summary (the fitted model's
                # answer is `fitlab power SCENARIO --solve FIELD`)
                got = solve(scenario, field, target=SOLVE_TARGET, method="textbook")
            except (FitlabError, ValueError, TypeError):
                continue
            value = got.get("value", got.get(field)) if isinstance(got, dict) else got
            if value is not None:
                out.append(f"{field} {_f(value)} for power {SOLVE_TARGET:g} (textbook)")
    mde = getattr(sp, "mde", None)
    if mde is not None:
        try:
            got = mde(scenario, target=SOLVE_TARGET, method="textbook")
        except (FitlabError, ValueError, TypeError):
            got = None
        value = got.get("d", got.get("mde")) if isinstance(got, dict) else got
        if value is not None:
            out.append(f"detectable effect d {_f(value)} at power {SOLVE_TARGET:g} (textbook)")
    return out


def _method_words(res: dict[str, Any]) -> str:
    test = f"{res['sides']}-sided alpha {_f(res['alpha'])}"
    if res.get("method") == "fitted":
        return f"power of the mixed model fitted (expected information), {test}"
    return f"textbook power, {test}"


def solve_summary(res: dict[str, Any]) -> str:
    """:func:`simulate.power.solve_size`'s answer in a few lines.

    Examples
    --------
    >>> print(solve_summary({"field": "size.units", "method": "textbook", "target": 0.8,
    ...                      "alpha": 0.05, "sides": 2, "value": 40, "current": 12,
    ...                      "power_current": 0.31, "power": 0.81, "power_below": 0.79,
    ...                      "limit": None}))
    size.units 40 for power 0.8 (now 12, power 0.31)
      power at 40: 0.8100, at 39: 0.7900
      method: textbook power, 2-sided alpha 0.05
    """
    field, target = res["field"], _f(res["target"])
    lines = []
    if res.get("value") is None:
        lines.append(f"{field}: no size reaches power {target} "
                     f"({res.get('limit') or 'the solver gave up'})")
        if res.get("largest") is not None:
            lines.append(f"  largest allowed {_f(res['largest'])}: power "
                         f"{_f(res.get('power_largest'))}")
    else:
        lines.append(f"{field} {_f(res['value'])} for power {target} (now "
                     f"{_f(res['current'])}, power {_f(res['power_current'], 2)})")
        below = res.get("power_below")
        lines.append(f"  power at {_f(res['value'])}: {res['power']:.4f}"
                     + ("" if below is None else
                        f", at {_f(res['value'] - 1)}: {below:.4f}"))
    lines.append(f"  method: {_method_words(res)}")
    return "\n".join(lines)


def mde_summary(res: dict[str, Any]) -> str:
    """:func:`simulate.power.mde`'s answer in a few lines.

    Examples
    --------
    >>> print(mde_summary({"method": "fitted", "target": 0.8, "alpha": 0.05, "sides": 2,
    ...                    "power": 0.8, "d": 1.16, "not_on_track_d": 2.31, "effect": 3.16,
    ...                    "effect_d": 0.42, "effect_latent": 3.47, "scale": 7.7,
    ...                    "limit": None}))
    detectable effect at power 0.8: ITT 3.16 ORS points at the primary month (0.42 SD of intake ORS)
      scenario fields: effect.d 1.16, effect.not_on_track_d 2.31 (7.7 times the scenario's effect)
      before the 0-40 scale clips it: 3.47 points
      method: power of the mixed model fitted (expected information), 2-sided alpha 0.05
    """
    target = _f(res["target"])
    if res.get("limit"):
        return (f"no detectable effect at power {target}: {res['limit']}\n"
                f"  method: {_method_words(res)}")
    if "risk_difference" in res:
        lines = [f"detectable effect at power {target}: risk difference "
                 f"{_f(res['risk_difference'])} (ITT), risk ratio {_f(res['risk_ratio_itt'])}",
                 f"  scenario field: effect.risk_ratio {_f(res['risk_ratio'])} (full uptake "
                 "and fidelity)"]
    else:
        lines = [f"detectable effect at power {target}: ITT {_f(res['effect'])} ORS points at "
                 f"the primary month ({_f(res['effect_d'], 2)} SD of intake ORS)",
                 f"  scenario fields: effect.d {_f(res['d'])}, effect.not_on_track_d "
                 f"{_f(res['not_on_track_d'])} ({_f(res['scale'], 2)} times the scenario's effect)",
                 f"  before the 0-40 scale clips it: {_f(res['effect_latent'])} points"]
    lines.append(f"  method: {_method_words(res)}")
    return "\n".join(lines)

